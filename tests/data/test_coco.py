import json
import logging
from pathlib import Path

import numpy as np
import pytest

from pose.codecs.heatmap import HeatmapCodec
from pose.data.coco import load_detection_instances, load_gt_instances
from pose.data.image_io import read_rgb
from pose.data.topdown import TopDownDataset
from pose.data.transforms import TopDownAugment
from pose.metainfo import COCO, CROWDPOSE, get_metainfo


def test_coco_mini_instances_in_json_order(coco_mini_ann, coco_mini_images):
    inst = load_gt_instances(coco_mini_ann, coco_mini_images, COCO, aspect_ratio=0.75)
    data = json.loads(coco_mini_ann.read_text())
    order = [im["id"] for im in data["images"]]
    image_pos = [order.index(i.image_id) for i in inst]
    assert image_pos == sorted(image_pos)
    assert [i.rank for i in inst] == list(range(len(inst)))
    expected = [a for a in data["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
    assert len(inst) == len(expected)
    for i in inst:
        assert i.visible.sum() > 0 and i.scale[0] / i.scale[1] == pytest.approx(0.75)
        assert i.image_path.exists()


def test_every_coco_mini_instance_crops(coco_mini_ann, coco_mini_images):
    codec = HeatmapCodec(input_size=(96, 128), heatmap_size=(24, 32))
    inst = load_gt_instances(coco_mini_ann, coco_mini_images, COCO, aspect_ratio=0.75)
    ds = TopDownDataset(inst, COCO, codec, TopDownAugment(), seed=3)
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].shape == (3, 128, 96) and item["image"].dtype.__str__() == "torch.uint8"
        assert item["heatmaps"].shape == (17, 32, 24)
        # labeled joints that stay inside the crop keep weight 1
        kps, vis = item["keypoints"].numpy(), item["visible"].numpy()
        inside = (kps[:, 0] >= 0) & (kps[:, 0] < 96) & (kps[:, 1] >= 0) & (kps[:, 1] < 128) & (vis > 0)
        assert (item["weights"].numpy()[inside] == 1).all()
    # same seed and epoch -> same augmentation; another epoch -> different
    a, b = ds[0]["image"], ds[0]["image"]
    assert (a == b).all()
    ds.set_epoch(1)
    assert ds.params_for(0) != TopDownDataset(inst, COCO, codec, TopDownAugment(), seed=3).params_for(0)


def test_detections_with_threshold(coco_mini, coco_mini_ann, coco_mini_images, caplog):
    det = coco_mini / "person_detection_results" / "COCO_val2017_detections_AP_H_56_person.json"
    with caplog.at_level(logging.WARNING):
        inst = load_detection_instances(det, coco_mini_ann, coco_mini_images, COCO, 0.75, score_threshold=0.5)
    n_det = len(json.loads(det.read_text()))
    assert 0 < len(inst) < n_det
    assert all(i.score >= 0.5 for i in inst)
    assert f"skipped {n_det - len(inst)}" in caplog.text  # one counted line, not silence
    assert len([r for r in caplog.records if "skipped" in r.message]) == 1


def _write(tmp_path: Path, data) -> Path:
    p = tmp_path / "ann.json"
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return p


def _one_person(kps_len=51, bbox=(10, 10, 50, 100)):
    return {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 200}],
        "annotations": [{"id": 42, "image_id": 7, "iscrowd": 0, "bbox": list(bbox), "area": 100.0,
                         "num_keypoints": 1, "keypoints": [20, 30, 2] + [0] * (kps_len - 3)}],
    }


def test_malformed_json_names_the_file(tmp_path):
    p = _write(tmp_path, "{not json")
    with pytest.raises(ValueError, match=str(p)):
        load_gt_instances(p, tmp_path, COCO, 0.75)


def test_wrong_keypoint_length_names_file_and_annotation(tmp_path):
    p = _write(tmp_path, _one_person(kps_len=42))
    with pytest.raises(ValueError, match=r"ann.json: annotation 42 \(image 7\) has 42 keypoint values, expected 51"):
        load_gt_instances(p, tmp_path, COCO, 0.75)
    # the same file is fine for a 14-keypoint layout
    assert len(load_gt_instances(p, tmp_path, CROWDPOSE, 0.75)) == 1


def test_zero_area_box_is_a_counted_skip(tmp_path, caplog):
    data = _one_person(bbox=(10, 10, 0, 100))
    p = _write(tmp_path, data)
    with caplog.at_level(logging.WARNING):
        assert load_gt_instances(p, tmp_path, COCO, 0.75) == []
    assert "skipped 1 (1 with zero-area boxes)" in caplog.text


def test_missing_and_undecodable_image_name_file_and_id(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing.jpg \(image id 5\)"):
        read_rgb(tmp_path / "missing.jpg", 5)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"bad.jpg \(image id 9\)"):
        read_rgb(bad, 9)
    p = _write(tmp_path, _one_person())
    ds = TopDownDataset(load_gt_instances(p, tmp_path, COCO, 0.75), COCO, HeatmapCodec())
    with pytest.raises(FileNotFoundError, match=r"a.jpg \(image id 7\)"):
        ds[0]


def test_unknown_dataset_name():
    with pytest.raises(ValueError, match="unknown dataset 'posetrack'"):
        get_metainfo("posetrack")


def test_unknown_image_reference(tmp_path):
    data = _one_person()
    data["annotations"][0]["image_id"] = 8
    with pytest.raises(ValueError, match="annotation 42 refers to unknown image 8"):
        load_gt_instances(_write(tmp_path, data), tmp_path, COCO, 0.75)


def test_gt_crops_map_keypoints_back_exactly(coco_mini_ann, coco_mini_images):
    """Crop -> inverse crop returns the annotated image coordinates."""
    from pose.data.transforms import invert_affine, transform_points

    codec = HeatmapCodec()
    inst = load_gt_instances(coco_mini_ann, coco_mini_images, COCO, 0.75)
    ds = TopDownDataset(inst, COCO, codec, TopDownAugment(), seed=0)
    for i in range(len(ds)):
        item = ds[i]
        back = transform_points(item["keypoints"].numpy(), invert_affine(item["matrix"].numpy().astype(np.float64)))
        vis = item["visible"].numpy() > 0
        # after a flip the labels are swapped: joint j now holds its partner's ground truth
        gt = inst[i].keypoints[COCO.flip_indices] if ds.params_for(i).flip else inst[i].keypoints
        assert np.allclose(back[vis], gt[vis], atol=1e-2)
    assert any(ds.params_for(i).flip for i in range(len(ds)))
