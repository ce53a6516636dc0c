"""Ground-truth diagnostics of the unlabeled branch: teacher and student PCK, the oracle's heatmaps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pose.codecs.heatmap import HeatmapCodec
from pose.methods.diagnostics import ground_truth_diagnostics, oracle_heatmaps, pck, student_pck, teacher_pck
from pose.methods.hard_view import affine_about_center

CODEC = HeatmapCodec(input_size=(64, 96), heatmap_size=(16, 24))  # stride 4
STRIDE = CODEC.stride
W, H = CODEC.input_size
K = 6


def _keypoints(b: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(b, K, 2) crop pixels on whole heatmap pixels, >= 3 heatmap pixels from every border, and (b, K)
    visible."""
    rng = np.random.default_rng(seed)
    hm = np.stack([rng.integers(3, 13, (b, K)), rng.integers(3, 21, (b, K))], -1)
    return (hm * STRIDE).astype(np.float32), np.ones((b, K), np.float32)


def _ring(b: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(b, K, 2) crop pixels on a circle of radius 24 px (6 heatmap pixels) about the crop centre."""
    a = np.deg2rad(np.arange(K) * 360.0 / K + 15.0)
    c = np.array([(W - 1) / 2, (H - 1) / 2])
    ring = c + 24.0 * np.stack([np.cos(a), np.sin(a)], -1)
    return np.repeat(ring[None], b, 0).astype(np.float32), np.ones((b, K), np.float32)


def _gt_heatmaps(kps: np.ndarray, vis: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    hm, w = CODEC.encode_batch(kps, vis)
    return torch.from_numpy(hm), torch.from_numpy(w)


def test_teacher_pck_is_one_for_the_gt_heatmaps_and_zero_when_they_are_shifted_beyond_the_radius():
    kps, vis = _keypoints()
    hm, _ = _gt_heatmaps(kps, vis)
    k, v = torch.from_numpy(kps), torch.from_numpy(vis)
    assert teacher_pck(hm, k, v, STRIDE).item() == 1.0
    # 3 heatmap pixels (12 input pixels) away: outside the 2-pixel radius for every joint
    assert teacher_pck(torch.roll(hm, 3, dims=-1), k, v, STRIDE).item() == 0.0
    assert teacher_pck(torch.roll(hm, (2, 2), dims=(-2, -1)), k, v, STRIDE).item() == 0.0  # 2.83 px
    # 2 pixels away still counts; a larger radius accepts 3
    assert teacher_pck(torch.roll(hm, 2, dims=-2), k, v, STRIDE).item() == 1.0
    assert teacher_pck(torch.roll(hm, 3, dims=-1), k, v, STRIDE, radius=3.5).item() == 1.0


def test_pck_counts_labeled_joints_inside_the_heatmap_only():
    hm = torch.zeros(1, 4, 24, 16)
    hm[0, :, 10, 5] = 1.0  # every channel's argmax at heatmap (5, 10)
    points = torch.tensor([[[5.0, 10.0], [5.0, 10.0], [12.0, 10.0], [-1.0, 10.0]]])
    visible = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    # joint 0: hit; joint 1: not labeled; joint 2: a miss; joint 3: outside the heatmap (not counted)
    assert pck(hm, points, visible).item() == pytest.approx(0.5)
    assert pck(hm, torch.tensor([[[16.0, 0.0], [0.0, 24.0], [0.0, 0.0], [0.0, 0.0]]]),
               torch.tensor([[1.0, 1.0, 0.0, 0.0]])).isnan()  # no joint to count: NaN, not 0
    corner = torch.tensor([[[15.0, 23.0]] * 4])
    assert pck(hm, corner, torch.ones(1, 4)).item() == 0.0  # the far corner is inside: counted (a miss)


def _hard_frame(kps: np.ndarray, rot_deg: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Where easy-view points land in the hard view of ``p_easy = c + s R(r) (p_hard - c)``, solved
    here by hand (R(r) = [[cos, sin], [-sin, cos]]): p_hard = c + R(-r) (p_easy - c) / s."""
    c = np.array([(W - 1) / 2, (H - 1) / 2])
    out = np.empty_like(kps, dtype=np.float64)
    for i, (r, s) in enumerate(zip(np.deg2rad(rot_deg), scale)):
        inv = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]]) / s
        out[i] = (kps[i] - c) @ inv.T + c
    return out


def test_student_pck_through_a_known_rotation_and_scale():
    kps, vis = _ring()
    rot, scale = np.array([40.0, -35.0]), np.array([0.9, 1.2])
    theta = affine_about_center(torch.tensor(rot), torch.tensor(scale), (W, H))
    hard = _hard_frame(kps, rot, scale) / STRIDE  # heatmap pixels of the hard view
    assert (hard >= 0).all() and (hard[..., 0] <= 15).all() and (hard[..., 1] <= 23).all()  # all in view
    assert (np.linalg.norm(hard - kps / STRIDE, axis=-1) > 3).all()  # and every joint moved
    student = torch.zeros(2, K, 24, 16)
    for b in range(2):
        for j in range(K):
            x, y = np.round(hard[b, j]).astype(int)
            student[b, j, y, x] = 1.0
    k, v = torch.from_numpy(kps), torch.from_numpy(vis)
    assert student_pck(student, k, v, theta, STRIDE).item() == 1.0
    # the same peaks judged in the easy view's frame (no transform) all miss
    assert teacher_pck(student, k, v, STRIDE).item() == 0.0
    # identity transform: the student is judged like a teacher
    eye = affine_about_center(torch.zeros(2), torch.ones(2), (W, H))
    hm, _ = _gt_heatmaps(kps, vis)
    assert student_pck(hm, k, v, eye, STRIDE).item() == 1.0
    assert student_pck(hm, k, v, theta, STRIDE).item() == 0.0


def test_ground_truth_diagnostics_need_ground_truth_and_the_oracle_its_heatmaps():
    kps, vis = _keypoints()
    hm, weights = _gt_heatmaps(kps, vis)
    eye = affine_about_center(torch.zeros(2), torch.ones(2), (W, H))
    batch = {"image": torch.zeros(2, 3, H, W, dtype=torch.uint8), "index": torch.arange(2)}
    assert ground_truth_diagnostics(batch, hm, hm, eye, STRIDE) == {}  # detector boxes: nothing, not NaN
    with pytest.raises(ValueError, match="method.teacher=oracle needs unlabeled batches with gt_heatmaps"):
        oracle_heatmaps(batch)
    batch.update(gt_keypoints=torch.from_numpy(kps), gt_visible=torch.from_numpy(vis))
    logs = ground_truth_diagnostics(batch, hm, torch.roll(hm, 3, dims=-1), eye, STRIDE)
    assert {k: v.item() for k, v in logs.items()} == {"unsup_teacher_pck": 1.0, "unsup_student_pck": 0.0}
    batch.update(gt_heatmaps=hm.half(), gt_weights=weights)
    teacher, w = oracle_heatmaps(batch)
    assert teacher.dtype == torch.float32 and torch.equal(w, weights)
