"""PoseCons and PoseDual (Xie et al., ICCV 2021): easy/hard-view consistency on unlabeled crops.

Per step, with a labeled batch (``image``, ``heatmaps``, ``weights``) and an unlabeled batch (``image``
only) of the same size:

* the teacher prediction is the network's own (PoseCons) or the other network's (PoseDual) heatmaps
  on the easy view, computed under ``no_grad`` in train mode (batch-norm statistics of the sub-batch);
* the hard view is [RandAugment] -> normalise -> [Joint Cutout at the teacher's argmax] -> extra
  rotation/scale (:class:`pose.methods.hard_view.HardView`); the teacher heatmaps are warped with the
  same transform into the hard view's frame and regressed by the student's hard-view prediction;
* loss = supervised MSE (PoseDual: the mean of both networks') + ramp(step) * weight * consistency
  MSE (PoseDual: one term per network). Unlabeled joint weights are 1, or 0 where the teacher's
  maximum is below ``confidence_threshold`` (when > 0).

Each forward is a separate call, as in the original code (batch-norm statistics per sub-batch).
"""

from __future__ import annotations

import torch
from torch import nn

from pose.data.topdown import Normalizer
from pose.losses import KeypointMSELoss
from pose.methods.base import Method, StepOutput, as_floats
from pose.methods.collapse import CollapseRule, argmax_agreement, unlabeled_diagnostics
from pose.methods.hard_view import HardView

Batch = dict[str, torch.Tensor]


