"""The console of the Ray-backed commands (``pipelines/ablation.py``, ``poselab train``): quiet by default,
with a compact live status of the runs.

Quiet mode (:func:`setup` with ``verbose=False``, the default of both commands):

* Ray's worker, actor and raylet output is not forwarded to the driver (``ray.init(log_to_driver=False)``:
  trial processes' prints, Ray Train's per-checkpoint ``Checkpoint successfully created`` lines, the uv
  virtual-environment messages); it stays in the files of Ray's session log directory;
* the driver's own loggers of Ray (``ray``: the token-authentication notice, the working-dir packaging
  warnings, Tune's and Train's driver logs) and MLflow (``mlflow``, ``alembic``: the database set-up
  lines) and Python warnings go to ``poselab-driver.log`` in that directory; only their ERROR records
  reach the console, as one line each;
* Tune's own console output is off (``RAY_AIR_NEW_OUTPUT=0`` with ``verbose=0``: no "Configuration for
  experiment" box, "View detailed results here" or TensorBoard hint; Ray 2.60 prints those with the new
  output engine even at ``verbose=0``), and so are MLflow's "View run ... at" lines
  (``MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT``).

:class:`LiveStatus` is the status itself: one line per run (state, epoch of total, best AP so far,
time), redrawn in place on a terminal (ANSI cursor movement, at most 4 times a second), or one plain
line per event when the output is not a terminal (a pipe, a file, a Ray job's log) or in verbose mode.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

DRIVER_LOG = "poselab-driver.log"
QUIET_LOGGERS = {"ray": logging.INFO, "mlflow": logging.INFO, "alembic": logging.WARNING,
                 "py.warnings": logging.WARNING}
"""Loggers whose records go to the driver log file in quiet mode (at these levels), ERROR and up also
to the console."""
_DROPPED_ERRORS = ("Trial task failed for trial", "Trials did not complete")
"""ERROR records of Tune's not repeated on the console: the status prints its own line for a failed
trial (they are in the driver log)."""
_BUFFERED = 5000

_quiet: _QuietLogs | None = None
_active: LiveStatus | None = None


def setup(verbose: bool) -> None:
    """Configure this process's console: everything as Ray and MLflow print it (``verbose``), or quiet
    (see the module). Call it before Ray starts and before MLflow is used; once per process."""
    global _quiet
    if verbose or _quiet is not None:
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import mlflow  # noqa: F401  (both configure their loggers on import: ours come after)
    import ray  # noqa: F401

    _quiet = _QuietLogs()
    _quiet.install()


def is_quiet() -> bool:
    return _quiet is not None


def ray_init_kwargs() -> dict[str, object]:
    """``ray.init`` arguments for the console: no forwarded worker output when quiet (its INFO records
    then go to the driver log, not the console)."""
    if _quiet is None:
        return {"logging_level": "WARNING"}
    return {"log_to_driver": False, "logging_level": "INFO"}


def ray_logs_dir() -> str | None:
    """This node's Ray session log directory (``.../session_<date>/logs``), or None without Ray."""
    try:
        import ray._private.worker as worker

        node = worker._global_node
        return node.get_logs_dir_path() if node is not None else None
    except Exception:  # no Ray, or an API that moved: the status just does not say
        return None


def ray_started() -> str | None:
    """Call after ``ray.init``: the quiet driver log goes to Ray's session log directory from now on
    (with what was logged before); returns that directory."""
    logs = ray_logs_dir()
    if _quiet is not None and logs is not None:
        _quiet.attach(Path(logs) / DRIVER_LOG)
    return logs


def write_line(text: str, stream: TextIO | None = None) -> None:
    """Print ``text`` as a line of its own: above the live status while one is drawn."""
    if _active is not None:
        _active.message(text)
    else:
        print(text, file=stream or sys.stdout, flush=True)


