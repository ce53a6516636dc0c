"""orchestrator/tracking.py: finding runs by key and ending the runs a Ctrl+C stopped."""

from __future__ import annotations

from orchestrator.tracking import RUN_KEY_TAG, end_stopped_runs, find_run


def test_end_stopped_runs_kills_what_the_ctrl_c_stopped_and_keeps_every_other_status(tmp_path):
    """RUNNING (its process was killed) and FAILED at or after the Ctrl+C (the training's own ending on
    the stop) become KILLED; FINISHED, and FAILED before the Ctrl+C (a real failure), stay; a key with
    no run is skipped."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    exp_id = client.create_experiment("stop", artifact_location=(tmp_path / "artifacts").as_uri())
    ctrl_c_ms = 5_000

    def run(key: str, status: str, end_ms: int | None = None) -> None:
        run_id = client.create_run(exp_id, start_time=1_000, tags={RUN_KEY_TAG: key}).info.run_id
        if status != "RUNNING":
            client.set_terminated(run_id, status, end_time=end_ms)

    run("killed-process", "RUNNING")
    run("failed-on-the-stop", "FAILED", end_ms=ctrl_c_ms + 300)
    run("failed-before", "FAILED", end_ms=ctrl_c_ms - 60_000)
    run("finished", "FINISHED", end_ms=ctrl_c_ms + 300)
    keys = ["killed-process", "failed-on-the-stop", "failed-before", "finished", "never-started"]

    assert end_stopped_runs(client, exp_id, keys, ctrl_c_ms) == 2

    def status(key: str) -> str:
        return client.get_run(find_run(client, exp_id, key)).info.status

    assert [status(k) for k in keys[:4]] == ["KILLED", "KILLED", "FAILED", "FINISHED"]
    assert find_run(client, exp_id, "never-started") is None
    # idempotent: a retried call changes nothing
    assert end_stopped_runs(client, exp_id, keys, ctrl_c_ms) == 0
