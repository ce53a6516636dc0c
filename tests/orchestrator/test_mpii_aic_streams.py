"""The MPII + AI Challenger setting through Ray Data (``data.shards``): labeled MPII shards, unlabeled AIC
shards (every person box, AIC's joints in MPII's 16 channels), PCKh on MPII's validation shards (tiny
SynthPose MPII and AIC datasets, ``synth_mpii_aic`` in tests/conftest.py; one shared Ray instance)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from orchestrator.streams import ShardStreams
from orchestrator.train import RunOptions, run_training
from pose.config import apply_overrides
from pose.data.shards.options import ShardOptions
from pose.data.shards.writer import write_shards
from pose.engine.components import build_datasets, build_train_stream, load_val_instances
from pose.metainfo import MPII
from pose.presets import get_preset

GT = {"gt_keypoints", "gt_visible"}


@pytest.fixture(scope="module")
def mixed_shards(synth_mpii_aic, tmp_path_factory) -> Path:
    """``train/``, ``val/`` (MPII) and ``unlabeled/`` (AIC, every person box, MPII's layout), lossless."""
    mpii, aic = synth_mpii_aic
    root = tmp_path_factory.mktemp("mpii_aic_shards")
    common = dict(aspect_ratio=1.0, lossless=True, rows_per_shard=6, row_group_size=3)
    for split, out in (("train", "train"), ("val", "val")):
        write_shards(mpii, split, root / out, ShardOptions(dataset="mpii", **common), workers=1, progress=False)
    write_shards(aic, "train", root / "unlabeled", ShardOptions(dataset="aic", layout="mpii", people="all", **common),
                 workers=1, progress=False)
    return root


def _config(synth_mpii_aic, shards: Path, out_dir: Path, *extra: str):
    mpii, aic = synth_mpii_aic
    return apply_overrides(get_preset("synthmpii-aic-posedual-jc-r18-128x128").config, [
        f"data.root={mpii}", f"semi.root={aic}", f"data.shards={shards}", "data.num_workers=0",
        "codec.input_size=[64,64]", "codec.heatmap_size=[16,16]", "model.resnet_stages=3", "model.num_deconv=2",
        "model.deconv_channels=32", "train.epochs=1",
        "train.lr_steps=[1]", "train.batch_size=2", "test.batch_size=4", "train.log_interval=1",
        f"output_dir={out_dir}", "name=mpii-aic-shards", *extra])


def test_the_stream_pairs_mpii_crops_with_the_file_loaders_aic_crops(ray_session, synth_mpii_aic, mixed_shards,
                                                                     tmp_path):
    cfg = _config(synth_mpii_aic, mixed_shards, tmp_path, "train.batch_size=4")
    streams = ShardStreams(cfg, MPII, 0, 1)
    pairs = list(streams.train_batches(epoch=1))
    train, _ = build_datasets(cfg, MPII)
    mixed = build_train_stream(cfg, MPII, train)  # the file path: labeled MPII, unlabeled AIC
    assert len(pairs) == streams.steps_per_epoch() == len(mixed) // 4  # an epoch: one pass over the AIC boxes
    mixed.set_epoch(1)
    for lab, unl in pairs:
        assert lab["heatmaps"].shape == (4, 16, 16, 16) and set(unl) == {"image", "index"} | GT
        for row, index in enumerate(unl["index"].tolist()):
            ref = mixed[index][1]  # the file loader's unlabeled crop of this AIC box
            for key in ref:
                assert torch.equal(ref[key], unl[key][row]), (key, index)
    val = [int(i) for b in streams.val_batches() for i in b["index"]]
    assert sorted(val) == list(range(len(load_val_instances(cfg, MPII))))
    streams.check_val_records([inst.instance_id for inst in load_val_instances(cfg, MPII)], "valid.json")
    with pytest.raises(ValueError, match="rows are not the 2 validation people of valid.json in order"):
        streams.check_val_records([0, 1], "valid.json")


def test_posedual_trains_from_mpii_and_aic_shards_and_scores_pckh(ray_session, synth_mpii_aic, mixed_shards,
                                                                  tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = _config(synth_mpii_aic, mixed_shards, tmp_path / "runs", "semi.num_unlabeled=6")
    result = run_training(cfg, RunOptions(num_workers=0, tracking_uri=uri, experiment="mpii-aic-shards",
                                          log_checkpoints=False), plan=ray_session)
    run = MlflowClient(uri).get_run(result.run_id)
    assert run.info.status == "FINISHED" and 0.0 <= run.data.metrics["final/PCKh"] <= 1.0
    assert run.data.metrics["train/loss_unsup"] >= 0 and "train/unsup_teacher_pck" in run.data.metrics
    assert (cfg.run_dir / "results_net1.json").exists()


def test_unlabeled_shards_of_labeled_people_only_are_refused(synth_mpii_aic, mixed_shards, tmp_path):
    _, aic = synth_mpii_aic
    other = tmp_path / "shards"
    other.mkdir()
    for name in ("train", "val"):
        (other / name).symlink_to(mixed_shards / name, target_is_directory=True)
    write_shards(aic, "train", other / "unlabeled", ShardOptions(dataset="aic", aspect_ratio=1.0), workers=1,
                 progress=False)
    with pytest.raises(ValueError, match=r"semi.unlabeled=aic: .* holds people with a labeled joint of aic in the "
                                         r"aic keypoint layout.*--dataset aic --layout mpii --every-person"):
        ShardStreams(_config(synth_mpii_aic, other, tmp_path), MPII, 0, 1)
