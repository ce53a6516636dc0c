"""Ray Train runs tracked in MLflow: local mode for the logic, two gloo workers for DDP and fault
tolerance (each multi-worker run costs tens of seconds on 2 cores, so there are two)."""

from __future__ import annotations

import json

import pytest
import torch
from mlflow.tracking import MlflowClient

from orchestrator.train import RunOptions, absolute_paths, run_training
from orchestrator.worker import STATE_FILE, WorkerRun, WorkerSettings
from pose.config import apply_overrides
from pose.engine.components import rng_state, seed_everything
from pose.presets import get_preset


def _config(coco_mini, out_dir, kind: str, name: str, *extra: str):
    """A tiny top-down run on the coco-mini images: ResNet-18 up to layer3 (the conftest's ``TINY_MODEL``),
    evaluated without flip test."""
    return apply_overrides(get_preset("synth-r18-128x96").config, [
        f"data.root={coco_mini}", "data.train_ann=annotations/person_keypoints_val2017.json",
        "data.train_images=images/val2017", "data.val_ann=annotations/person_keypoints_val2017.json",
        "data.val_images=images/val2017", "data.num_workers=0", "codec.input_size=[64,96]",
        "codec.heatmap_size=[16,24]", f"output_dir={out_dir}", "test.batch_size=5", "test.flip_test=false",
        f"method.kind={kind}", "data.num_labeled=5", "model.resnet_stages=3", "model.num_deconv=2",
        "model.deconv_channels=32", "train.epochs=2", "train.batch_size=4", "train.lr_steps=[1]", f"name={name}",
        "train.log_interval=1", *extra])


