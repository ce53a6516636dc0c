"""AI Challenger readers: the native layout and the COCO-converted one (fixture: tests/fixtures/aic-mini,
the same three people in both layouts; image files are made empty in tmp_path: the readers only check that
they exist)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from pose.data.aic import aic_to_coco, load_aic_instances, read_aic_native
from pose.data.transforms import box_to_center_scale

MINI = Path(__file__).resolve().parents[1] / "fixtures" / "aic-mini"
NATIVE = MINI / "keypoint_validation_annotation.json"
CONVERTED = MINI / "aic_val.json"
IMAGES = ("054d9ce9201beffc76e5ff2169d2af2f027002ca.jpg", "a0f6bdc065a602b7b84a67fb8d14ce403d902e0d.jpg")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    for name in IMAGES:
        (root / name).write_bytes(b"")
    return root


def _native() -> list[dict]:
    return json.loads(NATIVE.read_text())


def _write(tmp_path: Path, data: object, name: str = "keypoint_validation_annotation.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_native_order_ids_visibility_and_the_counted_skip(images, caplog):
    with caplog.at_level(logging.WARNING):
        insts = load_aic_instances(NATIVE, images)
    # record 0 human1, record 1 human1; record 1 human2 has only v = 3 (not labeled): skipped, reported once
    assert [(i.image_id, i.instance_id, i.rank) for i in insts] == [(1, 1, 0), (2, 2, 1)]
    assert insts[0].image_path == images / IMAGES[0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"{NATIVE}: kept 2 instances, skipped 1 (1 without labeled keypoints)"]
    rec = _native()[0]["keypoint_annotations"]["human1"]
    v = np.asarray(rec[2::3])
    # v 1 (visible) and 2 (occluded) are labeled, 3 is not
    assert insts[0].visible.tolist() == [float(x in (1, 2)) for x in v]
    assert insts[0].visible[11] == 0 and not insts[0].keypoints[11].any()
    np.testing.assert_allclose(insts[0].keypoints[0], [120, 60])
    # box [x1, y1, x2, y2] = [100, 50, 300, 450] -> xywh, centre (200, 250), square window x1.25
    np.testing.assert_allclose(insts[0].bbox, [100, 50, 200, 400])
    np.testing.assert_allclose(insts[0].center, [200, 250])
    np.testing.assert_allclose(insts[0].scale, [500, 500])
    assert insts[0].area == 200 * 400
    every = load_aic_instances(NATIVE, images, labeled_only=False)  # crops for an unlabeled set
    assert [(i.image_id, i.instance_id) for i in every] == [(1, 1), (2, 2), (2, 3)]


def test_converted_layout_gives_the_same_people(images):
    native = load_aic_instances(NATIVE, images, aspect_ratio=0.75)
    converted = load_aic_instances(CONVERTED, images, aspect_ratio=0.75)
    assert [(i.image_id, i.instance_id) for i in converted] == [(i.image_id, i.instance_id) for i in native]
    for a, b in zip(native, converted):
        assert a.image_path == b.image_path
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        np.testing.assert_array_equal(a.visible, b.visible)
        # the COCO reader clips boxes the SimpleBaseline way (x2 = x1 + w - 1): one pixel narrower
        np.testing.assert_allclose(b.bbox, a.bbox - [0, 0, 1, 1])
        np.testing.assert_allclose(a.center, box_to_center_scale(a.bbox, 0.75)[0])


def test_aic_to_coco_matches_the_converted_file():
    coco = aic_to_coco(_native(), NATIVE)
    ref = json.loads(CONVERTED.read_text())
    assert [im["file_name"] for im in coco["images"]] == [im["file_name"] for im in ref["images"]]
    assert [im["id"] for im in coco["images"]] == [1, 2]
    for a, b in zip(coco["annotations"], ref["annotations"], strict=True):
        for key in ("id", "image_id", "bbox", "area", "keypoints", "num_keypoints", "iscrowd", "category_id"):
            assert a[key] == b[key], key
    assert coco["categories"][0]["keypoints"][12:] == ["head_top", "neck"]


def _bad_native(change) -> list[dict]:
    data = _native()
    change(data[1])
    return data


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r["keypoint_annotations"]["human1"].__setitem__(2, 0),
     r"record 1 \(image a0f6\w+\) human1: visibility 0 of joint right_shoulder is outside 1..3"),
    (lambda r: r["keypoint_annotations"]["human1"].__setitem__(5, 4),
     r"record 1 \(image a0f6\w+\) human1: visibility 4 of joint right_elbow is outside 1..3"),
    (lambda r: r["human_annotations"].__setitem__("human2", [200, 30, 200, 150]),
     r"record 1 \(image a0f6\w+\) human2: box \[200.0, 30.0, 200.0, 150.0\] has zero area"),
    (lambda r: r["keypoint_annotations"].__setitem__("human1", [1, 2, 1] * 13),
     r"record 1 \(image a0f6\w+\) human1: 39 keypoint values, expected 42"),
    (lambda r: r["human_annotations"].pop("human1"),
     r"record 1 \(image a0f6\w+\) human1: no box in human_annotations"),
    (lambda r: r.pop("keypoint_annotations"), r"record 1 has no 'keypoint_annotations'"),
])
def test_bad_native_records_are_errors_naming_file_and_record(tmp_path, images, change, message):
    path = _write(tmp_path, _bad_native(change))
    with pytest.raises(ValueError, match=rf"^{path}: {message}"):
        load_aic_instances(path, images)
    with pytest.raises(ValueError, match=rf"^{path}: {message}"):
        read_aic_native(path)


def test_an_image_id_without_an_image_file_is_an_error(tmp_path, images):
    (images / IMAGES[1]).unlink()
    with pytest.raises(FileNotFoundError, match=rf"^{NATIVE}: image a0f6bdc065a602b7b84a67fb8d14ce403d902e0d has "
                                                 rf"no image file {images / IMAGES[1]}"):
        load_aic_instances(NATIVE, images)
    with pytest.raises(FileNotFoundError, match=rf"^{CONVERTED}: image 2 has no image file {images / IMAGES[1]}"):
        load_aic_instances(CONVERTED, images)


def test_bad_converted_annotations_name_file_and_annotation(tmp_path, images):
    data = json.loads(CONVERTED.read_text())
    data["annotations"][1]["keypoints"][2] = 3  # a native value in the COCO layout
    path = _write(tmp_path, data, "aic_val.json")
    with pytest.raises(ValueError, match=rf"^{path}: annotation 2 \(image 2\): visibility 3 of joint right_shoulder "
                                         r"is outside 0..2"):
        load_aic_instances(path, images)
    data = json.loads(CONVERTED.read_text())
    data["annotations"][0]["bbox"][3] = 0
    path = _write(tmp_path, data, "aic_val.json")
    with pytest.raises(ValueError, match=rf"^{path}: annotation 1 \(image 1\): box \[100, 50, 200, 0\] has zero area"):
        load_aic_instances(path, images)


def test_a_repeated_image_id_is_an_error(tmp_path, images):
    data = _native()
    data.append(dict(data[0]))
    path = _write(tmp_path, data)
    with pytest.raises(ValueError, match=rf"^{path}: record 2: image 054d\w+ already annotated by record 0"):
        load_aic_instances(path, images)
