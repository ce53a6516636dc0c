"""Autoscaling on one machine: Ray's fake multi-node provider with the node types of
clusters/fake-multinode.yaml. Its head offers no CPUs, so the trials of a small ablation can only run
on worker nodes the autoscaler launches; the test sees them launched, the ablation finish (its trials
in MLflow), and the idle workers removed after the file's idle timeout.

The "worker nodes" are raylets the autoscaler (the head's monitor process) starts on this machine. The
test starts its own head on 127.0.0.1 with its own temp dir, port and token, and at the end kills, by
process id, exactly the processes whose command line names its temp dir or its tmp_path, and their
descendants (never `ray stop`, which stops every Ray on the machine; never `cluster_utils.
AutoscalingCluster`, which calls `ray stop --force` and reads an example file this Ray wheel lacks).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.cluster import validate_file
from orchestrator.mlflow_server import free_port
from orchestrator.table import collect_trials

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FAKE = REPO / "clusters" / "fake-multinode.yaml"
HEAD_ID = "f" * 51 + "00000"  # the node id RAY_FAKE_CLUSTER=1 gives the head (fake provider's FAKE_HEAD_NODE_ID)

# Prints one JSON line per second: the alive worker nodes (id and resources) of the cluster at argv[1].
WATCHER = r"""
import json, sys, time
import ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
print(json.dumps({"ready": True}), flush=True)
while True:
    nodes = [{"id": n["NodeID"], "resources": n["Resources"]} for n in ray.nodes()
             if n["Alive"] and n["NodeID"] != sys.argv[2]]
    print(json.dumps({"t": time.time(), "workers": nodes}), flush=True)
    time.sleep(1)
"""


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process."""
    procs = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        procs[int(entry.name)] = (ppid, cmdline)
    return procs


def kill_our_processes(markers: list[str]) -> list[int]:
    """SIGKILL, by pid, the processes whose command line contains one of ``markers`` (this test's Ray temp
    dir, its tmp_path) and all their descendants; never this test process or its ancestors."""
    procs = _processes()
    protected, pid = set(), os.getpid()
    while pid > 1 and pid in procs:
        protected.add(pid)
        pid = procs[pid][0]
    ours = {p for p, (_, cmd) in procs.items() if any(m in cmd for m in markers)} - protected
    grew = True
    while grew:
        children = {p for p, (ppid, _) in procs.items() if ppid in ours} - ours - protected
        ours |= children
        grew = bool(children)
    for p in sorted(ours):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return sorted(ours)


def monitor_log(ray_tmp: str, chars: int = 6000) -> str:
    """The end of the autoscaler's log (for failure messages)."""
    logs = sorted(Path(ray_tmp).glob("session_*/logs/monitor.log"))
    return f"monitor.log:\n{logs[-1].read_text(errors='replace')[-chars:]}" if logs else "(no monitor.log)"


def node_type_of(resources: dict, types: dict) -> str:
    """The worker type of the config whose CPU / GPU resources a node has ("?" if none)."""
    for name, node in types.items():
        want = node["resources"]
        if resources.get("CPU", 0) == want.get("CPU", 0) and resources.get("GPU", 0) == want.get("GPU", 0):
            return name
    return "?"


class Watcher:
    """Reads the watcher's JSON lines on a thread; records every worker node seen (with its type), the
    alive ones, and the most alive at once, in all and per type."""

    def __init__(self, process: subprocess.Popen, worker_types: dict):
        self.process = process
        self.types = worker_types
        self.ready = threading.Event()
        self.seen: dict[str, str] = {}  # node id -> worker type
        self.alive: list[str] = []
        self.peak = 0
        self.peak_by_type: dict[str, int] = {}
        self.lines: list[str] = []
        self.updated = 0.0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("ready"):
                self.ready.set()
                continue
            self.alive = [n["id"] for n in msg["workers"]]
            counts: dict[str, int] = {}
            for n in msg["workers"]:
                kind = self.seen.setdefault(n["id"], node_type_of(n["resources"], self.types))
                counts[kind] = counts.get(kind, 0) + 1
            for kind, n in counts.items():
                self.peak_by_type[kind] = max(self.peak_by_type.get(kind, 0), n)
            self.peak = max(self.peak, len(self.alive))
            self.updated = time.monotonic()


