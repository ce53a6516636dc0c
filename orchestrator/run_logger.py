"""The logger of one MLflow run, which keeps logging through a tracking-server outage.

Every write (the run's opening with its params and tags, metrics with their steps and timestamps,
params, tags, artifacts, the terminal status) goes straight to MLflow while the server answers. When a
call finds it unreachable (:func:`orchestrator.tracking_outage.is_unreachable`), that record and every
later one go to the run's spool on disk (:mod:`orchestrator.tracking_spool`) instead, so training
goes on and a process that dies loses nothing it had recorded. Later calls retry with a doubling
pause (:class:`orchestrator.tracking_outage.Backoff`), deliver the spool in order once the server
answers, and then write directly again. :meth:`RunLogger.close` (the end of a run) waits for the
server up to the policy's ``wait_s`` and otherwise raises :class:`UndeliveredRecords`, which says what
was not logged, where it is kept and how to deliver it: ``poselab mlflow-replay DIR`` (:func:`replay`).

Opening a run is a record too: when the server is down as a run starts, the run is created (or found
by its key) when the spool is delivered, never twice (:func:`orchestrator.tracking.open_run`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from orchestrator.tracking import RunRequest, open_run
from orchestrator.tracking_outage import WAIT_ENV, Backoff, OutagePolicy, is_unreachable, server_answers
from orchestrator.tracking_spool import Pending, Spool, describe, find_spools

log = logging.getLogger(__name__)

METRICS_PER_BATCH = 900  # MLflow accepts up to 1000 metrics per log_batch
ITEMS_PER_BATCH = 90  # and up to 100 params or tags
REPLAY_COMMAND = "poselab mlflow-replay"


class UndeliveredRecords(RuntimeError):
    """A run ended while its tracking server stayed unreachable: records wait in its spool.

    Attributes:
        spool_dir: where they are kept.
        summary: what they are, in words (counts by kind).
        counts: number of records by kind (``metrics``, ``tags``, ``artifact``, ``status``, ...).
        run_id: the MLflow run ("" when the run itself is not created yet).
    """

    def __init__(self, message: str, spool_dir: Path, summary: str, counts: dict[str, int],
                 run_id: str) -> None:
        super().__init__(message)
        self.spool_dir, self.summary, self.counts, self.run_id = spool_dir, summary, counts, run_id


class RunLogger:
    """Logs one MLflow run (used by a training's driver and its rank-0 worker, one after the other).

    Non-finite metric values are skipped with one warning per key (MLflow's SQLite store refuses NaN
    in some backends and they would break charts); keys are passed through (``val/net1/AP``).

    Args:
        tracking_uri: the MLflow tracking URI.
        spool_dir: the run's spool (``<run dir>/mlflow-spool``); records another process left there
            are delivered first, in order.
        run_id: the run, when it is already open ("" : :meth:`open` it, or it waits in the spool).
        policy: the outage settings (default: :meth:`OutagePolicy.from_env`); MLflow's HTTP client is
            bounded by it in this process.
        label: how messages name the run (default: the run directory's name).
    """

    def __init__(self, tracking_uri: str, spool_dir: str | Path, run_id: str = "",
                 policy: OutagePolicy | None = None, label: str = "") -> None:
        self.tracking_uri = tracking_uri
        self.spool = Spool(spool_dir)
        self.policy = policy or OutagePolicy.from_env()
        self.policy.bound_http_client()
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.label = label or self.spool.directory.parent.name
        self.backoff = Backoff(self.policy, f"run {self.label}")
        self._run_id = run_id
        self._resumed = False
        self._spooling = False
        self._warned: set[str] = set()
        self.reload()

    @property
    def run_id(self) -> str:
        """The MLflow run ("" while its opening waits in the spool)."""
        return self._run_id

    @property
    def resumed(self) -> bool:
        """Whether :meth:`open` found an existing run (known once the opening was delivered)."""
        return self._resumed

    @property
    def pending(self) -> bool:
        """Whether records wait in the spool."""
        return self._spooling

    def reload(self) -> None:
        """Re-read the spool: another process (the training's worker, a killed earlier attempt) may
        have added or delivered records, or opened the run. While records wait, the run id is the one
        the first of them belongs to (the spool's ``run_id``: None when an opening comes first)."""
        self._spooling = self.spool.has_pending()
        state = self.spool.state()
        if self._spooling or not self._run_id:
            self._run_id = state.get("run_id") or ""
            self._resumed = bool(state.get("resumed", self._resumed))

    # ------------------------------------------------------------------ what is logged
    def open(self, request: RunRequest) -> str:
        """Create or find the run (:func:`orchestrator.tracking.open_run`); returns its id, or "" when
        the server is unreachable and the opening waits in the spool."""
        delivered = self._submit({"kind": "open", "request": request.to_dict()})
        return self._run_id if delivered else ""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        ts = int(time.time() * 1000)
        rows = []
        for k, v in metrics.items():
            v = float(v)
            if not math.isfinite(v):
                if k not in self._warned:
                    self._warned.add(k)
                    log.warning("metric %s is %s at step %d: not logged to MLflow", k, v, step)
                continue
            rows.append([k, v, ts, int(step)])
        if rows:
            self._submit({"kind": "metrics", "metrics": rows})

    def log_params(self, params: Mapping[str, str]) -> None:
        if params:
            self._submit({"kind": "params", "params": {k: str(v) for k, v in params.items()}})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if tags:
            self._submit({"kind": "tags", "tags": {k: str(v) for k, v in tags.items()}})

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload ``path``; during an outage a copy of it as it is now is kept in the spool."""
        self._submit({"kind": "artifact", "file": str(path), "artifact_path": artifact_path, "kept": False})

    def log_dict(self, data: Any, artifact_file: str) -> None:
        self._submit({"kind": "dict", "data": data, "artifact_file": artifact_file})

    def finish(self, status: str = "FINISHED") -> None:
        """The run's terminal status (FINISHED, FAILED, KILLED) and end time (now)."""
        self._submit({"kind": "status", "status": status, "end_time": int(time.time() * 1000)})

    # ------------------------------------------------------------------ delivery
    def flush(self) -> bool:
        """Try to deliver the spool now (unless the backoff says wait); True when nothing is pending."""
        self.reload()
        return not self._spooling or self._try_flush()

    def close(self, wait_s: float | None = None) -> None:
        """Deliver everything pending, waiting for the server up to ``wait_s`` (default: the policy's).

        Raises:
            UndeliveredRecords: the server did not answer in time; the message says what was not
                logged, where it is kept and how to deliver it later.
        """
        self.reload()
        wait_s = self.policy.wait_s if wait_s is None else wait_s
        start = time.monotonic()
        while self._spooling:
            if self.backoff.due() and self._try_flush():
                return
            left = start + wait_s - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(max(self.backoff.next_attempt - time.monotonic(), 0.05), left))
        if self._spooling:
            raise self._undelivered(time.monotonic() - start, wait_s)

    def _submit(self, record: dict[str, Any]) -> bool:
        """Deliver ``record`` now, or keep it in the spool (behind the records already there) and try
        to deliver the spool; True when it reached MLflow."""
        if not self._spooling:
            try:
                self._deliver([Pending(-1, record)])
                return True
            except Exception as e:
                if not is_unreachable(e):
                    raise
                self.backoff.failed(self.tracking_uri, e, str(self.spool.directory))
        self._keep(record)
        return self._try_flush()

    def _keep(self, record: dict[str, Any]) -> None:
        """Append ``record`` to the spool (an artifact as a copy of its file)."""
        if not self._spooling:  # the first record of an outage: the spool says whose records these are
            cursor = None if record["kind"] == "open" else self._run_id or None
            self.spool.update_state(run_id=cursor, tracking_uri=self.tracking_uri, label=self.label,
                                    delivered=0)
            self._spooling = True
        if record["kind"] == "artifact" and not record["kept"]:
            record = {**record, "file": self.spool.keep_file(record["file"]), "kept": True}
        self.spool.append(record)

    def _try_flush(self) -> bool:
        """One delivery attempt when the backoff allows it (during an outage, after ``/health``
        answers); True when the spool is empty afterwards."""
        if not self.backoff.due():
            return False
        where = str(self.spool.directory)
        if self.backoff.down and not server_answers(self.tracking_uri, self.policy.probe_timeout_s):
            self.backoff.failed(self.tracking_uri, ConnectionError("no answer from /health"), where)
            return False
        delivered = 0
        self._run_id = self.spool.state().get("run_id") or ""  # the run of the first waiting record
        try:
            for group in _groups(self.spool.pending()):
                self._deliver(group)
                self.spool.mark_delivered(group[-1].line)
                delivered += len(group)
        except Exception as e:
            if not is_unreachable(e):
                raise RuntimeError(f"MLflow refused a record kept in {self.spool.records_path}: {e}") from e
            self.backoff.failed(self.tracking_uri, e, where)
            return False
        self.spool.clear()
        self._spooling = False
        self.backoff.recovered(self.tracking_uri, delivered, where)
        return True

    def _deliver(self, group: list[Pending]) -> None:
        """Write ``group`` (one record, or consecutive metrics records) to MLflow."""
        first = group[0].record
        kind = first["kind"]
        if kind == "open":
            self._run_id, self._resumed = open_run(self.client, self.tracking_uri,
                                                   RunRequest.from_dict(first["request"]))
            if self.spool.state_path.exists():
                self.spool.update_state(run_id=self._run_id, resumed=self._resumed)
            if self._resumed:
                log.info("continuing MLflow run %s (%s)", self._run_id, first["request"]["run_key"])
            return
        if not self._run_id:
            raise RuntimeError(f"run {self.label}: no MLflow run is open (open() it first)")
        run_id = self._run_id
        if kind == "metrics":
            metrics = [Metric(k, v, ts, step) for p in group for k, v, ts, step in p.record["metrics"]]
            for i in range(0, len(metrics), METRICS_PER_BATCH):
                self.client.log_batch(run_id, metrics=metrics[i:i + METRICS_PER_BATCH])
        elif kind == "params":
            params = [Param(k, v) for k, v in first["params"].items()]
            for i in range(0, len(params), ITEMS_PER_BATCH):
                self.client.log_batch(run_id, params=params[i:i + ITEMS_PER_BATCH])
        elif kind == "tags":
            tags = [RunTag(k, v) for k, v in first["tags"].items()]
            for i in range(0, len(tags), ITEMS_PER_BATCH):
                self.client.log_batch(run_id, tags=tags[i:i + ITEMS_PER_BATCH])
        elif kind == "artifact":
            self.client.log_artifact(run_id, first["file"], first["artifact_path"])
        elif kind == "dict":
            self.client.log_dict(run_id, first["data"], first["artifact_file"])
        elif kind == "status":
            self.client.set_terminated(run_id, status=first["status"], end_time=first["end_time"])
        else:
            raise ValueError(f"unknown record kind {kind!r}")

    def _undelivered(self, waited: float, wait_s: float) -> UndeliveredRecords:
        records = self.spool.pending()
        summary = describe([p.record for p in records])
        counts: dict[str, int] = {}
        for p in records:
            counts[p.record["kind"]] = counts.get(p.record["kind"], 0) + 1
        which = f"MLflow run {self._run_id}" if self._run_id else "its MLflow run is not created yet"
        where = self.spool.directory
        message = (
            f"run {self.label} ({which}): {len(records)} MLflow records were not logged because the tracking "
            f"server {self.tracking_uri} did not answer (waited {waited:.0f} s at the end of the run; "
            f"${WAIT_ENV}={wait_s:g}). Not logged: {summary}. They are kept in {where}; once the server is "
            f"up, deliver them with `{REPLAY_COMMAND} {where}` (add --tracking-uri URI when the store is "
            "served elsewhere now, e.g. sqlite:///ABS/mlflow.db after pipelines/ablation.py's loopback "
            "server); rerunning the same training also delivers them first.")
        return UndeliveredRecords(message, where, summary, counts, self._run_id)


def _groups(records: list[Pending]) -> list[list[Pending]]:
    """``records`` in delivery groups: consecutive metrics records merged up to a batch, others alone."""
    groups: list[list[Pending]] = []
    size = 0
    for p in records:
        n = len(p.record["metrics"]) if p.record["kind"] == "metrics" else 0
        if n and groups and groups[-1][0].record["kind"] == "metrics" and size + n <= METRICS_PER_BATCH:
            groups[-1].append(p)
            size += n
        else:
            groups.append([p])
            size = n
    return groups


def replay(paths: list[str | Path], tracking_uri: str | None = None, wait_s: float = 0.0,
           policy: OutagePolicy | None = None) -> list[tuple[Path, str]]:
    """Deliver every spool at or under ``paths`` to ``tracking_uri`` (default: the URI each spool
    recorded), in order, each record once, waiting up to ``wait_s`` in all for an unreachable server;
    returns (spool directory, what was delivered) of each.

    Raises:
        UndeliveredRecords: some spools could not be delivered (the others were); one error naming
            each of them with what it holds.
        FileNotFoundError: a path does not exist.
    """
    deadline = time.monotonic() + wait_s
    done: list[tuple[Path, str]] = []
    failed: list[UndeliveredRecords] = []
    for spool in find_spools(list(paths)):
        state = spool.state()
        uri = tracking_uri or state.get("tracking_uri")
        if not uri:
            raise ValueError(f"{spool.directory} records no tracking URI: pass --tracking-uri")
        summary = spool.summary()
        logger = RunLogger(uri, spool.directory, policy=policy, label=state.get("label", ""))
        try:
            logger.close(max(0.0, deadline - time.monotonic()))
        except UndeliveredRecords as e:
            failed.append(e)
            continue
        done.append((spool.directory, f"{summary} -> MLflow run {logger.run_id} at {uri}"))
    if len(failed) == 1:
        raise failed[0]
    if failed:
        counts: dict[str, int] = {}
        for e in failed:
            for kind, n in e.counts.items():
                counts[kind] = counts.get(kind, 0) + n
        listing = "\n".join(f"  {e.spool_dir}: {e.summary}" for e in failed)
        dirs = " ".join(str(e.spool_dir) for e in failed)
        raise UndeliveredRecords(
            f"the MLflow records of {len(failed)} runs were not logged (the tracking server did not answer; "
            f"${WAIT_ENV}={wait_s:g}); they are kept in their spools:\n{listing}\nOnce the server is up, "
            f"deliver them with `{REPLAY_COMMAND} {dirs}` (add --tracking-uri URI when the store is served "
            "elsewhere now).", failed[0].spool_dir, "; ".join(e.summary for e in failed), counts, "")
    return done
