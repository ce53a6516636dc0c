"""Collapse monitor: per-step diagnostics of the unlabeled branch and a rule that flags collapse.

Consistency training can "collapse": the cheapest way to agree with a teacher heatmap is to predict
nothing, so responses on unlabeled crops shrink towards zero. The methods log, every step
(:func:`unlabeled_diagnostics`):

* ``unsup_max_response``: mean over images and joints of the teacher's (easy-view) heatmap maximum;
* ``unsup_confident_frac``: fraction of those joints whose maximum exceeds ``threshold``;
* ``unsup_agreement``: fraction of joints where the student's hard-view argmax lies within
  ``radius`` heatmap pixels of the (warped) teacher target's argmax.

A fresh head predicts ~0 everywhere, so low responses alone do not mean collapse; the rule
(:class:`CollapseRule`) flags a run whose smoothed metric first rose to ``min_peak`` and then fell below
``drop`` times that peak.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class CollapseRule:
    """When to call a run collapsed.

    Attributes:
        metric: the logged diagnostic to watch (e.g. ``unsup_max_response``, or
            ``unsup_max_response_net1`` for one network of PoseDual).
        window: steps averaged (a moving mean) before comparing.
        min_peak: the moving mean must first have reached this value (the run learned something).
        drop: collapsed when the latest moving mean is below ``drop * peak``.
        threshold: heatmap maximum above which a joint counts as confident (``unsup_confident_frac``).
        radius: teacher/student argmax distance (heatmap pixels) that counts as agreement.
    """

    metric: str = "unsup_max_response"
    window: int = 50
    min_peak: float = 0.2
    drop: float = 0.25
    threshold: float = 0.3
    radius: float = 2.0

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"collapse.window must be >= 1, got {self.window}")
        if not 0 < self.drop < 1:
            raise ValueError(f"collapse.drop must be in (0, 1), got {self.drop}")
        if self.radius < 0:
            raise ValueError(f"collapse.radius must be >= 0, got {self.radius}")


def collapse_status(values: Sequence[float] | np.ndarray, rule: CollapseRule) -> dict[str, float]:
    """Peak and current moving mean of a metric history, and whether the rule calls it collapsed."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < rule.window:
        return {"collapsed": 0.0, "peak": float("nan"), "current": float("nan")}
    c = np.concatenate([[0.0], np.cumsum(v)])
    moving = (c[rule.window:] - c[:-rule.window]) / rule.window
    peak, current = float(moving.max()), float(moving[-1])
    collapsed = peak >= rule.min_peak and current < rule.drop * peak
    return {"collapsed": float(collapsed), "peak": peak, "current": current}


def is_collapsed(history: Sequence[Mapping[str, float]], rule: CollapseRule) -> bool:
    """True when ``history`` (per-step logs, oldest first) shows collapse under ``rule``.

    Steps without ``rule.metric`` are ignored.
    """
    values = [h[rule.metric] for h in history if rule.metric in h]
    return bool(collapse_status(values, rule)["collapsed"])


class CollapseMonitor:
    """Keeps the history of the watched metric only (cheap over long runs); checkpointable."""

    def __init__(self, rule: CollapseRule) -> None:
        self.rule = rule
        self.values: list[float] = []

    def update(self, logs: Mapping[str, float]) -> None:
        if self.rule.metric in logs:
            self.values.append(float(logs[self.rule.metric]))

    def status(self) -> dict[str, float]:
        return collapse_status(self.values, self.rule)

    @property
    def collapsed(self) -> bool:
        return bool(self.status()["collapsed"])

    def state_dict(self) -> dict:
        return {"values": list(self.values)}

    def load_state_dict(self, state: dict) -> None:
        self.values = [float(v) for v in state.get("values", [])]


def _argmax_xy(heatmaps: torch.Tensor) -> torch.Tensor:
    b, k, h, w = heatmaps.shape
    idx = heatmaps.reshape(b, k, -1).argmax(-1)
    return torch.stack([idx % w, idx // w], -1).float()


@torch.no_grad()
def unlabeled_diagnostics(teacher: torch.Tensor, student: torch.Tensor | None = None,
                          target: torch.Tensor | None = None, threshold: float = 0.3,
                          radius: float = 2.0) -> dict[str, torch.Tensor]:
    """Collapse diagnostics of one step (0-d tensors; see :func:`pose.methods.base.as_floats`).

    Args:
        teacher: (B, K, h, w) easy-view predictions on unlabeled crops.
        student: (B, K, h, w) hard-view predictions (for the agreement).
        target: (B, K, h, w) the teacher target in the hard view's frame.
    """
    peak = teacher.detach().float().flatten(2).amax(-1)
    out = {"unsup_max_response": peak.mean(),
           "unsup_confident_frac": (peak > threshold).float().mean()}
    if student is not None and target is not None:
        d = (_argmax_xy(student.detach().float()) - _argmax_xy(target.detach().float())).norm(dim=-1)
        out["unsup_agreement"] = (d <= radius).float().mean()
    return out


@torch.no_grad()
def argmax_agreement(a: torch.Tensor, b: torch.Tensor, radius: float = 2.0) -> torch.Tensor:
    """Fraction of joints whose argmax in ``a`` and ``b`` (B, K, h, w) are within ``radius`` pixels."""
    d = (_argmax_xy(a.detach().float()) - _argmax_xy(b.detach().float())).norm(dim=-1)
    return (d <= radius).float().mean()
