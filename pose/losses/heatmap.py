"""Weighted heatmap MSE."""

from __future__ import annotations

import torch
from torch import nn


class KeypointMSELoss(nn.Module):
    """0.5 * mean over (B, K, h, w) of (w_bk * (P - T))^2.

    This is SimpleBaseline's ``JointsMSELoss`` (which multiplies prediction and target by the weight
    before the MSE and averages over joints), normalised by the K channels the model actually has.
    """

    def __init__(self, use_target_weight: bool = True) -> None:
        super().__init__()
        self.use_target_weight = use_target_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """pred, target: (B, K, h, w); weights: (B, K) or (B, K, 1)."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        diff = pred - target
        if self.use_target_weight and weights is not None:
            diff = diff * weights.reshape(weights.shape[0], weights.shape[1], 1, 1)
        return 0.5 * diff.pow(2).mean()
