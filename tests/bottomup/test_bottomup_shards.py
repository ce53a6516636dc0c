"""Bottom-up Parquet shards without Ray: rows written by ``poselab shards --mode bottomup`` decode into
the file loader's items (BottomUpDataset / ValImageDataset), key for key, for one seed and epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pose.bottomup.codec import BottomUpCodec
from pose.bottomup.data import (
    BottomUpAugment,
    BottomUpDataset,
    BottomUpSampler,
    ValImageDataset,
    ignore_mask,
    load_bottomup_images,
)
from pose.bottomup.shards import BottomUpShardDecoder, BottomUpValShardDecoder, bottomup_keys, training_ranks
from pose.data.image_io import read_rgb
from pose.data.shards.decode import ERROR_KEY, OK_KEY, collate_batch, decode_bottomup_row
from pose.data.shards.format import open_shards, read_table
from pose.metainfo import get_metainfo

CODEC = BottomUpCodec(input_size=128, heatmap_sizes=(32, 64), max_people=4, embed_dim=2)  # 4 < people: drops
UNANNOTATED = 2  # images whose annotations the sparse file leaves out (tests/conftest.py; they do not train)


@pytest.fixture(scope="module", params=["coco", "crowdpose"])
def case(request, crowd_bottomup_shards):
    """COCO shards of the whole split; CrowdPose shards with two training images without annotations."""
    fmt = request.param
    root, ann, shards = crowd_bottomup_shards(fmt, fmt == "crowdpose")
    return fmt, root, ann, shards / "train", shards / "val"


def _table(out: Path) -> pa.Table:
    return pa.concat_tables([read_table(p) for p in open_shards(out).paths()])


def test_training_rows_decode_to_the_file_loaders_items(case):
    fmt, root, ann, train, _ = case
    meta = get_metainfo(fmt)
    images, _ = load_bottomup_images(ann, root / "images/train", meta, train=True)
    table = _table(train)
    ranks = training_ranks(train)
    expected_rows = 12 - (UNANNOTATED if fmt == "crowdpose" else 0)
    assert len(images) == len(ranks) == expected_rows and table.num_rows == 12
    assert [int(table.column("image_id")[int(r)].as_py()) for r in ranks] == [im.image_id for im in images]
    rows = table.take(pa.array(ranks))
    dropped = 0
    for epoch in (0, 3):
        ds = BottomUpDataset(images, meta, CODEC, BottomUpAugment(), seed=7)
        ds.set_epoch(epoch)
        out = BottomUpShardDecoder(meta, CODEC, BottomUpAugment(), seed=7, epoch=epoch, train_ranks=ranks)(rows)
        assert tuple(out) == bottomup_keys(CODEC)
        for i in range(len(ds)):
            item = ds[i]
            assert tuple(item) == bottomup_keys(CODEC)
            for key, value in item.items():
                got = out[key][i]
                assert got.dtype == value.numpy().dtype and np.array_equal(got, value.numpy()), (epoch, i, key)
        dropped += int(out["num_dropped"].sum())
    assert dropped > 0  # the over-cap policy is part of what is compared


def test_rows_hold_the_loaders_people_and_ignore_mask(case):
    """The writer chooses people and masks with the loader's own code (CrowdPose people without
    keypoints have no segmentation: nothing masked; they used to crash the writer)."""
    fmt, root, ann, train, _ = case
    meta = get_metainfo(fmt)
    by_id = {im.image_id: im for im in load_bottomup_images(ann, root / "images/train", meta, train=False)[0]}
    manifest = json.loads((train / "_manifest.json").read_text())
    assert manifest["skipped"]["without_keypoints"] > 0 and manifest["skipped"]["crowd"] > 0
    masked = 0
    for row in _table(train).to_pylist():
        rec = by_id[row["image_id"]]
        dec = decode_bottomup_row(row, meta.num_keypoints)
        assert np.array_equal(dec["image"], read_rgb(rec.image_path))
        assert np.array_equal(dec["keypoints"], rec.joints) and np.array_equal(dec["boxes"], rec.boxes)
        assert np.array_equal(1 - dec["ignore_mask"].astype(np.float32), ignore_mask(rec))
        masked += int(dec["ignore_mask"].any())
    assert masked > 0


def test_validation_rows_decode_to_val_image_dataset_items(case):
    fmt, root, _, _, val = case
    images, _ = load_bottomup_images(root / "annotations/person_keypoints_val.json", root / "images/val",
                                     get_metainfo(fmt), train=False)
    ds = ValImageDataset(images, 128, 32, (1.0, 0.5))
    out = BottomUpValShardDecoder(128, 32, (1.0, 0.5))(_table(val))
    assert len(out["image_id"]) == len(ds) == 4
    for i in range(len(ds)):
        for key, value in ds[i].items():
            got = np.asarray(out[key][i])
            assert got.dtype == value.numpy().dtype and np.array_equal(got, value.numpy()), (i, key)


def test_a_bad_row_names_shard_row_and_image_or_is_flagged_for_skipping(case):
    fmt, _, _, train, _ = case
    meta = get_metainfo(fmt)
    table = _table(train).slice(0, 3)
    broken = table.set_column(table.schema.get_field_index("image"), "image",
                              pa.array([table.column("image")[0].as_py(), b"not an image",
                                        table.column("image")[2].as_py()], pa.binary()))
    with pytest.raises(ValueError, match=r"shard .*part-00000-of-00003\.parquet row 1 \(image id \d+\): image bytes"):
        BottomUpShardDecoder(meta, CODEC)(broken)
    out = BottomUpShardDecoder(meta, CODEC, on_bad_row="skip")(broken)
    assert out[OK_KEY].tolist() == [True, False, True] and "row 1" in out[ERROR_KEY][1]
    assert not out["image"][1].any() and out["image"][0].any()
    batch, errors = collate_batch(out)
    assert batch["image"].shape[0] == 2 and len(errors) == 1
    val = BottomUpValShardDecoder(128, 32, on_bad_row="skip")(broken)
    assert val[OK_KEY].tolist() == [True, False, True] and val["image"][1].shape == (3, 0, 0)


def test_sampler_takes_a_precomputed_mask(crowd_dataset):
    root = crowd_dataset("coco")
    meta = get_metainfo("coco")
    images, _ = load_bottomup_images(root / "annotations/person_keypoints_train.json", root / "images/train", meta,
                                     train=True)
    rec = next(im for im in images if im.mask_anns)
    sampler = BottomUpSampler(meta, CODEC)
    params = BottomUpAugment().sample(np.random.default_rng(0))
    image = read_rgb(rec.image_path)
    default = sampler.sample(image, rec, params)
    given = sampler.sample(image, rec, params, mask=ignore_mask(rec))
    assert all(np.array_equal(default[k], given[k]) for k in default)
    nothing = sampler.sample(image, rec, params, mask=np.zeros((rec.height, rec.width), np.float32))
    assert default["mask_0"].any() and not nothing["mask_0"].any() and not nothing["mask_1"].any()
    with pytest.raises(ValueError, match="mask is"):
        sampler.sample(image, rec, params, mask=np.ones((3, 3), np.float32))


def test_bottomup_configs_take_shards_and_the_plain_engine_refuses_them(tmp_path):
    from pose.config import apply_overrides
    from pose.engine.trainer import Trainer
    from pose.presets import get_preset

    cfg = apply_overrides(get_preset("synthcrowd-ce-hrnet-w8h32-128").config, [f"data.shards={tmp_path}"])
    assert cfg.data.shards == str(tmp_path)
    with pytest.raises(ValueError, match="data.shards"):
        Trainer(cfg)
