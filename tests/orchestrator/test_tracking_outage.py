"""Runs ride out an unreachable MLflow tracking server: what they log meanwhile waits in their spool
on disk and reaches MLflow in order, once, when the server is back (or through ``poselab
mlflow-replay`` when it never comes back before the run ends); no run is created twice.

A real ``mlflow server`` (:class:`LocalTrackingServer`) is started twice for the module (once, and
once more on the same store and port after the outage) and stopped at its end; a server that never
returns is a free port nobody listens on. Retry pauses and waits are a fraction of a second here
(:data:`POLICY`), and MLflow's HTTP client does not retry (:func:`quick_http`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.cli import main as cli_main
from orchestrator.mlflow_server import LocalTrackingServer, free_port
from orchestrator.resources import ResourcePlan
from orchestrator.run_logger import RunLogger, UndeliveredRecords
from orchestrator.tracking import RunRequest
from orchestrator.tracking_outage import OutagePolicy
from orchestrator.train import RunOptions, run_training
from pose.config import apply_overrides
from pose.presets import get_preset

POLICY = OutagePolicy(wait_s=20.0, retry_s=0.2, max_retry_s=0.5, probe_timeout_s=1.0, http_timeout_s=5,
                      http_max_retries=0)
EXPERIMENT = "outage"


class Store:
    """A SQLite store behind a loopback MLflow server that a test may stop and start again (same port)."""

    def __init__(self, directory: Path) -> None:
        self.db = f"sqlite:///{directory / 'mlflow.db'}"
        self.server = LocalTrackingServer(self.db)
        self.port = self.server.port
        self.uri = self.server.uri

    def start(self) -> None:
        if self.server.process is None:
            self.server = LocalTrackingServer(self.db, port=self.port)
            self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def client(self) -> MlflowClient:
        self.start()
        return MlflowClient(self.uri)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = Store(tmp_path_factory.mktemp("outage-store"))
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def quick_http(monkeypatch):
    """MLflow's HTTP client fails a dead server at once (restored after the test)."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def _request(key: str, name: str) -> RunRequest:
    return RunRequest(EXPERIMENT, key, name, {"train": {"lr": 0.001, "epochs": 2}}, {"poselab.role": "trial"})


def _runs(client: MlflowClient, key: str):
    exp = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`poselab.run_key` = '{key}'")


def _outage_lines(caplog) -> tuple[int, int]:
    """(warnings that the server is unreachable, warnings that it is back)."""
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return sum(" unreachable (" in m for m in lines), sum(" is back after " in m for m in lines)