class _DriverLog(logging.Handler):
    """Records kept in memory until :meth:`open` names the file, then written to it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._fmt = logging.Formatter("%(asctime)s\t%(levelname)s %(name)s -- %(message)s")
        self.pending: list[logging.LogRecord] = []
        self.file: TextIO | None = None
        self.path: Path | None = None

    def format(self, record: logging.LogRecord) -> str:  # Ray's setup_logger sets every ray handler's formatter
        return self._fmt.format(record)

    def open(self, path: Path) -> None:
        with self.lock:
            if self.file is not None:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file, self.path = open(path, "a", encoding="utf-8"), path
            for record in self.pending:
                self.file.write(self.format(record) + "\n")
            self.pending.clear()
            self.file.flush()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.file is None:
                if len(self.pending) < _BUFFERED:
                    self.pending.append(record)
                return
            self.file.write(self.format(record) + "\n")
            self.file.flush()
        except Exception:
            self.handleError(record)


class _ConsoleErrors(logging.Handler):
    """ERROR records as one console line each (no traceback: it is in the driver log)."""

    def __init__(self, log: _DriverLog) -> None:
        super().__init__(logging.ERROR)
        self.log = log

    def format(self, record: logging.LogRecord) -> str:
        first = record.getMessage().strip().splitlines()
        where = f" (details: {self.log.path})" if self.log.path is not None else ""
        return f"{record.name.split('.')[0]} {record.levelname.lower()}: {first[0] if first else ''}{where}"

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(_DROPPED_ERRORS):
            return
        try:
            write_line(self.format(record), sys.stderr)
        except Exception:
            self.handleError(record)


class _QuietLogs:
    def __init__(self) -> None:
        self.file = _DriverLog()
        self.console = _ConsoleErrors(self.file)

    def install(self) -> None:
        for name, level in QUIET_LOGGERS.items():
            logger = logging.getLogger(name)
            logger.handlers = [self.file, self.console]
            logger.setLevel(level)
            logger.propagate = False
        logging.captureWarnings(True)
        self.sweep()

    def sweep(self) -> None:
        """Loggers below ours that print to the console themselves (``ray.data`` configures its own
        handlers): their console handlers go, their records reach ours."""
        for name, logger in list(logging.root.manager.loggerDict.items()):
            if not isinstance(logger, logging.Logger) or name in QUIET_LOGGERS:
                continue
            if name.split(".")[0] not in QUIET_LOGGERS:
                continue
            consoles = [h for h in logger.handlers if type(h) is logging.StreamHandler
                        or type(h).__name__ == "PlainRayHandler"]
            if consoles:
                for h in consoles:
                    logger.removeHandler(h)
                if not logger.handlers:
                    logger.propagate = True
                else:
                    logger.addHandler(self.console)

    def attach(self, path: Path) -> None:
        self.file.open(path)
        logging.getLogger("ray").setLevel(QUIET_LOGGERS["ray"])  # ray.init set it to its logging_level
        self.sweep()


# ----------------------------------------------------------------------------------------------- status

STATES = ("pending", "running", "retrying", "finished", "stopped", "failed")
SELECTION_STATS = ("AP", "PCKh")
"""The statistics runs select checkpoints on (a task's ``selection_metric``, :mod:`pose.engine.parts`):
AP, or PCKh for MPII; the worker logs ``val/best_<stat>`` and ``final/best_<stat>``."""


def selection_stat(metrics: Mapping[str, Any], prefix: str = "") -> tuple[str, float | None]:
    """(statistic, value) of the first of ``<prefix>AP``, ``<prefix>PCKh`` in ``metrics``; ("AP", None)
    when neither is there."""
    for stat in SELECTION_STATS:
        if prefix + stat in metrics:
            return stat, metrics[prefix + stat]
    return SELECTION_STATS[0], None


@dataclass
class _Row:
    label: str
    total: int | None = None
    state: str = "pending"
    epoch: int | None = None
    best_ap: float | None = None
    best_stat: str = "AP"
    started: float | None = None
    ended: float | None = None


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class LiveStatus:
    """The status of a set of runs: in place on a terminal (``live``), plain event lines otherwise.

    ``update`` changes a run's row; ``event`` prints a plain ``[  12s] <run>: <text>`` line (only when not
    live: the row says it); ``message`` prints a line in both modes (above the block when live). While
    live, this process's console log lines (the root logger's and the quiet console's) go above the
    block too, so nothing tears it.

    Args:
        title: the block's first line (e.g. the ablation's name).
        stream: default ``sys.stdout``.
        live: draw in place (default: when ``stream`` is a terminal).
        min_interval: seconds between two redraws at least.
    """

    def __init__(self, title: str = "", stream: TextIO | None = None, live: bool | None = None,
                 min_interval: float = 0.25, clock: Callable[[], float] = time.monotonic) -> None:
        self.title = title
        self.stream = stream or sys.stdout
        self.live = bool(getattr(self.stream, "isatty", lambda: False)()) if live is None else live
        self.min_interval = min_interval
        self.clock = clock
        self.t0 = clock()
        self.rows: dict[str, _Row] = {}
        self.logs: str | None = None
        self._lock = threading.RLock()
        self._drawn = 0  # lines of the block now on screen
        self._last_draw = -1e9
        self._dirty = False
        self._open = False
        self._swapped: list[tuple[logging.StreamHandler, TextIO]] = []

    # --- what the callers say
    def add(self, label: str, total: int | None = None) -> None:
        with self._lock:
            self.rows.setdefault(label, _Row(label, total))

    def set_logs(self, logs: str | None) -> None:
        """Where Ray's logs are: the block's last line, or one plain line."""
        if not logs or logs == self.logs:
            return
        with self._lock:
            self.logs = logs
            if self.live:
                self._changed()
            else:
                self._print(f"Ray logs (workers, trials, this driver's {DRIVER_LOG}): {logs}")

    def update(self, label: str, state: str | None = None, epoch: int | None = None, best_ap: float | None = None,
               total: int | None = None, best_stat: str | None = None) -> None:
        """Change a run's row; ``best_ap`` is the best value of ``best_stat`` (AP unless given)."""
        with self._lock:
            row = self.rows.setdefault(label, _Row(label))
            now = self.clock()
            if state is not None and state != row.state:
                if state == "running" and row.started is None:
                    row.started = now
                if state in ("finished", "stopped", "failed"):
                    row.ended = now
                elif row.ended is not None and state in ("running", "retrying"):
                    row.ended = None
                row.state = state
            if epoch is not None:
                row.epoch = epoch
            if best_ap is not None and best_ap >= 0:  # -1: not evaluated yet
                row.best_ap = best_ap
            if best_stat is not None:
                row.best_stat = best_stat
            if total is not None:
                row.total = total
            self._changed()

    def event(self, label: str, text: str) -> None:
        if not self.live:
            self._print(f"[{self.clock() - self.t0:6.0f}s] {label}: {text}")

    def note(self, label: str, text: str) -> None:
        """An event that is printed in both modes (a failure): ``[  12s] <run>: <text>``."""
        self.message(f"[{self.clock() - self.t0:6.0f}s] {label}: {text}")

    def message(self, text: str) -> None:
        with self._lock:
            if not (self.live and self._open):
                self._print(text)
                return
            self.stream.write(self._erase() + text + "\n" + self._block())
            self.stream.flush()
            self._last_draw = self.clock()

    def tick(self) -> None:
        """Redraw when something changed, and each second (the clocks)."""
        if not (self.live and self._open):
            return
        with self._lock:
            since = self.clock() - self._last_draw
            if self._dirty and since >= self.min_interval or since >= 1.0:
                self._draw()

    # --- the block's life
    def open(self) -> LiveStatus:
        """Start drawing (live) and route console log lines above the block."""
        global _active
        with self._lock:
            if self._open:
                return self
            self._open = True
            if self.live:
                _active = self
                for handler in logging.getLogger().handlers:
                    if type(handler) is logging.StreamHandler and handler.stream in (sys.stdout, sys.stderr):
                        self._swapped.append((handler, handler.stream))
                        handler.setStream(_Above(self))
                self._draw()
        return self

    def close(self) -> None:
        """Draw the final state and leave it on screen; later output goes below it."""
        global _active
        with self._lock:
            if not self._open:
                return
            if self.live:
                self._draw()
                for handler, stream in self._swapped:
                    handler.setStream(stream)
                self._swapped.clear()
                if _active is self:
                    _active = None
            self._open = False
            self._drawn = 0

    def __enter__(self) -> LiveStatus:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- drawing
    def lines(self, width: int | None = None, height: int | None = None) -> list[str]:
        """The block: a summary line, a line per run (the most relevant ones when the terminal is too
        short for all), where the logs are."""
        size = shutil.get_terminal_size((100, 24))
        width = width or size.columns
        height = height or size.lines
        now = self.clock()
        rows = list(self.rows.values())
        counts = {s: sum(r.state == s for r in rows) for s in STATES}
        done = counts["finished"] + counts["stopped"]
        head = f"{self.title}: " if self.title else ""
        parts = [f"{done}/{len(rows)} done"] + [f"{counts[s]} {s}" for s in ("running", "retrying", "failed", "pending")
                                                 if counts[s]]
        out = [f"{head}{', '.join(parts)}  [{_clock(now - self.t0)}]"]
        room = max(1, height - 3 - (1 if self.logs else 0))
        shown = rows if len(rows) <= room else self._most_relevant(rows, room - 1)
        name_w = min(max((len(r.label) for r in shown), default=0), max(16, width - 50))
        for r in shown:
            epoch = "" if r.state == "pending" and r.epoch is None else (
                f"epoch {r.epoch or 0}" + (f"/{r.total}" if r.total else ""))
            ap = f"best {r.best_stat} {r.best_ap:.3f}" if r.best_ap is not None else ""
            took = (_clock((r.ended or now) - r.started) if r.started is not None else "")
            label = r.label if len(r.label) <= name_w else r.label[: name_w - 1] + "~"
            out.append(f"  {label:<{name_w}}  {r.state:<8}  {epoch:<11}  {ap:<13}  {took}".rstrip())
        if len(shown) < len(rows):
            hidden = [r for r in rows if r not in shown]
            hc = {s: sum(r.state == s for r in hidden) for s in STATES}
            out.append(f"  ... {len(hidden)} more: " + ", ".join(f"{n} {s}" for s, n in hc.items() if n))
        if self.logs:
            out.append(f"Ray logs: {self.logs}")
        return [line if len(line) < width else line[: max(1, width - 2)] + "~" for line in out]

    @staticmethod
    def _most_relevant(rows: list[_Row], room: int) -> list[_Row]:
        order = {"failed": 0, "running": 1, "retrying": 1, "finished": 2, "stopped": 2, "pending": 3}
        ranked = sorted(rows, key=lambda r: (order[r.state], -(r.ended or 0.0) if r.state in ("finished", "stopped")
                                             else 0.0))
        keep = {id(r) for r in ranked[:room]}
        return [r for r in rows if id(r) in keep]

    def _changed(self) -> None:
        self._dirty = True
        if self.live and self._open and self.clock() - self._last_draw >= self.min_interval:
            self._draw()

    def _erase(self) -> str:
        """Back to the block's first line, and clear from there down."""
        return (f"\r\x1b[{self._drawn}A" if self._drawn else "\r") + "\x1b[J"

    def _block(self) -> str:
        lines = self.lines()
        self._drawn = len(lines)
        return "".join(line + "\n" for line in lines)

    def _draw(self) -> None:
        self.stream.write(self._erase() + self._block())
        self.stream.flush()
        self._last_draw = self.clock()
        self._dirty = False

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class _Above:
    """A stream for logging handlers while a status is live: each line goes above the block."""

    def __init__(self, status: LiveStatus) -> None:
        self.status = status
        self.buffer = ""

    def write(self, text: str) -> int:
        self.buffer += text
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            self.status.message(line)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


