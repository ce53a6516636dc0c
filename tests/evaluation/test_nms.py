"""OKS and OKS-NMS."""

from __future__ import annotations

import numpy as np
import pytest

from pose.evaluation import oks_iou, oks_nms
from pose.metainfo import COCO, CROWDPOSE


def _pose(rng: np.random.Generator, k: int, center: tuple[float, float], size: float = 100.0) -> np.ndarray:
    xy = np.asarray(center) + rng.uniform(-size / 2, size / 2, (k, 2))
    return np.concatenate([xy, rng.uniform(0.5, 1.0, (k, 1))], axis=1)


def _reference_oks(
    g: np.ndarray, d: np.ndarray, ag: float, ad: float, sigmas: np.ndarray, vis_thr=None
) -> float:
    """mmpose ``oks_iou`` for one pair, written out joint by joint."""
    total, count = 0.0, 0
    for j in range(len(sigmas)):
        if vis_thr is not None and not (g[j, 2] > vis_thr and d[j, 2] > vis_thr):
            continue
        dist2 = (d[j, 0] - g[j, 0]) ** 2 + (d[j, 1] - g[j, 1]) ** 2
        total += np.exp(-dist2 / (2 * sigmas[j]) ** 2 / ((ag + ad) / 2 + np.spacing(1)) / 2)
        count += 1
    return total / count if count else 0.0


@pytest.mark.parametrize("meta", [COCO, CROWDPOSE])
@pytest.mark.parametrize("vis_thr", [None, 0.7])
def test_oks_iou_matches_per_joint_formula(meta, vis_thr) -> None:
    rng = np.random.default_rng(0)
    k = meta.num_keypoints
    ref = _pose(rng, k, (200, 200))
    others = np.stack(
        [ref + np.concatenate([rng.normal(0, s, (k, 2)), np.zeros((k, 1))], 1) for s in (0, 2, 8, 30)]
    )
    others[..., 2] = rng.uniform(0.4, 1.0, others.shape[:2])
    areas = np.array([9000.0, 10000.0, 11000.0, 12000.0])
    got = oks_iou(ref, others, 10000.0, areas, meta.sigmas_array, vis_thr)
    want = [_reference_oks(ref, o, 10000.0, a, meta.sigmas_array, vis_thr) for o, a in zip(others, areas)]
    assert got.shape == (4,)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0] == pytest.approx(1.0) and got[1] > got[2] > got[3]


def test_oks_iou_single_pose_and_no_visible_joint() -> None:
    rng = np.random.default_rng(1)
    k = CROWDPOSE.num_keypoints
    a, b = _pose(rng, k, (50, 50)), _pose(rng, k, (50, 50))
    single = oks_iou(a, b, 5000.0, 5000.0, CROWDPOSE.sigmas_array)
    assert np.ndim(single) == 0
    assert single == oks_iou(a, b[None], 5000.0, np.array([5000.0]), CROWDPOSE.sigmas_array)[0]
    b[:, 2] = 0.1
    assert oks_iou(a, b, 5000.0, 5000.0, CROWDPOSE.sigmas_array, vis_thr=0.2) == 0.0
    with pytest.raises(ValueError, match="K=14"):
        oks_iou(a, _pose(rng, COCO.num_keypoints, (0, 0)), 1.0, 1.0, CROWDPOSE.sigmas_array)


def test_oks_nms_suppresses_duplicate_keeps_distinct_people() -> None:
    rng = np.random.default_rng(2)
    k = COCO.num_keypoints
    alice = _pose(rng, k, (100, 100))
    bob = _pose(rng, k, (400, 120))
    alice_dup = alice.copy()
    alice_dup[:, :2] += rng.normal(0, 1.0, (k, 2))
    kpts = np.stack([alice_dup, bob, alice, bob + [150.0, 0.0, 0.0]])
    scores = np.array([0.8, 0.7, 0.9, 0.6])
    areas = np.full(4, 10000.0)
    keep = oks_nms(kpts, scores, areas, thr=0.9, sigmas=COCO.sigmas_array)
    assert keep == [2, 1, 3]  # the duplicate (0) goes, highest score first
    assert oks_nms(kpts, scores, areas, thr=1.0, sigmas=COCO.sigmas_array) == [2, 0, 1, 3]


def test_oks_nms_ties_and_empty() -> None:
    k = CROWDPOSE.num_keypoints
    pose = np.concatenate([np.arange(2 * k, dtype=float).reshape(k, 2) * 5, np.ones((k, 1))], axis=1)
    kpts = np.stack([pose, pose, pose + [300.0, 0.0, 0.0]])
    keep = oks_nms(kpts, np.array([0.5, 0.5, 0.5]), np.full(3, 4000.0), 0.9, CROWDPOSE.sigmas_array)
    assert keep == [0, 2]
    assert oks_nms(np.zeros((0, k, 3)), np.zeros(0), np.zeros(0), 0.9, CROWDPOSE.sigmas_array) == []
