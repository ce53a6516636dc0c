"""The method interface shared by the plain-PyTorch loop and the Ray Train worker loop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class StepOutput:
    """What one training step produced.

    Attributes:
        loss: the scalar to back-propagate.
        logs: floats to record (every loss term and diagnostic), keyed by metric name.
    """

    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


class Method(nn.Module, ABC):
    """Base class: owns the network(s) in ``self.networks`` (name -> module) and defines

    - :meth:`training_step` (labeled batch, optional unlabeled batch) -> :class:`StepOutput`;
    - :meth:`predict` normalised images (B, 3, H, W) -> {name: heatmaps (B, K, h, w)}, one entry
      per evaluated network or ensemble; ``primary`` names the one that selects checkpoints.
    """

    primary: str = "net"

    def __init__(self) -> None:
        super().__init__()
        self.networks = nn.ModuleDict()

    @abstractmethod
    def training_step(self, labeled: dict[str, torch.Tensor],
                      unlabeled: dict[str, torch.Tensor] | None = None) -> StepOutput:
        """Losses for one step (the caller back-propagates ``loss`` and steps the optimiser)."""

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: net(images) for name, net in self.networks.items()}


def as_floats(values: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """0-d tensors (and floats) -> floats, with one device synchronisation for all of them."""
    keys = [k for k, v in values.items() if isinstance(v, torch.Tensor)]
    out = {k: float(v) for k, v in values.items() if not isinstance(v, torch.Tensor)}
    if keys:
        stacked = torch.stack([values[k].detach().float().reshape(()) for k in keys]).tolist()
        out.update(zip(keys, stacked))
    return out
