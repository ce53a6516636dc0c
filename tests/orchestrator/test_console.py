"""The quiet console: the live status (in place on a terminal, plain lines otherwise), the Tune callback
that feeds it, the run poller of ``poselab train``, and where Ray's and MLflow's log records go."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from orchestrator.console import LiveStatus, RunProgress

REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_status_prints_one_line_per_event_and_nothing_for_rows():
    out, clock = io.StringIO(), Clock()
    status = LiveStatus("abl", stream=out, clock=clock)
    assert not status.live  # not a terminal
    status.add("a", 2)
    status.set_logs("/tmp/ray/session_x/logs")
    with status:
        status.update("a", state="running")
        clock.now += 12
        status.event("a", "started")
        status.note("a", "FAILED (1/1): /x/error.txt")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Ray logs") and lines[0].endswith("/tmp/ray/session_x/logs")
    assert lines[1:] == ["[    12s] a: started", "[    12s] a: FAILED (1/1): /x/error.txt"]
    assert "\x1b[" not in out.getvalue()


def test_live_status_redraws_in_place_at_most_every_min_interval():
    term, clock = Terminal(), Clock()
    status = LiveStatus("abl", stream=term, clock=clock, min_interval=0.25)
    assert status.live
    for label in ("warm_start/seed=0", "method=posedual,seed=0"):
        status.add(label, 4)
    status.set_logs("/tmp/ray/session_x/logs")
    status.open()
    first = term.getvalue()
    assert first.count("\n") == 4 and "0/2 done, 2 pending" in first and "Ray logs: /tmp/ray/session_x/logs" in first
    clock.now += 1
    status.update("warm_start/seed=0", state="running")
    drawn = term.getvalue()
    assert drawn[len(first):].startswith("\r\x1b[4A\x1b[J")  # back to the block's top, cleared, redrawn
    status.update("warm_start/seed=0", epoch=1, best_ap=0.25)  # within 0.25 s: not drawn yet
    status.event("warm_start/seed=0", "epoch 1")  # live: the row says it, no line
    assert term.getvalue() == drawn
    clock.now += 0.3
    status.tick()
    block = term.getvalue()[len(drawn):]
    assert "running" in block and "epoch 1/4" in block and "best AP 0.250" in block and "0m00s" in block
    status.message("a line above")
    tail = term.getvalue()[len(drawn) + len(block):]
    assert tail.startswith("\r\x1b[4A\x1b[Ja line above\n") and tail.count("\n") == 5
    status.update("warm_start/seed=0", state="finished")
    status.update("method=posedual,seed=0", state="failed")
    status.close()
    final = status.lines(width=200)
    assert final[0].startswith("abl: 1/2 done, 1 failed")
    assert "finished" in final[1] and "failed" in final[2]


def test_live_status_fits_the_terminal():
    status = LiveStatus("abl", stream=Terminal(), clock=Clock())
    for i in range(30):
        status.add(f"method=posedual,label_budget=400,seed={i}", 10)
    status.update("method=posedual,label_budget=400,seed=7", state="running")
    status.update("method=posedual,label_budget=400,seed=9", state="failed")
    lines = status.lines(width=40, height=10)
    assert len(lines) <= 10 and all(len(line) < 40 for line in lines)
    assert lines[0] == "abl: 0/30 done, 1 running, 1 failed, 2~"  # cut to the width
    rows = lines[1:-1]
    assert sum("running" in line for line in rows) == 1 and sum("failed" in line for line in rows) == 1
    assert lines[-1] == f"  ... {30 - len(rows)} more: {30 - len(rows)} pending"


def test_live_status_takes_log_lines_above_the_block():
    import logging

    term = Terminal()
    handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with LiveStatus("abl", stream=term, clock=Clock()) as status:
            status.add("a", 1)
            logging.getLogger("orchestrator.x").warning("a warning")
            assert handler.stream is not sys.stderr
        assert handler.stream is sys.stderr
    finally:
        root.removeHandler(handler)
    assert "a warning\n" in term.getvalue()


def _trial(tid: str, **kw) -> SimpleNamespace:
    return SimpleNamespace(config={"trial": {"trial_id": tid}}, trial_id="t0", last_result={}, error_file=None,
                           status="RUNNING", **kw)


def test_trial_status_lines_and_rows():
    from orchestrator.tune_status import TrialStatus

    out, clock = io.StringIO(), Clock()
    status = LiveStatus("abl", stream=out, clock=clock)
    status.add("method=a,seed=0", 2)
    status.add("method=b,seed=0", 2)
    status.add("method=c,seed=0", 2)
    cb = TrialStatus(status, 3)
    a, b, c = _trial("method=a,seed=0"), _trial("method=b,seed=0"), _trial("method=c,seed=0")
    cb.on_trial_start(0, [a], a)
    cb.on_trial_result(0, [a], a, {"epoch": 1, "val/best_AP": -1.0})
    cb.on_trial_result(0, [a], a, {"epoch": 2, "val/best_AP": 0.5})
    a.last_result = {"final/AP": 0.5, "final/best_AP": 0.5, "done": True}
    cb.on_trial_result(0, [a], a, a.last_result)
    cb.on_trial_complete(0, [a], a)
    cb.on_trial_start(0, [b], b)
    b.last_result = {"final/AP": 0.25, "final/best_AP": 0.25, "done": True, "mlflow_run_id": "r1",
                     "already_finished": True}
    cb.on_trial_result(0, [b], b, b.last_result)
    cb.on_trial_complete(0, [b], b)
    c.error_file = "/tune/c/error.txt"
    cb.on_trial_error(0, [c], c)
    text = out.getvalue()
    for line in ("method=a,seed=0: started", "method=a,seed=0: epoch 1\n", "method=a,seed=0: epoch 2 best AP 0.500",
                 "method=a,seed=0: finished (1/3) AP 0.500", "method=b,seed=0: already finished (MLflow run r1); not rerun",
                 "method=b,seed=0: finished (2/3) AP 0.250", "method=c,seed=0: FAILED (3/3): /tune/c/error.txt"):
        assert line in text, line
    rows = status.rows
    assert (rows["method=a,seed=0"].state, rows["method=a,seed=0"].epoch, rows["method=a,seed=0"].best_ap) == \
        ("finished", 2, 0.5)
    assert rows["method=b,seed=0"].state == "finished" and rows["method=c,seed=0"].state == "failed"
    assert pickle.loads(pickle.dumps(cb)).status is None  # Tune pickles its callbacks: no stream, no lock


def test_trial_status_follows_a_restored_grid_and_names_stage_runs():
    from orchestrator.tune_status import TrialStatus

    status = LiveStatus("abl", stream=io.StringIO(), clock=Clock())
    status.add("warm_start/seed=0", 3)
    cb = TrialStatus(status, 1, stage="warm_start")
    done = _trial("seed=0")
    done.status, done.last_result = "TERMINATED", {"epoch": 3, "final/best_AP": 0.125, "done": True}
    cb.on_step_end(0, [done])
    row = status.rows["warm_start/seed=0"]
    assert (row.state, row.epoch, row.best_ap) == ("finished", 3, 0.125)


def test_run_progress_reports_epochs_once_and_the_end():
    out = io.StringIO()
    status = LiveStatus("run", stream=out, clock=Clock())
    progress = RunProgress(status, "run", 3)
    status.open()
    progress.seen({"epoch": 1.0, "val/best_AP": -1.0})
    progress.seen({"epoch": 1.0, "val/best_AP": -1.0, "train/loss": 0.1})
    progress.seen({"epoch": 2.0, "val/best_AP": 0.2})
    progress.stop({"AP": 0.2, "best_AP": 0.2})
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == ["run: epoch 1/3", "run: epoch 2/3 best AP 0.200", "run: finished AP 0.200"]
    assert status.rows["run"].state == "finished"


QUIET = r"""
import logging, sys, warnings
from pathlib import Path
from orchestrator import console
console.setup(verbose=False)
assert console.ray_init_kwargs() == {"log_to_driver": False, "logging_level": "INFO"}
logging.getLogger("mlflow.store.db.utils").info("Creating initial MLflow database tables...")
logging.getLogger("ray._private.authentication").warning("Token authentication is enabled")
logging.getLogger("ray.tune.execution.tune_controller").error("Trial task failed for trial x")
logging.getLogger("ray.tune.tune").error("Trials did not complete: %s", ["x"])
warnings.warn("a deprecation")
console._quiet.attach(Path(sys.argv[1]))
logging.getLogger("ray.train").error("the controller died\nTraceback ...")
print("stdout done")
"""


def test_quiet_setup_sends_ray_and_mlflow_records_to_the_driver_log(tmp_path):
    log = tmp_path / "logs" / "poselab-driver.log"
    run = subprocess.run([sys.executable, "-c", QUIET, str(log)], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout == "stdout done\n"
    assert run.stderr == f"ray error: the controller died (details: {log})\n"  # one line, no traceback
    text = log.read_text()
    for record in ("Creating initial MLflow database tables", "Token authentication is enabled",
                   "Trial task failed for trial x", "Trials did not complete: ['x']", "a deprecation",
                   "the controller died"):
        assert record in text, record


def test_verbose_setup_changes_nothing():
    run = subprocess.run([sys.executable, "-c", "from orchestrator import console; console.setup(verbose=True); "
                          "print(console.is_quiet(), console.ray_init_kwargs())"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert run.stdout.strip() == "False {'logging_level': 'WARNING'}"


def test_both_commands_take_verbose():
    import importlib.util

    from orchestrator.cli import _add_train
    from pose.cli import build_parser

    spec = importlib.util.spec_from_file_location("pipelines_ablation", REPO / "pipelines" / "ablation.py")
    ablation = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ablation)
    assert ablation.parse_args(["--verbose"]).verbose and not ablation.parse_args([]).verbose
    parser = build_parser([_add_train])
    assert parser.parse_args(["train", "x", "--verbose"]).verbose
    assert parser.parse_args(["-v", "train", "x"]).verbose  # the top-level flag is not reset by train's
    assert not parser.parse_args(["train", "x"]).verbose
