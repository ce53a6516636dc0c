"""pipelines/ablation.py end to end: the grid runs as Tune trials with MLflow child runs, and a killed
driver resumes without rerunning finished trials or duplicating runs. The driver runs as a separate
process with its own Ray instance (as a user runs it); everything it started is killed afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.table import collect_trials

REPO = Path(__file__).resolve().parents[2]


def kill_started_processes(marker: str) -> None:
    """Kill every process whose command line mentions ``marker`` (Ray's nodes and workers under our
    temp dir, the MLflow server over our database) and, for a server log under ``marker``, the
    uvicorn process serving its port (a killed driver cannot stop its MLflow server)."""
    subprocess.run(["pkill", "-KILL", "-f", marker], check=False)
    for log in Path(marker).glob("mlflow-server-*.log") if Path(marker).is_dir() else []:
        port = log.stem.rsplit("-", 1)[-1]
        subprocess.run(["pkill", "-KILL", "-f", f"uvicorn.*--port {port} "], check=False)
    time.sleep(1)


def driver_env(ray_tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(RAY_TMPDIR=str(ray_tmp), RAY_ENABLE_UV_RUN_RUNTIME_ENV="0", RAY_worker_niceness="0",
               PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def test_ablation_runs_the_grid_and_a_killed_driver_resumes(tiny_ablation_spec, tmp_path):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_ablation_spec(tmp_path / "runs", "resume", ["supervised", "posecons"],
                                                           [0])))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ray_tmp = Path(f"/tmp/pl{os.getpid()}")  # short: Ray's socket paths have a length limit
    cmd = [sys.executable, "pipelines/ablation.py", str(spec_path), "--tracking-uri", uri,
           "--experiment", "abl", "--max-concurrent", "1"]
    try:
        first = subprocess.Popen(cmd, cwd=REPO, env=driver_env(ray_tmp), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)
        seen = []
        for line in first.stdout:
            seen.append(line)
            if "finished (1/2)" in line:
                break
        else:
            pytest.fail("the driver ended before a trial finished:\n" + "".join(seen[-40:]))
        os.killpg(first.pid, signal.SIGKILL)  # the driver dies mid-ablation
        first.wait(timeout=30)
        kill_started_processes(str(ray_tmp))
        kill_started_processes(str(tmp_path))

        client = MlflowClient(uri)
        parent, df = collect_trials(client, "abl", "resume")
        done_before = set(df.loc[df.status == "FINISHED", "trial_id"])
        assert len(done_before) >= 1
        first_run_ids = dict(zip(df.trial_id, df.run_id))

        again = subprocess.run(cmd, cwd=REPO, env=driver_env(ray_tmp), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=600)
        assert again.returncode == 0, again.stdout[-4000:]
        assert "resuming" in again.stdout
        for tid in done_before:  # finished trials are not trained again (Tune's state may lag behind MLflow)
            assert f"{tid}: started" not in again.stdout or f"{tid}: already finished" in again.stdout
        parent2, df2 = collect_trials(client, "abl", "resume")
        assert parent2.run_id == parent.run_id and parent2.status == "FINISHED"
        assert len(df2) == 2 and set(df2.status) == {"FINISHED"} and set(df2.attempts) == {1}  # no duplicates
        for tid, run_id in first_run_ids.items():  # started trials kept their MLflow child runs
            assert dict(zip(df2.trial_id, df2.run_id))[tid] == run_id
        for run_id in df2.run_id:
            assert [m.step for m in client.get_metric_history(run_id, "epoch")] != []
            assert len(client.get_metric_history(run_id, "epoch")) == 1  # one epoch each, never retrained
        assert "supervised" in again.stdout and "posecons" in again.stdout and "(1)" in again.stdout
        artifacts = {a.path for a in client.list_artifacts(parent.run_id, "results")}
        assert {"results/table.md", "results/table.csv", "results/table.json"} <= artifacts

        fresh = subprocess.run([*cmd, "--restart"], cwd=REPO, env=driver_env(ray_tmp), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=600)
        assert fresh.returncode == 0, fresh.stdout[-4000:]
        assert "already finished" not in fresh.stdout  # --restart trains every trial again
        parent3, df3 = collect_trials(client, "abl", "resume")
        assert parent3.run_id != parent.run_id and set(df3.status) == {"FINISHED"} and len(df3) == 2
        assert not set(df3.run_id) & set(df2.run_id)  # new child runs; the old ones are kept as they were
        for run_id in df3.run_id:
            assert len(client.get_metric_history(run_id, "epoch")) == 1
    finally:
        kill_started_processes(str(ray_tmp))
        kill_started_processes(str(tmp_path))
        subprocess.run(["rm", "-rf", str(ray_tmp)], check=False)
