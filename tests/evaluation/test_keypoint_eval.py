"""COCO-protocol evaluation: parity with pycocotools on coco-mini, loaders' errors, summary text."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pose.evaluation import COCO_STAT_NAMES, evaluate_keypoints, format_summary, load_gt, load_results
from pose.metainfo import COCO as COCO_META
from pose.metainfo import DatasetMeta

COCO_MINI_GT = Path(__file__).resolve().parents[1] / "fixtures/coco-mini/annotations/person_keypoints_val2017.json"


def _noisy_predictions(gt: dict, seed: int, with_bbox: bool) -> list[dict]:
    """GT people with seeded noise, random joint/person scores, one miss and two false positives."""
    rng = np.random.default_rng(seed)
    preds = []
    anns = [a for a in gt["annotations"] if a["num_keypoints"] > 0]
    for a in anns[1:]:  # anns[0] is missed
        kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        scale = np.sqrt(a["area"])
        kp[:, :2] += rng.normal(0.0, rng.choice([0.01, 0.04, 0.1]) * scale, (len(kp), 2))
        kp[:, 2] = rng.uniform(0.1, 1.0, len(kp))
        preds.append(
            {
                "image_id": a["image_id"],
                "category_id": 1,
                "keypoints": kp.reshape(-1).tolist(),
                "score": float(rng.uniform(0.2, 1.0)),
            }
        )
    for img in gt["images"][:2]:  # false positives
        k = COCO_META.num_keypoints
        kp = np.stack(
            [rng.uniform(0, img["width"], k), rng.uniform(0, img["height"], k), rng.uniform(0, 1, k)], 1
        )
        preds.append(
            {
                "image_id": img["id"],
                "category_id": 1,
                "keypoints": kp.reshape(-1).tolist(),
                "score": float(rng.uniform(0.5, 1.0)),
            }
        )
    if with_bbox:
        for p in preds:
            x, y = p["keypoints"][0::3], p["keypoints"][1::3]
            p["bbox"] = [min(x), min(y), max(x) - min(x), max(y) - min(y)]
    return preds


def _pycocotools_stats(gt_path: Path, preds: list[dict], sigmas: np.ndarray) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(preds)), "keypoints")
        ev.params.kpt_oks_sigmas = sigmas
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.parametrize("with_bbox", [False, True])
def test_coco_stats_equal_pycocotools(with_bbox: bool) -> None:
    gt = json.loads(COCO_MINI_GT.read_text())
    preds = _noisy_predictions(gt, seed=0, with_bbox=with_bbox)
    expected = _pycocotools_stats(COCO_MINI_GT, preds, COCO_META.sigmas_array)
    stats = evaluate_keypoints(COCO_MINI_GT, preds, COCO_META)
    assert list(stats) == list(COCO_STAT_NAMES)
    assert [stats[k] for k in COCO_STAT_NAMES] == expected.tolist()  # exact, every digit
    assert 0.1 < stats["AP"] < 0.95  # a non-trivial case


def test_coco_results_from_file_equal_in_memory(tmp_path: Path) -> None:
    gt = json.loads(COCO_MINI_GT.read_text())
    preds = _noisy_predictions(gt, seed=1, with_bbox=False)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(preds))
    assert evaluate_keypoints(str(COCO_MINI_GT), path, COCO_META) == evaluate_keypoints(
        load_gt(COCO_MINI_GT), preds, COCO_META
    )


def test_custom_dataset_with_other_k(tmp_path: Path) -> None:
    """A 5-joint layout: GT and sigmas come from the metainfo, not from COCO's 17."""
    keep = [0, 5, 6, 11, 12]
    meta = DatasetMeta(
        name="five",
        keypoint_names=tuple(COCO_META.keypoint_names[i] for i in keep),
        flip_pairs=((1, 2), (3, 4)),
        sigmas=tuple(COCO_META.sigmas[i] for i in keep),
        skeleton=(),
        grouping_order=tuple(range(5)),
    )
    gt = json.loads(COCO_MINI_GT.read_text())
    for a in gt["annotations"]:
        kp = np.asarray(a["keypoints"]).reshape(-1, 3)[keep]
        a["keypoints"] = kp.reshape(-1).tolist()
        a["num_keypoints"] = int((kp[:, 2] > 0).sum())
    gt_path = tmp_path / "gt5.json"
    gt_path.write_text(json.dumps(gt))
    preds = _noisy_predictions(json.loads(COCO_MINI_GT.read_text()), seed=2, with_bbox=False)
    for p in preds:
        p["keypoints"] = np.asarray(p["keypoints"]).reshape(-1, 3)[keep].reshape(-1).tolist()
    stats = evaluate_keypoints(gt_path, preds, meta)
    assert [stats[k] for k in COCO_STAT_NAMES] == _pycocotools_stats(
        gt_path, preds, meta.sigmas_array
    ).tolist()
    with pytest.raises(ValueError, match="expected 15 values"):
        evaluate_keypoints(gt_path, _noisy_predictions(json.loads(COCO_MINI_GT.read_text()), 2, False), meta)


