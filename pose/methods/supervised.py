"""Supervised top-down training on labeled crops only."""

from __future__ import annotations

import torch
from torch import nn

from pose.data.topdown import Normalizer
from pose.losses import KeypointMSELoss
from pose.methods.base import Method, StepOutput


class Supervised(Method):
    """One network, weighted heatmap MSE on labeled crops.

    Batches are dicts from the top-down pipeline: ``image`` (B, 3, H, W) uint8, ``heatmaps``
    (B, K, h, w), ``weights`` (B, K).
    """

    primary = "net"

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.networks["net"] = network
        self.normalizer = Normalizer()
        self.loss_fn = KeypointMSELoss()

    def training_step(self, labeled: dict[str, torch.Tensor],
                      unlabeled: dict[str, torch.Tensor] | None = None) -> StepOutput:
        pred = self.networks["net"](self.normalizer(labeled["image"]))
        loss = self.loss_fn(pred, labeled["heatmaps"], labeled["weights"])
        return StepOutput(loss=loss, logs={"loss": float(loss.detach()), "loss_sup": float(loss.detach())})
