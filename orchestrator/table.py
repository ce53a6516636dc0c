"""The paper-style result table of an ablation, built from its MLflow runs.

The MLflow contract (written by the ablation driver, read here):

* parent run, one per ablation launch: tags ``poselab.ablation`` = ablation name, ``poselab.role`` =
  ``parent`` and ``poselab.axes`` = JSON list of the axis names in spec order;
* trial run, a child of the parent: tags ``mlflow.parentRunId`` = parent run id, ``poselab.role`` =
  ``trial``, ``poselab.trial_id``, one ``poselab.axis.<axis name>`` per axis holding the value as JSON
  (``"posedual"``, ``100``, ``0``), ``poselab.collapsed`` = ``true`` / ``false``, and, for a
  diagnosis-only run, ``poselab.diagnosis`` (``oracle_teacher``: an oracle teacher, set by
  ``orchestrator.train.run_training`` from the config); the run status
  (FINISHED / FAILED / KILLED / RUNNING / SCHEDULED);
* final metrics of the trial's primary network: ``final/<stat>`` (``final/AP``, ``final/AP50``, ...),
  COCO statistics in [0, 1]; MPII's PCKh statistics likewise (``final/PCKh``, ``final/PCKh_0.1``,
  ``final/PCKh_Head``, ...);
* warm-start stage runs (``orchestrator.stage_table``): children too, but ``poselab.role`` = ``stage``
  and ``poselab.stage`` = ``warm_start``, so they never enter the table; a line under it gives their
  metric by seed.

:func:`parent_tags` and :func:`trial_tags` build those tags. The newest parent run of an ablation is
the one read; a trial id logged by several child runs (a retried trial) counts once, by its newest run.

Cells are ``mean ± std (n)`` over seeds: the sample standard deviation (ddof 1) of the FINISHED trials
that logged the statistic; COCO statistics (AP*, AR*) and PCKh statistics (PCKh*) are shown x100 with
one decimal. Failed, killed and unfinished trials are counted, not averaged: ``41.2 ± 0.3 (2 of 3; 1
failed)``. Collapsed trials
are averaged and the cell is marked ``†`` with a footnote naming them. A cell holding a diagnosis-only
trial (an oracle teacher) is marked ``‡`` with a footnote naming the trials: ``‡ oracle teacher
(diagnosis only): ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from pose.evaluation.pckh import PCKH_STAT_NAMES

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

TAG_ABLATION = "poselab.ablation"
TAG_ROLE = "poselab.role"
TAG_AXES = "poselab.axes"
TAG_TRIAL_ID = "poselab.trial_id"
TAG_AXIS_PREFIX = "poselab.axis."
TAG_COLLAPSED = "poselab.collapsed"
TAG_DIAGNOSIS = "poselab.diagnosis"
TAG_PARENT_RUN = "mlflow.parentRunId"
ROLE_PARENT = "parent"
ROLE_TRIAL = "trial"
ROLE_STAGE = "stage"
TAG_STAGE = "poselab.stage"
FINAL_PREFIX = "final/"

FINISHED = "FINISHED"
_UNFINISHED = {"FAILED": "failed", "KILLED": "killed", "RUNNING": "running", "SCHEDULED": "running"}
COCO_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
COLLAPSE_MARK = "†"
DIAGNOSIS_MARK = "‡"
DIAGNOSIS_LABELS = {"oracle_teacher": "oracle teacher (diagnosis only)"}
"""How a footnote names each ``poselab.diagnosis`` value (others: ``diagnosis <value>``)."""
MISSING_CELL = "—"
TABLE_JSON = "results/table.json"
TABLE_CSV = "results/table.csv"
TABLE_MD = "results/table.md"

# Canonical value order of the named axes (other values: numbers ascending, else first seen). The
# augmentation order is that of orchestrator.ablation_spec.AUGMENTATIONS (not imported: it needs torch).
_AXIS_ORDER: dict[str, tuple[str, ...]] = {
    "method": ("supervised", "posecons", "posedual"),
    "augmentation": ("affine", "joint_cutout", "randaugment", "joint_cutout+randaugment"),
    "embedding": ("ae", "ae-r8", "ce"),
}


class TableError(ValueError):
    """No such experiment, ablation or statistic."""


# ---------------------------------------------------------------------------------------------- contract
def parent_tags(ablation: str, axes: Sequence[str]) -> dict[str, str]:
    """The tags of an ablation's parent run."""
    return {TAG_ABLATION: ablation, TAG_ROLE: ROLE_PARENT, TAG_AXES: json.dumps(list(axes))}


