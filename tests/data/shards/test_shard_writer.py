"""Writing shards (no Ray): rows, regions and their encoding, options, idempotent re-runs, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from shard_helpers import AUG, CODEC, META, gt_instances, read_rows, write_split

from pose.cli import main
from pose.data.coco import load_detection_instances
from pose.data.shards.decode import (
    TopDownShardDecoder,
    decode_bottomup_row,
)
from pose.data.shards.format import (
    MANIFEST,
    SCHEMA_VERSION,
    open_shards,
    read_file_header,
)
from pose.data.shards.options import ShardOptions
from pose.data.shards.regions import margin_region, region_density
from pose.data.shards.writer import write_shards
from pose.data.topdown import TopDownDataset
from pose.data.transforms import crop_matrix, invert_affine, transform_points


def test_topdown_round_trip(synth, png_shards):
    insts = gt_instances(synth)
    ss = open_shards(png_shards)
    assert ss.mode == "topdown" and ss.split == "train" and ss.num_rows == len(insts) > 4
    assert len(ss.files) == math.ceil(len(insts) / 4)
    first = pq.ParquetFile(ss.files[0].path)
    assert first.metadata.num_row_groups == 2 and first.metadata.row_group(0).num_rows == 2
    header = read_file_header(ss.files[0].path)
    assert header["schema_version"] == SCHEMA_VERSION and header["command"] == "pytest"
    assert json.loads((png_shards / MANIFEST).read_text())["rows"] == len(insts)

    t = read_rows(png_shards)
    assert t.column("rank").to_pylist() == list(range(len(insts)))
    import cv2

    for row, inst in zip(t.to_pylist(), insts):
        assert row["image_id"] == inst.image_id and row["instance_id"] == inst.instance_id
        assert row["split"] == "train" and synth / "images/train" / row["file_name"] == inst.image_path
        np.testing.assert_array_equal(np.reshape(row["keypoints"], (-1, 2)), inst.keypoints)
        np.testing.assert_array_equal(row["visible"], inst.visible)
        np.testing.assert_array_equal(row["center"], inst.center)
        np.testing.assert_array_equal(row["scale"], inst.scale)
        np.testing.assert_allclose(row["bbox"], inst.bbox)
        assert row["score"] == inst.score and row["area"] == pytest.approx(inst.area)
        # The stored region is the image's pixels at native resolution, at an integer offset.
        x0, y0, x1, y1 = row["region_box"]
        assert row["region_to_image"] == [1.0, 0.0, x0, 0.0, 1.0, y0]
        image = cv2.cvtColor(cv2.imread(str(inst.image_path)), cv2.COLOR_BGR2RGB)
        region = cv2.cvtColor(cv2.imdecode(np.frombuffer(row["region"], np.uint8), cv2.IMREAD_COLOR),
                              cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(region, image[y0:y1, x0:x1])


def _region_errors(synth: Path, shards: Path) -> list[float]:
    """Mean absolute difference of each decoded region from the source image's pixels under it."""
    import cv2

    errors = []
    for row in read_rows(shards).to_pylist():
        image = cv2.imread(str(synth / "images/train" / row["file_name"]))
        region = cv2.imdecode(np.frombuffer(row["region"], np.uint8), cv2.IMREAD_COLOR)
        x0, y0, x1, y1 = row["region_box"]
        errors.append(float(np.abs(region.astype(int) - image[y0:y1, x0:x1]).mean()))
    return errors


def test_jpeg_regions_keep_the_source_encoding(synth, jpeg_shards, tmp_path):
    """By default a region is re-encoded at its source's quality and chroma subsampling, on the
    source's block grid: most DCT blocks come back as they were, so the re-encoding error is a
    fraction of a fixed quality 95's, at fewer bytes."""
    from pose.data.jpeg_header import read_jpeg_header

    rows = read_rows(jpeg_shards).to_pylist()
    qualities = set()
    for row in rows:
        source = read_jpeg_header((synth / "images/train" / row["file_name"]).read_bytes())
        region = read_jpeg_header(row["region"])
        assert (region.quality, region.sampling) == (source.quality, source.sampling)
        qualities.add(source.quality)
        x0, y0, x1, y1 = row["region_box"]
        (bw, bh), (w, h) = source.block, (row["image_width"], row["image_height"])
        assert x0 % bw == 0 and y0 % bh == 0 and (x1 % bw == 0 or x1 == w) and (y1 % bh == 0 or y1 == h)
    assert len(qualities) > 1  # SynthPose draws a JPEG quality per image
    fixed = tmp_path / "q95"
    write_split(synth, fixed, quality=95)
    source_err, fixed_err = _region_errors(synth, jpeg_shards), _region_errors(synth, fixed)
    assert max(source_err) < 0.5 and np.mean(source_err) < 0.5 * np.mean(fixed_err)
    source_bytes = sum(len(r["region"]) for r in rows)
    assert source_bytes < sum(len(r) for r in read_rows(fixed).column("region").to_pylist())


