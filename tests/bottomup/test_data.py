"""pose.bottomup.data: loading, ignore masks, the random affine, the datasets and ResizeAlign."""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util

from pose.bottomup.codec import BottomUpCodec
from pose.bottomup.data import (
    AffineParams,
    BottomUpAugment,
    BottomUpDataset,
    BottomUpSampler,
    ValImageDataset,
    aligned_size,
    ignore_mask,
    load_bottomup_images,
    resize_align,
    train_matrices,
)
from pose.data.transforms import invert_affine, transform_points
from pose.metainfo import COCO, CROWDPOSE, DatasetMeta
from pose.synth import SynthConfig, generate_dataset

CODEC = BottomUpCodec(input_size=128, heatmap_sizes=(32, 64), max_people=8, embed_dim=8)


# ---------------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module", params=["coco", "crowdpose"])
def synth(request, tmp_path_factory) -> tuple[Path, DatasetMeta]:
    """A tiny SynthPose dataset (4 train images, one with an iscrowd region)."""
    cfg = SynthConfig(format=request.param, images=4, val_images=1, unlabeled_images=0, seed=5,
                      long_side=(128, 160), workers=1, crowd_region_every=2)
    out = tmp_path_factory.mktemp(f"synth_{request.param}")
    generate_dataset(cfg, out, progress=False)
    return out, COCO if request.param == "coco" else CROWDPOSE


