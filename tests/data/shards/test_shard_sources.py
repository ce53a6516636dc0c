"""MPII and AI Challenger shards (``poselab shards --dataset mpii|aic``): the rows and crops of the file
loader, AIC's every person box in MPII's layout for the MPII + AIC setting, bad input, the CLI (tiny
SynthPose MPII and AIC datasets, ``synth_mpii_aic`` in tests/conftest.py)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from pose.cli import main
from pose.codecs.heatmap import HeatmapCodec
from pose.config import apply_overrides
from pose.data.aic import load_aic_instances
from pose.data.mpii import load_mpii_instances
from pose.data.semi import unlabeled_source_keys
from pose.data.shards.decode import TOPDOWN_KEYS, TopDownShardDecoder
from pose.data.shards.format import open_shards, read_table
from pose.data.shards.options import ShardOptions
from pose.data.shards.sources import resolve_source
from pose.data.shards.writer import write_shards
from pose.data.topdown import TopDownDataset
from pose.data.transforms import TopDownAugment
from pose.engine.components import UNLABELED_SEED_OFFSET, build_train_stream, load_unlabeled_instances
from pose.metainfo import AIC, MPII
from pose.presets import get_preset

CODEC = HeatmapCodec(input_size=(48, 48), heatmap_size=(12, 12))  # MPII's square input
AUG = TopDownAugment()
LOSSLESS = dict(aspect_ratio=1.0, lossless=True, rows_per_shard=5, row_group_size=2)


def _write(root: Path, split: str, out: Path, **opts) -> dict:
    return write_shards(root, split, out, ShardOptions(**{**LOSSLESS, **opts}), command="pytest", workers=1,
                        progress=False)


def _rows(out: Path):
    import pyarrow as pa

    return pa.concat_tables([read_table(p) for p in open_shards(out).paths()])


def _assert_same_items(ref: TopDownDataset, batch: dict, keys=TOPDOWN_KEYS) -> None:
    """Every item of the file loader's dataset equals the decoded row of its rank (lossless: bit-exact)."""
    assert len(batch["index"]) == len(ref) > 0
    for row, index in enumerate(batch["index"].tolist()):
        item = ref[index]
        for key in keys:
            np.testing.assert_array_equal(item[key].numpy(), batch[key][row], err_msg=f"{key} of item {index}")


@pytest.mark.parametrize("split", ["train", "val"])
def test_mpii_rows_and_crops_are_the_file_loaders(synth_mpii_aic, tmp_path, split):
    mpii, _ = synth_mpii_aic
    out = tmp_path / split
    manifest = _write(mpii, split, out, dataset="mpii")
    ann = mpii / "annot" / ("train.json" if split == "train" else "valid.json")
    insts = load_mpii_instances(ann, mpii / "images", aspect_ratio=1.0)
    assert manifest["rows"] == len(insts) == len(json.loads(ann.read_text()))
    assert manifest["dataset"] == manifest["layout"] == "mpii" and manifest["num_keypoints"] == 16
    assert manifest["source"]["ann"] == str(ann)
    rows = _rows(out).to_pylist()
    for row, inst in zip(rows, insts):
        assert (row["rank"], row["image_id"], row["instance_id"]) == (inst.rank, inst.image_id, inst.instance_id)
        np.testing.assert_array_equal(row["center"], inst.center)
        np.testing.assert_array_equal(row["scale"], inst.scale)
        np.testing.assert_array_equal(np.reshape(row["keypoints"], (16, 2)), inst.keypoints)
    ref = TopDownDataset(insts, MPII, CODEC, AUG, seed=4)
    ref.set_epoch(1)
    _assert_same_items(ref, TopDownShardDecoder(MPII, CODEC, AUG, seed=4, epoch=1)(_rows(out)))


def _mixed_config(synth_mpii_aic):
    mpii, aic = synth_mpii_aic
    return apply_overrides(get_preset("synthmpii-aic-posedual-jc-r18-128x128").config, [
        f"data.root={mpii}", f"semi.root={aic}", "codec.input_size=[48,48]", "codec.heatmap_size=[12,12]",
        "data.num_workers=0"])