class RunProgress:
    """The live status of one training run (``poselab train``), polled from its MLflow run on a thread
    every ``interval`` seconds: the worker logs ``epoch`` and ``val/best_AP`` each epoch, and the driver
    reaches the tracking store wherever the workers run."""

    def __init__(self, status: LiveStatus, label: str, total: int, interval: float = 2.0) -> None:
        self.status, self.label, self.total, self.interval = status, label, total, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._epoch = -1
        status.add(label, total)

    def start(self, tracking_uri: str, run_id: str) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri)
        self.status.set_logs(ray_logs_dir())
        self.status.update(self.label, state="running")
        self.status.open()
        self.status.event(self.label, "started")

        def poll() -> None:
            while not self._stop.wait(self.interval):
                self.status.tick()
                try:
                    metrics = client.get_run(run_id).data.metrics
                except Exception:  # the store is busy (SQLite) or restarting: the next poll sees it
                    continue
                self.seen(metrics)

        self._thread = threading.Thread(target=poll, name="poselab-status", daemon=True)
        self._thread.start()

    def seen(self, metrics: dict[str, float]) -> None:
        """A poll's latest metrics of the run."""
        epoch = metrics.get("epoch")
        if epoch is None or int(epoch) == self._epoch:
            return
        self._epoch = int(epoch)
        stat, ap = selection_stat(metrics, "val/best_")
        self.status.update(self.label, epoch=self._epoch, best_ap=ap, best_stat=stat)
        self.status.event(self.label, f"epoch {self._epoch}/{self.total}"
                          + (f" best {stat} {ap:.3f}" if ap is not None and ap >= 0 else ""))

    def stop(self, metrics: dict[str, float] | None = None) -> None:
        """The run ended: with its final ``metrics``, or failed (None; the caller says why)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if metrics is not None:
            stat, ap = selection_stat(metrics)
            best = selection_stat(metrics, "best_")[1]
            self.status.update(self.label, state="finished", best_ap=ap if best is None else best, best_stat=stat)
            self.status.event(self.label, "finished" + (f" {stat} {ap:.3f}" if ap is not None else ""))
        else:
            self.status.update(self.label, state="failed")
            self.status.event(self.label, "FAILED")
        self.status.close()
