"""Ground-truth diagnostics of the unlabeled branch, and the oracle teacher (a diagnosis mode).

When the unlabeled crops have ground truth (``semi.unlabeled=train_gt``: the training instances with
their GT boxes), unlabeled batches carry ``gt_keypoints`` (B, K, 2) in crop pixels of the easy view and
``gt_visible`` (B, K) (:mod:`pose.data.semi`); the consistency methods then also log, every step
(:func:`ground_truth_diagnostics`):

* ``unsup_teacher_pck``: the fraction of labeled joints inside the heatmap whose teacher easy-view
  heatmap argmax lies within ``radius`` heatmap pixels (``method.collapse.radius``, 2 by default) of
  the GT keypoint (GT in heatmap pixels = crop keypoint / stride: heatmap pixel ``j`` sits at input
  pixel ``stride * j``, as in the codec and :mod:`pose.methods.hard_view`);
* ``unsup_student_pck``: the same for the student's hard-view prediction against the GT moved into the
  hard view's frame (:func:`pose.methods.hard_view.forward_points` with the sampling matrix ``theta``).

"Inside the heatmap" means within the pixel grid, ``0 <= x <= w - 1`` and ``0 <= y <= h - 1`` in
heatmap pixels of the frame compared in (the easy view for the teacher, the hard view for the student).
A batch without such a joint gives NaN (the epoch means skip it; MLflow logging skips it with one
warning). Without ground truth (detector boxes) the keys are simply absent.

The oracle teacher (``method.teacher=oracle``, :func:`oracle_heatmaps`) replaces the networks' easy-view
predictions by ``gt_heatmaps`` (B, K, h, w), the codec's encoding of the easy view's GT keypoints, with
``gt_weights`` (B, K) as joint weights; everything downstream (Joint Cutout at the teacher's argmax,
the extra affine, the warp into the hard view, the MSE) is the network teacher's code. These are the
only readers of the ``gt_`` keys: the losses of the methods read the unlabeled ``image`` only.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from pose.data.semi import GT_HEATMAPS, GT_KEYPOINTS, GT_VISIBLE, GT_WEIGHTS
from pose.methods.hard_view import forward_points, heatmap_argmax


@torch.no_grad()
def pck(heatmaps: torch.Tensor, points: torch.Tensor, visible: torch.Tensor, radius: float = 2.0
        ) -> torch.Tensor:
    """Fraction of the labeled joints inside the heatmap whose argmax is within ``radius`` of the point.

    Args:
        heatmaps: (B, K, h, w) predictions (or targets).
        points: (B, K, 2) reference positions (x, y) in heatmap pixels of the same frame.
        visible: (B, K) > 0 for labeled joints.

    Returns:
        a 0-d float tensor on the heatmaps' device (no synchronisation); NaN when no joint counts.
    """
    b, k, h, w = heatmaps.shape
    points = points.to(heatmaps.device, torch.float32)
    x, y = points[..., 0], points[..., 1]
    counted = (visible.to(heatmaps.device) > 0) & (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    d = (heatmap_argmax(heatmaps.float(), 1.0) - points).norm(dim=-1)
    hits = ((d <= radius) & counted).sum()
    return hits.float() / counted.sum().float()


@torch.no_grad()
def teacher_pck(teacher: torch.Tensor, gt_keypoints: torch.Tensor, gt_visible: torch.Tensor, stride: float,
                radius: float = 2.0) -> torch.Tensor:
    """:func:`pck` of the teacher's easy-view heatmaps (B, K, h, w) against the GT keypoints (B, K, 2),
    crop pixels of the easy view (heatmap pixels = crop pixels / ``stride``)."""
    return pck(teacher, gt_keypoints.float() / stride, gt_visible, radius)


@torch.no_grad()
def student_pck(student: torch.Tensor, gt_keypoints: torch.Tensor, gt_visible: torch.Tensor,
                theta: torch.Tensor, stride: float, radius: float = 2.0) -> torch.Tensor:
    """:func:`pck` of the student's hard-view heatmaps (B, K, h, w) against the easy view's GT keypoints
    (B, K, 2, crop pixels) moved into the hard view: ``forward_points(gt, theta) / stride``, with
    ``theta`` (B, 2, 3) the hard view's sampling matrix (hard pixel -> easy pixel, input pixels)."""
    gt = gt_keypoints.float()
    hard = forward_points(gt, theta.to(gt.device))
    return pck(student, hard / stride, gt_visible, radius)


def has_ground_truth(unlabeled: Mapping[str, torch.Tensor]) -> bool:
    """Whether an unlabeled batch carries the keypoints the diagnostics need."""
    return GT_KEYPOINTS in unlabeled and GT_VISIBLE in unlabeled


@torch.no_grad()
def ground_truth_diagnostics(unlabeled: Mapping[str, torch.Tensor], teacher: torch.Tensor,
                             student: torch.Tensor, theta: torch.Tensor, stride: float, radius: float = 2.0
                             ) -> dict[str, torch.Tensor]:
    """``unsup_teacher_pck`` and ``unsup_student_pck`` (0-d tensors) of one step; {} when the unlabeled
    batch has no ground truth.

    Args:
        unlabeled: the unlabeled batch (``gt_keypoints`` (B, K, 2), ``gt_visible`` (B, K) when present).
        teacher: (B, K, h, w) the teacher's easy-view heatmaps (the oracle's, with an oracle teacher).
        student: (B, K, h, w) the student's hard-view prediction.
        theta: (B, 2, 3) the hard view's sampling matrix.
    """
    if not has_ground_truth(unlabeled):
        return {}
    kps, vis = unlabeled[GT_KEYPOINTS], unlabeled[GT_VISIBLE]
    return {"unsup_teacher_pck": teacher_pck(teacher, kps, vis, stride, radius),
            "unsup_student_pck": student_pck(student, kps, vis, theta, stride, radius)}


def oracle_heatmaps(unlabeled: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The oracle teacher of an unlabeled batch: (``gt_heatmaps`` (B, K, h, w) float, ``gt_weights``
    (B, K) float).

    The weights are the codec's: 0 for unlabeled joints and joints off the heatmap, whose target maps are
    all zero (an all-zero target would teach "no joint here" where there is one we cannot see).

    Raises:
        ValueError: the batch has no ``gt_heatmaps`` / ``gt_weights`` (an unlabeled source without ground
            truth, or a stream not built for the oracle).
    """
    missing = [k for k in (GT_HEATMAPS, GT_WEIGHTS) if k not in unlabeled]
    if missing:
        raise ValueError(f"method.teacher=oracle needs unlabeled batches with {', '.join(missing)} "
                         f"(semi.unlabeled=train_gt; got keys {sorted(unlabeled)})")
    return unlabeled[GT_HEATMAPS].float(), unlabeled[GT_WEIGHTS].float()