def test_gt_as_prediction_gives_perfect_scores() -> None:
    gt = json.loads(COCO_MINI_GT.read_text())
    preds = [
        {"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
        for a in gt["annotations"]
        if a["num_keypoints"] > 0
    ]
    stats = evaluate_keypoints(COCO_MINI_GT, preds, COCO_META)
    assert stats == {k: 1.0 for k in COCO_STAT_NAMES}


def test_empty_results_give_zeros(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("[]")
    assert evaluate_keypoints(COCO_MINI_GT, path, COCO_META) == {k: 0.0 for k in COCO_STAT_NAMES}
    assert evaluate_keypoints(COCO_MINI_GT, [], COCO_META) == {k: 0.0 for k in COCO_STAT_NAMES}


def test_summary_matches_pycocotools_and_verbose_flag(capsys: pytest.CaptureFixture[str]) -> None:
    gt = json.loads(COCO_MINI_GT.read_text())
    preds = _noisy_predictions(gt, seed=3, with_bbox=False)
    stats = evaluate_keypoints(COCO_MINI_GT, preds, COCO_META)
    assert capsys.readouterr().out == ""  # quiet by default
    evaluate_keypoints(COCO_MINI_GT, preds, COCO_META, verbose=True)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith(" Average")]
    assert format_summary(stats, COCO_META).splitlines() == printed
    assert printed[0].startswith(
        " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets= 20 ] = 0."
    )


# ---------------------------------------------------------------- bad inputs


def test_load_gt_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_gt(tmp_path / "nope.json")


def test_load_gt_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "broken_gt.json"
    path.write_text('{"images": [')
    with pytest.raises(ValueError, match="broken_gt.json.*malformed JSON"):
        load_gt(path)


@pytest.mark.parametrize("key", ["images", "annotations"])
def test_load_gt_missing_section(tmp_path: Path, key: str) -> None:
    data = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    del data[key]
    path = tmp_path / "partial_gt.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=f"partial_gt.json: missing '{key}'"):
        load_gt(path)


@pytest.fixture
def tiny_gt(tmp_path: Path) -> COCO:
    kp = [10, 10, 2] * COCO_META.num_keypoints
    data = {
        "images": [{"id": 7, "width": 100, "height": 100}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 1,
                "keypoints": kp,
                "num_keypoints": COCO_META.num_keypoints,
                "bbox": [0, 0, 50, 50],
                "area": 2500.0,
                "iscrowd": 0,
            }
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    path = tmp_path / "tiny_gt.json"
    path.write_text(json.dumps(data))
    return load_gt(path)


def _good_result(**over: object) -> dict:
    rec = {
        "image_id": 7,
        "category_id": 1,
        "keypoints": [10.0, 10.0, 1.0] * COCO_META.num_keypoints,
        "score": 0.9,
    }
    rec.update(over)
    return rec


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"image_id": 8}, r"result #1 \(image_id 8\): image_id is not an image"),
        ({"keypoints": [1.0] * 50}, r"result #1 \(image_id 7\): keypoints have shape \(50,\), expected 51"),
        ({"keypoints": [float("nan")] + [1.0] * 50}, r"result #1 \(image_id 7\): keypoints contain NaN"),
        ({"score": None}, r"result #1 \(image_id 7\): score None is not a finite number"),
        ({"score": float("inf")}, r"result #1 \(image_id 7\): score inf"),
        ({"category_id": 3}, r"result #1 \(image_id 7\): category_id 3"),
    ],
)
def test_bad_result_names_file_index_and_image(
    tmp_path: Path, tiny_gt: COCO, bad: dict, message: str
) -> None:
    path = tmp_path / "my_results.json"
    path.write_text(json.dumps([_good_result(), _good_result(**bad)], allow_nan=True))
    with pytest.raises(ValueError, match=f"my_results.json: {message}"):
        load_results(path, tiny_gt, COCO_META)
    with pytest.raises(ValueError, match=message):
        evaluate_keypoints(tiny_gt, [_good_result(), _good_result(**bad)], COCO_META)


