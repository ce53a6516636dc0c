"""Paired differences of an ablation against a baseline, seed by seed (no torch: ``poselab table`` reads
MLflow only).

Across seeds, two methods' APs vary together (the same labeled subset, warm start and data order for a
seed), so the seed spread of a cell overstates the uncertainty of a *difference*. Pairing each trial
with the baseline trial that agrees with it on every other axis (the seed included) and averaging the
differences is the comparison the semi-supervised papers make: PoseDual - Supervised at each label
budget, with its spread over seeds and how many seeds it wins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from orchestrator.table import FINISHED, TableError, _diagnosed, _order_key, default_scale, value_label


@dataclass(frozen=True)
class Baseline:
    """The trials every other value of ``axis`` is compared with: those with ``axis`` = ``value``."""

    axis: str
    value: Any

    @classmethod
    def parse(cls, text: str) -> Baseline:
        """``AXIS=VALUE`` (``method=supervised``; a numeric value is compared as a number)."""
        axis, sep, value = text.partition("=")
        if not sep or not axis.strip() or not value.strip():
            raise TableError(f"a baseline is AXIS=VALUE (e.g. method=supervised), got {text!r}")
        value = value.strip()
        for convert in (int, float):
            try:
                return cls(axis.strip(), convert(value))
            except ValueError:
                pass
        return cls(axis.strip(), value)

    def __str__(self) -> str:
        return f"{self.axis}={value_label(self.value)}"


def default_baseline(df: pd.DataFrame, axes: Sequence[str], seed_axis: str = "seed") -> Baseline | None:
    """``method=supervised`` when the trials have a method axis with Supervised and another method, and a
    seed axis (paired differences need seeds); else None."""
    if "method" not in axes or seed_axis not in axes or df.empty:
        return None
    methods = set(df["method"])
    return Baseline("method", "supervised") if "supervised" in methods and len(methods) > 1 else None


def paired_differences(df: pd.DataFrame, axes: Sequence[str], baseline: Baseline, metric: str = "AP",
                       seed_axis: str = "seed") -> pd.DataFrame:
    """One row per (other value of the baseline's axis, combination of the remaining non-seed axes).

    A trial is paired with the baseline trial that has the same value on every other axis (the seed
    included) along which the baseline trials vary (the Supervised trials of a method x augmentation grid
    all have augmentation "affine": a PoseDual + Joint Cutout trial pairs with the Supervised trial of
    its seed and label budget); both must have finished with ``final/<metric>``. Diagnosis-only trials (an oracle teacher)
    are never paired. Columns: the compared axis, the remaining non-seed axes, ``mean`` and ``std`` of
    the differences (trial - baseline, logged units; std with ddof 1, NaN below 2 pairs), ``n`` (pairs),
    ``wins`` (pairs where the trial is higher), ``diffs`` (the differences by seed value, a dict) and
    ``unpaired`` (trial ids of the value's trials without a finished partner, space separated).

    Raises:
        TableError: the baseline's axis is not an axis, or no trial has the baseline value.
    """
    if baseline.axis not in axes:
        raise TableError(f"baseline axis {baseline.axis!r} is not an axis of the ablation "
                         f"({', '.join(axes) or 'none'})")
    if not (df[baseline.axis] == baseline.value).any():
        values = ", ".join(value_label(v) for v in dict.fromkeys(df[baseline.axis]))
        raise TableError(f"no trial has {baseline} (values of {baseline.axis}: {values})")
    usable = df[(df["status"] == FINISHED) & ~_diagnosed(df)]
    if metric in usable:
        usable = usable[usable[metric].notna()]
    else:
        usable = usable.iloc[0:0]
    group_axes = [a for a in axes if a not in (baseline.axis, seed_axis)]
    base_rows = usable[usable[baseline.axis] == baseline.value]
    # an axis on which every baseline trial has one value (Supervised trains with the "affine"
    # augmentation only) is no pairing key; the seed always is
    match_axes = [a for a in axes if a != baseline.axis and (a == seed_axis or df.loc[
        df[baseline.axis] == baseline.value, a].nunique(dropna=False) > 1)]
    base = {tuple(row[a] for a in match_axes): float(row[metric]) for _, row in base_rows.iterrows()}
    compared = df[(df[baseline.axis] != baseline.value) & ~_diagnosed(df)]
    entries: dict[tuple, dict[str, Any]] = {}
    for _, row in compared.iterrows():
        key = (row[baseline.axis], *(row[a] for a in group_axes))
        entry = entries.setdefault(key, {"diffs": {}, "unpaired": []})
        partner = base.get(tuple(row[a] for a in match_axes))
        value = row[metric] if metric in row else math.nan
        if row["status"] != FINISHED or pd.isna(value) or partner is None:
            entry["unpaired"].append(row["trial_id"])
            continue
        entry["diffs"][row[seed_axis] if seed_axis in axes else row["trial_id"]] = float(value) - partner
    orders = [_order_key(a, list(df[a])) for a in (baseline.axis, *group_axes)]
    rows = []
    for key in sorted(entries, key=lambda k: tuple(o.get(v, len(o)) for o, v in zip(orders, k))):
        diffs = entries[key]["diffs"]
        values = pd.Series(list(diffs.values()), dtype=float)
        rows.append({**dict(zip((baseline.axis, *group_axes), key)),
                     "mean": float(values.mean()) if len(values) else math.nan,
                     "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
                     "n": len(values), "wins": int((values > 0).sum()), "diffs": diffs,
                     "unpaired": " ".join(entries[key]["unpaired"])})
    out = pd.DataFrame(rows, columns=[baseline.axis, *group_axes, "mean", "std", "n", "wins", "diffs", "unpaired"])
    out.attrs = {"baseline": str(baseline), "metric": metric, "group_axes": group_axes, "seed_axis": seed_axis}
    return out


def format_paired(diffs: pd.DataFrame, scale: float | None = None) -> str:
    """The paired differences as text lines under the table, e.g.
    ``posedual - supervised, label_budget=512: +1.2 ± 0.4 (3 pairs, higher in 3; by seed: 0 +1.5, ...)``."""
    attrs = diffs.attrs
    metric, baseline = attrs["metric"], attrs["baseline"]
    axis, base_value = baseline.split("=", 1)
    scale = default_scale(metric) if scale is None else scale
    unit = f"{metric} x{scale:g}" if scale != 1 else metric
    lines = [f"paired differences against {baseline} ({unit}; trial - baseline of the same "
             f"{attrs['seed_axis']} and other axes): mean ± sample std over pairs"]
    for _, row in diffs.iterrows():
        where = ", ".join(f"{a}={value_label(row[a])}" for a in attrs["group_axes"])
        head = f"  {value_label(row[axis])} - {base_value}" + (f", {where}" if where else "")
        if row["n"] == 0:
            text = "no finished pair"
        else:
            spread = f" ± {row['std'] * scale:.1f}" if not math.isnan(row["std"]) else ""
            by_seed = ", ".join(f"{value_label(s)} {d * scale:+.1f}" for s, d in row["diffs"].items())
            text = (f"{row['mean'] * scale:+.1f}{spread} ({row['n']} pair{'s' * (row['n'] != 1)}, higher in "
                    f"{row['wins']}; by {attrs['seed_axis']}: {by_seed})")
        if row["unpaired"]:
            text += f"; unpaired: {row['unpaired']}"
        lines.append(f"{head}: {text}")
    return "\n".join(lines)


def paired_section(df: pd.DataFrame, axes: Sequence[str], metric: str = "AP",
                   baseline: Baseline | None = None) -> str:
    """The paired-differences lines for under a table ("" when there is no baseline: none given and no
    :func:`default_baseline`, or no trials to compare with it)."""
    baseline = baseline or default_baseline(df, axes)
    if baseline is None:
        return ""
    diffs = paired_differences(df, axes, baseline, metric)
    return f"\n{format_paired(diffs)}\n" if len(diffs) else ""