def _runs(client: MlflowClient, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def _check_tracked(client: MlflowClient, run_id: str, nets: list[str], epochs: int) -> None:
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == str(epochs) and "method.kind" in run.data.params
    history = client.get_metric_history(run_id, "train/loss")
    assert len(history) >= epochs + 1  # per step and per epoch
    assert [m.value for m in client.get_metric_history(run_id, "epoch")] == list(range(1, epochs + 1))
    for net in nets:
        assert f"val/{net}/AP" in run.data.metrics and f"val/{net}/AR" in run.data.metrics
    assert {"final/AP", "final/best_AP", "train/images_per_s", "train/lr"} <= set(run.data.metrics)
    assert {"checkpoints", "config.json", "images", "predictions"} <= _artifacts(client, run_id)
    assert {"checkpoints/best.pth", "checkpoints/last.pth"} <= _artifacts(client, run_id, "checkpoints")
    assert {f"predictions/results_{n}.json" for n in nets} == _artifacts(client, run_id, "predictions")


def test_local_mode_run_is_tracked_and_a_rerun_continues_it(ray_session, coco_mini, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = _config(coco_mini, tmp_path / "runs", "posecons", "local")
    opts = RunOptions(num_workers=0, tracking_uri=uri, experiment="local")
    first = run_training(cfg, opts, plan=ray_session)
    client = MlflowClient(uri)
    _check_tracked(client, first.run_id, ["net"], epochs=2)
    assert "train/collapse_collapsed" in client.get_run(first.run_id).data.metrics
    state = torch.load(first.run_dir / "last.pth", weights_only=False)
    assert state["epoch"] == 2 and state["mlflow_run_id"] == first.run_id and len(state["rng"]) == 1

    again = run_training(cfg, opts, plan=ray_session)  # rerun of a finished run: same MLflow run, no training
    assert again.resumed and again.run_id == first.run_id and len(_runs(client, "local")) == 1
    assert again.metrics["AP"] == pytest.approx(first.metrics["AP"])
    assert torch.load(first.run_dir / "last.pth", weights_only=False)["step"] == state["step"]

    changed = apply_overrides(cfg, ["train.lr=0.01"])
    with pytest.raises(ValueError, match="different config"):
        run_training(changed, opts, plan=ray_session)
    fresh = run_training(changed, RunOptions(num_workers=0, tracking_uri=uri, experiment="local", resume=False),
                         plan=ray_session)
    assert not fresh.resumed and fresh.run_id != first.run_id and len(_runs(client, "local")) == 2


def test_a_killed_worker_is_replaced_and_posedual_resumes_under_the_same_mlflow_run(ray_session, coco_mini,
                                                                                   tmp_path):
    """Two gloo workers train PoseDual with DDP (the suite's one top-down multi-worker run: the worker
    loop is the same for every method); rank 1 is killed at step 3, in the last epoch, after epoch 1's
    checkpoint: the worker group is replaced and the run resumes from it."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # 12 unlabeled instances, 2 ranks x 3 per step: 2 full steps per epoch; step 3 is in epoch 2
    cfg = _config(coco_mini, tmp_path / "runs", "posedual", "fault", "train.batch_size=3")
    marker = tmp_path / "killed"
    opts = RunOptions(num_workers=2, tracking_uri=uri, experiment="fault", max_failures=1, fault_step=3,
                      fault_marker=str(marker))
    result = run_training(cfg, opts, plan=ray_session)
    assert marker.read_text().startswith("rank 1 killed at step 3")
    client = MlflowClient(uri)
    assert [r.info.run_id for r in _runs(client, "fault")] == [result.run_id]
    _check_tracked(client, result.run_id, ["net1", "net2", "mean"], epochs=2)
    state = torch.load(result.run_dir / "last.pth", weights_only=False)
    assert state["epoch"] == 2 and state["step"] == 4 and len(state["rng"]) == 2
    # the two workers' validation ranges were gathered (evaluate() checks every instance came back once)
    assert json.loads((result.run_dir / "results_net1.json").read_text())
    assert (tmp_path / "runs" / "ray" / "fault").is_dir()  # Ray Train's checkpoints


def test_the_ddp_file_loader_drops_the_partial_last_batch(coco_mini, tmp_path, monkeypatch):
    import ray.train

    cfg = absolute_paths(_config(coco_mini, tmp_path / "runs", "supervised", "tail", "train.batch_size=2"))
    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: None)
    run = WorkerRun(cfg, WorkerSettings(resume=False, images_to_draw=0), rank=0, world=1)
    sizes = [int(b["image"].shape[0]) for b in run.train_loader()]
    assert sizes == [2, 2] and run.steps_per_epoch() == 2  # 5 labeled crops: the 1-crop tail is dropped


def test_checkpoint_round_trip_restores_every_state(coco_mini, tmp_path, monkeypatch):
    import ray.train

    cfg = absolute_paths(_config(coco_mini, tmp_path / "runs", "posedual", "roundtrip"))
    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: None)
    settings = WorkerSettings(resume=False, images_to_draw=0)
    run = WorkerRun(cfg, settings, rank=0, world=1)
    assert run._epoch_progress() is None  # short epochs print no progress bar
    monkeypatch.setattr("orchestrator.worker.PROGRESS_MIN_STEPS", 1)
    run._progress = run._epoch_progress()
    with run.ddp_networks():
        from pose.engine.loop import train_epoch

        _, run.step = train_epoch(run.method, run.optimizer, run.train_loader(), cfg.train, run.device,
                                  each_step=run._each_step)
    assert run._progress.done == run._progress.total == run.steps_per_epoch()  # the bar followed every step
    run._progress = None
    run.scheduler.step()
    run.epoch, run.best_ap = 1, 0.25
    seed_everything(123)
    state = run.state_dict([rng_state()])
    expected_draw = torch.rand(3)
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    torch.save(state, ckpt_dir / STATE_FILE)

    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: ray.train.Checkpoint.from_directory(str(ckpt_dir)))
    back = WorkerRun(cfg, settings, rank=0, world=1)
    assert torch.equal(torch.rand(3), expected_draw)  # this rank's RNG state
    assert (back.epoch, back.step, back.best_ap) == (1, run.step, 0.25)
    for k, v in run.method.state_dict().items():
        assert torch.equal(back.method.state_dict()[k], v), k
    assert back.scheduler.state_dict() == run.scheduler.state_dict()
    assert back.optimizer.param_groups[0]["lr"] == run.optimizer.param_groups[0]["lr"]
    for a, b in zip(run.optimizer.state_dict()["state"].values(), back.optimizer.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert back.collapse.state_dict() == run.collapse.state_dict() and len(run.collapse.state_dict()["values"]) > 0


def test_predictions_of_ranks_merge_also_when_a_rank_had_no_validation_rows():
    import numpy as np

    from orchestrator.worker import merge_predictions
    from pose.engine.predict import InstancePredictions

    def preds(indices):
        n = len(indices)
        return InstancePredictions(np.asarray(indices, np.int64), np.zeros(n, np.int64),
                                   np.zeros((n, 17, 3), np.float32), np.ones(n, np.float32), np.ones(n, np.float32))

    merged = merge_predictions([{}, {"net1": preds([2, 0]), "net2": preds([2, 0])}, {"net1": preds([1]),
                                                                                      "net2": preds([1])}])
    assert sorted(merged) == ["net1", "net2"]
    assert merged["net1"].index.tolist() == [0, 1, 2] and len(merged["net2"]) == 3


def _bottomup_config(root, out_dir, fmt: str, name: str, head: str, kind: str, *more: str):
    preset = f"synthcrowd{'-cp' if fmt == 'crowdpose' else ''}-{kind}-{'higherhrnet' if head == 'higher' else 'hrnet'}-w8h32-128"
    return apply_overrides(get_preset(preset).config, [
        f"data.root={root}", "data.num_workers=0", f"output_dir={out_dir}", f"name={name}", "train.epochs=2",
        "train.batch_size=4", "train.val_interval=1", "train.log_interval=1", "train.warmup_iters=2", *more])


@pytest.mark.parametrize("fmt,head,kind,workers", [("crowdpose", "higher", "ce", 0), ("coco", "ae", "ae", 2)])
def test_bottomup_runs_through_ray_train(ray_session, crowd_dataset, tmp_path, fmt, head, kind, workers):
    """Bottom-up (Coupled / Associative Embedding) through the same worker loop: local mode, and two
    gloo workers whose validation images are split, gathered and scored once (with the oracle
    diagnosis: its three result lists are gathered too)."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    oracle = workers == 2
    cfg = _bottomup_config(crowd_dataset(fmt), tmp_path / "runs", fmt, f"bu-{fmt}", head, kind,
                           f"test.oracle_diagnosis={str(oracle).lower()}")
    result = run_training(cfg, RunOptions(num_workers=workers, tracking_uri=uri, experiment="bu"), plan=ray_session)
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["task"] == "bottomup"
    assert run.data.params["loss.kind"] == kind
    assert [m.value for m in client.get_metric_history(result.run_id, "epoch")] == [1.0, 2.0]
    terms = {"train/heatmap", "train/pull", "train/push", "train/scale", "train/loss", "train/lr"}
    assert terms <= set(run.data.metrics)
    stat = "AP_hard" if fmt == "crowdpose" else "APm"
    assert {"val/net/AP", f"val/net/{stat}", "final/AP", "final/best_AP"} <= set(run.data.metrics)
    sources = ["net", "oracle_tags", "oracle_heatmaps"] if oracle else ["net"]
    assert _artifacts(client, result.run_id, "predictions") == {f"predictions/results_{s}.json" for s in sources}
    if oracle:  # with the signed peak offsets, from both ranks' images
        assert {"val/net/AP_oracle_tags", "final/AP_oracle_heatmaps", "final/AR50_oracle_heatmaps",
                "val/net/peak_found", "final/peak_found"} <= set(run.data.metrics)
    assert "images" in _artifacts(client, result.run_id)
    # R = 8 (CE): the tag dimensions' correlation at the ground-truth joints, as a metric and an image
    correlation = "images/tag_correlation.png" in _artifacts(client, result.run_id, "images")
    assert correlation == (kind == "ce") == ("final/tag_corr_offdiag" in run.data.metrics)
    state = torch.load(result.run_dir / "last.pth", map_location="cpu", weights_only=False)
    assert state["epoch"] == 2 and state["step"] == 2 * (3 if workers == 0 else 1)  # 12 images, batch 4, full batches


def test_storage_locations_keep_uris_and_resolve_paths(tmp_path, monkeypatch):
    from orchestrator.train import remove_storage_dir, storage_join, storage_root

    monkeypatch.chdir(tmp_path)
    assert storage_root("s3://bucket/poselab/tune") == "s3://bucket/poselab/tune"
    assert storage_join("s3://bucket/poselab/", "abl", "train") == "s3://bucket/poselab/abl/train"
    assert storage_root("runs/tune") == str(tmp_path / "runs" / "tune")
    assert storage_join(str(tmp_path), "a", "b") == str(tmp_path / "a" / "b")
    (tmp_path / "gone" / "x").mkdir(parents=True)
    remove_storage_dir(f"file://{tmp_path}/gone")  # a URI through pyarrow's filesystems
    assert not (tmp_path / "gone").exists()
    remove_storage_dir(str(tmp_path / "never"))  # absent: nothing to do
