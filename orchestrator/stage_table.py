"""The warm-start stage of an ablation in MLflow: its runs' tags and the per-seed line printed under the
result table (no torch: ``poselab table`` reads MLflow only).

Stage runs are children of the ablation's parent run like its trials, with ``poselab.role`` = ``stage``
(the result table reads ``poselab.role`` = ``trial`` only, so a stage run never lands in a cell),
``poselab.stage`` = the stage (``warm_start``), ``poselab.trial_id`` = ``seed=<s>`` and
``poselab.axis.seed``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from orchestrator.table import (
    FINAL_PREFIX,
    FINISHED,
    ROLE_STAGE,
    TAG_AXIS_PREFIX,
    TAG_PARENT_RUN,
    TAG_ROLE,
    TAG_STAGE,
    TAG_TRIAL_ID,
    AblationRun,
    _newest,
    _search_all,
    default_scale,
    trial_tags,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

WARM_START = "warm_start"
"""The stage name of the warm-start runs (``orchestrator.warm_start.STAGE``; not imported: needs torch)."""


def stage_tags(parent_run_id: str, stage: str, trial_id: str, axes: Mapping[str, Any]) -> dict[str, str]:
    """The tags of a stage run (see the module docstring)."""
    return {**trial_tags(parent_run_id, trial_id, axes), TAG_ROLE: ROLE_STAGE, TAG_STAGE: stage}


def collect_stage(client: MlflowClient, parent: AblationRun, stage: str = WARM_START) -> pd.DataFrame:
    """One row per stage run of ``parent`` (the newest run of each trial id), by seed: columns
    ``trial_id``, ``seed``, ``run_id``, ``status`` and one column per ``final/<stat>`` (NaN where not
    logged). Empty when the ablation has no such stage."""
    query = (f"tags.`{TAG_PARENT_RUN}` = '{parent.run_id}' and tags.`{TAG_ROLE}` = '{ROLE_STAGE}' "
             f"and tags.`{TAG_STAGE}` = '{stage}'")
    by_trial: dict[str, list] = {}
    for run in _search_all(client, parent.experiment_id, query):
        by_trial.setdefault(run.data.tags.get(TAG_TRIAL_ID, run.info.run_id), []).append(run)
    rows = []
    for trial_id, runs in by_trial.items():
        run = _newest(runs)
        seed_tag = run.data.tags.get(f"{TAG_AXIS_PREFIX}seed")
        finals = {k[len(FINAL_PREFIX):]: v for k, v in run.data.metrics.items() if k.startswith(FINAL_PREFIX)}
        rows.append({"trial_id": trial_id, "seed": json.loads(seed_tag) if seed_tag else None,
                     "run_id": run.info.run_id, "status": run.info.status, **finals})
    df = pd.DataFrame(rows, columns=list(dict.fromkeys(["trial_id", "seed", "run_id", "status",
                                                        *(k for r in rows for k in r)])))
    return df.sort_values("seed", key=lambda s: s.map(lambda v: (v is None, v))).reset_index(drop=True)


def stage_summary(df: pd.DataFrame, metric: str = "AP", stage: str = WARM_START) -> str:
    """``warm_start stage (supervised starts of the grid's networks), AP x100 by seed: seed=0 41.2,
    seed=1 40.8, seed=2 — (failed); mean 41.0 ± 0.3 (2 of 3)`` ("" without stage runs)."""
    if df.empty:
        return ""
    scale = default_scale(metric)
    unit = f"{metric} x{scale:g}" if scale != 1 else metric
    cells, values = [], []
    for _, row in df.iterrows():
        value = row[metric] if metric in row else math.nan
        if row["status"] == FINISHED and not pd.isna(value):
            cells.append(f"seed={row['seed']} {value * scale:.1f}")
            values.append(float(value) * scale)
        else:
            state = row["status"].lower() if row["status"] != FINISHED else f"no {metric}"
            cells.append(f"seed={row['seed']} — ({state})")
    text = f"{stage} stage (supervised starts of the grid's networks), {unit} by seed: {', '.join(cells)}"
    if values:
        mean = sum(values) / len(values)
        spread = (f" ± {math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)):.1f}"
                  if len(values) > 1 else "")
        count = f"{len(values)}" if len(values) == len(df) else f"{len(values)} of {len(df)}"
        text += f"; mean {mean:.1f}{spread} ({count})"
    return text
