"""OKS-based non-maximum suppression of whole-body poses (SimpleBaseline / mmpose ``oks_nms``).

The OKS here is the NMS variant: the scale is the mean of the two poses' areas and every joint counts
(or, with ``vis_thr``, only joints whose score exceeds it in both poses, as in mmpose 1.x).
"""

from __future__ import annotations

import numpy as np


def oks_iou(
    kpt: np.ndarray,
    kpts: np.ndarray,
    area: float,
    areas: np.ndarray | float,
    sigmas: np.ndarray,
    vis_thr: float | None = None,
) -> np.ndarray:
    """OKS between one pose and each of N others.

    Args:
        kpt: (K, 3) reference pose, ``(x, y, score)`` per joint.
        kpts: (N, K, 3) other poses, or a single (K, 3) pose.
        area: reference pose area (e.g. box w*h).
        areas: (N,) areas of the other poses (a scalar for a single pose).
        sigmas: (K,) per-joint OKS sigmas (``DatasetMeta.sigmas_array``).
        vis_thr: if given, a joint counts only when its score is > vis_thr in both poses; a pair with no
            such joint has OKS 0.

    Returns:
        (N,) float64 OKS values (shape () for a single (K, 3) pose).
    """
    kpt = np.asarray(kpt, dtype=np.float64)
    kpts = np.asarray(kpts, dtype=np.float64)
    single = kpts.ndim == 2
    if single:
        kpts = kpts[None]
    areas = np.broadcast_to(np.asarray(areas, dtype=np.float64), kpts.shape[:1])
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if kpt.shape != (len(sigmas), 3) or kpts.shape[1:] != kpt.shape:
        raise ValueError(
            f"poses must be (K, 3) / (N, K, 3) with K={len(sigmas)}, got {kpt.shape} and {kpts.shape}"
        )
    variances = (sigmas * 2) ** 2
    dx = kpts[:, :, 0] - kpt[:, 0]
    dy = kpts[:, :, 1] - kpt[:, 1]
    e = (dx**2 + dy**2) / variances / ((area + areas)[:, None] / 2 + np.spacing(1)) / 2
    sim = np.exp(-e)
    if vis_thr is None:
        oks = sim.mean(axis=1)
    else:
        mask = (kpt[:, 2] > vis_thr) & (kpts[:, :, 2] > vis_thr)
        count = mask.sum(axis=1)
        oks = np.where(count > 0, (sim * mask).sum(axis=1) / np.maximum(count, 1), 0.0)
    return oks[0] if single else oks


def oks_nms(
    kpts: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    thr: float,
    sigmas: np.ndarray,
    vis_thr: float | None = None,
) -> list[int]:
    """Greedy OKS-NMS: keep the best-scoring pose, drop every other pose whose OKS with it is > ``thr``, repeat.

    Args:
        kpts: (N, K, 3) poses ``(x, y, score)``.
        scores: (N,) pose scores.
        areas: (N,) pose areas (SimpleBaseline uses the padded box area, mmpose the box area).
        thr: OKS above which a pose is suppressed (SimpleBaseline ``OKS_THRE`` 0.9).
        sigmas: (K,) per-joint OKS sigmas.
        vis_thr: optional joint-score threshold, see :func:`oks_iou`.

    Returns:
        Kept indices, highest score first (ties: lower index first).
    """
    kpts = np.asarray(kpts, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    areas = np.asarray(areas, dtype=np.float64)
    n = len(kpts)
    if n == 0:
        return []
    if scores.shape != (n,) or areas.shape != (n,):
        raise ValueError(f"scores and areas must be ({n},), got {scores.shape} and {areas.shape}")
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        if rest.size == 0:
            break
        oks = oks_iou(kpts[i], kpts[rest], areas[i], areas[rest], sigmas, vis_thr)
        order = rest[oks <= thr]
    return keep
