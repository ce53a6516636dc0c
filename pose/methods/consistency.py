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

The losses read the unlabeled batch's ``image`` only. When it also carries ground truth (``gt_*`` keys,
``semi.unlabeled=train_gt``), the teacher/student PCK diagnostics are logged
(:mod:`pose.methods.diagnostics`). With ``oracle_teacher`` (``method.teacher=oracle``, a diagnosis) the
teacher heatmaps are the batch's ``gt_heatmaps`` for every network (PoseDual: both networks are taught
by the oracle) with ``gt_weights`` as joint weights; no easy-view forward is made, and the collapse
diagnostics of the teacher (``unsup_max_response``, ``unsup_confident_frac``, ``dual_agreement``) then
describe the oracle's heatmaps.

Each forward is a separate call, as in the original code (batch-norm statistics per sub-batch).
"""

from __future__ import annotations

import torch
from torch import nn

from pose.data.topdown import Normalizer
from pose.losses import KeypointMSELoss
from pose.methods.base import Method, StepOutput, as_floats
from pose.methods.collapse import CollapseRule, argmax_agreement, unlabeled_diagnostics
from pose.methods.diagnostics import ground_truth_diagnostics, oracle_heatmaps
from pose.methods.hard_view import HardView

Batch = dict[str, torch.Tensor]


class _Consistency(Method):
    """Shared parts: normaliser, loss, hard view, ramp-up, confidence weights, step counter, teachers.

    ``oracle_teacher``: teach with the unlabeled batch's ground-truth heatmaps instead of a network's
    easy-view prediction (a diagnosis; the batch must carry ``gt_heatmaps`` and ``gt_weights``).
    """

    def __init__(self, hard: HardView, unsup_weight: float = 1.0, rampup_steps: int = 0,
                 confidence_threshold: float = 0.0, collapse: CollapseRule | None = None,
                 oracle_teacher: bool = False) -> None:
        super().__init__()
        self.normalizer = Normalizer()
        self.loss_fn = KeypointMSELoss()
        self.hard = hard
        self.unsup_weight = float(unsup_weight)
        self.rampup_steps = int(rampup_steps)
        self.confidence_threshold = float(confidence_threshold)
        self.collapse = collapse or CollapseRule()
        self.oracle_teacher = bool(oracle_teacher)
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

    @torch.no_grad()
    def _teacher(self, net: nn.Module, easy: torch.Tensor, unlabeled: Batch
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(teacher heatmaps (B, K, h, w), joint weights (B, K)) of one teaching network: its prediction
        on the normalised easy view ``easy``, or with ``oracle_teacher`` the batch's ground truth (the
        GT weights, times the confidence gate like any teacher's)."""
        if self.oracle_teacher:
            heatmaps, gt_weights = oracle_heatmaps(unlabeled)
            return heatmaps, gt_weights * self._joint_weights(heatmaps)
        heatmaps = net(easy).float().detach()
        return heatmaps, self._joint_weights(heatmaps)

    def _diagnostics(self, unlabeled: Batch, teacher: torch.Tensor, student: torch.Tensor,
                     target: torch.Tensor, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Collapse diagnostics, and the ground-truth ones when the batch has ground truth."""
        c = self.collapse
        return {**unlabeled_diagnostics(teacher, student, target, c.threshold, c.radius),
                **ground_truth_diagnostics(unlabeled, teacher, student, theta, self.hard.stride, c.radius)}

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
            teacher, weights = self._teacher(net, self.normalizer(images_u), unlabeled)
            (hard,), theta = self.hard_views(images_u, [teacher])
            target = self.hard.warp_heatmaps(teacher, theta)
        student = net(hard).float()
        loss_unsup = self.loss_fn(student, target, weights)
        ramp = self._ramp()
        loss = loss_sup + ramp * loss_unsup
        self.global_step += 1
        logs = {"loss": loss, "loss_sup": loss_sup, "loss_unsup": loss_unsup, "unsup_weight": ramp,
                **self._diagnostics(unlabeled, teacher, student, target, theta)}
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
        return self._crossed_views(unlabeled_images, teacher1, teacher2)[:4]

    @torch.no_grad()
    def _crossed_views(self, unlabeled_images: torch.Tensor, teacher1: torch.Tensor, teacher2: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`hard_inputs` and the shared sampling matrices theta (B, 2, 3)."""
        (hard1, hard2), theta = self.hard_views(unlabeled_images, [teacher2, teacher1])
        warp = self.hard.warp_heatmaps
        return hard1, hard2, warp(teacher2, theta), warp(teacher1, theta), theta

    def training_step(self, labeled: Batch, unlabeled: Batch | None = None) -> StepOutput:
        images_u = self._check(unlabeled)
        f1, f2 = self.networks["net1"], self.networks["net2"]
        x_l = self.normalizer(labeled["image"])
        loss_sup1 = self.loss_fn(f1(x_l), labeled["heatmaps"], labeled["weights"])
        loss_sup2 = self.loss_fn(f2(x_l), labeled["heatmaps"], labeled["weights"])
        with torch.no_grad():
            x_e = self.normalizer(images_u)
            teacher1, weights1 = self._teacher(f1, x_e, unlabeled)
            teacher2, weights2 = self._teacher(f2, x_e, unlabeled)
            hard1, hard2, target1, target2, theta = self._crossed_views(images_u, teacher1, teacher2)
        student1 = f1(hard1).float()
        student2 = f2(hard2).float()
        loss_unsup1 = self.loss_fn(student1, target1, weights2)
        loss_unsup2 = self.loss_fn(student2, target2, weights1)
        ramp = self._ramp()
        loss_sup = 0.5 * (loss_sup1 + loss_sup2)
        loss_unsup = loss_unsup1 + loss_unsup2
        loss = loss_sup + ramp * loss_unsup
        self.global_step += 1
        c = self.collapse
        d1 = self._diagnostics(unlabeled, teacher1, student1, target1, theta)
        d2 = self._diagnostics(unlabeled, teacher2, student2, target2, theta)
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