def trial_tags(parent_run_id: str, trial_id: str, axes: Mapping[str, Any], collapsed: bool | None = None
               ) -> dict[str, str]:
    """The tags of a trial run (``poselab.collapsed`` only when ``collapsed`` is given)."""
    tags = {TAG_PARENT_RUN: parent_run_id, TAG_ROLE: ROLE_TRIAL, TAG_TRIAL_ID: trial_id}
    tags.update({f"{TAG_AXIS_PREFIX}{name}": json.dumps(value) for name, value in axes.items()})
    if collapsed is not None:
        tags[TAG_COLLAPSED] = "true" if collapsed else "false"
    return tags


# ---------------------------------------------------------------------------------------------- collect
@dataclass(frozen=True)
class AblationRun:
    """The parent run of an ablation: where it is, its name and its axes in spec order."""

    run_id: str
    ablation: str
    experiment_id: str
    experiment_name: str
    axes: tuple[str, ...]
    start_time: int | None
    status: str


def _search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000,
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _axis_value(text: str | None) -> Any:
    """A ``poselab.axis.*`` tag's value (JSON; lists become tuples so they can be grouped)."""
    if text is None:
        return None
    try:
        return _hashable(json.loads(text))
    except json.JSONDecodeError:
        return text


def _stat_order(stats: set[str]) -> list[str]:
    known = [s for s in (*COCO_STATS, *PCKH_STAT_NAMES) if s in stats]
    return known + sorted(stats - set(known))


