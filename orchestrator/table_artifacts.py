"""An ablation's table as MLflow artifacts of its parent run: ``results/table.{md,csv,json}`` and a plot of
the metric against the column axis (:func:`log_table`; the table itself: :mod:`orchestrator.table`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pandas as pd

from orchestrator.table import TABLE_CSV, TABLE_JSON, TABLE_MD, value_label

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)


def plot_artifact(metric: str, col_axis: str | None) -> str:
    """``results/ap_vs_budget.png`` for AP against ``label_budget``, else
    ``results/<metric>_vs_<axis>.png``."""
    against = "budget" if col_axis == "label_budget" else (col_axis or "trial").replace(".", "_")
    return f"results/{metric.lower()}_vs_{against}.png"


def _plot(numbers: pd.DataFrame, table: pd.DataFrame) -> Any:
    """A matplotlib Figure of the metric against the column axis, one line per table row."""
    from matplotlib.figure import Figure

    metric, scale = table.attrs["metric"], table.attrs["scale"]
    rows, col = table.attrs["row_axes"], table.attrs["col_axis"]
    data = numbers[numbers["stat"] == metric]
    col_labels = [str(c) for c in table.columns]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in data[col])
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.add_subplot()
    lines: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(*(data[a] for a in rows)) if rows else [()] * len(data)):
        lines.setdefault(tuple(key), []).append(i)
    for key, positions in lines.items():
        part = data.iloc[positions]
        x = list(part[col]) if numeric else [col_labels.index(value_label(v)) for v in part[col]]
        ax.errorbar(x, part["mean"] * scale, yerr=part["std"].fillna(0.0) * scale, marker="o", capsize=3,
                    label=" / ".join(value_label(k) for k in key) or metric)
    if numeric:
        ax.set_xticks(sorted(set(data[col])))
    else:
        ax.set_xticks(range(len(col_labels)), col_labels)
    ax.set_xlabel(col)
    ax.set_ylabel(f"{metric} x{scale:g}" if scale != 1 else metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _log_json_table(client: MlflowClient, run_id: str, data: pd.DataFrame, artifact_file: str) -> None:
    """``client.log_table``, replacing (not appending to) an existing table of that name."""
    import os

    folder = os.path.dirname(artifact_file) or None
    if artifact_file in {f.path for f in client.list_artifacts(run_id, folder)}:
        client.log_text(run_id, data.to_json(orient="split", index=False, date_format="iso"), artifact_file)
    else:
        client.log_table(run_id, data=data, artifact_file=artifact_file)


def log_table(client: MlflowClient, parent_run_id: str, df_numbers: pd.DataFrame, table: pd.DataFrame,
              markdown: str, plot: bool = True) -> list[str]:
    """Log the table to the parent run; returns the artifact paths written.

    ``results/table.json`` (``log_table`` format, the numbers; re-logging replaces it),
    ``results/table.csv`` (the numbers), ``results/table.md`` and, with ``plot`` and a column axis,
    the metric against the column axis per table row (mean, std error bars) at :func:`plot_artifact`.
    Without matplotlib the plot is skipped with one warning.
    """
    _log_json_table(client, parent_run_id, df_numbers, TABLE_JSON)
    client.log_text(parent_run_id, df_numbers.to_csv(index=False), TABLE_CSV)
    client.log_text(parent_run_id, markdown, TABLE_MD)
    written = [TABLE_JSON, TABLE_CSV, TABLE_MD]
    col = table.attrs.get("col_axis")
    if not plot:
        return written
    if col is None:
        log.info("no column axis: no plot of %s", table.attrs.get("metric"))
        return written
    path = plot_artifact(table.attrs["metric"], col)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log.warning("matplotlib is not installed: skipping the plot %s", path)
        return written
    client.log_figure(parent_run_id, _plot(df_numbers, table), path)
    return written + [path]
