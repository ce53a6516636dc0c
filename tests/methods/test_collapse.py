"""The collapse monitor: diagnostics of one step and the rule over a history."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pose.config import ConfigError, apply_overrides
from pose.experiment import ExperimentConfig
from pose.methods.base import as_floats
from pose.methods.collapse import CollapseMonitor, CollapseRule, collapse_status, is_collapsed, unlabeled_diagnostics

RULE = CollapseRule(window=10, min_peak=0.2, drop=0.25)


def _history(values):
    return [{"unsup_max_response": float(v), "loss": 0.1} for v in values]


def test_rise_then_fall_is_collapse():
    rise = np.linspace(0.0, 0.8, 100)
    fall = np.linspace(0.8, 0.02, 60)
    assert is_collapsed(_history(np.concatenate([rise, fall, np.full(30, 0.02)])), RULE)


def test_learning_or_fresh_runs_are_not_collapse():
    assert not is_collapsed(_history(np.linspace(0.0, 0.8, 200)), RULE)           # learning
    assert not is_collapsed(_history(np.full(200, 0.01)), RULE)                   # fresh head, never rose
    assert not is_collapsed(_history(np.concatenate([np.linspace(0, 0.8, 100),    # a dip, not a collapse
                                                      np.full(50, 0.5)])), RULE)
    assert not is_collapsed(_history([0.9, 0.0]), RULE)                            # too short for the window
    assert not is_collapsed([{"loss": 1.0}] * 100, RULE)                           # metric never logged


def test_rule_watches_the_configured_metric():
    rule = CollapseRule(metric="unsup_max_response_net2", window=5, min_peak=0.2, drop=0.5)
    hist = [{"unsup_max_response_net1": 0.9, "unsup_max_response_net2": v}
            for v in np.concatenate([np.full(20, 0.9), np.full(20, 0.05)])]
    assert is_collapsed(hist, rule)
    assert not is_collapsed(hist, CollapseRule(metric="unsup_max_response_net1", window=5))


def test_monitor_matches_the_function_and_round_trips():
    mon = CollapseMonitor(RULE)
    hist = _history(np.concatenate([np.linspace(0, 0.8, 50), np.full(30, 0.01)]))
    for h in hist:
        mon.update(h)
    assert mon.collapsed and mon.collapsed == is_collapsed(hist, RULE)
    status = mon.status()
    assert status["peak"] == pytest.approx(0.8 - 0.8 / 49 * 4.5, abs=0.02) and status["current"] < 0.05
    other = CollapseMonitor(RULE)
    other.load_state_dict(mon.state_dict())
    assert other.values == mon.values
    assert collapse_status([], RULE)["collapsed"] == 0.0


def test_step_diagnostics():
    teacher = torch.zeros(2, 3, 8, 6)
    teacher[0, :, 2, 3] = 1.0   # image 0: confident peaks
    teacher[1, :, 5, 1] = 0.1   # image 1: weak
    student = teacher.clone()
    d = as_floats(unlabeled_diagnostics(teacher, student, teacher, threshold=0.3, radius=1.0))
    assert d["unsup_max_response"] == pytest.approx(0.55)
    assert d["unsup_confident_frac"] == pytest.approx(0.5)
    assert d["unsup_agreement"] == pytest.approx(1.0)
    moved = torch.roll(student, shifts=3, dims=-2)
    assert as_floats(unlabeled_diagnostics(teacher, moved, teacher, radius=1.0))["unsup_agreement"] == 0.0


def test_rule_is_configurable_from_the_experiment_config():
    cfg = apply_overrides(ExperimentConfig(), ["method.collapse.window=7", "method.collapse.metric=unsup_agreement"])
    assert cfg.method.collapse == CollapseRule(metric="unsup_agreement", window=7)
    with pytest.raises((ConfigError, ValueError)):
        apply_overrides(ExperimentConfig(), ["method.collapse.drop=2"])