def _newest(runs: list[Run]) -> Run:
    return max(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def find_parent(client: MlflowClient, experiment_name: str, ablation: str | None = None) -> AblationRun:
    """The newest parent run of ``ablation`` (or of any ablation) in the experiment.

    Raises:
        TableError: no such experiment, or no parent run (of that ablation) in it.
    """
    exp = client.get_experiment_by_name(experiment_name)
    if exp is None or exp.lifecycle_stage == "deleted":
        names = sorted(e.name for e in client.search_experiments())
        raise TableError(f"no MLflow experiment named {experiment_name!r} "
                         f"(experiments: {', '.join(names) or 'none'})")
    parents = _search_all(client, exp.experiment_id, f"tags.`{TAG_ROLE}` = '{ROLE_PARENT}'")
    chosen = [r for r in parents if ablation is None or r.data.tags.get(TAG_ABLATION) == ablation]
    if not chosen:
        known = sorted({r.data.tags.get(TAG_ABLATION, "?") for r in parents})
        what = f"of ablation {ablation!r} " if ablation is not None else ""
        raise TableError(f"no parent run {what}in experiment {experiment_name!r} "
                         f"(tag {TAG_ROLE}={ROLE_PARENT}; ablations there: {', '.join(known) or 'none'})")
    run = _newest(chosen)
    axes_tag = run.data.tags.get(TAG_AXES)
    axes: tuple[str, ...] = ()
    if axes_tag is not None:
        try:
            axes = tuple(json.loads(axes_tag))
        except (json.JSONDecodeError, TypeError):
            log.warning("parent run %s: tag %s is not a JSON list (%r)", run.info.run_id, TAG_AXES, axes_tag)
    return AblationRun(run.info.run_id, run.data.tags.get(TAG_ABLATION, ""), exp.experiment_id,
                       experiment_name, axes, run.info.start_time, run.info.status)


def collect_trials(client: MlflowClient, experiment_name: str, ablation: str | None = None
                   ) -> tuple[AblationRun, pd.DataFrame]:
    """The parent run and one row per trial of the newest parent run of ``ablation``.

    Columns: ``trial_id``, ``run_id``, one column per axis (parsed values), ``status``, ``collapsed``
    (bool), ``diagnosis`` (the ``poselab.diagnosis`` tag, "" for an ordinary trial), ``attempts`` (child
    runs with this trial id; the newest is the row), then one column per
    ``final/<stat>`` metric named ``<stat>`` (NaN where a run did not log it). Rows are ordered by run
    start time. When the parent has no ``poselab.axes`` tag, the axes are taken from the children's
    ``poselab.axis.*`` tags (order of first appearance) with a warning.

    Raises:
        TableError: no such experiment or ablation.
    """
    parent = find_parent(client, experiment_name, ablation)
    query = f"tags.`{TAG_PARENT_RUN}` = '{parent.run_id}' and tags.`{TAG_ROLE}` = '{ROLE_TRIAL}'"
    children = _search_all(client, parent.experiment_id, query)
    by_trial: dict[str, list[Run]] = {}
    for run in children:
        by_trial.setdefault(run.data.tags.get(TAG_TRIAL_ID, run.info.run_id), []).append(run)
    runs = sorted((_newest(rs) for rs in by_trial.values()),
                  key=lambda r: (r.info.start_time or 0, r.info.run_id))

    axes = parent.axes
    if not axes and runs:
        seen = dict.fromkeys(k[len(TAG_AXIS_PREFIX):] for r in runs for k in r.data.tags if
                             k.startswith(TAG_AXIS_PREFIX))
        axes = tuple(seen)
        log.warning("parent run %s has no %s tag: axes taken from the trials: %s", parent.run_id, TAG_AXES,
                    ", ".join(axes))
        parent = dataclasses.replace(parent, axes=axes)
    stats = _stat_order({k[len(FINAL_PREFIX):] for r in runs for k in r.data.metrics
                         if k.startswith(FINAL_PREFIX)})
    rows = []
    for run in runs:
        tags = run.data.tags
        trial_id = tags.get(TAG_TRIAL_ID, run.info.run_id)
        row: dict[str, Any] = {"trial_id": trial_id, "run_id": run.info.run_id}
        for axis in axes:
            row[axis] = _axis_value(tags.get(TAG_AXIS_PREFIX + axis))
        row["status"] = run.info.status
        row["collapsed"] = tags.get(TAG_COLLAPSED, "false").strip().lower() == "true"
        row["diagnosis"] = tags.get(TAG_DIAGNOSIS, "").strip()
        row["attempts"] = len(by_trial[trial_id])
        for stat in stats:
            row[stat] = run.data.metrics.get(FINAL_PREFIX + stat, math.nan)
        rows.append(row)
    columns = ["trial_id", "run_id", *axes, "status", "collapsed", "diagnosis", "attempts", *stats]
    df = pd.DataFrame(rows, columns=columns)
    for axis in axes:  # keep the values' Python types (an int axis with a missing tag must not turn float)
        df[axis] = pd.Series([row[axis] for row in rows], dtype=object)
    return parent, df


# ---------------------------------------------------------------------------------------------- numbers
@dataclass(frozen=True)
class _Layout:
    rows: tuple[str, ...]
    col: str | None
    fixed: tuple[tuple[str, Any], ...]


def _layout(df: pd.DataFrame, axes: Sequence[str], row_axes: Sequence[str], col_axis: str | None,
            seed_axis: str | None) -> _Layout:
    missing = [a for a in axes if a not in df.columns]
    if missing:
        raise TableError(f"axis column(s) {', '.join(missing)} missing from the trials table")
    col = col_axis if col_axis in axes else None
    rows = [a for a in row_axes if a in axes and a != col]
    fixed = []
    for axis in axes:
        if axis in rows or axis in (col, seed_axis):
            continue
        if df[axis].nunique(dropna=False) > 1:
            rows.append(axis)
        elif len(df):
            fixed.append((axis, df[axis].iloc[0]))
    return _Layout(tuple(rows), col, tuple(fixed))


def _order_key(axis: str, values: Sequence[Any]) -> dict[Any, int]:
    """Position of each value of an axis: canonical for method / augmentation, ascending numbers, else
    first appearance."""
    unique = list(dict.fromkeys(values))
    canonical = _AXIS_ORDER.get(axis)
    if canonical is not None:
        ordered = [v for v in canonical if v in unique] + [v for v in unique if v not in canonical]
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in unique):
        ordered = sorted(unique)
    else:
        ordered = unique
    return {v: i for i, v in enumerate(ordered)}


