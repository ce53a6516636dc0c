"""MPII in the SimpleBaseline / HRNet layout: annot/*.json records and the gt_valid.mat head boxes
(fixture: tests/fixtures/mpii-mini, its .mat written by make_gt_valid.py there)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from pose.data.mpii import load_mpii_gt, load_mpii_instances, mpii_center_scale
from pose.data.transforms import crop_matrix, transform_points_batch

MINI = Path(__file__).resolve().parents[1] / "fixtures" / "mpii-mini" / "annot"


def _records(name: str = "train.json") -> list[dict]:
    return json.loads((MINI / name).read_text())


def _write(tmp_path: Path, records: list) -> Path:
    path = tmp_path / "train.json"
    path.write_text(json.dumps(records))
    return path


def test_train_records_in_file_order_with_one_counted_skip(caplog):
    with caplog.at_level(logging.WARNING):
        insts = load_mpii_instances(MINI / "train.json", "images")
    # record 1 has no labeled joint: skipped, counted, reported once
    assert [i.instance_id for i in insts] == [0, 2] and [i.rank for i in insts] == [0, 1]
    assert [i.image_id for i in insts] == [0, 0]  # both are 000000003.jpg, the first image of the file
    assert insts[0].image_path == Path("images/000000003.jpg")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{MINI / 'train.json'}: kept 2 instances, skipped 1 (1 without labeled joints)"]
    every = load_mpii_instances(MINI / "train.json", "images", labeled_only=False)
    assert [i.instance_id for i in every] == [0, 1, 2]


def test_center_scale_and_joints_follow_the_simplebaseline_conventions():
    rec = _records()[0]  # center (50, 60), scale 0.8, joints (21 + 10 j, 31 + 7 j), all labeled
    inst = load_mpii_instances(MINI / "train.json", "images")[0]
    # centre y + 15 x scale, then 1-based -> 0-based: (50 - 1, 60 + 12 - 1)
    np.testing.assert_allclose(inst.center, [49.0, 71.0])
    # window 0.8 x 1.25 x 200 = 200 px, square for MPII's 256x256 input
    np.testing.assert_allclose(inst.scale, [200.0, 200.0])
    np.testing.assert_allclose(inst.keypoints, np.asarray(rec["joints"], np.float32) - 1)
    assert inst.visible.tolist() == [1.0] * 16
    # the unpadded 200 x scale = 160 px square around the adjusted centre
    np.testing.assert_allclose(inst.bbox, [49 - 80, 71 - 80, 160, 160])
    # a 192x256 input keeps the width (scale x 200) and makes the window taller
    np.testing.assert_allclose(load_mpii_instances(MINI / "train.json", "images", aspect_ratio=0.75)[0].scale,
                               [200.0, 200.0 / 0.75])
    # center[0] == -1: no adjustment (as the original), only the 0-based shift
    c, s = mpii_center_scale([-1.0, -1.0], 1.0)
    np.testing.assert_allclose(c, [-2.0, -2.0])
    np.testing.assert_allclose(s, [200.0, 200.0])
    # unlabeled joints (-1, -1 in the file) become zeros
    third = load_mpii_instances(MINI / "train.json", "images")[1]
    assert third.visible.tolist() == [1.0] * 8 + [0.0] * 8 and not third.keypoints[8:].any()


def test_the_window_fills_the_input():
    """The crop maps the window's width (scale x 200 x 1.25 px) onto the 256 px input."""
    inst = load_mpii_instances(MINI / "train.json", "images")[0]
    m = crop_matrix(inst.center, inst.scale, 0.0, (256, 256))
    left_right = np.array([[[inst.center[0] - 100, inst.center[1]], [inst.center[0] + 100, inst.center[1]]]])
    out = transform_points_batch(left_right, m[None])[0]
    assert out[1, 0] - out[0, 0] == pytest.approx(256.0)


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r.update(joints=r["joints"][:14]), r"record 1 \(image 000000004.jpg\): joints have shape \(14, 2\), "
                                                  r"expected \(16, 2\): MPII has 16 joints"),
    (lambda r: r.update(joints_vis=[1] * 17), r"record 1 \(image 000000004.jpg\): joints_vis has shape \(17,\)"),
    (lambda r: r.update(scale=0), r"record 1 \(image 000000004.jpg\): scale 0.0 gives a person box of zero area"),
    (lambda r: r.pop("center"), r"record 1 \(image 000000004.jpg\) has no 'center'"),
    (lambda r: r.update(center=[1.0, "x"]), r"record 1 \(image 000000004.jpg\): center, scale, joints and "
                                            r"joints_vis must be numbers"),
])
def test_bad_records_are_errors_naming_file_and_record(tmp_path, change, message):
    records = _records()
    change(records[1])
    path = _write(tmp_path, records)
    with pytest.raises(ValueError, match=rf"^{str(path)}: {message}"):
        load_mpii_instances(path, "images")