def test_aic_every_person_in_mpii_layout_is_the_mixed_settings_unlabeled_set(synth_mpii_aic, tmp_path):
    """``--dataset aic --layout mpii --every-person``: the rows of ``semi.unlabeled=aic``'s file loader
    (every human box, AIC's joints in MPII's channels), and the same unlabeled crops and ground truth."""
    _, aic = synth_mpii_aic
    out = tmp_path / "unlabeled"
    manifest = _write(aic, "train", out, dataset="aic", layout="mpii", people="all")
    assert (manifest["dataset"], manifest["layout"], manifest["num_keypoints"]) == ("aic", "mpii", 16)
    ss = open_shards(out)
    assert (ss.dataset, ss.layout, ss.options.people) == ("aic", "mpii", "all")
    cfg = _mixed_config(synth_mpii_aic)
    insts = load_unlabeled_instances(cfg, MPII)
    native = json.loads((aic / "train" / "keypoint_train_annotation.json").read_text())
    assert manifest["rows"] == len(insts) == sum(len(r["human_annotations"]) for r in native)
    rows = _rows(out).to_pylist()
    for row, inst in zip(rows, insts):
        assert row["instance_id"] == inst.instance_id and row["file_name"] == inst.image_path.name
        np.testing.assert_array_equal(np.reshape(row["keypoints"], (16, 2)), inst.keypoints)
        np.testing.assert_array_equal(row["visible"], inst.visible)
    # the file loader's unlabeled dataset, item for item, under the stream's seed and keys
    mixed = build_train_stream(cfg, MPII, TopDownDataset(insts[:1], MPII, cfg.codec, cfg.augment))
    mixed.set_epoch(2)
    keys = unlabeled_source_keys(("keypoints", "visible"))
    batch = TopDownShardDecoder(MPII, cfg.codec, cfg.augment, seed=cfg.train.seed + UNLABELED_SEED_OFFSET, epoch=2,
                                keys=keys)(_rows(out))
    _assert_same_items(mixed.unlabeled, batch, keys)
    # labeled people only (the default), in AIC's own layout: the reader's counted skip
    labeled = _write(aic, "train", tmp_path / "labeled", dataset="aic")
    assert labeled["layout"] == "aic" and labeled["num_keypoints"] == AIC.num_keypoints
    assert labeled["rows"] == len(load_aic_instances(aic / "train" / "keypoint_train_annotation.json",
                                                     aic / "train" / "images"))


def test_default_files_of_each_layout(synth_mpii_aic, tmp_path):
    mpii, aic = synth_mpii_aic
    assert resolve_source(mpii, "val", dataset="mpii").ann == mpii / "annot" / "valid.json"
    assert resolve_source(mpii, "train", dataset="mpii").images == mpii / "images"
    src = resolve_source(aic, "val", dataset="aic")
    assert (src.ann, src.images) == (aic / "validation" / "keypoint_validation_annotation.json",
                                     aic / "validation" / "images")
    with pytest.raises(FileNotFoundError, match=r"no mpii annotation file for split 'test' .*annot/test.json"):
        resolve_source(mpii, "test", dataset="mpii")


def test_options_of_the_new_readers_are_checked():
    with pytest.raises(ValueError, match="people='all' .* applies to top-down gt rows of mpii or aic"):
        ShardOptions(people="all")
    with pytest.raises(ValueError, match="MPII records carry their own crop window"):
        ShardOptions(dataset="mpii", padding=1.5)
    with pytest.raises(ValueError, match="MPII shards take its annotated people"):
        ShardOptions(dataset="mpii", boxes="detections")
    with pytest.raises(ValueError, match="layout .* applies to top-down rows"):
        ShardOptions(mode="bottomup", layout="mpii")


def _copy(root: Path, tmp_path: Path) -> Path:
    dst = tmp_path / root.name
    shutil.copytree(root, dst)
    return dst


