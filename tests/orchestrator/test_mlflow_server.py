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
