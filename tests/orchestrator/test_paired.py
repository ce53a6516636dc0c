"""Paired differences against a baseline, seed by seed (orchestrator/paired.py; no MLflow, no Ray)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from orchestrator.paired import Baseline, default_baseline, format_paired, paired_differences, paired_section
from orchestrator.table import TableError

AXES = ["method", "augmentation", "label_budget", "seed"]


def _trials(rows) -> pd.DataFrame:
    """(method, augmentation, budget, seed, status, AP or None, diagnosis) -> a collect_trials-like frame."""
    records = []
    for method, aug, budget, seed, status, ap, diagnosis in rows:
        records.append({"trial_id": f"method={method},augmentation={aug},label_budget={budget},seed={seed}",
                        "run_id": "r", "method": method, "augmentation": aug, "label_budget": budget,
                        "seed": seed, "status": status, "collapsed": False, "diagnosis": diagnosis,
                        "attempts": 1, "AP": math.nan if ap is None else ap})
    return pd.DataFrame(records)


GRID = _trials([
    ("supervised", "affine", 100, 0, "FINISHED", 0.30, ""),
    ("supervised", "affine", 100, 1, "FINISHED", 0.36, ""),
    ("supervised", "affine", 100, 2, "FINISHED", 0.33, ""),
    ("supervised", "affine", 250, 0, "FINISHED", 0.45, ""),
    ("supervised", "affine", 250, 1, "KILLED", None, ""),
    ("posedual", "joint_cutout", 100, 0, "FINISHED", 0.40, ""),
    ("posedual", "joint_cutout", 100, 1, "FINISHED", 0.41, ""),
    ("posedual", "joint_cutout", 100, 2, "FAILED", 0.05, ""),     # logged, but not finished: unpaired
    ("posedual", "joint_cutout", 250, 0, "FINISHED", 0.42, ""),
    ("posedual", "joint_cutout", 250, 1, "FINISHED", 0.50, ""),   # its baseline was killed: unpaired
    ("posecons", "joint_cutout", 100, 0, "FINISHED", 0.99, "oracle_teacher"),  # a diagnosis: never paired
    ("posecons", "joint_cutout", 100, 1, "FINISHED", 0.37, ""),
])


def test_trials_pair_with_the_baseline_of_their_seed_and_budget():
    diffs = paired_differences(GRID, AXES, Baseline("method", "supervised"))
    rows = {(r.method, r.label_budget): r for r in diffs.itertuples()}
    assert list(rows) == [("posecons", 100), ("posedual", 100), ("posedual", 250)]  # canonical method order
    dual = rows[("posedual", 100)]
    assert dual.diffs == {0: pytest.approx(0.10), 1: pytest.approx(0.05)}  # seed 0 with seed 0, 1 with 1
    assert dual.mean == pytest.approx(0.075) and dual.std == pytest.approx(0.05 / math.sqrt(2))
    assert (dual.n, dual.wins, dual.augmentation) == (2, 2, "joint_cutout")
    assert dual.unpaired == "method=posedual,augmentation=joint_cutout,label_budget=100,seed=2"
    late = rows[("posedual", 250)]
    assert late.diffs == {0: pytest.approx(-0.03)} and late.n == 1 and late.wins == 0 and math.isnan(late.std)
    assert late.unpaired.endswith("seed=1")
    cons = rows[("posecons", 100)]
    assert cons.diffs == {1: pytest.approx(0.01)}  # the oracle trial of seed 0 is left out, not unpaired


def test_the_text_gives_mean_spread_wins_and_each_seed():
    text = format_paired(paired_differences(GRID, AXES, Baseline("method", "supervised")))
    lines = text.splitlines()
    assert lines[0].startswith("paired differences against method=supervised (AP x100;")
    assert ("  posedual - supervised, augmentation=joint_cutout, label_budget=100: +7.5 ± 3.5 (2 pairs, "
            "higher in 2; by seed: 0 +10.0, 1 +5.0); unpaired: "
            "method=posedual,augmentation=joint_cutout,label_budget=100,seed=2") in lines
    assert any(line.startswith("  posedual - supervised, augmentation=joint_cutout, label_budget=250: -3.0 "
                               "(1 pair, higher in 0; by seed: 0 -3.0)") for line in lines)


def test_the_default_baseline_is_supervised_when_there_are_seeds_and_other_methods():
    assert default_baseline(GRID, AXES) == Baseline("method", "supervised")
    assert default_baseline(GRID, ["method", "augmentation", "label_budget"]) is None  # no seed axis
    only = GRID[GRID["method"] == "supervised"]
    assert default_baseline(only, AXES) is None and paired_section(only, AXES) == ""
    assert "posedual - supervised" in paired_section(GRID, AXES)


def test_another_axis_can_be_the_baseline():
    by_budget = paired_differences(GRID, AXES, Baseline.parse("label_budget=100"))
    sup = by_budget[by_budget["method"] == "supervised"].iloc[0]
    assert sup["label_budget"] == 250 and sup["diffs"] == {0: pytest.approx(0.15)}


@pytest.mark.parametrize("text,message", [("method", "AXIS=VALUE"), ("=x", "AXIS=VALUE"),
                                          ("budget=100", "'budget' is not an axis"),
                                          ("method=fixmatch", "no trial has method=fixmatch.*posedual")])
def test_a_bad_baseline_is_an_error_naming_it(text, message):
    with pytest.raises(TableError, match=message):
        paired_differences(GRID, AXES, Baseline.parse(text))


def test_numbers_in_a_baseline_are_numbers():
    assert Baseline.parse("label_budget=100").value == 100 and Baseline.parse("lr=0.5").value == 0.5
    assert str(Baseline.parse(" method = supervised ")) == "method=supervised"