@pytest.mark.slow  # two starts of a real MLflow server (~10 s each on an idle laptop)
def test_a_server_restart_mid_run_loses_and_duplicates_nothing(store, tmp_path, quick_http, caplog):
    spool = tmp_path / "trial-1" / "mlflow-spool"
    checkpoint = tmp_path / "best.pth"
    checkpoint.write_bytes(b"epoch 1")
    store.start()
    first = RunLogger(store.uri, spool, policy=POLICY, label="trial-1")
    run_id = first.open(_request("trial-1", "trial-1"))
    assert run_id
    for step in range(3):
        first.log_metrics({"train/loss": 10.0 - step}, step)
    first.log_artifact(checkpoint, "checkpoints")

    store.stop()  # the outage: the run keeps logging, one warning
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for step in range(3, 6):
            first.log_metrics({"train/loss": 10.0 - step}, step)
        first.set_tags({"poselab.collapsed": "false"})
        checkpoint.write_bytes(b"epoch 2")
        first.log_artifact(checkpoint, "checkpoints")  # kept as it is now ...
        checkpoint.write_bytes(b"epoch 3")  # ... not as it is later
    assert _outage_lines(caplog) == (1, 0) and first.pending
    # The process dies here. Its retry opens the run again (by key) while the server is still down:
    # the lookup cannot answer, so the opening waits in the spool behind the dead process's records.
    second = RunLogger(store.uri, spool, policy=POLICY, label="trial-1")
    assert second.open(_request("trial-1", "trial-1")) == ""
    for step in range(6, 9):
        second.log_metrics({"train/loss": 10.0 - step}, step)
    outage_ended = time.time() * 1000

    store.start()  # same store, same port
    time.sleep(POLICY.max_retry_s)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        second.log_metrics({"train/loss": 1.0}, 9)  # the first call after the pause delivers everything
    assert not second.pending and _outage_lines(caplog) == (0, 1)
    second.finish("FINISHED")
    second.close()

    client = store.client()
    runs = _runs(client, "trial-1")
    assert [r.info.run_id for r in runs] == [run_id] and second.run_id == run_id and second.resumed
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["train.lr"] == "0.001"
    assert run.data.tags["poselab.collapsed"] == "false"
    history = sorted(client.get_metric_history(run_id, "train/loss"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(s, 10.0 - s) for s in range(9)] + [(9, 1.0)]
    assert all(m.timestamp < outage_ended for m in history if m.step < 9)  # stamped when logged
    got = Path(client.download_artifacts(run_id, "checkpoints/best.pth", str(tmp_path / "download")))
    assert got.read_bytes() == b"epoch 2"
    assert not (spool / "records.jsonl").exists() and not (spool / "files").exists()


def test_a_server_that_never_returns_leaves_a_spool_that_replay_delivers(store, tmp_path, quick_http):
    dead = f"http://127.0.0.1:{free_port()}"
    spool = tmp_path / "trial-2" / "mlflow-spool"
    logger = RunLogger(dead, spool, policy=dataclasses.replace(POLICY, wait_s=1.0), label="trial-2")
    assert logger.open(_request("trial-2", "trial-2")) == ""
    for step in range(4):
        logger.log_metrics({"train/loss": 5.0 - step, "train/lr": 0.1}, step)
    logger.log_dict({"train": {"lr": 0.001}}, "config.json")
    logger.finish("FINISHED")
    with pytest.raises(UndeliveredRecords) as error:
        logger.close()
    message = str(error.value)
    for part in ("run trial-2", "its MLflow run is not created yet", "8 metric values (4 steps, 0..3)",
                 "1 artifact", "the final status FINISHED", f"kept in {spool}",
                 f"poselab mlflow-replay {spool}", dead):
        assert part in message
    assert error.value.counts == {"open": 1, "metrics": 4, "dict": 1, "status": 1}

    # a writer killed mid-line leaves a torn record; what is written after it stays readable
    with open(spool / "records.jsonl", "a") as f:
        f.write('{"kind": "metrics", "metr')
    late = RunLogger(dead, spool, policy=dataclasses.replace(POLICY, wait_s=0.0), label="trial-2")
    late.log_metrics({"train/loss": 1.0}, 4)

    client = store.client()
    assert cli_main(["mlflow-replay", str(tmp_path), "--tracking-uri", store.uri]) == 0
    runs = _runs(client, "trial-2")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run_id = runs[0].info.run_id
    history = sorted(client.get_metric_history(run_id, "train/loss"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(0, 5.0), (1, 4.0), (2, 3.0), (3, 2.0), (4, 1.0)]
    assert len(client.get_metric_history(run_id, "train/lr")) == 4
    assert {a.path for a in client.list_artifacts(run_id)} == {"config.json"}
    assert not (spool / "records.jsonl").exists()
    assert cli_main(["mlflow-replay", str(tmp_path), "--tracking-uri", store.uri]) == 0  # nothing left
    assert len(_runs(client, "trial-2")) == 1


def test_training_through_an_outage_ends_with_the_error_and_a_rerun_delivers(store, coco_mini, tmp_path,
                                                                            quick_http):
    cfg = apply_overrides(get_preset("synth-r18-128x96").config, [
        f"data.root={coco_mini}", "data.train_ann=annotations/person_keypoints_val2017.json",
        "data.train_images=images/val2017", "data.val_ann=annotations/person_keypoints_val2017.json",
        "data.val_images=images/val2017", "data.num_workers=0", "codec.input_size=[64,96]",
        "codec.heatmap_size=[16,24]", f"output_dir={tmp_path / 'runs'}", "test.batch_size=5",
        "model.resnet_stages=3", "model.num_deconv=2", "model.deconv_channels=32", "train.epochs=1",
        "train.batch_size=4", "train.lr_steps=[1]",
        "name=outage-run", "train.log_interval=1"])
    plan = ResourcePlan("fits", None, 1.0, 0.0, 1, "test")
    dead = f"http://127.0.0.1:{free_port()}"
    options = RunOptions(num_workers=0, tracking_uri=dead, experiment=EXPERIMENT, log_checkpoints=True,
                         outage=dataclasses.replace(POLICY, wait_s=1.0))
    with pytest.raises(UndeliveredRecords) as error:
        run_training(cfg, options, plan=plan)
    spool = tmp_path / "runs" / "outage-run" / "mlflow-spool"
    assert error.value.spool_dir == spool and "the final status FINISHED" in str(error.value)
    assert error.value.counts["open"] == 1 and error.value.counts["metrics"] >= 2
    assert (tmp_path / "runs" / "outage-run" / "final_metrics.json").exists()  # training finished

    # the server is back: rerunning the same command delivers the spool first, then finds the run
    again = run_training(cfg, dataclasses.replace(options, tracking_uri=store.uri), plan=plan)
    client = store.client()
    runs = _runs(client, str(tmp_path / "runs" / "outage-run"))
    assert [r.info.run_id for r in runs] == [again.run_id] and again.resumed
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.params["train.epochs"] == "1"
    assert {"final/AP", "val/best_AP", "train/loss"} <= set(run.data.metrics)
    steps = [m.step for m in client.get_metric_history(again.run_id, "epoch")]
    assert steps == [steps[0]]  # the epoch's metrics once
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoints", "config.json", "images", "predictions"} <= artifacts
    assert not (spool / "records.jsonl").exists()


def test_a_retried_opening_finds_its_run_and_the_driver_waits_a_bounded_time(tmp_path):
    import requests

    from orchestrator.tracking import open_run
    from orchestrator.tracking_outage import TrackingUnavailable, is_unreachable, wait_for

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    request = RunRequest(EXPERIMENT, "fresh", "fresh", {"a": 1}, reuse=False)  # always a new run ...
    first, _ = open_run(client, uri, request)
    again, resumed = open_run(client, uri, request)  # ... but a retry whose first answer was lost finds it
    assert again == first and not resumed and len(_runs(client, "fresh")) == 1

    lost = requests.exceptions.ConnectionError("connection refused")
    refused = ValueError("a bad parameter")
    assert is_unreachable(RuntimeError("wrapped")) is False and is_unreachable(lost)
    calls = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RuntimeError("API request failed") from lost
        return "answered"

    fast = dataclasses.replace(POLICY, wait_s=5.0, retry_s=0.1, max_retry_s=0.2)
    assert wait_for(flaky, "http://x", fast, "a test") == "answered" and len(calls) == 3
    assert calls[2] - calls[1] >= 0.19  # the pause doubled: no busy loop
    tries: list[Exception] = []

    def fails_with(error: Exception):
        def call() -> None:
            tries.append(error)
            raise error
        return call

    with pytest.raises(TrackingUnavailable, match="did not answer for .* while a test"):
        wait_for(fails_with(lost), "http://x", dataclasses.replace(fast, wait_s=0.3), "a test")
    tries.clear()
    with pytest.raises(ValueError):  # a refused request is an error at once: no retry
        wait_for(fails_with(refused), "http://x", fast, "a test")
    assert tries == [refused]