def default_scale(stat: str) -> float:
    """100 for COCO statistics (AP*, AR*) and PCKh statistics (PCKh*): logged in [0, 1], shown x100; else 1."""
    return 100.0 if stat.startswith(("AP", "AR", "PCKh")) else 1.0


def table_numbers(df: pd.DataFrame, axes: Sequence[str], metric: str = "AP",
                  row_axes: Sequence[str] = ("method", "augmentation"), col_axis: str | None = "label_budget",
                  seed_axis: str | None = "seed", stats: Sequence[str] | None = None) -> pd.DataFrame:
    """Long-form numbers of the table: one row per (row axes, column axis value, statistic).

    Columns: the row axes, the column axis, ``stat``, ``mean`` and ``std`` (in logged units, std with
    ddof 1, NaN below 2 values), ``n`` (trials averaged), ``n_runs`` (trials in the cell), ``n_failed``,
    ``n_killed``, ``n_running``, ``n_missing`` (finished without the statistic), ``n_collapsed``
    (averaged trials that collapsed), ``collapsed_trials`` and ``excluded_trials`` (space-separated
    trial ids), ``diagnosis_trials`` (the cell's diagnosis-only trials, whatever their status, space
    separated; needs a ``diagnosis`` column, else ""). ``stats``: the statistics to include (default:
    every ``final/`` statistic present).
    ``attrs`` holds ``metric``, ``row_axes``, ``col_axis`` and ``fixed`` (single-valued axes not shown).

    Raises:
        TableError: ``metric`` was logged by no finished trial, or an axis column is missing.
    """
    layout = _layout(df, axes, row_axes, col_axis, seed_axis)
    reserved = {"trial_id", "run_id", "status", "collapsed", "diagnosis", "attempts", *axes}
    present = [c for c in df.columns if c not in reserved]
    finished = df["status"] == FINISHED
    if metric not in present and finished.any():
        raise TableError(f"no finished trial logged {FINAL_PREFIX}{metric} (logged: "
                         f"{', '.join(FINAL_PREFIX + s for s in present) or 'none'})")
    wanted = list(stats) if stats is not None else (present if metric in present else [metric, *present])
    keys = [*layout.rows, *([layout.col] if layout.col else [])]
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(*(df[k] for k in keys)) if keys else [()] * len(df)):
        groups.setdefault(tuple(key), []).append(i)
    orders = [_order_key(k, list(df[k])) for k in keys]
    ordered = sorted(groups, key=lambda key: tuple(o.get(v, len(o)) for o, v in zip(orders, key)))
    entries = []
    for key in ordered:
        group = df.iloc[groups[key]]
        finished_here = group["status"] == FINISHED
        diagnosed = _diagnosed(group)
        counts = {f"n_{label}": 0 for label in ("failed", "killed", "running")}
        for status in group.loc[~finished_here, "status"]:
            counts[f"n_{_UNFINISHED.get(status, 'running')}"] += 1
        for stat in wanted:
            values = group[stat] if stat in group else pd.Series(math.nan, index=group.index)
            used = finished_here & values.notna()
            taken = values[used]
            entries.append({
                **dict(zip(keys, key)), "stat": stat,
                "mean": float(taken.mean()) if len(taken) else math.nan,
                "std": float(taken.std(ddof=1)) if len(taken) > 1 else math.nan,
                "n": int(used.sum()), "n_runs": len(group), **counts,
                "n_missing": int((finished_here & values.isna()).sum()),
                "n_collapsed": int((used & group["collapsed"]).sum()),
                "collapsed_trials": " ".join(group.loc[used & group["collapsed"], "trial_id"]),
                "excluded_trials": " ".join(group.loc[~used, "trial_id"]),
                "diagnosis_trials": " ".join(group.loc[diagnosed, "trial_id"]),
            })
    columns = [*keys, "stat", "mean", "std", "n", "n_runs", "n_failed", "n_killed", "n_running", "n_missing",
               "n_collapsed", "collapsed_trials", "excluded_trials", "diagnosis_trials"]
    out = pd.DataFrame(entries, columns=columns)
    for k in keys:
        out[k] = pd.Series([e[k] for e in entries], dtype=object)
    out.attrs = {"metric": metric, "row_axes": list(layout.rows), "col_axis": layout.col,
                 "fixed": [list(f) for f in layout.fixed]}
    return out


