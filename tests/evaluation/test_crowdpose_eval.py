"""CrowdPose protocol: parity with xtcocotools (stored fixture), protocol details, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pose.evaluation import CROWDPOSE_STAT_NAMES, evaluate_keypoints, format_summary, load_gt
from pose.metainfo import CROWDPOSE

FIXTURES = Path(__file__).parent / "fixtures"
GT_PATH = FIXTURES / "crowdpose_gt.json"
RESULTS_PATH = FIXTURES / "crowdpose_results.json"
K = CROWDPOSE.num_keypoints


def _gt() -> dict:
    return json.loads(GT_PATH.read_text())


def _write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_fixture_reproduces_xtcocotools() -> None:
    expected = json.loads((FIXTURES / "crowdpose_expected.json").read_text())
    stats = evaluate_keypoints(GT_PATH, RESULTS_PATH, CROWDPOSE)
    assert list(stats) == list(CROWDPOSE_STAT_NAMES)
    assert stats == pytest.approx(expected, abs=1e-12, rel=0)
    in_memory = evaluate_keypoints(load_gt(GT_PATH), json.loads(RESULTS_PATH.read_text()), CROWDPOSE)
    assert in_memory == stats


def test_fixture_is_crowdpose_style() -> None:
    """The fixture exercises what it claims: no area/segmentation, crowd and ignored GT, all three types."""
    gt = _gt()
    anns = gt["annotations"]
    assert not any("area" in a or "segmentation" in a for a in anns)
    assert any(a["iscrowd"] for a in anns) and any(a["num_keypoints"] == 0 for a in anns)
    idx = [img["crowdIndex"] for img in gt["images"]]
    assert min(idx) < 0.2 and any(0.2 <= c < 0.8 for c in idx) and max(idx) >= 0.8


def _gt_as_predictions(gt: dict) -> list[dict]:
    preds = []
    for a in gt["annotations"]:
        kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(K, 3)
        if not (kp[:, 2] > 0).any():
            continue
        kp[:, 2] = (kp[:, 2] > 0).astype(np.float64)
        ignored = a["iscrowd"] or a["num_keypoints"] == 0
        preds.append(
            {
                "image_id": a["image_id"],
                "category_id": 1,
                "keypoints": kp.reshape(-1).tolist(),
                "score": 0.5 if ignored else 1.0,
            }
        )
    return preds


def test_gt_as_prediction_gives_one() -> None:
    stats = evaluate_keypoints(GT_PATH, _gt_as_predictions(_gt()), CROWDPOSE)
    assert stats == {k: 1.0 for k in CROWDPOSE_STAT_NAMES}


def test_empty_results_give_zeros() -> None:
    assert evaluate_keypoints(GT_PATH, [], CROWDPOSE) == {k: 0.0 for k in CROWDPOSE_STAT_NAMES}


def test_type_without_images_is_minus_one(tmp_path: Path) -> None:
    gt = _gt()
    for img in gt["images"]:
        img["crowdIndex"] = 0.1
    stats = evaluate_keypoints(_write(tmp_path, "all_easy.json", gt), RESULTS_PATH, CROWDPOSE)
    assert stats["AP_easy"] == float(np.round(stats["AP"], 4))
    assert stats["AP_medium"] == stats["AP_hard"] == -1.0


# ---------------------------------------------------------------- protocol details on a hand-made image


def _person(x: float, y: float, visible: int = K) -> list[float]:
    """K joints on a 10 px grid starting at (x, y); the first ``visible`` have v=2."""
    kp = []
    for j in range(K):
        kp += [x + 10 * (j % 4), y + 10 * (j // 4), 2 if j < visible else 0]
    return kp


def _tiny_gt(tmp_path: Path, anns: list[dict]) -> Path:
    base = {"category_id": 1, "iscrowd": 0, "bbox": [0.0, 0.0, 40.0, 40.0]}
    data = {
        "images": [{"id": 1, "width": 640, "height": 480, "crowdIndex": 0.5}],
        "annotations": [{**base, "id": i + 1, "image_id": 1, **a} for i, a in enumerate(anns)],
        "categories": [{"id": 1, "name": "person"}],
    }
    return _write(tmp_path, "tiny_crowdpose.json", data)


def _pred(kp: list[float], score: float, joint_score: float = 1.0) -> dict:
    kp = np.asarray(kp, dtype=np.float64).reshape(K, 3)
    kp[:, 2] = joint_score
    return {"image_id": 1, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": score}


def test_crowd_and_empty_gt_are_ignored(tmp_path: Path) -> None:
    person, crowd, unlabeled = _person(0, 0), _person(300, 300), _person(100, 300)
    gt = _tiny_gt(
        tmp_path,
        [
            {"keypoints": person, "num_keypoints": K},
            {"keypoints": crowd, "num_keypoints": K, "iscrowd": 1, "bbox": [300.0, 300.0, 40.0, 40.0]},
            # labelled joints but num_keypoints 0 (CrowdPose: no v=2 joint): ignored all the same
            {"keypoints": unlabeled, "num_keypoints": 0, "bbox": [100.0, 300.0, 40.0, 40.0]},
        ],
    )
    preds = [_pred(crowd, 0.99), _pred(crowd, 0.98), _pred(unlabeled, 0.97), _pred(person, 0.5)]
    one = pytest.approx(1.0, abs=1e-12)  # precision is tp / (tp + fp + eps)
    assert evaluate_keypoints(gt, preds, CROWDPOSE)["AP"] == one
    # a real false positive ranked first does cost precision
    assert evaluate_keypoints(gt, [*preds, _pred(_person(500, 50), 0.999)], CROWDPOSE)["AP"] < 0.9
    # ...but not when all its joint scores are 0: xtcocotools drops such detections
    assert (
        evaluate_keypoints(gt, [*preds, _pred(_person(500, 50), 0.999, joint_score=0.0)], CROWDPOSE)["AP"]
        == one
    )


def test_oks_scale_is_053_bbox_area_not_area(tmp_path: Path) -> None:
    gt_kp = _person(0, 0)
    # a huge 'area' would make any prediction match; CrowdPose ignores it and uses 0.53 * w * h
    gt = _tiny_gt(tmp_path, [{"keypoints": gt_kp, "num_keypoints": K, "area": 1e9}])
    shifted = (np.asarray(gt_kp, dtype=np.float64).reshape(K, 3) + [4.0, 0.0, 0.0]).reshape(-1).tolist()
    stats = evaluate_keypoints(gt, [_pred(shifted, 0.9)], CROWDPOSE)
    variances = (2 * CROWDPOSE.sigmas_array) ** 2
    thresholds = np.linspace(0.5, 0.95, 10)

    def ap_for_scale(scale: float) -> float:
        oks = np.mean(np.exp(-16.0 / variances / (scale + np.spacing(1)) / 2))
        return float(np.mean(oks >= thresholds))

    assert stats["AP"] == pytest.approx(ap_for_scale(0.53 * 40 * 40), abs=1e-12)  # 0.4
    assert ap_for_scale(0.53 * 40 * 40) not in (ap_for_scale(40 * 40), ap_for_scale(1e9))


def test_only_top_20_detections_per_image_count(tmp_path: Path) -> None:
    person = _person(0, 0)
    gt = _tiny_gt(tmp_path, [{"keypoints": person, "num_keypoints": K}])
    fps = [_pred(_person(400 + i, 200), 0.9) for i in range(20)]
    assert evaluate_keypoints(gt, [*fps, _pred(person, 0.1)], CROWDPOSE)["AR"] == 0.0
    assert evaluate_keypoints(gt, [*fps[:19], _pred(person, 0.1)], CROWDPOSE)["AR"] == 1.0


# ---------------------------------------------------------------- bad inputs


def test_missing_crowd_index_names_file_and_image(tmp_path: Path) -> None:
    gt = _gt()
    del gt["images"][3]["crowdIndex"]
    path = _write(tmp_path, "no_index.json", gt)
    with pytest.raises(
        ValueError, match=rf"no_index.json: image {gt['images'][3]['id']} has no 'crowdIndex'"
    ):
        evaluate_keypoints(path, RESULTS_PATH, CROWDPOSE)


@pytest.mark.parametrize("value", ["high", None, [0.3], True])
def test_non_numeric_crowd_index_names_file_and_image(tmp_path: Path, value: object) -> None:
    gt = _gt()
    gt["images"][5]["crowdIndex"] = value
    path = _write(tmp_path, "bad_index.json", gt)
    with pytest.raises(ValueError, match=rf"bad_index.json: image {gt['images'][5]['id']} has a non-numeric"):
        evaluate_keypoints(path, [], CROWDPOSE)


def test_missing_num_keypoints_names_file_and_annotation(tmp_path: Path) -> None:
    gt = _gt()
    ann = gt["annotations"][2]
    del ann["num_keypoints"]
    path = _write(tmp_path, "no_num.json", gt)
    with pytest.raises(
        ValueError, match=rf"no_num.json: annotation {ann['id']} \(image {ann['image_id']}\) has no"
    ):
        evaluate_keypoints(path, [], CROWDPOSE)


def test_bad_result_names_results_file_and_image(tmp_path: Path) -> None:
    results = json.loads(RESULTS_PATH.read_text())
    results[4]["image_id"] = 999
    path = _write(tmp_path, "cp_results.json", results)
    with pytest.raises(ValueError, match=r"cp_results.json: result #4 \(image_id 999\)"):
        evaluate_keypoints(GT_PATH, path, CROWDPOSE)
    results = json.loads(RESULTS_PATH.read_text())
    results[6]["keypoints"] = results[6]["keypoints"][:-3]
    with pytest.raises(
        ValueError, match=r"result #6 \(image_id \d+\): keypoints have shape \(39,\), expected 42"
    ):
        evaluate_keypoints(GT_PATH, results, CROWDPOSE)


def test_summary_lines() -> None:
    stats = evaluate_keypoints(GT_PATH, RESULTS_PATH, CROWDPOSE)
    lines = format_summary(stats, CROWDPOSE).splitlines()
    assert len(lines) == len(CROWDPOSE_STAT_NAMES)
    assert (
        lines[0]
        == f" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets= 20 ] = {stats['AP']:0.3f}"
    )
    assert (
        lines[-1]
        == f" Average Precision  (AP) @[ IoU=0.50:0.95 | type=  hard | maxDets= 20 ] = {stats['AP_hard']:0.3f}"
    )
