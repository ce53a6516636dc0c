"""`ray job submit` end to end: a Ray head on loopback with token authentication, the ablation pipeline
submitted with its working directory, the table read back from an MLflow server on loopback.

This is the documented cluster workflow (docs/orchestration.md) run on one machine. Every process
the test starts (Ray head, job, MLflow server) is stopped at the end; the test never touches a Ray
instance it did not start (no `ray stop`, which would stop every Ray on the machine)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from orchestrator.mlflow_server import LocalTrackingServer, free_port
from orchestrator.table import collect_trials

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_job_submit_runs_the_ablation_and_the_table_is_in_mlflow(tiny_ablation_spec, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_ablation_spec(tmp_path / "runs", "job", ["supervised"], [0, 1])))
    token_file = tmp_path / "ray_token"
    token_file.write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
               RAY_worker_niceness="0", RAY_AUTH_TOKEN_PATH=str(token_file))  # the cluster's token
    ray_tmp = f"/tmp/pj{os.getpid()}"  # short: Ray's socket paths have a length limit
    dashboard = free_port()
    address = f"http://127.0.0.1:{dashboard}"
    server = LocalTrackingServer(f"sqlite:///{tmp_path}/mlflow.db")
    server.launch()
    try:
        subprocess.run([str(BIN / "ray"), "start", "--head", f"--port={free_port()}", "--num-cpus=2",
                        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                        "--node-ip-address=127.0.0.1", f"--temp-dir={ray_tmp}", "--disable-usage-stats",
                        # the agent's default port 52365 is taken by any other Ray on this machine (the
                        # suite's shared session): then no job agent registers and submissions are refused
                        f"--dashboard-agent-listen-port={free_port()}"],
                       env=env, check=True, capture_output=True, timeout=180)
        tracking_uri = server.wait_ready()

        # token authentication is on: a CLI without the token is refused
        refused = subprocess.run([str(BIN / "ray"), "job", "list", "--address", address],
                                 env={**env, "RAY_AUTH_TOKEN_PATH": str(tmp_path / "no_token")},
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0 and "Authentication" in refused.stdout + refused.stderr

        # with the token (RAY_AUTH_MODE=token + RAY_AUTH_TOKEN_PATH, as docs/orchestration.md shows);
        # the job server answers a little after `ray start` returns
        client_env = {**env, "RAY_AUTH_MODE": "token"}
        deadline = time.monotonic() + 120
        while True:
            ready = subprocess.run([str(BIN / "ray"), "job", "list", "--address", address], env=client_env,
                                   capture_output=True, text=True, timeout=120)
            if ready.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert ready.returncode == 0, (ready.stdout + ready.stderr)[-2000:]
        # the head's job agent can register after the job server answers: Ray refuses the submission
        # ("No available agent to submit job, please try again later") without creating a job; retry that
        while True:
            submit = subprocess.run(
                [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
                 "python", "pipelines/ablation.py", str(spec), "--tracking-uri", tracking_uri, "--experiment",
                 "jobs"], env=client_env, cwd=REPO, capture_output=True, text=True, timeout=600)
            out = submit.stdout + submit.stderr
            if submit.returncode == 0 or "No available agent" not in out or time.monotonic() > deadline + 60:
                break
            time.sleep(3)
        assert submit.returncode == 0, out[-4000:]
        assert "succeeded" in out and "supervised" in out

        parent, df = collect_trials(MlflowClient(tracking_uri), "jobs", "job")
        assert parent.status == "FINISHED"
        assert len(df) == 2 and set(df.status) == {"FINISHED"} and sorted(df.seed) == [0, 1]
        client = MlflowClient(tracking_uri)
        assert "results/table.md" in {a.path for a in client.list_artifacts(parent.run_id, "results")}
    finally:
        subprocess.run(["pkill", "-KILL", "-f", ray_tmp], check=False)
        server.stop()
        time.sleep(1)
        subprocess.run(["rm", "-rf", ray_tmp], check=False)