def _diagnosed(df: pd.DataFrame) -> pd.Series:
    """Which rows are diagnosis-only trials (a non-empty ``diagnosis``; none without the column)."""
    if "diagnosis" not in df:
        return pd.Series(False, index=df.index)
    return df["diagnosis"].fillna("").astype(str).str.len() > 0


def diagnosis_label(value: str) -> str:
    """The footnote's name of a ``poselab.diagnosis`` value."""
    return DIAGNOSIS_LABELS.get(value, f"diagnosis {value}")


# ---------------------------------------------------------------------------------------------- table
def _fmt(x: float, scale: float) -> str:
    return f"{x * scale:.1f}"


def format_cell(entry: Mapping[str, Any], scale: float) -> str:
    """``43.7 ± 0.5 (3)``, ``41.2 ± 0.3 (2 of 3; 1 failed)``, ``— (0 of 1; 1 running)``; ``†`` when
    collapsed trials were averaged, ``‡`` when the cell holds diagnosis-only trials."""
    n, runs = int(entry["n"]), int(entry["n_runs"])
    if n == 0:
        text = MISSING_CELL
    elif n == 1:
        text = _fmt(entry["mean"], scale)
    else:
        text = f"{_fmt(entry['mean'], scale)} ± {_fmt(entry['std'], scale)}"
    notes = [f"{entry[f'n_{k}']} {k}" for k in ("failed", "killed", "running") if entry[f"n_{k}"]]
    if entry["n_missing"]:
        notes.append(f"{entry['n_missing']} without {entry['stat']}")
    count = f"{n}" if n == runs else f"{n} of {runs}"
    text += f" ({'; '.join([count, ', '.join(notes)]) if notes else count})"
    return (text + (COLLAPSE_MARK if entry["n_collapsed"] else "")
            + (DIAGNOSIS_MARK if entry.get("diagnosis_trials") else ""))


