"""The MPII + AIC mixed stream: labeled MPII crops, unlabeled AIC crops (every AIC human box), AIC's joints
carried into MPII's 16 channels by name (fixture: tiny SynthPose MPII and AIC datasets, tests/conftest.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pose.config import ConfigError, apply_overrides
from pose.data.semi import MixedDataset
from pose.engine.components import (
    build_datasets,
    build_train_stream,
    load_train_instances,
    load_unlabeled_instances,
    load_val_instances,
)
from pose.metainfo import AIC, AIC_TO_MPII, MPII
from pose.presets import get_preset

# AIC index -> MPII index, spelled out (AIC: r-sho r-elb r-wri l-sho l-elb l-wri r-hip r-kne r-ank l-hip l-kne
# l-ank head-top neck; MPII: r-ank r-kne r-hip l-hip l-kne l-ank pelvis thorax upper-neck head-top r-wri r-elb
# r-sho l-sho l-elb l-wri)
EXPECTED_PAIRS = ((0, 12), (1, 11), (2, 10), (3, 13), (4, 14), (5, 15), (6, 2), (7, 1), (8, 0), (9, 3), (10, 4),
                  (11, 5), (12, 9))
MPII_ONLY = tuple(MPII.index(n) for n in ("pelvis", "thorax", "upper_neck"))


def _config(synth_mpii_aic, *extra: str):
    mpii, aic = synth_mpii_aic
    return apply_overrides(get_preset("synthmpii-aic-posedual-jc-r18-128x128").config, [
        f"data.root={mpii}", f"semi.root={aic}", "codec.input_size=[48,48]", "codec.heatmap_size=[12,12]",
        "data.num_workers=0", *extra])


def _aic_people(aic) -> list[np.ndarray]:
    """(14, 3) native keypoints of every human of the AIC train file, in the reader's order."""
    data = json.loads((aic / "train" / "keypoint_train_annotation.json").read_text())
    return [np.asarray(v, np.float64).reshape(14, 3) for r in data for v in r["keypoint_annotations"].values()]


def test_the_correspondence_pairs_joints_by_name():
    assert AIC_TO_MPII == EXPECTED_PAIRS
    for a, m in AIC_TO_MPII:
        assert AIC.keypoint_names[a] == MPII.keypoint_names[m]


def test_labeled_mpii_and_unlabeled_aic_counts_and_joint_mapping(synth_mpii_aic):
    mpii, aic = synth_mpii_aic
    cfg = _config(synth_mpii_aic)
    records = json.loads((mpii / "annot" / "train.json").read_text())
    labeled = load_train_instances(cfg, MPII)
    assert len(labeled) == len(records) and labeled[0].keypoints.shape == (16, 2)
    assert len(load_val_instances(cfg, MPII)) == len(json.loads((mpii / "annot" / "valid.json").read_text()))
    native = _aic_people(aic)
    unlabeled = load_unlabeled_instances(cfg, MPII)
    assert len(unlabeled) == len(native) > 0  # every AIC human box
    for inst, kps in zip(unlabeled, native):
        assert inst.keypoints.shape == (16, 2) and inst.visible.shape == (16,)
        assert inst.image_path.parent == aic / "train" / "images"
        labeled_aic = kps[:, 2] != 3
        for a, m in EXPECTED_PAIRS:
            assert inst.visible[m] == labeled_aic[a]
            np.testing.assert_allclose(inst.keypoints[m], kps[a, :2] if labeled_aic[a] else 0.0, atol=1e-4)
        assert not inst.visible[list(MPII_ONLY)].any() and not inst.keypoints[list(MPII_ONLY)].any()
    capped = load_unlabeled_instances(_config(synth_mpii_aic, "semi.num_unlabeled=3"), MPII)
    assert len(capped) == 3


def test_the_mixed_stream_pairs_b_mpii_crops_with_b_aic_crops(synth_mpii_aic):
    cfg = _config(synth_mpii_aic, "train.batch_size=2")
    train, _ = build_datasets(cfg, MPII)
    stream = build_train_stream(cfg, MPII, train)
    assert isinstance(stream, MixedDataset)
    assert len(stream) == len(stream.unlabeled) == len(_aic_people(synth_mpii_aic[1]))  # an epoch: one AIC pass
    assert len(stream.labeled) == len(json.loads((synth_mpii_aic[0] / "annot" / "train.json").read_text()))
    stream.set_epoch(1)
    lab, unl = next(iter(DataLoader(stream, batch_size=2, shuffle=False)))
    assert lab["image"].shape == unl["image"].shape == (2, 3, 48, 48)
    assert lab["heatmaps"].shape == (2, 16, 12, 12) and lab["weights"].shape == (2, 16)
    # unlabeled crops carry no labels, only AIC's ground truth in MPII's channels for the diagnostics
    assert set(unl) == {"image", "index", "gt_keypoints", "gt_visible"}
    assert unl["gt_keypoints"].shape == (2, 16, 2)
    assert not unl["gt_visible"][:, list(MPII_ONLY)].any() and unl["gt_visible"].sum() > 0
    item = stream.unlabeled[int(unl["index"][0])]  # the same crop as the AIC dataset gives it
    assert torch.equal(unl["image"][0], item["image"]) and torch.equal(unl["gt_keypoints"][0], item["keypoints"])
    # supervised training iterates the MPII crops alone
    sup = _config(synth_mpii_aic, "method.kind=supervised")
    train, _ = build_datasets(sup, MPII)
    assert build_train_stream(sup, MPII, train) is train


@pytest.mark.parametrize(("overrides", "message"), [
    (["semi.unlabeled_ann="], "semi.unlabeled_ann is the AI Challenger annotation file of semi.unlabeled=aic"),
    (["semi.unlabeled=train_gt"], "set both or neither"),
    (["data.val_head_boxes="], "data.dataset=mpii is scored by PCKh: set data.val_head_boxes"),
    (["data.dataset=coco"], "data.val_head_boxes=annot/gt_valid.mat is MPII's head-box file"),
    (["data.val_boxes=dets.json"], "MPII is evaluated on its annotated people"),
    (["data.box_padding=1.5"], "MPII records carry their own crop window"),
    (["method.teacher=oracle"], "method.teacher=oracle needs the unlabeled crops' ground truth"),
])
def test_inconsistent_settings_are_errors(synth_mpii_aic, overrides, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        _config(synth_mpii_aic, *overrides)


def test_missing_aic_files_name_the_file(synth_mpii_aic, tmp_path):
    cfg = _config(synth_mpii_aic, f"semi.root={tmp_path}")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "train" / "keypoint_train_annotation.json")):
        load_unlabeled_instances(cfg, MPII)
