"""The on-disk queue of MLflow records a run could not deliver: ``<run dir>/mlflow-spool/``.

One spool per run directory (one MLflow run at a time: the run's key is its directory, or the
ablation's child key):

* ``records.jsonl``: one JSON record per line, appended in the order they were logged; kinds ``open``
  (create or find the run: experiment, key, name, params, tags), ``metrics`` (``[key, value,
  timestamp ms, step]`` rows), ``params``, ``tags``, ``artifact`` (a copy of the file under
  ``files/``, taken when it was logged), ``dict`` (a JSON artifact, inline) and ``status`` (the
  terminal status and end time).
* ``state.json``: how many records were delivered (rewritten atomically after each delivery, so a
  process killed mid-delivery resends at most the last batch: every kind is idempotent in MLflow),
  the tracking URI and run key, and the run id once the run exists.

Only records that could not be delivered land here; once all are delivered, ``records.jsonl`` and
``files/`` are removed and ``state.json`` keeps the run id. The spool knows nothing of MLflow: the
delivery is :mod:`orchestrator.run_logger`'s.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SPOOL_DIR = "mlflow-spool"
RECORDS = "records.jsonl"
STATE = "state.json"
FILES = "files"
KINDS = ("open", "metrics", "params", "tags", "artifact", "dict", "status")


@dataclass(frozen=True)
class Pending:
    """A record not yet delivered, and its line number in ``records.jsonl``."""

    line: int
    record: dict[str, Any]


class Spool:
    """The spool directory of one run.

    Args:
        directory: ``<run dir>/mlflow-spool`` (created on the first record).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.records_path = self.directory / RECORDS
        self.state_path = self.directory / STATE

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """``{"delivered": lines, "run_id": str | None, "tracking_uri", "run_key", ...}`` ({} if none)."""
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}

    def update_state(self, **changes: Any) -> None:
        """Merge ``changes`` into ``state.json`` (write to a temporary file, then rename)."""
        state = {**self.state(), **changes}
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_path)

    @property
    def run_id(self) -> str | None:
        return self.state().get("run_id")

    # ------------------------------------------------------------------ records
    def has_pending(self) -> bool:
        """Whether records wait for delivery (cheap: the records file exists)."""
        return self.records_path.exists()

    def append(self, record: dict[str, Any]) -> None:
        """Append ``record`` (a dict with a ``kind``); a line a killed writer left unfinished is closed
        first, so it stays one unreadable line and this record stays readable."""
        if record.get("kind") not in KINDS:
            raise ValueError(f"unknown spool record kind {record.get('kind')!r}")
        line = json.dumps(record)  # a NaN in a logged dict is written as NaN, which json reads back
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.records_path, "ab+") as f:
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write(line.encode() + b"\n")
            f.flush()

    def keep_file(self, path: str | Path) -> str:
        """A copy of ``path`` under ``files/<n>/`` (same name: the artifact keeps it), as it is now."""
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"artifact {source} does not exist")
        files = self.directory / FILES
        files.mkdir(parents=True, exist_ok=True)
        n = sum(1 for _ in files.iterdir())
        while (files / str(n)).exists():
            n += 1
        target = files / str(n) / source.name
        target.parent.mkdir()
        shutil.copy2(source, target)
        return str(target)

    def pending(self) -> list[Pending]:
        """The undelivered records in order; an unreadable line (a writer killed mid-line) is skipped
        with a warning."""
        if not self.records_path.exists():
            return []
        delivered = int(self.state().get("delivered", 0))
        out: list[Pending] = []
        with open(self.records_path, encoding="utf-8", errors="replace") as f:
            for number, text in enumerate(f):
                if number < delivered or not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError:
                    log.warning("%s line %d is unreadable (a writer killed mid-line): skipped",
                                self.records_path, number + 1)
                    continue
                out.append(Pending(number, record))
        return out

    def mark_delivered(self, through_line: int) -> None:
        """Records up to line ``through_line`` (included) are in MLflow."""
        self.update_state(delivered=through_line + 1)

    def clear(self) -> None:
        """Everything was delivered: drop the records and kept files (``state.json`` stays)."""
        self.records_path.unlink(missing_ok=True)
        shutil.rmtree(self.directory / FILES, ignore_errors=True)
        self.update_state(delivered=0)

    def summary(self, records: list[Pending] | None = None) -> str:
        """What waits, in words: ``"120 metric values (40 steps), 2 tag records, 1 artifact, the final
        status FINISHED"``."""
        records = self.pending() if records is None else records
        return describe([p.record for p in records])


def describe(records: list[dict[str, Any]]) -> str:
    """Counts of ``records`` by kind, in words ("nothing" when empty)."""
    kinds = Counter(r["kind"] for r in records)
    parts: list[str] = []
    if kinds["open"]:
        params = max(len(r["request"]["params"]) for r in records if r["kind"] == "open")
        parts.append(f"the run's opening with its {params} params"
                     + (f" ({kinds['open']} openings)" if kinds["open"] > 1 else ""))
    if kinds["metrics"]:
        rows = [row for r in records if r["kind"] == "metrics" for row in r["metrics"]]
        steps = {row[3] for row in rows}
        parts.append(f"{len(rows)} metric values ({len(steps)} steps, {min(steps)}..{max(steps)})")
    for kind, word in (("params", "param"), ("tags", "tag")):
        if kinds[kind]:
            n = sum(len(r[kind]) for r in records if r["kind"] == kind)
            parts.append(f"{n} {word}{'s' if n != 1 else ''}")
    files = kinds["artifact"] + kinds["dict"]
    if files:
        parts.append(f"{files} artifact{'s' if files != 1 else ''}")
    statuses = [r["status"] for r in records if r["kind"] == "status"]
    if statuses:
        parts.append(f"the final status {statuses[-1]}")
    return ", ".join(parts) if parts else "nothing"


def find_spools(paths: list[str | Path]) -> list[Spool]:
    """The spools with undelivered records at or under ``paths`` (a spool directory, a run directory,
    or any directory above run directories), in path order."""
    found: dict[Path, Spool] = {}
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        if (path / RECORDS).is_file():
            candidates = [path / RECORDS]
        else:
            candidates = sorted(path.rglob(f"{SPOOL_DIR}/{RECORDS}"))
        for records in candidates:
            found.setdefault(records.parent.resolve(), Spool(records.parent.resolve()))
    return [found[k] for k in sorted(found)]
