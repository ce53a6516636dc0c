"""SynthPose datasets: layout, COCO validity, self-evaluation, determinism, ids, detections."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from pose.config import from_dict
from pose.evaluation.keypoint_eval import evaluate_keypoints, load_gt
from pose.metainfo import get_metainfo
from pose.synth import SynthConfig, generate_dataset
from pose.synth.annotate import crowd_index, crowd_level
from pose.synth.generate import SPLIT_ID_BASE

ANN_FILES = ("annotations/person_keypoints_train.json", "annotations/person_keypoints_val.json",
             "annotations/image_info_unlabeled.json")
DET_FILES = ("person_detection_results/val_detections.json",
             "person_detection_results/unlabeled_detections.json")


def _load(path: Path) -> dict | list:
    return json.loads(path.read_text())


@pytest.fixture(params=["coco_tiny", "crowdpose_tiny"])
def dataset(request):
    return request.getfixturevalue(request.param)


def test_layout_and_pycocotools_loads_every_json(dataset):
    out, cfg, summary = dataset
    for rel in ANN_FILES:
        coco = COCO(str(out / rel))
        assert coco.dataset["categories"] == [get_metainfo(cfg.format).coco_category()]
    assert "annotations" not in _load(out / "annotations/image_info_unlabeled.json")
    for rel in DET_FILES:
        assert isinstance(_load(out / rel), list)
    card = _load(out / "synthpose.json")
    assert card["summary"] == {k: v for k, v in summary.items()
                               if k not in ("seconds", "images_per_second", "workers")}
    assert from_dict(SynthConfig, {**card["config"], "workers": cfg.workers}) == cfg.resolved()
    for split, n in cfg.split_sizes().items():
        name = {"train": "person_keypoints_train", "val": "person_keypoints_val",
                "unlabeled": "image_info_unlabeled"}[split]
        images = _load(out / "annotations" / f"{name}.json")["images"]
        assert len(images) == n == summary["splits"][split]["images"]
        files = sorted(p.name for p in (out / "images" / split).iterdir())
        assert files == sorted(i["file_name"] for i in images)
        for i, img in enumerate(images):
            assert img["id"] == SPLIT_ID_BASE[split] + i + 1
            assert img["file_name"] == f"{img['id']:012d}.jpg"
            pixels = cv2.imread(str(out / "images" / split / img["file_name"]))  # a real JPEG
            assert pixels.shape == (img["height"], img["width"], 3)
            assert ("crowdIndex" in img) == (cfg.format == "crowdpose")


def test_annotations_are_well_formed(dataset):
    out, cfg, _ = dataset
    meta = get_metainfo(cfg.format)
    k = meta.num_keypoints
    for split in ("train", "val"):
        data = _load(out / "annotations" / f"person_keypoints_{split}.json")
        images = {i["id"]: i for i in data["images"]}
        ids = [a["id"] for a in data["annotations"]]
        assert ids == list(range(SPLIT_ID_BASE[split] + 1, SPLIT_ID_BASE[split] + 1 + len(ids)))
        for a in data["annotations"]:
            img = images[a["image_id"]]
            w, h = img["width"], img["height"]
            assert a["category_id"] == 1 and len(a["keypoints"]) == 3 * k
            x, y, bw, bh = a["bbox"]
            assert 0 <= x and 0 <= y and bw > 0 and bh > 0 and x + bw <= w + 1e-6 and y + bh <= h + 1e-6
            kp = np.asarray(a["keypoints"], np.float64).reshape(k, 3)
            assert set(np.unique(kp[:, 2])) <= {0, 1, 2}
            assert a["num_keypoints"] == int((kp[:, 2] > 0).sum())
            lab = kp[:, 2] > 0
            # no labelled keypoint outside the image; unlabelled ones are (0, 0, 0)
            assert (kp[lab, 0] >= 0).all() and (kp[lab, 0] <= w - 1).all()
            assert (kp[lab, 1] >= 0).all() and (kp[lab, 1] <= h - 1).all()
            assert (kp[~lab, :2] == 0).all()
            if a["iscrowd"]:
                assert a["num_keypoints"] == 0
                continue
            assert a["area"] > 0
            assert ("segmentation" in a) == (cfg.format == "coco")
            if a["num_keypoints"] == 0:
                assert a["keypoints"] == [0] * (3 * k)
        assert len(data["annotations"]) > 0


def test_ground_truth_scores_ap_1(dataset):
    out, cfg, _ = dataset
    meta = get_metainfo(cfg.format)
    gt = load_gt(out / "annotations" / "person_keypoints_val.json")
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in gt.dataset["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
    assert results
    stats = evaluate_keypoints(gt, results, meta)
    assert stats["AP"] == pytest.approx(1.0)
    assert stats["AR"] == pytest.approx(1.0)


def test_crowd_regions_decode_to_their_area(dataset):
    out, _, summary = dataset
    found = 0
    for split in ("train", "val"):
        data = _load(out / "annotations" / f"person_keypoints_{split}.json")
        images = {i["id"]: i for i in data["images"]}
        for a in data["annotations"]:
            if not a["iscrowd"]:
                continue
            found += 1
            img = images[a["image_id"]]
            seg = a["segmentation"]
            assert isinstance(seg["counts"], str) and seg["size"] == [img["height"], img["width"]]
            m = mask_util.decode({"size": seg["size"], "counts": seg["counts"].encode()})
            assert m.shape == (img["height"], img["width"]) and m.sum() > 0
            assert a["area"] == pytest.approx(float(m.sum()))
            ys, xs = np.nonzero(m)
            box = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert a["bbox"] == pytest.approx(box)
            assert a["keypoints"] == [0] * len(a["keypoints"])
        assert found > 0 or summary["splits"][split]["crowd_regions"] == 0
    regions = summary["splits"]["train"]["crowd_regions"] + summary["splits"]["val"]["crowd_regions"]
    assert found == regions > 0


def test_detections_reference_existing_images(dataset):
    out, _, summary = dataset
    for split, info in (("val", "person_keypoints_val"), ("unlabeled", "image_info_unlabeled")):
        images = {i["id"]: i for i in _load(out / "annotations" / f"{info}.json")["images"]}
        dets = _load(out / "person_detection_results" / f"{split}_detections.json")
        assert len(dets) == summary["splits"][split]["detections"] > 0
        for d in dets:
            assert set(d) == {"image_id", "category_id", "bbox", "score"}
            img = images[d["image_id"]]
            x, y, w, h = d["bbox"]
            assert d["category_id"] == 1 and 0 < d["score"] <= 1
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= img["width"] + 0.01
            assert y + h <= img["height"] + 0.01


def test_crowd_index_spread_and_recomputation(crowdpose_tiny):
    out, _, summary = crowdpose_tiny
    data = _load(out / "annotations" / "person_keypoints_train.json")
    by_image: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    levels = set()
    for img in data["images"]:
        assert 0.0 <= img["crowdIndex"] <= 1.0
        assert img["crowdIndex"] == round(crowd_index(by_image.get(img["id"], [])), 2)
        levels.add(crowd_level(img["crowdIndex"]))
    assert levels == {"easy", "medium", "hard"}
    assert all(v > 0 for v in summary["splits"]["train"]["crowd_index"].values())


def test_same_seed_same_bytes_any_worker_count_other_seed_differs(tmp_path):
    base = {"images": 3, "val_images": 2, "unlabeled_images": 2, "seed": 5, "long_side": (160, 200),
            "crowd_region_every": 2}
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_dataset(SynthConfig(workers=1, **base), a, progress=False)
    generate_dataset(SynthConfig(workers=2, **base), b, progress=False)
    generate_dataset(SynthConfig(workers=1, **{**base, "seed": 6}), c, progress=False)
    files = [*ANN_FILES, *DET_FILES, "synthpose.json"]
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    for img in sorted((a / "images" / "train").iterdir()):
        assert img.read_bytes() == (b / "images" / "train" / img.name).read_bytes()
    assert (a / ANN_FILES[0]).read_bytes() != (c / ANN_FILES[0]).read_bytes()
    # the format changes the annotations, not the images
    d = tmp_path / "d"
    generate_dataset(SynthConfig(workers=1, format="crowdpose", **base), d, progress=False)
    for img in sorted((a / "images" / "val").iterdir()):
        assert img.read_bytes() == (d / "images" / "val" / img.name).read_bytes()
    first = "images/train/000000000001.jpg"
    assert (a / first).read_bytes() != (c / first).read_bytes()


def test_out_dir_rules_and_progress(tmp_path, capsys):
    cfg = SynthConfig(images=1, val_images=1, unlabeled_images=0, long_side=(128, 128), workers=1)
    (tmp_path / "other.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        generate_dataset(cfg, tmp_path)
    summary = generate_dataset(cfg, tmp_path, progress=True, overwrite=True)
    assert summary["splits"]["train"]["images"] == 1
    assert "[synth] train" in capsys.readouterr().err
    assert (tmp_path / "other.txt").read_text() == "keep me"
    # an interrupted run (SynthPose outputs without synthpose.json) is replaced without --overwrite
    fresh = tmp_path / "fresh"
    generate_dataset(cfg, fresh, progress=False)
    (fresh / "synthpose.json").unlink()
    generate_dataset(cfg, fresh, progress=False)
    assert (fresh / "synthpose.json").exists()