def test_not_a_list_and_missing_file(tmp_path):
    path = _write(tmp_path, {"annotations": []})
    with pytest.raises(ValueError, match=r"train.json: expected a list of MPII records, got dict"):
        load_mpii_instances(path, "images")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_mpii_instances(tmp_path / "nope.json", "images")


def test_the_coco_reader_points_an_mpii_file_to_its_reader():
    from pose.data.coco import load_gt_instances
    from pose.metainfo import MPII

    with pytest.raises(ValueError, match=r"train.json: not a COCO file but a JSON list .*pose.data.mpii"):
        load_gt_instances(MINI / "train.json", "images", MPII, 1.0)


def test_head_boxes_from_gt_valid_mat():
    gt = load_mpii_gt(MINI / "gt_valid.mat")
    valid = _records("valid.json")
    assert len(gt) == 3 and gt.joints.shape == (3, 16, 2)
    np.testing.assert_allclose(gt.joints[0], np.asarray(valid[0]["joints"]) - 1)  # 0-based
    assert gt.visible.sum(axis=1).tolist() == [16, 14, 0]
    assert not gt.visible[1, 5] and not gt.visible[1, 10]
    np.testing.assert_allclose(gt.head_boxes[:2], [[99, 49, 129, 89], [199, 99, 259, 179]])
    np.testing.assert_allclose(gt.head_sizes, [50.0, 100.0, 0.0])


def _mat(tmp_path: Path, **changes) -> Path:
    from scipy.io import loadmat

    data = {k: v for k, v in loadmat(str(MINI / "gt_valid.mat")).items() if not k.startswith("__")}
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path = tmp_path / "gt_valid.mat"
    savemat(str(path), data)
    return path


def test_missing_or_malformed_head_box_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MPII head-box file not found: .*gt_nope.mat"):
        load_mpii_gt(tmp_path / "gt_nope.mat")
    garbage = tmp_path / "gt_valid.mat"
    garbage.write_bytes(b"this is not a MATLAB file at all, just some bytes" * 4)
    with pytest.raises(ValueError, match=rf"^{garbage}: not a readable MATLAB head-box file"):
        load_mpii_gt(garbage)
    path = _mat(tmp_path, headboxes_src=None)
    with pytest.raises(ValueError, match=rf"^{path}: no 'headboxes_src'"):
        load_mpii_gt(path)
    boxes = np.zeros((2, 2, 2))
    path = _mat(tmp_path, headboxes_src=boxes)
    with pytest.raises(ValueError, match=r"headboxes_src has shape \(2, 2, 2\), expected \(2, 2, 3\)"):
        load_mpii_gt(path)


def test_a_zero_or_broken_head_box_of_an_annotated_person_names_the_record(tmp_path):
    boxes = np.array([((100, 50), (130, 90)), ((200, 100), (200, 100)), ((0, 0), (0, 0))], float).transpose(1, 2, 0)
    path = _mat(tmp_path, headboxes_src=boxes)
    with pytest.raises(ValueError, match=rf"^{path}: record 1: head box .* has zero size"):
        load_mpii_gt(path)
    boxes[0, 0, 0] = np.nan
    path = _mat(tmp_path, headboxes_src=boxes)
    with pytest.raises(ValueError, match=rf"^{path}: record 0: head box .* is not finite"):
        load_mpii_gt(path)
    from scipy.io import loadmat

    missing = loadmat(str(MINI / "gt_valid.mat"))["jnt_missing"].astype(float)
    missing[3, 2] = 2
    path = _mat(tmp_path, jnt_missing=missing)
    with pytest.raises(ValueError, match=rf"^{path}: record 2: jnt_missing\[3\] = 2, expected 0 or 1"):
        load_mpii_gt(path)


def test_joint_names_out_of_order_are_refused(tmp_path):
    names = np.empty((1, 16), dtype=object)
    for j, n in enumerate(["rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor",
                           "neck", "head", "lwri", "relb", "rsho", "lsho", "lelb", "rwri"]):
        names[0, j] = np.array([n])
    path = _mat(tmp_path, dataset_joints=names)
    with pytest.raises(ValueError, match=r"dataset_joints .* are not MPII's order"):
        load_mpii_gt(path)