class _Consistency(Method):
    """Shared parts: normaliser, loss, hard view, ramp-up, confidence weights, step counter."""

    def __init__(self, hard: HardView, unsup_weight: float = 1.0, rampup_steps: int = 0,
                 confidence_threshold: float = 0.0, collapse: CollapseRule | None = None) -> None:
        super().__init__()
        self.normalizer = Normalizer()
        self.loss_fn = KeypointMSELoss()
        self.hard = hard
        self.unsup_weight = float(unsup_weight)
        self.rampup_steps = int(rampup_steps)
        self.confidence_threshold = float(confidence_threshold)
        self.collapse = collapse or CollapseRule()
        self.generator: torch.Generator | None = None  # CPU generator for the hard-view draws (None: global)
        self.register_buffer("global_step", torch.zeros((), dtype=torch.long))

    def _ramp(self) -> torch.Tensor:
        """weight * exp(-5 (1 - t)^2), t = step / rampup_steps, computed on the device (no sync)."""
        if self.rampup_steps <= 0:
            return torch.full((), self.unsup_weight, device=self.global_step.device)
        t = (self.global_step.float() / self.rampup_steps).clamp(0.0, 1.0)
        return self.unsup_weight * torch.exp(-5.0 * (1.0 - t) ** 2)

    def _joint_weights(self, teacher: torch.Tensor) -> torch.Tensor:
        """(B, K) unlabeled joint weights: 1, or the teacher's maximum >= threshold."""
        b, k = teacher.shape[:2]
        if self.confidence_threshold <= 0:
            return torch.ones(b, k, device=teacher.device)
        return (teacher.flatten(2).amax(-1) >= self.confidence_threshold).float()

    @staticmethod
    def _check(unlabeled: Batch | None) -> torch.Tensor:
        if unlabeled is None or "image" not in unlabeled:
            raise ValueError("PoseCons/PoseDual need an unlabeled batch with 'image' (a mixed data stream)")
        return unlabeled["image"]

    @torch.no_grad()
    def hard_views(self, unlabeled_images: torch.Tensor, cutout_teachers: list[torch.Tensor]
                   ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Hard inputs, one per entry of ``cutout_teachers`` (whose argmax places the cutouts), sharing
        one RandAugment draw and one extra transform; returns (views, sampling matrices (B, 2, 3))."""
        g = self.generator
        base = self.normalizer(self.hard.randaugment(unlabeled_images, g))
        theta = self.hard.draw_affine(unlabeled_images.shape[0], g)
        views = []
        for teacher in cutout_teachers:
            cut, _ = self.hard.cutout(base, teacher, g)
            views.append(self.hard.warp_images(cut, theta))
        return views, theta


class PoseCons(_Consistency):
    """One network; its own no-grad easy-view prediction teaches its hard-view prediction."""

    primary = "net"

    def __init__(self, network: nn.Module, hard: HardView, **kwargs) -> None:
        super().__init__(hard, **kwargs)
        self.networks["net"] = network

    def training_step(self, labeled: Batch, unlabeled: Batch | None = None) -> StepOutput:
        images_u = self._check(unlabeled)
        net = self.networks["net"]
        sup = net(self.normalizer(labeled["image"]))
        loss_sup = self.loss_fn(sup, labeled["heatmaps"], labeled["weights"])
        with torch.no_grad():
            teacher = net(self.normalizer(images_u)).float().detach()
            (hard,), theta = self.hard_views(images_u, [teacher])
            target = self.hard.warp_heatmaps(teacher, theta)
        student = net(hard).float()
        loss_unsup = self.loss_fn(student, target, self._joint_weights(teacher))
        ramp = self._ramp()
        loss = loss_sup + ramp * loss_unsup
        self.global_step += 1
        c = self.collapse
        logs = {"loss": loss, "loss_sup": loss_sup, "loss_unsup": loss_unsup, "unsup_weight": ramp,
                **unlabeled_diagnostics(teacher, student, target, c.threshold, c.radius)}
        return StepOutput(loss=loss, logs=as_floats(logs))


class PoseDual(_Consistency):
    """Two networks (different initialisations); each one's hard view is taught by the other's warped
    easy-view prediction and cut out at the other's predicted joints. Evaluated three ways:
    ``net1``, ``net2`` and ``mean`` (the averaged heatmaps); checkpoints are selected on ``net1``."""

    primary = "net1"

    def __init__(self, net1: nn.Module, net2: nn.Module, hard: HardView, **kwargs) -> None:
        super().__init__(hard, **kwargs)
        self.networks["net1"] = net1
        self.networks["net2"] = net2

    @torch.no_grad()
    def hard_inputs(self, unlabeled_images: torch.Tensor, teacher1: torch.Tensor, teacher2: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(hard input of net1, hard input of net2, target of net1, target of net2).

        net1's input is cut out at net2's joints and regressed onto net2's warped heatmaps, and vice
        versa; both share the RandAugment draw and the extra transform.
        """
        (hard1, hard2), theta = self.hard_views(unlabeled_images, [teacher2, teacher1])
        return hard1, hard2, self.hard.warp_heatmaps(teacher2, theta), self.hard.warp_heatmaps(teacher1, theta)

    def training_step(self, labeled: Batch, unlabeled: Batch | None = None) -> StepOutput:
        images_u = self._check(unlabeled)
        f1, f2 = self.networks["net1"], self.networks["net2"]
        x_l = self.normalizer(labeled["image"])
        loss_sup1 = self.loss_fn(f1(x_l), labeled["heatmaps"], labeled["weights"])
        loss_sup2 = self.loss_fn(f2(x_l), labeled["heatmaps"], labeled["weights"])
        with torch.no_grad():
            x_e = self.normalizer(images_u)
            teacher1 = f1(x_e).float().detach()
            teacher2 = f2(x_e).float().detach()
            hard1, hard2, target1, target2 = self.hard_inputs(images_u, teacher1, teacher2)
        student1 = f1(hard1).float()
        student2 = f2(hard2).float()
        loss_unsup1 = self.loss_fn(student1, target1, self._joint_weights(teacher2))
        loss_unsup2 = self.loss_fn(student2, target2, self._joint_weights(teacher1))
        ramp = self._ramp()
        loss_sup = 0.5 * (loss_sup1 + loss_sup2)
        loss_unsup = loss_unsup1 + loss_unsup2
        loss = loss_sup + ramp * loss_unsup
        self.global_step += 1
        c = self.collapse
        d1 = unlabeled_diagnostics(teacher1, student1, target1, c.threshold, c.radius)
        d2 = unlabeled_diagnostics(teacher2, student2, target2, c.threshold, c.radius)
        logs: dict[str, torch.Tensor] = {
            "loss": loss, "loss_sup": loss_sup, "loss_unsup": loss_unsup, "unsup_weight": ramp,
            "loss_sup_net1": loss_sup1, "loss_sup_net2": loss_sup2,
            "loss_unsup_net1": loss_unsup1, "loss_unsup_net2": loss_unsup2,
            "dual_agreement": argmax_agreement(teacher1, teacher2, c.radius),
        }
        for key in d1:
            logs[key] = 0.5 * (d1[key] + d2[key])
            logs[f"{key}_net1"] = d1[key]
            logs[f"{key}_net2"] = d2[key]
        return StepOutput(loss=loss, logs=as_floats(logs))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        h1 = self.networks["net1"](images)
        h2 = self.networks["net2"](images)
        return {"net1": h1, "net2": h2, "mean": 0.5 * (h1 + h2)}
