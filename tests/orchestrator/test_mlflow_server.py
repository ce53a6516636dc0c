"""The loopback MLflow server: answers, and leaves no process behind when stopped."""

from __future__ import annotations

import subprocess

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.mlflow_server import LocalTrackingServer


def _processes_mentioning(text: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", text], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def test_server_serves_the_sqlite_store_and_stops_with_all_its_processes(tmp_path):
    db = tmp_path / "store.db"
    with LocalTrackingServer(f"sqlite:///{db}") as uri:
        assert uri.startswith("http://127.0.0.1:")
        client = MlflowClient(uri)
        exp = client.create_experiment("srv")
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "m", 1.0)
        assert _processes_mentioning(str(db))
    assert _processes_mentioning(str(db)) == []
    assert MlflowClient(f"sqlite:///{db}").get_run(run.info.run_id).data.metrics == {"m": 1.0}


def test_refuses_a_store_that_is_not_sqlite():
    with pytest.raises(ValueError, match="SQLite"):
        LocalTrackingServer("http://127.0.0.1:5000")


def test_a_server_left_by_a_killed_driver_is_stopped_by_the_next_one(tmp_path):
    import os
    import signal
    import time

    db = tmp_path / "store.db"
    first = LocalTrackingServer(f"sqlite:///{db}")
    first.start()
    group = first.process.pid
    os.kill(group, signal.SIGKILL)  # the driver and the `mlflow server` leader die; uvicorn lives on
    first.process.wait(timeout=10)  # reap the leader (a zombie still counts as a group member)
    time.sleep(1)
    try:
        os.killpg(group, 0)
        orphans = True
    except ProcessLookupError:
        orphans = False
    second = LocalTrackingServer(f"sqlite:///{db}")
    try:
        second.start()
        time.sleep(1)
        assert orphans, "uvicorn did not outlive its killed leader: nothing to test"
        with pytest.raises(ProcessLookupError):
            os.killpg(group, 0)
    finally:
        second.stop()
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        first._log_file.close()