@pytest.mark.slow
def test_autoscaler_launches_workers_for_the_trials_and_removes_them_when_idle(tiny_ablation_spec, tmp_path):
    report = validate_file(FAKE)
    assert report.ok, report.errors
    cfg = yaml.safe_load(FAKE.read_text())
    head_type = cfg["available_node_types"][cfg["head_node_type"]]
    worker_types = {k: v for k, v in cfg["available_node_types"].items() if k != cfg["head_node_type"]}
    assert head_type["resources"].get("CPU", 0) < 1 <= worker_types["cpu_worker"]["resources"]["CPU"]  # trials
    # need worker nodes

    port = free_port()
    cfg["provider"]["gcs_address"] = f"127.0.0.1:{port}"  # the fake nodes join our head, not 6379
    autoscaling_config = tmp_path / "autoscaling.yaml"
    autoscaling_config.write_text(yaml.safe_dump(cfg))

    spec = tmp_path / "spec.yaml"  # two single-CPU trials, at most two at once: two worker nodes
    spec.write_text(yaml.safe_dump(tiny_ablation_spec(tmp_path / "runs", "autoscale", ["supervised"], [0, 1])))
    token_file = tmp_path / "ray_token"
    token_file.write_text(secrets.token_hex(32))
    ray_tmp = f"/tmp/plas{os.getpid()}"  # short: Ray's socket paths have a length limit
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0",
               RAY_worker_niceness="0", RAY_TMPDIR=ray_tmp, RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN_PATH=str(token_file), PYTHONUNBUFFERED="1")
    head_env = {**env, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    address = f"127.0.0.1:{port}"
    watcher = None
    t0 = time.monotonic()
    try:
        start = subprocess.run(
            [str(BIN / "ray"), "start", "--head", f"--port={port}", f"--num-cpus={head_type['resources'].get('CPU', 0)}",
             "--node-ip-address=127.0.0.1", f"--temp-dir={ray_tmp}", "--include-dashboard=false",
             f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
             "--object-store-memory=200000000", "--disable-usage-stats",
             f"--autoscaling-config={autoscaling_config}"],
            env=head_env, capture_output=True, text=True, timeout=180)
        assert start.returncode == 0, (start.stdout + start.stderr)[-3000:]

        watcher = Watcher(subprocess.Popen([sys.executable, "-c", WATCHER, address, HEAD_ID], env=env,
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
                          worker_types)
        assert watcher.ready.wait(120), "".join(watcher.lines)[-3000:]
        time.sleep(3)
        assert watcher.alive == []  # at rest: the head alone (min_workers 0)

        driver = subprocess.run(
            [sys.executable, "pipelines/ablation.py", str(spec), "--address", address,
             "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--experiment", "autoscale",
             "--max-concurrent", "2"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=480)
        out = driver.stdout + driver.stderr
        assert driver.returncode == 0, out[-4000:]
        ran = time.monotonic() - t0

        # worker nodes were launched, of the file's types, within its bounds (per type and in all)
        seen = f"worker nodes seen: {watcher.seen}, most at once {watcher.peak_by_type}\n{monitor_log(ray_tmp)}"
        assert watcher.peak_by_type.get("cpu_worker", 0) >= 1, out[-3000:] + seen
        assert "?" not in watcher.peak_by_type, seen
        assert all(n <= worker_types[kind]["max_workers"] for kind, n in watcher.peak_by_type.items()), seen
        assert watcher.peak <= cfg["max_workers"], seen

        # the trials finished and are in MLflow
        parent, df = collect_trials(MlflowClient(f"sqlite:///{tmp_path}/mlflow.db"), "autoscale", "autoscale")
        assert parent.status == "FINISHED"
        assert len(df) == 2 and set(df.status) == {"FINISHED"}

        # idle workers are removed after idle_timeout_minutes (plus the autoscaler's update interval)
        deadline = time.monotonic() + cfg["idle_timeout_minutes"] * 60 + 90
        while watcher.alive and time.monotonic() < deadline:
            time.sleep(1)
        assert watcher.alive == [], f"workers still alive: {watcher.alive}\n{monitor_log(ray_tmp)}"
        assert time.monotonic() - watcher.updated < 10  # the watcher was still reporting
        print(f"\nautoscaling: worker nodes launched {sorted(watcher.seen.values())} (most at once "
              f"{watcher.peak_by_type}), "
              f"ablation done after {ran:.0f} s, workers removed after {time.monotonic() - t0:.0f} s")
    finally:
        if watcher is not None:
            watcher.process.kill()
            watcher.process.wait(timeout=30)
        kill_our_processes([ray_tmp, str(tmp_path)])
        time.sleep(1)
        shutil.rmtree(ray_tmp, ignore_errors=True)