def value_label(value: Any) -> str:
    """An axis value as the table shows it (tuples as compact JSON)."""
    if isinstance(value, tuple):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def build_table(df: pd.DataFrame, axes: Sequence[str], metric: str = "AP",
                row_axes: Sequence[str] = ("method", "augmentation"), col_axis: str | None = "label_budget",
                seed_axis: str | None = "seed", scale: float | None = None) -> pd.DataFrame:
    """The paper-style table of ``metric`` (cells are strings, see :func:`format_cell`).

    Rows: the combinations of ``row_axes`` present in ``axes``, plus every other axis (not the column
    or seed axis) with more than one value; columns: the values of ``col_axis`` (one column named
    ``metric`` when it is not an axis). ``scale``: display factor (default :func:`default_scale`).
    Cells without trials are ``—``. ``attrs`` holds ``footnotes`` (the legend, collapsed trials, fixed
    axes, diagnosis-only trials), ``metric``, ``scale``, ``row_axes`` and ``col_axis``.

    Raises:
        TableError: no trials, or as :func:`table_numbers`.
    """
    if df.empty:
        raise TableError("no trial runs to tabulate")
    scale = default_scale(metric) if scale is None else scale
    numbers = table_numbers(df, axes, metric, row_axes, col_axis, seed_axis, stats=[metric])
    rows, col = numbers.attrs["row_axes"], numbers.attrs["col_axis"]
    row_keys = list(dict.fromkeys(tuple(value_label(e[a]) for a in rows) for _, e in numbers.iterrows()))
    col_keys = list(dict.fromkeys(value_label(v) for v in numbers[col])) if col else [metric]
    cells = {(r, c): MISSING_CELL for r in row_keys for c in col_keys}
    collapsed: list[str] = []
    for _, e in numbers.iterrows():
        cells[(tuple(value_label(e[a]) for a in rows), value_label(e[col]) if col else metric)] = format_cell(e, scale)
        collapsed += e["collapsed_trials"].split()
    index = (pd.MultiIndex.from_tuples(row_keys, names=rows) if len(rows) > 1
             else pd.Index([r[0] for r in row_keys] if rows else ["all"], name=rows[0] if rows else ""))
    data = [[cells[(r, c)] for c in col_keys] for r in row_keys]
    table = pd.DataFrame(data, index=index, columns=pd.Index(col_keys, name=col))

    unit = f"{metric} x{scale:g}" if scale != 1 else metric
    over = f"across {seed_axis} values" if seed_axis in axes else "across trials"
    footnotes = [f"cells: mean ± sample std of {unit} {over} (n = trials averaged); failed, killed and "
                 "unfinished trials are counted, not averaged"]
    if collapsed:
        footnotes.append(f"{COLLAPSE_MARK} averages include collapsed trials: {', '.join(collapsed)}")
    diagnosed = df[_diagnosed(df)]
    for value in dict.fromkeys(diagnosed["diagnosis"] if len(diagnosed) else []):
        ids = diagnosed.loc[diagnosed["diagnosis"] == value, "trial_id"]
        footnotes.append(f"{DIAGNOSIS_MARK} {diagnosis_label(value)}: {', '.join(ids)}")
    fixed = numbers.attrs["fixed"]
    if fixed:
        footnotes.append("fixed: " + ", ".join(f"{a}={value_label(v)}" for a, v in fixed))
    table.attrs = {"footnotes": footnotes, "metric": metric, "scale": scale, "row_axes": list(rows),
                   "col_axis": col}
    return table


def _grid(table: pd.DataFrame) -> tuple[list[str], list[list[str]], int]:
    """Header, body rows (all strings) and the number of index columns of a table."""
    names = [n or "" for n in table.index.names]
    col = table.columns.name
    header = names + [f"{col}={c}" if col else str(c) for c in table.columns]
    body = []
    for key, row in zip(table.index, table.itertuples(index=False)):
        key = key if isinstance(key, tuple) else (key,)
        body.append([str(k) for k in key] + [str(v) for v in row])
    return header, body, len(names)


def _footnotes(table: pd.DataFrame, footnotes: Sequence[str] | None) -> list[str]:
    return list(table.attrs.get("footnotes", [])) if footnotes is None else list(footnotes)