def test_result_without_score(tmp_path: Path, tiny_gt: COCO) -> None:
    rec = _good_result()
    del rec["score"]
    path = tmp_path / "res.json"
    path.write_text(json.dumps([rec]))
    with pytest.raises(ValueError, match=r"res.json: result #0 \(image_id 7\) has no 'score'"):
        load_results(path, tiny_gt, COCO_META)


def test_results_file_errors(tmp_path: Path, tiny_gt: COCO) -> None:
    with pytest.raises(FileNotFoundError, match="missing_results.json"):
        load_results(tmp_path / "missing_results.json", tiny_gt, COCO_META)
    bad = tmp_path / "garbled.json"
    bad.write_text("[{")
    with pytest.raises(ValueError, match="garbled.json: malformed JSON"):
        load_results(bad, tiny_gt, COCO_META)
    bad.write_text('{"annotations": []}')
    with pytest.raises(ValueError, match="garbled.json: results must be a list"):
        load_results(bad, tiny_gt, COCO_META)


def test_load_results_normalises_and_copies(tiny_gt: COCO) -> None:
    rec = _good_result(
        keypoints=np.full((COCO_META.num_keypoints, 3), 10.0),
        score=np.float32(0.5),
        image_id=np.int64(7),
        extra="x",
    )
    (out,) = load_results([rec], tiny_gt, COCO_META)
    assert out == {
        "image_id": 7,
        "category_id": 1,
        "keypoints": [10.0] * 3 * COCO_META.num_keypoints,
        "score": 0.5,
    }
    assert isinstance(rec["keypoints"], np.ndarray)  # input untouched
    assert load_results([], tiny_gt, COCO_META) == []


def test_bbox_on_first_result_needs_bbox_everywhere(tiny_gt: COCO) -> None:
    recs = [_good_result(bbox=[0, 0, 10, 10]), _good_result()]
    with pytest.raises(ValueError, match=r"result #1 \(image_id 7\) has no bbox but result #0 has one"):
        load_results(recs, tiny_gt, COCO_META)
    load_results(recs[::-1], tiny_gt, COCO_META)  # the other way round is what loadRes accepts


def test_gt_annotation_with_wrong_keypoint_count(tmp_path: Path) -> None:
    data = {
        "images": [{"id": 3}],
        "annotations": [
            {
                "id": 42,
                "image_id": 3,
                "category_id": 1,
                "keypoints": [1, 1, 2] * 14,
                "num_keypoints": 14,
                "bbox": [0, 0, 5, 5],
                "area": 25,
                "iscrowd": 0,
            }
        ],
        "categories": [{"id": 1}],
    }
    path = tmp_path / "gt14.json"
    path.write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match=r"gt14.json: annotation 42 \(image 3\): 42 keypoint values, expected 51"
    ):
        evaluate_keypoints(path, [], COCO_META)