def test_bad_mpii_and_aic_input_names_the_file_and_the_record(synth_mpii_aic, tmp_path):
    mpii, aic = (_copy(r, tmp_path) for r in synth_mpii_aic)
    ann = mpii / "annot" / "train.json"
    records = json.loads(ann.read_text())
    records[1]["joints"] = records[1]["joints"][:15]
    ann.write_text(json.dumps(records))
    with pytest.raises(ValueError, match=rf"{ann}: record 1 .*joints have shape \(15, 2\), expected \(16, 2\)"):
        _write(mpii, "train", tmp_path / "m", dataset="mpii")
    ann = aic / "train" / "keypoint_train_annotation.json"
    native = json.loads(ann.read_text())
    human = next(iter(native[0]["keypoint_annotations"]))
    native[0]["keypoint_annotations"][human][2] = 4
    ann.write_text(json.dumps(native))
    with pytest.raises(ValueError, match=rf"{ann}: record 0 \(image .*\) {human}: visibility 4 .* outside 1..3"):
        _write(aic, "train", tmp_path / "a", dataset="aic", layout="mpii", people="all")
    native[0]["keypoint_annotations"][human][2] = 1
    native[0]["human_annotations"][human] = [5, 5, 5, 20]
    ann.write_text(json.dumps(native))
    with pytest.raises(ValueError, match=rf"{ann}: record 0 .* {human}: box .* has zero area"):
        _write(aic, "train", tmp_path / "a", dataset="aic")
    native[0]["human_annotations"][human] = [5, 5, 30, 40]
    ann.write_text(json.dumps(native))
    image = aic / "train" / "images" / f"{native[1]['image_id']}.jpg"
    image.unlink()
    with pytest.raises(FileNotFoundError, match=rf"{ann}: image {native[1]['image_id']} has no image file"):
        _write(aic, "train", tmp_path / "a", dataset="aic")


def test_people_without_labeled_joints_are_a_counted_skip_reported_once(synth_mpii_aic, tmp_path, caplog):
    _, aic = synth_mpii_aic
    aic = _copy(aic, tmp_path)
    ann = aic / "train" / "keypoint_train_annotation.json"
    native = json.loads(ann.read_text())
    for rec in native[:2]:  # two people without a labeled joint
        human = next(iter(rec["keypoint_annotations"]))
        rec["keypoint_annotations"][human] = [0, 0, 3] * 14
    ann.write_text(json.dumps(native))
    with caplog.at_level(logging.WARNING):
        every = _write(aic, "train", tmp_path / "every", dataset="aic", people="all")
        assert not [r for r in caplog.records if "skipped" in r.getMessage()]
        labeled = _write(aic, "train", tmp_path / "labeled", dataset="aic")
    skips = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert labeled["rows"] == every["rows"] - 2
    assert len(skips) == 1 and str(ann) in skips[0] and "skipped 2 (2 without labeled keypoints)" in skips[0]


def test_cli_writes_the_mixed_settings_shards(synth_mpii_aic, tmp_path, capsys):
    mpii, aic = synth_mpii_aic
    base = ["shards", "--workers", "1", "--no-progress", "--aspect-ratio", "1"]
    assert main([*base, "--dataset", "mpii", "--root", str(mpii), "--split", "val", "--out", str(tmp_path / "val")]) == 0
    assert "rows of split 'val'" in capsys.readouterr().out
    assert open_shards(tmp_path / "val").num_rows == len(json.loads((mpii / "annot" / "valid.json").read_text()))
    args = [*base, "--dataset", "aic", "--layout", "mpii", "--every-person", "--root", str(aic), "--split", "train",
            "--out", str(tmp_path / "unlabeled")]
    assert main(args) == 0 and "(written)" in capsys.readouterr().out
    ss = open_shards(tmp_path / "unlabeled")
    assert (ss.layout, ss.options.people, ss.num_keypoints) == ("mpii", "all", 16)
    assert main(args) == 0 and "(up to date)" in capsys.readouterr().out
    assert main([*base, "--every-person", "--root", str(mpii), "--split", "val", "--out", str(tmp_path / "x")]) == 2
    assert "applies to top-down gt rows of mpii or aic" in capsys.readouterr().err