def to_markdown(table: pd.DataFrame, title: str | None = None, footnotes: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table (index columns left-aligned, cells right-aligned), an optional
    ``### title`` above and footnotes below (default: ``table.attrs["footnotes"]``)."""
    header, body, n_index = _grid(table)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [f"### {title}", ""] if title else []
    out += [line(header), "|" + "|".join(":---" if i < n_index else "---:" for i in range(len(header))) + "|"]
    out += [line(r) for r in body]
    notes = _footnotes(table, footnotes)
    if notes:
        out += [""] + [f"{n}  " if i < len(notes) - 1 else n for i, n in enumerate(notes)]
    return "\n".join(out) + "\n"


def format_text(table: pd.DataFrame, title: str | None = None, footnotes: Sequence[str] | None = None) -> str:
    """The table as aligned plain text for a terminal."""
    header, body, n_index = _grid(table)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < n_index else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    out = [title, ""] if title else []
    out += [line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in body]
    notes = _footnotes(table, footnotes)
    if notes:
        out += [""] + notes
    return "\n".join(s.rstrip() for s in out) + "\n"


# ---------------------------------------------------------------------------------------------- command
def run_table_command(experiment: str, ablation: str | None = None, tracking_uri: str | None = None,
                      as_json: bool = False, metric: str = "AP", log_to_parent: bool = False,
                      baseline: str | None = None) -> int:
    """Print the table of the newest ablation in ``experiment`` (JSON numbers with ``as_json``), with
    the paired differences against ``baseline`` (``AXIS=VALUE``; default ``method=supervised`` when
    there is a method and a seed axis, see :mod:`orchestrator.paired`) under it.

    Returns 0, 1 when the parent run has no trials yet, 2 on an error (printed to stderr).
    ``log_to_parent`` also logs the table artifacts to the parent run (:func:`log_table`).
    """
    from mlflow.tracking import MlflowClient

    from orchestrator.paired import Baseline, default_baseline, format_paired, paired_differences

    from orchestrator.stage_table import collect_stage, stage_summary
    from orchestrator.table_artifacts import log_table
    from orchestrator.tracking import resolve_tracking_uri

    client = MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))
    try:
        parent, df = collect_trials(client, experiment, ablation)
        stage = collect_stage(client, parent)  # warm-start runs: a line under the table, never in it
        if df.empty:
            print(f"ablation {parent.ablation!r} (parent run {parent.run_id}) has no trial runs yet")
            return 1
        numbers = table_numbers(df, parent.axes, metric)
        table = build_table(df, parent.axes, metric)
        chosen = Baseline.parse(baseline) if baseline else default_baseline(df, parent.axes)
        paired = paired_differences(df, parent.axes, chosen, metric) if chosen else None
    except TableError as e:
        print(f"poselab table: error: {e}", file=sys.stderr)
        return 2
    title = f"{parent.ablation}: {metric} (experiment {experiment}, parent run {parent.run_id})"
    if as_json:
        print(json.dumps({"experiment": experiment, "ablation": parent.ablation,
                          "parent_run_id": parent.run_id, "axes": list(parent.axes), "metric": metric,
                          "trials": len(df), "numbers": json.loads(numbers.to_json(orient="records")),
                          "warm_start": json.loads(stage.to_json(orient="records")),
                          "paired": None if paired is None else {
                              "baseline": str(chosen), "rows": json.loads(paired.to_json(orient="records"))}},
                         indent=2))
    summary = f"\n{stage_summary(stage, metric)}\n" if len(stage) else ""
    if paired is not None and len(paired):
        summary += f"\n{format_paired(paired)}\n"
    if not as_json:
        print(format_text(table, title) + summary, end="")
    if log_to_parent:
        log_table(client, parent.run_id, numbers, table, to_markdown(table, title) + summary)
    return 0


def _run_table(args: argparse.Namespace) -> int:
    return run_table_command(args.experiment, ablation=args.ablation, tracking_uri=args.tracking_uri,
                             as_json=args.json, metric=args.metric, log_to_parent=args.log,
                             baseline=args.baseline)


def add_table_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``table`` on an argparse subparsers object; the handler is ``args.func(args) -> int``."""
    p = subparsers.add_parser(
        "table", help="the paper-style result table of an ablation (from its MLflow runs)",
        description="Print the result table of the newest ablation run in an MLflow experiment: rows are "
                    "method x augmentation (and any other varied axis), columns the label budgets, cells "
                    "mean ± std over seeds (AP or PCKh x100) with the number of seeds; failed and unfinished trials "
                    "are counted, not averaged; † marks cells with collapsed trials, ‡ cells with "
                    "diagnosis-only trials (an oracle teacher).")
    p.add_argument("experiment", metavar="EXPERIMENT", help="MLflow experiment name")
    p.add_argument("--ablation", metavar="NAME",
                   help="ablation name (default: the newest ablation in EXPERIMENT)")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or MLflow's default)")
    p.add_argument("--metric", default="AP",
                   help="statistic of the cells, a final/<stat> metric: AP, AP50, ..., or PCKh, PCKh_0.1, "
                        "PCKh_Wrist, ... for MPII (default: %(default)s)")
    p.add_argument("--baseline", metavar="AXIS=VALUE",
                   help="print the paired differences (seed by seed) of every other value of AXIS against "
                        "VALUE under the table (default: method=supervised when the ablation has a method "
                        "axis with supervised and a seed axis)")
    p.add_argument("--json", action="store_true", help="print the numbers (mean, std, counts) as JSON")
    p.add_argument("--log", action="store_true",
                   help="also log results/table.{json,csv,md} and the plot to the ablation's parent run")
    p.set_defaults(func=_run_table)
    return p