def write_image(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_json(tmp: Path, images: list[dict], anns: list[dict] | None, name: str = "ann.json") -> Path:
    data: dict = {"images": images, "categories": [COCO.coco_category()]}
    if anns is not None:
        data["annotations"] = anns
    path = tmp / name
    path.write_text(json.dumps(data))
    return path


def person(ann_id: int, image_id: int, k: int, points: dict[int, tuple[float, float]], bbox=(0, 0, 10, 10),
           **extra) -> dict:
    kps = [0.0] * (3 * k)
    for j, (x, y) in points.items():
        kps[3 * j: 3 * j + 3] = [x, y, 2]
    ann = {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "keypoints": kps,
           "num_keypoints": len(points), "bbox": list(bbox)}
    ann.update(extra)
    return ann


def crowd_ann(ann_id: int, image_id: int, mask: np.ndarray, k: int = 17) -> dict:
    """An iscrowd=1 annotation whose compressed RLE is ``mask`` (H, W)."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 1, "keypoints": [0] * (3 * k),
            "num_keypoints": 0, "bbox": [float(v) for v in mask_util.toBbox(rle)],
            "segmentation": {"size": list(mask.shape), "counts": rle["counts"].decode()}}


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (column-major run lengths, starting with zeros)."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


class RecordingCodec:
    """The real codec, recording what the dataset hands to ``encode``."""

    def __init__(self, codec: BottomUpCodec) -> None:
        self.codec = codec
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def __getattr__(self, name):
        return getattr(self.codec, name)

    def encode(self, joints, box_corners):
        self.calls.append((np.array(joints), np.array(box_corners)))
        return self.codec.encode(joints, box_corners)


def blob_image(w: int, h: int, dots: list[tuple[int, float, float]], sigma: float = 5.0) -> np.ndarray:
    """Black RGB image with a Gaussian blob of channel c at each (c, x, y)."""
    img = np.zeros((h, w, 3), np.float64)
    ys, xs = np.mgrid[0:h, 0:w]
    for c, x, y in dots:
        img[..., c] += 255.0 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def centroid(channel: np.ndarray) -> np.ndarray:
    ch = channel.astype(np.float64)
    ys, xs = np.mgrid[0:ch.shape[0], 0:ch.shape[1]]
    return np.array([(ch * xs).sum() / ch.sum(), (ch * ys).sum() / ch.sum()])


# ---------------------------------------------------------------------------------------------- loading
def test_synth_datasets_load_and_give_batches(synth):
    root, meta = synth
    ann_file = root / "annotations" / "person_keypoints_train.json"
    data = json.loads(ann_file.read_text())
    images, report = load_bottomup_images(ann_file, root / "images" / "train", meta, train=True)
    k = meta.num_keypoints
    annotated = {a["image_id"] for a in data["annotations"]}
    with_anns = [im["id"] for im in data["images"] if im["id"] in annotated]
    assert [r.image_id for r in images] == with_anns and report.kept == len(with_anns)
    for rec in images:
        anns = [a for a in data["annotations"] if a["image_id"] == rec.image_id]
        people = [a for a in anns if (not a["iscrowd"] or a["num_keypoints"] > 0)
                  and any(v > 0 for v in a["keypoints"][2::3])]
        assert rec.joints.shape == (len(people), k, 3) and rec.boxes.shape == (len(people), 4)
        np.testing.assert_allclose(rec.joints.reshape(len(people), -1), [a["keypoints"] for a in people],
                                   atol=1e-4)
        masked = [a for a in anns if "segmentation" in a and (a["iscrowd"] or a["num_keypoints"] == 0)]
        assert [m["id"] for m in rec.mask_anns] == [a["id"] for a in masked]
        img_json = next(im for im in data["images"] if im["id"] == rec.image_id)
        assert rec.crowd_index == img_json.get("crowdIndex")
        assert (meta.name == "crowdpose") == (rec.crowd_index is not None)
    # the synth data has a crowd RLE (both formats) and, in COCO, zero-keypoint polygons
    assert any(m["iscrowd"] for r in images for m in r.mask_anns)
    if meta.name == "coco":
        assert any(not m["iscrowd"] for r in images for m in r.mask_anns)

    ds = BottomUpDataset(images, meta, CODEC, BottomUpAugment(), seed=1)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0)))
    assert batch["image"].shape == (2, 3, 128, 128) and batch["image"].dtype == torch.uint8
    assert batch["heatmaps_0"].shape == (2, k, 32, 32) and batch["heatmaps_1"].shape == (2, k, 64, 64)
    assert batch["mask_0"].shape == (2, 32, 32) and batch["mask_1"].shape == (2, 64, 64)
    assert batch["mask_0"].dtype == torch.float32 and set(batch["mask_1"].unique().tolist()) <= {0.0, 1.0}
    assert batch["joints"].shape == (2, 8, k, 2) and batch["joints"].dtype == torch.int64
    assert batch["box_scales"].shape == (2, 8) and batch["box_scales"].dtype == torch.float32
    assert batch["num_people"].dtype == torch.int64 and batch["image_id"].tolist() == with_anns[:2]
    # val: every image, and the ResizeAlign items
    val, _ = load_bottomup_images(root / "annotations" / "person_keypoints_val.json", root / "images" / "val",
                                  meta, train=False)
    item = ValImageDataset(val, 128, 32, (1.0, 0.5))[0]
    assert item["image"].shape[1] % 32 == 0 and item["image"].shape[2] % 32 == 0
    assert item["image_1"].shape[1:] == (item["image"].shape[1] // 2, item["image"].shape[2] // 2)
    assert item["matrix"].shape == (2, 3) and item["matrix_1"].shape == (2, 3)


def test_ignore_mask_exact_pixels_from_crowd_rle_and_zero_keypoint_polygon(tmp_path):
    w, h, k = 40, 30, 17
    a = np.zeros((h, w), np.uint8)
    a[2:10, 3:13] = 1
    b = np.zeros((h, w), np.uint8)
    b[20:28, 1:4] = 1
    anns = [
        crowd_ann(1, 7, a),  # compressed RLE
        dict(crowd_ann(2, 7, b), segmentation=uncompressed_rle(b)),
        # zero-keypoint person: its polygon [20, 30) x [15, 25) is ignored
        person(3, 7, k, {}, bbox=(20, 15, 10, 10), segmentation=[[20, 15, 30, 15, 30, 25, 20, 25]]),
        # a labelled person's polygon is not masked
        person(4, 7, k, {0: (35, 5)}, bbox=(32, 2, 6, 6), segmentation=[[32, 2, 38, 2, 38, 8, 32, 8]]),
        # zero-keypoint person without segmentation: nothing to mask
        person(5, 7, k, {}, bbox=(30, 20, 5, 5)),
    ]
    ann_file = write_json(tmp_path, [{"id": 7, "file_name": "7.png", "width": w, "height": h}], anns)
    (images,), report = load_bottomup_images(ann_file, tmp_path, COCO, train=True)
    expected = np.ones((h, w), np.float32)
    expected[a > 0] = 0
    expected[b > 0] = 0
    expected[15:25, 20:30] = 0
    mask = ignore_mask(images)
    assert mask.dtype == np.float32 and mask.shape == (h, w)
    np.testing.assert_array_equal(mask, expected)
    assert images.joints.shape == (1, k, 3)  # only person 4 has labelled joints
    assert report.skipped == {"people without labelled joints (no targets; polygons still masked)": 2}


def test_crowdpose_without_segmentation_or_area_masks_nothing(tmp_path):
    w, h, k = 48, 40, 14
    write_image(tmp_path / "1.png", np.full((h, w, 3), 90, np.uint8))
    ann = person(1, 1, k, {12: (20, 8), 13: (20, 14), 0: (15, 16)}, bbox=(10, 5, 20, 30))
    assert "segmentation" not in ann and "area" not in ann
    image = {"id": 1, "file_name": "1.png", "width": w, "height": h, "crowdIndex": 0.35}
    ann_file = write_json(tmp_path, [image], [ann])
    (rec,), _ = load_bottomup_images(ann_file, tmp_path, CROWDPOSE, train=True)
    assert rec.mask_anns == [] and rec.crowd_index == pytest.approx(0.35)
    assert (ignore_mask(rec) == 1).all()
    # scale 1, no rotation: the whole (padded) square is image except the padding
    codec = BottomUpCodec(input_size=64, heatmap_sizes=(16,), max_people=4)
    item = BottomUpDataset([rec], CROWDPOSE, codec)[0]
    assert item["num_people"] == 1 and item["mask_0"][8].tolist() == [1.0] * 16


# ---------------------------------------------------------------------------------------------- geometry
def test_out_of_image_areas_and_crowd_regions_are_masked_after_the_affine(tmp_path):
    w, h = 60, 40
    crowd = np.zeros((h, w), np.uint8)
    crowd[10:22, 30:45] = 1
    write_image(tmp_path / "1.png", np.full((h, w, 3), 128, np.uint8))
    anns = [crowd_ann(1, 1, crowd)]
    ann_file = write_json(tmp_path, [{"id": 1, "file_name": "1.png", "width": w, "height": h}], anns)
    (rec,), _ = load_bottomup_images(ann_file, tmp_path, COCO, train=True)
    sampler = BottomUpSampler(COCO, CODEC)
    params = AffineParams(scale=1.5, rotation=20.0, translate=(0.1, -0.1), flip=True)
    out = sampler.sample(cv2.cvtColor(cv2.imread(str(tmp_path / "1.png")), cv2.COLOR_BGR2RGB), rec, params)
    assert out["num_people"] == 0 and not out["heatmaps_0"].any()
    _, m_heat, _, _ = sampler.geometry(rec, params)
    for i, size in enumerate(CODEC.heatmap_sizes):
        mask = out[f"mask_{i}"]
        ys, xs = np.mgrid[0:size, 0:size]
        src = transform_points(np.stack([xs, ys], -1).reshape(-1, 2), invert_affine(m_heat[i]))
        sx, sy = src[:, 0].reshape(size, size), src[:, 1].reshape(size, size)
        outside = (sx < -1) | (sx > w) | (sy < -1) | (sy > h)
        in_crowd = (sx > 30) & (sx < 44) & (sy > 10) & (sy < 21)
        near_crowd = (sx > 28) & (sx < 46) & (sy > 8) & (sy < 23)
        clear = (sx > 1) & (sx < w - 2) & (sy > 1) & (sy < h - 2) & ~near_crowd
        assert outside.sum() > 100 and in_crowd.sum() > 5 and clear.sum() > 100
        assert (mask[outside] == 0).all() and (mask[in_crowd] == 0).all() and (mask[clear] == 1).all()


@pytest.mark.parametrize("params", [
    AffineParams(),
    AffineParams(scale=1.1, rotation=15.0, translate=(0.05, -0.03)),
    AffineParams(scale=0.8, rotation=-25.0, translate=(-0.1, 0.08), flip=True),
    AffineParams(flip=True),
])
def test_joints_follow_the_image_at_input_and_heatmap_resolution(tmp_path, params):
    w, h, k = 160, 120, 17
    red, green, blue = (9, 55.0, 45.0), (10, 105.0, 70.0), (0, 80.0, 85.0)  # left wrist, right wrist, nose
    dots = [(0, red[1], red[2]), (1, green[1], green[2]), (2, blue[1], blue[2])]
    image = blob_image(w, h, dots)
    write_image(tmp_path / "1.png", image)
    # a crowd square around the nose: masked at the nose, not at the wrists
    crowd = np.zeros((h, w), np.uint8)
    crowd[75:96, 70:91] = 1
    anns = [person(1, 1, k, {j: (x, y) for j, x, y in (red, green, blue)}, bbox=(40, 30, 80, 70)),
            crowd_ann(2, 1, crowd)]
    ann_file = write_json(tmp_path, [{"id": 1, "file_name": "1.png", "width": w, "height": h}], anns)
    (rec,), _ = load_bottomup_images(ann_file, tmp_path, COCO, train=True)
    codec = RecordingCodec(CODEC)
    sampler = BottomUpSampler(COCO, codec)  # type: ignore[arg-type]
    out = sampler.sample(image, rec, params)
    joints, corners = codec.calls[-1]
    assert joints.shape == (1, k, 3) and corners.shape == (1, 4, 2)
    # after a flip the red dot (annotated left wrist) carries the right-wrist label, and vice versa
    label = {0: 10, 1: 9, 2: 0} if params.flip else {0: 9, 1: 10, 2: 0}
    assert (joints[0, [0, 9, 10], 2] == 2).all() and (joints[0, [1, 2, 3, 4, 5], 2] == 0).all()
    for c in range(3):
        np.testing.assert_allclose(centroid(out["image"][c]), joints[0, label[c], :2], atol=0.3)
    m_in, m_heat, _, _ = sampler.geometry(rec, params)
    for i, size in enumerate(CODEC.heatmap_sizes):
        small = cv2.warpAffine(image, m_heat[i], (size, size), flags=cv2.INTER_LINEAR)
        for c in range(3):
            at = joints[0, label[c], :2] * size / CODEC.input_size
            np.testing.assert_allclose(centroid(small[..., c]), at, atol=0.35)
            # the codec puts the peak on the heatmap pixel that contains the joint's input pixel,
            # floor((p + 0.5) * S / input) (pixel centres at integers); the mask agrees with the crowd square
            peak = np.unravel_index(np.argmax(out[f"heatmaps_{i}"][label[c]]), (size, size))
            px, py = (int(v) for v in np.floor((joints[0, label[c], :2] + 0.5) * size / CODEC.input_size))
            assert (peak[1], peak[0]) == (px, py)
            assert out[f"mask_{i}"][py, px] == (0.0 if c == 2 else 1.0)
    # box corners: TL, TR, BR, BL of the annotated box, through the same matrix
    box = np.array([[40, 30], [120, 30], [120, 100], [40, 100]], np.float64)
    np.testing.assert_allclose(corners[0], transform_points(box, m_in), atol=1e-4)
    side = np.linalg.norm(corners[0, 0] - corners[0, 1]) * np.linalg.norm(corners[0, 0] - corners[0, 3])
    assert out["box_scales"][0] == pytest.approx(np.sqrt(side) / CODEC.input_size, rel=1e-5)


def test_identity_geometry_for_a_centred_unscaled_square():
    m_in, (m0, m1) = train_matrices(128, 128, AffineParams(), 128, (32, 64))
    np.testing.assert_allclose(m_in, [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    np.testing.assert_allclose(m0, m_in * 0.25) and np.testing.assert_allclose(m1, m_in * 0.5)
    m_flip, _ = train_matrices(128, 128, AffineParams(flip=True), 128, (32,))
    np.testing.assert_allclose(transform_points(np.array([[10.0, 7.0]]), m_flip), [[117.0, 7.0]], atol=1e-6)


def test_augmentation_ranges_over_many_samples():
    aug = BottomUpAugment()
    draws = [aug.sample(np.random.default_rng([0, 0, i])) for i in range(2000)]
    scale = np.array([d.scale for d in draws])
    rot = np.array([d.rotation for d in draws])
    tr = np.array([d.translate for d in draws])
    flip = np.array([d.flip for d in draws])
    assert 0.75 <= scale.min() < 0.76 and 1.49 < scale.max() <= 1.5
    assert -30 <= rot.min() < -29.5 and 29.5 < rot.max() <= 30
    assert np.abs(tr).max() <= 0.2 and np.abs(tr).max() > 0.199
    assert 0.45 < flip.mean() < 0.55
    # the matrices realise them: zoom in/out of the short side, rotation angle, bounded centre shift
    w, h, size = 200, 100, 64
    for d in draws[:300]:
        m, _ = train_matrices(w, h, d, size, (16,))
        lin = m[:, :2]
        assert np.sqrt(abs(np.linalg.det(lin))) == pytest.approx(size / (h * d.scale))
        a, b = (-lin[0, 0], -lin[0, 1]) if d.flip else (lin[0, 0], lin[0, 1])
        assert np.degrees(np.arctan2(b, a)) == pytest.approx(d.rotation, abs=1e-6)
        center = transform_points(np.array([[(size - 1) / 2, (size - 1) / 2]]), invert_affine(m))[0]
        assert abs(center[0] - (w - 1) / 2) <= 0.2 * w * d.scale + 1e-3
        assert abs(center[1] - (h - 1) / 2) <= 0.2 * h * d.scale + 1e-3
    bad_args = ({"scale_range": (0.0, 1.0)}, {"scale_range": (1.5, 0.75)}, {"flip_prob": 1.5},
                {"rotation": -1})
    for bad in bad_args:
        with pytest.raises(ValueError):
            BottomUpAugment(**bad)


def test_same_seed_epoch_index_gives_the_same_item(synth):
    root, meta = synth
    images, _ = load_bottomup_images(root / "annotations" / "person_keypoints_train.json",
                                     root / "images" / "train", meta, train=True)
    ds = BottomUpDataset(images, meta, CODEC, BottomUpAugment(), seed=3)
    a, b = ds[1], BottomUpDataset(images, meta, CODEC, BottomUpAugment(), seed=3)[1]
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert ds.params_for(1) != ds.params_for(2)
    assert BottomUpDataset(images, meta, CODEC, BottomUpAugment(), seed=4).params_for(1) != ds.params_for(1)
    ds.set_epoch(1)
    assert ds.params_for(1) != BottomUpDataset(images, meta, CODEC, BottomUpAugment(), seed=3).params_for(1)
    assert not torch.equal(ds[1]["image"], a["image"])
    assert BottomUpDataset(images, meta, CODEC).params_for(0) == AffineParams()


# ---------------------------------------------------------------------------------------------- test time
@pytest.mark.parametrize("w,h,size,div", [
    (640, 480, 128, 32), (480, 640, 128, 32), (123, 77, 128, 32), (64, 64, 128, 64), (182, 273, 512, 64),
    (300, 97, 100, 64),
])
def test_resize_align_sizes_and_matrix(w, h, size, div):
    short = -(-size // div) * div
    ratio = Fraction(short) * Fraction(max(w, h), min(w, h))
    long = int(-(-ratio // div)) * div
    expected = (short, long) if w < h else (long, short)
    assert aligned_size(w, h, size, div) == expected
    assert expected[0] % div == 0 and expected[1] % div == 0
    if (w, h) == (182, 273):
        assert expected == (512, 768)  # float math would give 832
    dot = (w * 0.3, h * 0.6)
    image = blob_image(w, h, [(1, *dot)], sigma=3.0)
    for factor in (1.0, 0.5):
        resized, m = resize_align(image, size, div, factor)
        out_w, out_h = int(expected[0] * factor), int(expected[1] * factor)
        assert resized.shape == (out_h, out_w, 3) and resized.dtype == np.uint8
        f = m[0, 0]
        assert m[1, 1] == pytest.approx(f) and m[0, 1] == 0 and m[1, 0] == 0  # aspect ratio kept
        assert f * min(w, h) == pytest.approx(out_w if w < h else out_h)
        assert f * max(w, h) <= (out_h if w < h else out_w) + 1e-6
        # the image centre goes to the output centre: padding is split evenly
        centre = transform_points(np.array([[(w - 1) / 2, (h - 1) / 2]]), m)[0]
        np.testing.assert_allclose(centre, [(out_w - 1) / 2, (out_h - 1) / 2], atol=1e-6)
        # the matrix maps image points to resized points, and back
        expected_dot = transform_points(np.array([dot]), m)[0]
        np.testing.assert_allclose(centroid(resized[..., 1]), expected_dot, atol=0.3)
        pts = np.array([[0.0, 0.0], [w - 1.0, h - 1.0], [12.5, 7.25]])
        back = transform_points(transform_points(pts, m).astype(np.float64), invert_affine(m))
        np.testing.assert_allclose(back, pts, atol=1e-4)


# ---------------------------------------------------------------------------------------------- bad input
def test_images_without_people(tmp_path):
    k, w, h = 17, 32, 24
    images = [{"id": i, "file_name": f"{i}.png", "width": w, "height": h} for i in (1, 2, 3)]
    for i in (1, 2, 3):
        write_image(tmp_path / f"{i}.png", np.zeros((h, w, 3), np.uint8))
    anns = [person(10, 2, k, {}, bbox=(2, 2, 8, 8), segmentation=[[2, 2, 10, 2, 10, 10, 2, 10]]),
            person(11, 3, k, {0: (5, 5)}, bbox=(2, 2, 8, 8))]
    ann_file = write_json(tmp_path, images, anns)
    train, report = load_bottomup_images(ann_file, tmp_path, COCO, train=True)
    assert [r.image_id for r in train] == [2, 3]
    assert report.skipped["images without annotations"] == 1
    val, _ = load_bottomup_images(ann_file, tmp_path, COCO, train=False)
    assert [r.image_id for r in val] == [1, 2, 3] and val[0].joints.shape == (0, k, 3)
    # an image with only a zero-keypoint person still trains, with its polygon masked
    codec = BottomUpCodec(input_size=32, heatmap_sizes=(8,), max_people=4)
    item = BottomUpDataset(train, COCO, codec)[0]
    assert item["num_people"] == 0 and item["joints"].abs().sum() == 0 and item["heatmaps_0"].abs().sum() == 0
    assert item["mask_0"][1, 1] == 0 and item["mask_0"][4, 6] == 1
    # an image_info file (no annotations) is fine for evaluation, not for training
    info = write_json(tmp_path, images, None, name="info.json")
    assert len(load_bottomup_images(info, tmp_path, COCO, train=False)[0]) == 3
    with pytest.raises(ValueError, match="info.json.*annotations"):
        load_bottomup_images(info, tmp_path, COCO, train=True)


def test_more_people_than_the_cap_are_counted_not_a_crash(tmp_path, caplog):
    k, w, h = 17, 64, 64
    write_image(tmp_path / "1.png", np.zeros((h, w, 3), np.uint8))
    anns = [person(i, 1, k, {0: (5 + 10 * i, 20), 5: (5 + 10 * i, 30)}, bbox=(10 * i, 10, 9, 30))
            for i in range(5)]
    ann_file = write_json(tmp_path, [{"id": 1, "file_name": "1.png", "width": w, "height": h}], anns)
    images, _ = load_bottomup_images(ann_file, tmp_path, COCO, train=True)
    codec = BottomUpCodec(input_size=64, heatmap_sizes=(16,), max_people=2)
    ds = BottomUpDataset(images, COCO, codec)
    item = ds[0]
    assert item["num_people"] == 2 and item["num_dropped"] == 3 and item["joints"].shape == (2, k, 2)
    assert (item["heatmaps_0"][0].amax() == 1).item()  # every person keeps its heatmap peaks
    ds[0]
    with caplog.at_level(logging.WARNING, logger="pose.bottomup.data"):
        ds.set_epoch(1)
        ds.set_epoch(2)  # nothing dropped in epoch 1: no second report
    msgs = [r.getMessage() for r in caplog.records if r.name == "pose.bottomup.data"]
    assert len(msgs) == 1 and "epoch 0: 6 people in 2 images over max_people=2" in msgs[0]


def test_people_with_every_joint_invisible_are_counted(tmp_path):
    k = 17
    anns = [person(1, 1, k, {0: (5, 5)}),
            person(2, 1, k, {}),  # all v = 0, num_keypoints 0
            dict(person(3, 1, k, {}), num_keypoints=4)]  # the stored count disagrees: still no labelled joint
    ann_file = write_json(tmp_path, [{"id": 1, "file_name": "1.png", "width": 20, "height": 20}], anns)
    (rec,), report = load_bottomup_images(ann_file, tmp_path, COCO, train=True)
    assert rec.joints.shape == (1, k, 3)
    assert sum(report.skipped.values()) == 2 and "without labelled joints" in next(iter(report.skipped))


@pytest.mark.parametrize("value,problem", [(None, "no 'crowdIndex'"), ("high", "non-numeric crowdIndex"),
                                           (float("nan"), "non-numeric crowdIndex")])
def test_crowdpose_needs_a_numeric_crowd_index(tmp_path, value, problem):
    images = [{"id": 1, "file_name": "1.png", "width": 20, "height": 20, "crowdIndex": 0.1},
              {"id": 42, "file_name": "42.png", "width": 20, "height": 20}]
    if value is not None:
        images[1]["crowdIndex"] = value
    ann_file = write_json(tmp_path, images, [person(1, 1, 14, {0: (5, 5)})])
    with pytest.raises(ValueError, match=rf"ann.json: image 42 has (a )?{problem}"):
        load_bottomup_images(ann_file, tmp_path, CROWDPOSE, train=True)
    # the COCO layout does not need it
    with pytest.raises(ValueError, match="keypoint values"):  # 14-joint keypoints in a COCO file
        load_bottomup_images(ann_file, tmp_path, COCO, train=True)


@pytest.mark.parametrize("keypoints,found", [([0] * 50, 50), ([0] * 42, 42), (None, None)])
def test_keypoints_of_the_wrong_length_name_file_and_annotation(tmp_path, keypoints, found):
    ann = person(77, 1, 17, {0: (5, 5)})
    ann["keypoints"] = keypoints
    ann_file = write_json(tmp_path, [{"id": 1, "file_name": "1.png", "width": 20, "height": 20}], [ann])
    with pytest.raises(ValueError, match=rf"ann.json: annotation 77 \(image 1\) has {found} keypoint values, "
                                         r"expected 51 for dataset 'coco'"):
        load_bottomup_images(ann_file, tmp_path, COCO, train=True)


def test_other_malformed_annotations_name_file_and_id(tmp_path):
    img = [{"id": 1, "file_name": "1.png", "width": 20, "height": 10}]

    def fails(anns, pattern, meta=COCO):
        with pytest.raises(ValueError, match=pattern):
            load_bottomup_images(write_json(tmp_path, img, anns), tmp_path, meta, train=True)

    fails([person(5, 9, 17, {0: (1, 1)})], r"ann.json: annotation 5 refers to unknown image 9")
    ann = person(6, 1, 17, {0: (1, 1)})
    ann["keypoints"][0] = "x"
    fails([ann], r"annotation 6 \(image 1\) has non-numeric or non-finite keypoints")
    ann = person(7, 1, 17, {0: (1, 1)})
    del ann["bbox"]
    fails([ann], r"annotation 7 \(image 1\): missing or malformed 'bbox'")
    crowd = crowd_ann(8, 1, np.zeros((10, 20), np.uint8))
    crowd["segmentation"]["size"] = [20, 10]
    fails([crowd], r"annotation 8 \(image 1\): RLE size \[20, 10\] does not match the image size \[10, 20\]")
    fails([person(9, 1, 17, {}, segmentation=[[1, 2, 3]])], r"annotation 9 \(image 1\): malformed polygon")
    fails([person(10, 1, 17, {}, segmentation="oops")],
          r"annotation 10 \(image 1\): unsupported 'segmentation'")
    with pytest.raises(ValueError, match="image id 1 appears more than once"):
        load_bottomup_images(write_json(tmp_path, img * 2, []), tmp_path, COCO, train=False)
    # a degenerate polygon (< 3 points) is dropped and counted, not an error
    degenerate = [person(11, 1, 17, {}, segmentation=[[1, 2, 3, 4]])]
    (rec,), report = load_bottomup_images(write_json(tmp_path, img, degenerate), tmp_path, COCO, train=True)
    assert rec.mask_anns == [] and report.skipped["degenerate polygons (< 3 points)"] == 1


def test_missing_or_mismatched_image_names_path_and_id(tmp_path):
    ann_file = write_json(tmp_path, [{"id": 5, "file_name": "nope.png", "width": 20, "height": 10}],
                          [person(1, 5, 17, {0: (3, 3)})])
    images, _ = load_bottomup_images(ann_file, tmp_path, COCO, train=True)
    for ds in (BottomUpDataset(images, COCO, CODEC), ValImageDataset(images, 128)):
        with pytest.raises(FileNotFoundError, match=r"nope.png \(image id 5\)"):
            ds[0]
    write_image(tmp_path / "nope.png", np.zeros((12, 20, 3), np.uint8))  # 20x12, the JSON says 20x10
    for ds in (BottomUpDataset(images, COCO, CODEC), ValImageDataset(images, 128)):
        with pytest.raises(ValueError, match=r"nope.png \(image id 5\): decoded size 20x12 differs"):
            ds[0]
