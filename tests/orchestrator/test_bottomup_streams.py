"""Bottom-up experiments fed from Parquet shards through Ray Data (``data.shards`` with ``task: bottomup``):
the per-worker streams carry the file loader's items, and a preset trains through Ray Train from them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from orchestrator.streams import BottomUpShardStreams, ShardStreams
from orchestrator.train import RunOptions, run_training
from pose.bottomup.components import build_val_dataset, load_train_images
from pose.bottomup.data import BottomUpDataset
from pose.config import apply_overrides
from pose.presets import get_preset

PRESET = "synthcrowd-cp-ce-higherhrnet-w8h32-128"


@pytest.fixture(scope="module")
def bu_shards(crowd_bottomup_shards) -> tuple[Path, Path, Path]:
    """Crowded CrowdPose SynthPose; two of its 12 train images have no annotations (10 train)."""
    return crowd_bottomup_shards("crowdpose", True)


def _config(bu_shards, out_dir: Path, *extra: str):
    root, ann, shards = bu_shards
    return apply_overrides(get_preset(PRESET).config, [
        f"data.root={root}", f"data.train_ann={ann}", f"data.shards={shards}", "data.num_workers=0",
        f"output_dir={out_dir}", "name=bu-shards", "train.batch_size=4", "train.log_interval=1",
        "train.warmup_iters=2", *extra])


def test_two_workers_stream_the_file_loaders_items_and_cover_every_image_once(ray_session, bu_shards, tmp_path):
    cfg = _config(bu_shards, tmp_path)
    meta = cfg.data.metainfo()
    streams = [ShardStreams(cfg, meta, rank, 2) for rank in (0, 1)]
    assert all(isinstance(s, BottomUpShardStreams) for s in streams)
    images = load_train_images(cfg, meta)
    assert len(images) == 10 and streams[0].steps_per_epoch() == 1  # floor(floor(10 / 2) / 4)

    batches = [list(s.train_batches(epoch=1)) for s in streams]
    assert [len(b) for b in batches] == [1, 1]  # equal step counts (5 images per rank: 4, the 1 dropped)
    assert all(len(b["image_id"]) == 4 for part in batches for b in part)  # full batches only
    seen = [int(i) for part in batches for b in part for i in b["image_id"]]
    assert len(set(seen)) == 8 and set(seen) <= {im.image_id for im in images}  # no image twice
    files = BottomUpDataset(images, meta, cfg.codec, cfg.augment, seed=cfg.train.seed)
    files.set_epoch(1)
    index = {im.image_id: i for i, im in enumerate(images)}
    for b in (b for part in batches for b in part):
        for j, image_id in enumerate(b["image_id"].tolist()):
            for key, value in files[index[image_id]].items():
                assert b[key].dtype == value.dtype and torch.equal(b[key][j], value), (image_id, key)

    val_files = build_val_dataset(cfg, meta)
    items = [item for s in streams for item in s.val_batches()]
    assert sorted(int(it["image_id"]) for it in items) == sorted(im.image_id for im in val_files.images)
    assert streams[0].val_count() == len(val_files) == 4
    by_id = {im.image_id: i for i, im in enumerate(val_files.images)}
    for item in items:
        expected = val_files[by_id[int(item["image_id"])]]
        assert item.keys() == expected.keys()
        assert all(item[k].dtype == v.dtype and torch.equal(item[k], v) for k, v in expected.items())

    two = _config(bu_shards, tmp_path, "data.max_val_images=3")
    assert sum(1 for s in (ShardStreams(two, meta, r, 2) for r in (0, 1)) for _ in s.val_batches()) == 3


def test_local_mode_trains_a_bottomup_preset_from_shards(ray_session, bu_shards, tmp_path):
    """``images/train`` does not exist here: training reads the shards only."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = _config(bu_shards, tmp_path / "runs", "train.epochs=1", f"data.train_images={tmp_path / 'missing'}")
    result = run_training(cfg, RunOptions(num_workers=0, tracking_uri=uri, experiment="bu-shards",
                                          log_checkpoints=False), plan=ray_session)
    run = MlflowClient(uri).get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["task"] == "bottomup"
    assert run.data.params["data.shards"].endswith("shards")
    assert {"train/heatmap", "train/pull", "train/push", "train/scale", "val/net/AP", "final/AP"} <= set(
        run.data.metrics)
    state = torch.load(result.run_dir / "last.pth", map_location="cpu", weights_only=False)
    assert state["epoch"] == 1 and state["step"] == 2  # 10 training images, batch 4: full batches only
