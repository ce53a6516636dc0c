"""pipelines/ablation.py end to end: the grid runs as Tune trials with MLflow child runs, and a killed
driver resumes without rerunning finished trials or duplicating runs. The driver runs as a separate
process with its own Ray instance (as a user runs it); everything it started is killed afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
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
    # one torch thread per trial (--threads 1): these cores also run the driver, Ray and the MLflow server
    cmd = [sys.executable, "pipelines/ablation.py", str(spec_path), "--tracking-uri", uri,
           "--experiment", "abl", "--max-concurrent", "1", "--threads", "1"]
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

    finally:
        kill_started_processes(str(ray_tmp))
        kill_started_processes(str(tmp_path))
        subprocess.run(["rm", "-rf", str(ray_tmp)], check=False)


def test_warm_start_stage_runs_first_feeds_the_trials_and_resumes(ray_session, tiny_ablation_spec, tmp_path,
                                                                  capsys):
    """In-process on the shared Ray: a 2-seed supervised stage, then one PoseDual trial started from its
    seed's checkpoint (net1) and the next seed's (net2); a second call trains nothing again; a restarted
    one (``--restart``) trains everything again under a new parent run."""
    import json
    from dataclasses import replace

    from orchestrator.ablation import AblationOptions, run_ablation
    from orchestrator.ablation_spec import AblationSpec
    from orchestrator.stage_table import collect_stage

    data = tiny_ablation_spec(tmp_path / "runs", "warm", ["posedual"], [1])
    data["warm_start"] = {"seeds": [1, 0], "overrides": {"train.lr": 0.002}}  # net2: the seed after 1: 0
    spec = AblationSpec.from_dict(data, source="warm.yaml")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # one torch thread per trial: these cores also run this process and Ray's
    options = AblationOptions(tracking_uri=uri, experiment="warm", max_concurrent_trials=1, torch_threads=1)
    text = run_ablation(spec, options)
    out = capsys.readouterr().out
    trial_id = "method=posedual,label_budget=5,seed=1"
    assert out.index("warm_start/seed=1: started") < out.index(f"{trial_id}: started")
    assert out.index("warm_start/seed=0: finished") < out.index(f"{trial_id}: started")

    client = MlflowClient(uri)
    parent, df = collect_trials(client, "warm", "warm")
    assert list(df.trial_id) == [trial_id] and list(df.status) == ["FINISHED"]  # the stage is no cell
    stage = collect_stage(client, parent)
    assert list(stage.seed) == [0, 1] and set(stage.status) == {"FINISHED"} and "AP" in stage
    ckpt = {s: str(tmp_path / "runs" / "warm" / "warm_start" / f"seed={s}" / "last.pth") for s in (0, 1)}
    for seed, run_id in zip(stage.seed, stage.run_id):
        run = client.get_run(run_id)
        assert run.data.tags["poselab.role"] == "stage" and run.data.tags["poselab.stage"] == "warm_start"
        assert run.data.params["method.kind"] == "supervised" and run.data.params["train.lr"] == "0.002"
        assert run.data.tags["poselab.run_dir"] == str(Path(ckpt[seed]).parent)
        assert run.info.end_time <= client.get_run(df.run_id[0]).info.start_time  # the stage ran first
    trial = client.get_run(df.run_id[0])
    assert (trial.data.params["model.init"], trial.data.params["model.init_net2"]) == (ckpt[1], ckpt[0])
    assert (trial.data.tags["poselab.init"], trial.data.tags["poselab.init_net2"]) == (ckpt[1], ckpt[0])
    assert "warm_start stage" in text and "seed=0" in text and "seed=1" in text and "posedual" in text
    assert json.loads(client.get_run(parent.run_id).data.params["warm_start.seeds"]) == [1, 0]
    grid = json.loads((Path(client.download_artifacts(parent.run_id, "results/grid.json", str(tmp_path)))
                       ).read_text())
    assert grid["warm_start"]["trials"] == ["seed=1", "seed=0"] and grid["trials"] == [trial_id]
    assert "warm_start stage" in Path(client.download_artifacts(parent.run_id, "results/table.md",
                                                                str(tmp_path))).read_text()

    stamps = {s: Path(c).stat().st_mtime_ns for s, c in ckpt.items()}
    again = run_ablation(spec, options)  # the same command again: nothing is trained twice
    out = capsys.readouterr().out
    assert "resuming" in out and "warm_start stage" in again
    assert {s: Path(c).stat().st_mtime_ns for s, c in ckpt.items()} == stamps
    parent2, df2 = collect_trials(client, "warm", "warm")
    assert parent2.run_id == parent.run_id and list(df2.run_id) == list(df.run_id)
    assert list(collect_stage(client, parent2).run_id) == list(stage.run_id)
    for run_id in [*stage.run_id, *df2.run_id]:
        assert len(client.get_metric_history(run_id, "epoch")) == 1

    fresh = run_ablation(spec, replace(options, restart=True))  # --restart: everything is trained again
    out = capsys.readouterr().out
    assert "already finished" not in out and "warm_start stage" in fresh
    parent3, df3 = collect_trials(client, "warm", "warm")
    stage3 = collect_stage(client, parent3)
    assert parent3.run_id != parent.run_id and list(df3.status) == ["FINISHED"]
    assert not set(df3.run_id) & set(df2.run_id) and not set(stage3.run_id) & set(stage.run_id)  # new runs;
    for run_id in [*stage3.run_id, *df3.run_id]:                             # the old ones are kept as they were
        assert len(client.get_metric_history(run_id, "epoch")) == 1
    assert {s: Path(c).stat().st_mtime_ns for s, c in ckpt.items()} != stamps  # the stage retrained


def _one_step(config):
    import ray.tune

    ray.tune.report({"x": config["x"]})


def test_a_grid_whose_tune_state_an_older_version_pickled_is_run_again(ray_session, tmp_path, monkeypatch,
                                                                        capsys):
    """Tune's saved state pickles the run config (callbacks included) by reference: after a class or
    function moved, ``Tuner.restore`` fails to unpickle it; the grid then starts afresh instead of
    stopping the resumed ablation (its finished trials are found in MLflow)."""
    import ray.tune

    from orchestrator.ablation import restore_tuner

    module_dir = tmp_path / "mod"
    module_dir.mkdir()
    (module_dir / "poselab_moved_module.py").write_text(
        "from ray.tune import Callback\n\nclass OldCallback(Callback):\n    pass\n")
    monkeypatch.syspath_prepend(str(module_dir))
    import poselab_moved_module

    storage = tmp_path / "tune"
    ray.tune.Tuner(_one_step, param_space={"x": ray.tune.grid_search([1])},
                   run_config=ray.tune.RunConfig(name="grid", storage_path=str(storage), verbose=0,
                                                 callbacks=[poselab_moved_module.OldCallback()])).fit()
    location = str(storage / "grid")
    assert ray.tune.Tuner.can_restore(location)
    assert restore_tuner(location, _one_step) is not None  # readable: restored as before

    del sys.modules["poselab_moved_module"]
    (module_dir / "poselab_moved_module.py").unlink()  # the class the state names is gone
    capsys.readouterr()
    assert restore_tuner(location, _one_step) is None
    out = capsys.readouterr().out
    assert "cannot be restored" in out and "poselab_moved_module" in out and location in out


def _interrupt_when(path: Path, times: int = 1, timeout_s: float = 120.0) -> threading.Thread:
    """Send this process a real SIGINT (what Ctrl+C sends) once ``path`` exists, ``times`` times 0.1 s
    apart (2: one Ctrl+C under ``uv run``, from the terminal and forwarded by uv): from a thread, so
    the main thread, where Tune's ``fit()`` runs, handles it as it would a user's Ctrl+C."""

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if path.exists():
            time.sleep(1.0)
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_the_watch_tells_a_ctrl_c_stopped_fit_from_a_finished_one(ray_session, tmp_path):
    """Ray 2.60's Tuner.fit() returns normally after Ctrl+C (its trials marked TERMINATED): the watch
    records the SIGINT and stops the run through Tune's graceful stop, once even when the SIGINT comes
    twice (``uv run`` forwards the terminal's); the handlers are the driver's own again afterwards."""
    import ray.tune

    from orchestrator.interrupt import TuneInterruptWatch

    def one_step(config):  # nested: pickled by value (Ray's workers cannot import this test module)
        ray.tune.report({"x": config["x"]})

    def sleeper(config):
        Path(config["started"]).write_text("started")
        for i in range(600):
            time.sleep(0.1)
            ray.tune.report({"i": i})

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGUSR1)
    with TuneInterruptWatch() as finished:
        done = ray.tune.Tuner(one_step, param_space={"x": ray.tune.grid_search([1])},
                       run_config=ray.tune.RunConfig(name="done", storage_path=str(tmp_path), verbose=0)).fit()
    assert done.num_errors == 0 and done[0].metrics["x"] == 1
    assert not finished.interrupted and (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGUSR1)) == before
    assert "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ

    started = tmp_path / "started"
    thread = _interrupt_when(started, times=2)
    t0 = time.monotonic()
    with TuneInterruptWatch() as stopped:
        grid = ray.tune.Tuner(sleeper, param_space={"started": str(started)},
                              run_config=ray.tune.RunConfig(name="stop", storage_path=str(tmp_path),
                                                            verbose=0)).fit()
    thread.join(timeout=5)
    assert stopped.interrupted and time.monotonic() - t0 < 50  # stopped long before the trial's 60 s
    assert grid.num_errors == 0  # what the ResultGrid alone says: nothing wrong
    assert signal.getsignal(signal.SIGUSR1) == before[1]
    late = signal.getsignal(signal.SIGINT)  # a copy landing after fit() is still the same Ctrl+C
    assert late.previous == before[0] and late(signal.SIGINT, None) is None
    signal.signal(signal.SIGINT, before[0])


def test_ctrl_c_in_the_warm_start_stage_stops_the_ablation_before_its_grid(ray_session, tiny_ablation_spec,
                                                                         tmp_path, capsys):
    """A real SIGINT while the stage's first run trains: no grid trial starts, the parent run and the
    stopped run's MLflow child run are KILLED (neither FAILED nor left RUNNING), and the error says what is
    unfinished and how to resume (pipelines/ablation.py exits 130 on it)."""
    from orchestrator.ablation import AblationInterrupted, AblationOptions, run_ablation
    from orchestrator.ablation_spec import AblationSpec
    from orchestrator.table import find_parent

    data = tiny_ablation_spec(tmp_path / "runs", "stop", ["posedual"], [1])
    data["warm_start"] = {"seeds": [1, 0], "overrides": {"train.epochs": 200, "train.lr_steps": [200]}}
    spec = AblationSpec.from_dict(data, source="stop.yaml")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    thread = _interrupt_when(tmp_path / "runs" / "stop" / "warm_start" / "seed=1")
    with pytest.raises(AblationInterrupted) as stop:
        run_ablation(spec, AblationOptions(tracking_uri=uri, experiment="stop", max_concurrent_trials=1))
    thread.join(timeout=5)
    out = capsys.readouterr().out
    assert "warm_start/seed=1: started" in out and "method=posedual" not in out.split("warm-start stage:")[-1]
    assert "during the warm-start stage; the grid did not start: 2 of 2 runs unfinished" in str(stop.value)
    assert "Rerun the same command" in str(stop.value)
    client = MlflowClient(uri)
    parent = find_parent(client, "stop", "stop")
    assert parent.status == "KILLED"
    children = client.search_runs([parent.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.run_id}'")
    assert [r.info.status for r in children] == ["KILLED"]  # seed=1's; seed=0's never started
