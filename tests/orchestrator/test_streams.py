"""Ray Train workers fed from Parquet shards through Ray Data (``data.shards``)."""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from orchestrator.streams import ShardStreams, exactly
from orchestrator.train import RunOptions, run_training
from pose.config import apply_overrides
from pose.presets import get_preset


def _config(synth_data, shard_dirs, out_dir, kind: str, *extra: str):
    return apply_overrides(get_preset("synth-r18-128x96").config, [
        f"data.root={synth_data}", f"data.shards={shard_dirs['train'].parent}", "data.num_workers=0",
        f"output_dir={out_dir}", f"method.kind={kind}", "model.resnet_stages=3", "model.num_deconv=2",
        "model.deconv_channels=32", "train.epochs=1",
        "train.lr_steps=[1]", "train.batch_size=4", "test.batch_size=4", f"name={kind}-shards",
        "train.log_interval=1", "test.flip_test=false", *extra])


def test_exactly_cycles_a_short_stream_and_refuses_an_empty_one():
    assert list(exactly(5, lambda: iter([1, 2]))) == [1, 2, 1, 2, 1]
    assert list(exactly(2, lambda: iter([1, 2, 3]))) == [1, 2]
    with pytest.raises(ValueError, match="empty"):
        list(exactly(1, lambda: iter([])))


@pytest.mark.parametrize("kind", ["supervised", "posedual"])
def test_two_workers_get_equal_step_counts_and_split_validation_exactly(ray_session, synth_data, shard_dirs,
                                                                         tmp_path, kind):
    cfg = _config(synth_data, shard_dirs, tmp_path, kind, "semi.unlabeled=detections")
    meta = cfg.data.metainfo()
    streams = [ShardStreams(cfg, meta, rank, 2) for rank in (0, 1)]
    batches = [list(s.train_batches(epoch=0)) for s in streams]
    assert len(batches[0]) == len(batches[1]) == streams[0].steps_per_epoch()
    sizes = [len((b[1] if kind == "posedual" else b)["index"]) for part in batches for b in part]
    assert sizes == [4] * len(sizes)  # full batches only: the partial last batch is dropped
    first = batches[0][0]
    if kind == "posedual":
        labeled, unlabeled = first
        assert set(unlabeled) == {"image", "index"} and labeled["image"].shape[0] == unlabeled["image"].shape[0]
    else:
        assert {"image", "heatmaps", "weights"} <= set(first)
    val_index = [int(i) for s in streams for b in s.val_batches() for i in b["index"]]
    assert sorted(val_index) == list(range(streams[0].val_count()))  # every row once, none dropped


def test_local_mode_trains_posecons_from_shards_with_detector_boxes(ray_session, synth_data, shard_dirs, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = _config(synth_data, shard_dirs, tmp_path / "runs", "posecons", "semi.unlabeled=detections")
    result = run_training(cfg, RunOptions(num_workers=0, tracking_uri=uri, experiment="shards",
                                          log_checkpoints=False), plan=ray_session)
    run = MlflowClient(uri).get_run(result.run_id)
    assert run.info.status == "FINISHED" and "final/AP" in run.data.metrics
    assert run.data.metrics["train/loss_unsup"] >= 0 and run.data.params["data.shards"].endswith(
        shard_dirs["train"].parent.name)


def test_the_plain_engine_refuses_shards_instead_of_ignoring_them(synth_data, shard_dirs, tmp_path):
    from pose.engine.trainer import Trainer

    with pytest.raises(ValueError, match="data.shards"):
        Trainer(_config(synth_data, shard_dirs, tmp_path, "supervised"))


GT_KEYS = {"gt_keypoints", "gt_visible", "gt_heatmaps", "gt_weights"}


def test_unlabeled_ground_truth_is_delivered_as_the_file_loader_does(ray_session, synth_data, shard_dirs,
                                                                      tmp_path):
    """train_gt + oracle: the unlabeled batches carry the gt_ keys, bit-equal to the file path's items
    (same instances, seeds and augmentation draws; lossless shards)."""
    from pose.engine.components import build_datasets, build_train_stream

    cfg = _config(synth_data, shard_dirs, tmp_path, "posedual", "method.teacher=oracle", "data.num_labeled=3")
    meta = cfg.data.metainfo()
    pairs = list(ShardStreams(cfg, meta, 0, 1).train_batches(epoch=1))
    assert pairs and all(set(u) == {"image", "index"} | GT_KEYS for _, u in pairs)
    assert all("keypoints" not in u and "heatmaps" not in u for _, u in pairs)  # only under the gt_ names
    train, _ = build_datasets(cfg, meta)
    mixed = build_train_stream(cfg, meta, train)
    mixed.set_epoch(1)
    seen = 0
    for _, unl in pairs:
        for row, index in enumerate(unl["index"].tolist()):
            ref = mixed[index][1]
            assert set(ref) == set(unl)
            for key in ref:
                assert torch.equal(ref[key], unl[key][row]), (key, index)
            seen += 1
    full = len(mixed) // cfg.train.batch_size * cfg.train.batch_size  # full batches only
    assert seen == full and any(float(u["gt_weights"].sum()) > 0 for _, u in pairs)
    # without the oracle: the diagnostics' keys only
    net = _config(synth_data, shard_dirs, tmp_path, "posecons", "data.num_labeled=3")
    _, unl = next(iter(ShardStreams(net, meta, 0, 1).train_batches(epoch=0)))
    assert set(unl) == {"image", "index", "gt_keypoints", "gt_visible"}


def test_an_oracle_run_from_shards_logs_pck_to_mlflow_and_is_tagged_a_diagnosis(ray_session, synth_data,
                                                                                shard_dirs, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = _config(synth_data, shard_dirs, tmp_path / "runs", "posecons", "method.teacher=oracle",
                  "data.num_labeled=3")
    result = run_training(cfg, RunOptions(num_workers=0, tracking_uri=uri, experiment="oracle",
                                          log_checkpoints=False), plan=ray_session)
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["poselab.diagnosis"] == "oracle_teacher"
    steps = client.get_metric_history(result.run_id, "train/unsup_teacher_pck")
    assert len(steps) >= 2 and all(m.value == 1.0 for m in steps)  # every step and the epoch mean
    assert 0.0 <= run.data.metrics["train/unsup_student_pck"] <= 1.0