def test_quality_option_is_checked():
    for bad in (0, 101, "high", 9.5):
        with pytest.raises(ValueError, match="JPEG quality"):
            ShardOptions(quality=bad)
    with pytest.raises(SystemExit):
        main(["shards", "--root", "x", "--split", "train", "--out", "y", "--quality", "best"])
    from pose.data.shards.options import parse_quality

    assert parse_quality("source") == "source" and parse_quality("1") == 1 and parse_quality("100") == 100
    for bad in ("0", "101", "-5", "9.5", "Source", ""):
        with pytest.raises(ValueError, match="expected 'source'"):
            parse_quality(bad)


def test_downscaled_regions_compose_the_region_transform(synth, tmp_path):
    out = tmp_path / "small"
    write_split(synth, out, lossless=True, max_side=48)
    t = read_rows(out)
    m = np.asarray(t.column("region_to_image").to_pylist())
    assert (m[:, 0] > 1.0).any()  # some regions were downscaled
    insts = gt_instances(synth)
    ds = TopDownDataset(insts, META, CODEC, None)
    batch = TopDownShardDecoder(META, CODEC, None)(t)
    for i in range(len(insts)):
        item = ds[i]
        np.testing.assert_array_equal(item["matrix"].numpy(), batch["matrix"][i])
        np.testing.assert_array_equal(item["heatmaps"].numpy(), batch["heatmaps"][i])
        # A downscaled region is blurrier but in the same place: compare low-passed crops.
        a = item["image"].numpy().astype(np.float32).mean(0)
        b = batch["image"][i].astype(np.float32).mean(0)
        import cv2

        a, b = cv2.resize(a, (12, 16), interpolation=cv2.INTER_AREA), cv2.resize(b, (12, 16),
                                                                                    interpolation=cv2.INTER_AREA)
        assert np.abs(a - b).mean() < 12.0


def test_region_density():
    scale = np.array([150.0, 200.0])
    # 32 crop px over the smallest window, 200 * 0.75 image px
    assert region_density(scale, (24, 32), 0.25) == pytest.approx(32 / 150)
    assert region_density(scale, None, 0.25) == math.inf
    assert region_density(scale, (24, 32), 1.0) == math.inf  # the window can shrink to nothing
    assert region_density(scale, (24, 32), 0.25, per_crop_pixel=1.5) == pytest.approx(1.5 * 32 / 150)


