"""The bottom-up training method: one network, the embedding loss, the shared :class:`Method` interface."""

from __future__ import annotations

import torch

from pose.bottomup.losses import BottomUpLoss
from pose.bottomup.model import BottomUpModel
from pose.data.topdown import Normalizer
from pose.methods.base import Method, StepOutput, as_floats


class BottomUpMethod(Method):
    """Associative Embedding (``loss.kind`` "ae") or Coupled Embedding ("ce") on one network.

    ``training_step(batch)`` takes the whole-image batch of :class:`pose.bottomup.data.BottomUpDataset`
    (``image`` (B, 3, S, S) uint8, ``heatmaps_i`` / ``mask_i`` per resolution, ``joints``
    (B, P, K, 2), ``box_scales`` (B, P)) and returns the weighted loss and each term. The same
    ``train_epoch`` loop as the top-down methods drives it.
    """

    primary = "net"

    def __init__(self, network: BottomUpModel, loss: BottomUpLoss) -> None:
        super().__init__()
        self.networks["net"] = network
        self.loss = loss
        self.normalizer = Normalizer()

    @property
    def network(self) -> BottomUpModel:
        return self.networks["net"]

    def forward_images(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """uint8 (B, 3, H, W) -> (heatmaps per resolution, tags (B, K, H/4, W/4, R))."""
        return self.network(self.normalizer(images))

    def training_step(self, labeled: dict[str, torch.Tensor],
                      unlabeled: dict[str, torch.Tensor] | None = None) -> StepOutput:
        if unlabeled is not None:
            raise ValueError("bottom-up training is fully supervised: it takes no unlabeled batch")
        heatmaps, tags = self.forward_images(labeled["image"])
        terms = self.loss(heatmaps, tags, labeled)
        logs = as_floats({k: v for k, v in terms.items()})
        logs["people_per_image"] = float(labeled["num_people"].float().mean())
        logs["people_over_cap"] = float(labeled["num_dropped"].sum())  # beyond codec.max_people (tags)
        return StepOutput(terms["loss"], logs)
