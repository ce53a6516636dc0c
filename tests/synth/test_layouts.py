"""SynthPose in MPII's and AI Challenger's own layouts: what the generator writes, the library's readers
read back (record by record against the generator's in-memory annotations of the same images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pose.data.aic import aic_to_coco, load_aic_instances
from pose.data.mpii import load_mpii_gt, load_mpii_instances
from pose.evaluation.keypoint_eval import evaluate_keypoints, load_gt
from pose.metainfo import AIC
from pose.synth import SynthConfig, generate_dataset, generate_image
from pose.synth.layouts import image_dir

SPLITS = ("train", "val")
TINY = {"long_side": (192, 256), "workers": 1, "crowd_region_every": 3}  # as conftest.py's


def _generate(fmt: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthConfig, dict]:
    """The default (crowded) profile, so the files hold occluded joints, people without keypoints and
    iscrowd regions; every format from one seed: the same images."""
    cfg = SynthConfig(format=fmt, images=5, val_images=3, seed=11, **TINY)
    out = tmp_path_factory.mktemp(f"layout-{fmt}")
    return out, cfg, generate_dataset(cfg, out, progress=False)


@pytest.fixture(scope="module")
def mpii_layout(tmp_path_factory) -> tuple[Path, SynthConfig, dict]:
    return _generate("mpii", tmp_path_factory)


@pytest.fixture(scope="module")
def aic_layout(tmp_path_factory) -> tuple[Path, SynthConfig, dict]:
    return _generate("aic", tmp_path_factory)


@pytest.fixture(params=["mpii_layout", "aic_layout"])
def own_layout(request) -> tuple[Path, SynthConfig, dict]:
    return request.getfixturevalue(request.param)


def _expected(cfg: SynthConfig, split: str) -> list[tuple[dict, dict, np.ndarray]]:
    """(image, annotation, keypoints (K, 3)) of every person the generator annotates in ``split``."""
    out = []
    for i in range(cfg.split_sizes()[split]):
        r = generate_image(cfg, split, i)
        for a in r.annotations:
            if not a["iscrowd"]:
                out.append((r.image, a, np.asarray(a["keypoints"], np.float64).reshape(-1, 3)))
    return out


def test_files_and_summary(own_layout):
    out, cfg, summary = own_layout
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.suffix != ".jpg")
    if cfg.format == "mpii":
        assert names == ["annot/gt_valid.mat", "annot/train.json", "annot/valid.json", "synthpose.json"]
    else:
        assert names == ["synthpose.json", "train/keypoint_train_annotation.json",
                         "validation/keypoint_validation_annotation.json"]
    for split in SPLITS:  # every image, in the layout's image folder
        assert len(list((out / image_dir(cfg.format, split)).glob("*.jpg"))) == (
            cfg.split_sizes()[split] if cfg.format == "aic" else cfg.images + cfg.num_val)
    sp = summary["splits"]
    assert sp["unlabeled"]["images"] == 0 and "detections" not in sp["val"]
    assert json.loads((out / "synthpose.json").read_text())["summary"]["format"] == cfg.format


def test_mpii_records_and_head_boxes_round_trip(mpii_layout):
    out, cfg, summary = mpii_layout
    for split, name in (("train", "train.json"), ("val", "valid.json")):
        expected = [e for e in _expected(cfg, split) if e[1]["num_keypoints"] > 0]  # MPII: people with joints
        assert summary["splits"][split]["records"] == len(expected) > 0
        insts = load_mpii_instances(out / "annot" / name, out / "images", labeled_only=False)
        assert [i.instance_id for i in insts] == list(range(len(expected)))
        for inst, (image, ann, kps) in zip(insts, expected):
            assert inst.image_path == out / "images" / image["file_name"]
            lab = kps[:, 2] > 0
            np.testing.assert_array_equal(inst.visible, lab.astype(np.float32))
            np.testing.assert_allclose(inst.keypoints, kps[:, :2] * lab[:, None], atol=0.011)
            x, y, w, h = ann["bbox"]  # the reader's crop: the box centre, 1.25 x the longer side
            np.testing.assert_allclose(inst.center, [x + w / 2, y + h / 2], atol=0.02)
            np.testing.assert_allclose(inst.scale, [1.25 * max(w, h)] * 2, atol=0.02)
        if split == "val":
            gt = load_mpii_gt(out / "annot" / "gt_valid.mat")
            assert len(gt) == len(expected)
            np.testing.assert_array_equal(gt.visible, np.stack([e[2][:, 2] > 0 for e in expected]))
            np.testing.assert_allclose(gt.joints[gt.visible], np.stack([i.keypoints for i in insts])[gt.visible],
                                       atol=1e-4)
            np.testing.assert_allclose(gt.head_boxes, [e[1]["_head_box"] for e in expected], atol=1e-4)
            assert (gt.head_sizes > 0).all()
    # records of the occluded and unlabeled joints of the crowded profile are in the files
    vis = np.concatenate([e[2][:, 2] for e in _expected(cfg, "train") if e[1]["num_keypoints"] > 0])
    assert {0, 1, 2} <= set(vis.tolist())


def test_aic_records_round_trip(aic_layout):
    out, cfg, summary = aic_layout
    for split, folder in (("train", "train"), ("val", "validation")):
        expected = _expected(cfg, split)  # AIC: every person box, with or without keypoints
        ann_file = out / folder / f"keypoint_{folder}_annotation.json"
        native = json.loads(ann_file.read_text())
        assert summary["splits"][split]["records"] == len(native)
        assert [r["image_id"] for r in native] == sorted({Path(e[0]["file_name"]).stem for e in expected})
        insts = load_aic_instances(ann_file, out / folder / "images", labeled_only=False)
        assert len(insts) == len(expected) and any(e[1]["num_keypoints"] == 0 for e in _expected(cfg, "train"))
        codes = []
        for inst, (image, ann, kps) in zip(insts, expected):
            assert inst.image_path.name == image["file_name"]
            np.testing.assert_allclose(inst.bbox, ann["bbox"], atol=0.011)
            lab = kps[:, 2] > 0
            np.testing.assert_array_equal(inst.visible, lab.astype(np.float32))
            np.testing.assert_allclose(inst.keypoints, kps[:, :2] * lab[:, None], atol=1e-4)
            codes.append(kps[:, 2])
        # COCO visibility 2 / 1 / 0 -> AIC 1 visible / 2 occluded / 3 not labeled
        written = np.concatenate([np.asarray(v, np.float64).reshape(-1, 3)[:, 2] for r in native
                                  for v in r["keypoint_annotations"].values()])
        coco = np.concatenate(codes)
        for c, a in ((2, 1), (1, 2), (0, 3)):
            assert (written == a).sum() == (coco == c).sum()
    # the native file scores its own ground truth at AP 1 with AIC's sigmas
    data = json.loads(ann_file.read_text())
    gt = aic_to_coco(data, ann_file)
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in gt["annotations"] if a["num_keypoints"] > 0]
    assert evaluate_keypoints(load_gt(ann_file, AIC), results, AIC)["AP"] == pytest.approx(1.0)


def test_the_same_seed_gives_the_same_images_in_every_layout(own_layout, tmp_path):
    out, cfg, _ = own_layout
    coco = SynthConfig(format="coco", images=1, val_images=0, unlabeled_images=0, seed=11, **TINY)
    generate_dataset(coco, tmp_path, progress=False)
    first = sorted((tmp_path / "images" / "train").glob("*.jpg"))[0]
    assert (out / image_dir(cfg.format, "train") / first.name).read_bytes() == first.read_bytes()