def test_sized_regions_hold_the_input_resolution(synth, sized_shards):
    """With input_size, regions are stored at one pixel per crop pixel of the smallest window."""
    ss = open_shards(sized_shards)
    assert ss.options.input_size == (24, 32)  # the manifest's list comes back as the option's tuple
    t = read_rows(sized_shards)
    boxes = np.asarray(t.column("region_box").to_pylist())
    r2i = np.asarray(t.column("region_to_image").to_pylist())
    scales = np.asarray(t.column("scale").to_pylist())
    import cv2

    shrunk = 0
    for region, box, m, scale in zip(t.column("region").to_pylist(), boxes, r2i, scales):
        h, w = cv2.imdecode(np.frombuffer(region, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2]
        density = region_density(scale, (24, 32), 0.25)
        rw, rh = box[2] - box[0], box[3] - box[1]
        if density >= 1:
            assert (w, h) == (rw, rh) and m[0] == 1.0
        else:
            shrunk += 1
            assert (w, h) == (round(rw * density), round(rh * density))
            assert m[0] == pytest.approx(rw / w) and m[4] == pytest.approx(rh / h)
    assert shrunk > len(boxes) // 2


def test_input_size_option_is_checked(synth, tmp_path, capsys):
    for bad in ((0, 32), (24,), (24.0, 32), "24x32"):
        with pytest.raises(ValueError, match="input_size must be two positive integers"):
            ShardOptions(input_size=bad)
    with pytest.raises(ValueError, match="applies to top-down"):
        ShardOptions(mode="bottomup", input_size=(24, 32))
    out = tmp_path / "cli-sized"
    base = ["shards", "--root", str(synth), "--split", "val", "--workers", "1", "--no-progress", "--input-size"]
    assert main([*base, "24", "32", "--out", str(out)]) == 0
    assert open_shards(out).options.input_size == (24, 32)
    capsys.readouterr()
    assert main([*base, "0", "32", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input_size must be two positive integers" in err[0]
    # A different input size is different content: a re-run without it rewrites the shards.
    capsys.readouterr()
    assert main([*base[:-1], "--out", str(out)]) == 0 and "(written)" in capsys.readouterr().out
    assert open_shards(out).options.input_size is None


def test_region_density_option(synth, sized_shards, tmp_path, capsys):
    """--region-density D stores sized regions D times denser (never above native), is part of the
    content (a re-run with another density rewrites), and needs --input-size."""
    for bad in (0.5, 0.0, 17.0, "2"):
        with pytest.raises(ValueError, match="region_density must be a number in 1..16"):
            ShardOptions(input_size=(24, 32), region_density=bad)
    with pytest.raises(ValueError, match="give input_size too"):
        ShardOptions(region_density=1.5)
    out = tmp_path / "dense"
    base = ["shards", "--root", str(synth), "--split", "train", "--workers", "1", "--no-progress",
            "--input-size", "24", "32", "--out", str(out)]
    assert main([*base, "--region-density", "1.5"]) == 0
    assert open_shards(out).options.region_density == 1.5
    dense, sparse = read_rows(out), read_rows(sized_shards)
    assert dense.column("rank").to_pylist() == sparse.column("rank").to_pylist()
    for m_dense, m_sparse in zip(dense.column("region_to_image").to_pylist(),
                                 sparse.column("region_to_image").to_pylist()):
        if m_sparse[0] > 1.5:  # downscaled with room to spare: 1.5x the region pixels per image pixel
            assert m_sparse[0] / m_dense[0] == pytest.approx(1.5, rel=0.05)
        assert m_dense[0] <= m_sparse[0]  # never coarser
    capsys.readouterr()
    assert main([*base, "--region-density", "1.5"]) == 0 and "(up to date)" in capsys.readouterr().out
    assert main(base) == 0 and "(written)" in capsys.readouterr().out
    assert open_shards(out).options.region_density == 1.0
    assert main(base[:-5] + ["--out", str(tmp_path / "bad"), "--region-density", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give input_size too" in err[0]


def test_margin_covers_every_augmented_crop():
    rng = np.random.default_rng(0)
    size = (192, 256)
    for _ in range(300):
        center = rng.uniform(-50, 650, 2)
        scale = np.array([1.0, 4 / 3]) * rng.uniform(10, 500)
        x0, y0, x1, y1 = margin_region(center, scale, 10**6, 10**6, 1.25, 60.0, pad=0)
        for s in (0.75, 1.25):
            for r in (-60.0, -37.0, 0.0, 53.1, 60.0):
                m = invert_affine(crop_matrix(center, scale * s, r, size, flip=bool(rng.random() < 0.5)))
                corners = np.array([[0, 0], [size[0] - 1, 0], [0, size[1] - 1], [size[0] - 1, size[1] - 1]], float)
                pts = transform_points(corners, m)  # the window's extreme sampling points
                # margin_region clips at 0 (the zero border lies beyond); only unclipped sides are checked.
                if x0 > 0:
                    assert pts[:, 0].min() >= x0
                if y0 > 0:
                    assert pts[:, 1].min() >= y0
                assert pts[:, 0].max() + 1 <= x1 and pts[:, 1].max() + 1 <= y1


def test_detection_boxes(synth, tmp_path):
    out = tmp_path / "unl"
    m = write_split(synth, out, split="unlabeled", boxes="detections")
    insts = load_detection_instances(synth / "person_detection_results/unlabeled_detections.json",
                                     synth / "annotations/image_info_unlabeled.json", synth / "images/unlabeled",
                                     META, 0.75)
    assert m["rows"] == len(insts) > 0 and m["boxes"] == "detections"
    t = read_rows(out)
    np.testing.assert_allclose(t.column("score").to_numpy(), [i.score for i in insts], rtol=1e-6)
    assert not np.asarray(t.column("visible").to_pylist()).any()
    unl = TopDownShardDecoder(META, CODEC, AUG, keys=("image", "index"))(t)
    assert set(unl) == {"image", "index"} and unl["image"].shape == (len(insts), 3, 128, 96)


def test_bottomup_round_trip(synth, tmp_path):
    from pycocotools.coco import COCO

    out = tmp_path / "bu"
    m = write_split(synth, out, split="train", mode="bottomup", rows_per_shard=3)
    coco = COCO(str(synth / "annotations/person_keypoints_train.json"))
    img_ids = [img["id"] for img in json.loads((synth / "annotations/person_keypoints_train.json").read_text())["images"]]
    assert m["rows"] == len(img_ids) and m["skipped"]["crowd"] > 0
    rows = read_rows(out).to_pylist()
    assert [r["image_id"] for r in rows] == img_ids
    n_ignored = 0
    for r in rows:
        info = coco.imgs[r["image_id"]]
        assert r["image"] == (synth / "images/train" / info["file_name"]).read_bytes()
        anns = coco.loadAnns(coco.getAnnIds(imgIds=r["image_id"]))
        people = [a for a in anns if not a["iscrowd"] and a["num_keypoints"] > 0]
        ignored = [a for a in anns if a["iscrowd"] or a["num_keypoints"] == 0]
        dec = decode_bottomup_row(r, META.num_keypoints)
        assert dec["image"].shape == (info["height"], info["width"], 3)
        np.testing.assert_allclose(dec["keypoints"], np.reshape([a["keypoints"] for a in people], (-1, 17, 3)))
        np.testing.assert_allclose(dec["boxes"], np.reshape([a["bbox"] for a in people], (-1, 4)), rtol=1e-6)
        expect = np.zeros((info["height"], info["width"]), np.uint8)
        for a in ignored:
            expect |= coco.annToMask(a)
        np.testing.assert_array_equal(dec["ignore_mask"], expect)
        n_ignored += r["num_ignored"]
    assert n_ignored > 0


def test_rerun_is_idempotent(synth, tmp_path):
    out = tmp_path / "idem"
    first = write_split(synth, out)
    stamps = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    again = write_split(synth, out)
    assert again["up_to_date"] and not first["up_to_date"]
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()} == stamps
    forced = write_shards(synth, "train", out, ShardOptions(rows_per_shard=4, row_group_size=2), command="pytest",
                          workers=1, progress=False, force=True)
    assert not forced["up_to_date"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {k: v[1] for k, v in stamps.items()}
    # Different sharding: stale files go, the rows stay the same.
    rows = read_rows(out).drop(["path"])
    write_split(synth, out, rows_per_shard=100)
    assert len(list(out.glob("part-*"))) == 1
    assert read_rows(out).drop(["path"]).equals(rows)


def test_out_dir_with_other_files_is_refused(synth, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a shard directory"):
        write_split(synth, tmp_path)


def test_cli(synth, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["shards", "--help"])
    assert e.value.code == 0 and "usage: poselab shards" in capsys.readouterr().out
    out = tmp_path / "cli"
    args = ["shards", "--root", str(synth), "--split", "val", "--out", str(out), "--workers", "1", "--no-progress",
            "--rows-per-shard", "3", "--lossless"]
    assert main(args) == 0
    assert "(written)" in capsys.readouterr().out
    header = read_file_header(open_shards(out).files[0].path)
    assert header["command"] == "poselab " + " ".join(args) and header["image_format"] == "png"
    assert main(args) == 0 and "(up to date)" in capsys.readouterr().out
    assert main(["shards", "--root", str(synth), "--split", "nosuch", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("poselab shards: error: no annotation file for split 'nosuch'")
