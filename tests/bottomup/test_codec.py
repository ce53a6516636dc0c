"""BottomUpCodec: hand-computed targets (joint indices, box scales, heatmaps, over-cap policy)."""

import math

import numpy as np
import pytest
import torch

from pose.bottomup import grouping as grouping_module
from pose.bottomup.codec import BottomUpCodec, BottomUpTargets
from pose.bottomup.grouping import GroupingConfig


def _boxes(n):
    """n axis-aligned 4x4 boxes (TL, TR, BR, BL)."""
    return np.tile(np.array([[0, 0], [4, 0], [4, 4], [0, 4]], np.float32), (n, 1, 1))


def _hand_case():
    """Four people, K=3, input 32, heatmaps (8, 16): joint (x, y) in input px -> S=8 px is (x/4, y/4)."""
    joints = np.zeros((4, 3, 3), np.float32)
    joints[0] = [[10, 6, 2], [4, 4, 0], [30, 31, 1]]  # (2.5,1.5)->(2,1); v=0; (7.5,7.75)->(7,7)
    joints[1] = [[-3, 5, 2], [33, 5, 2], [0, 0, 2]]  # x<0 out; x=8.25 out; (0,0)
    joints[2] = [[5, 5, 0], [6, 6, 0], [7, 7, 0]]  # nothing visible: no slot
    joints[3] = [[0, 0, 0], [12, 20, 1], [0, 0, 0]]  # (3,5)
    return joints


@pytest.mark.parametrize("embed_dim", [1, 8])
def test_joint_index_encoding_by_hand(embed_dim):
    codec = BottomUpCodec(input_size=32, heatmap_sizes=(8, 16), sigma=1.0, max_people=5, embed_dim=embed_dim)
    t = codec.encode(_hand_case(), _boxes(4))
    assert isinstance(t, BottomUpTargets)
    assert t.joints.shape == (5, 3, 2) and t.joints.dtype == np.int64
    expected = np.zeros((5, 3, 2), np.int64)
    expected[0, 0] = (0 * 64 + 1 * 8 + 2, 1)  # person 0 joint 0: k=0, y=1, x=2
    expected[0, 1] = (2 * 64 + 7 * 8 + 7, 1)  # person 0 joint 2 packed into slot 1: 191
    expected[1, 0] = (2 * 64 + 0 * 8 + 0, 1)  # person 1 joint 2 only: 128
    expected[2, 0] = (1 * 64 + 5 * 8 + 3, 1)  # person 3 (person 2 takes no slot): 107
    np.testing.assert_array_equal(t.joints, expected)
    assert t.num_people == 3 and t.num_dropped == 0
    # Box scales: sqrt(4*4)/32 for the kept people, 0 for the unused slots.
    np.testing.assert_allclose(t.box_scales, [0.125, 0.125, 0.125, 0, 0])
    assert t.box_scales.dtype == np.float32


def test_heatmaps_at_every_resolution_scale_the_input_coordinates():
    codec = BottomUpCodec(input_size=32, heatmap_sizes=(8, 16), sigma=1.0, max_people=5)
    t = codec.encode(_hand_case(), _boxes(4))
    hm0, hm1 = t.heatmaps
    assert hm0.shape == (3, 8, 8) and hm1.shape == (3, 16, 16) and hm0.dtype == np.float32
    # Peaks (value 1) at the truncated joint: S=8 -> (x/4, y/4), S=16 -> (x/2, y/2).
    assert hm0[0, 1, 2] == 1.0 and hm1[0, 3, 5] == 1.0
    assert hm0[2, 7, 7] == 1.0 and hm1[2, 15, 15] == 1.0
    assert hm0[2, 0, 0] == 1.0 and hm1[2, 0, 0] == 1.0
    assert hm0[1, 5, 3] == 1.0 and hm1[1, 10, 6] == 1.0
    # Exactly these peaks: v=0 joints and out-of-map joints add nothing.
    assert sorted(zip(*np.nonzero(hm0 == 1.0))) == [(0, 1, 2), (1, 5, 3), (2, 0, 0), (2, 7, 7)]
    assert sorted(zip(*np.nonzero(hm1 == 1.0))) == [(0, 3, 5), (1, 10, 6), (2, 0, 0), (2, 15, 15)]


def test_box_scale_formula_on_a_rotated_box():
    codec = BottomUpCodec(input_size=32, heatmap_sizes=(8,), max_people=2)
    joints = np.array([[[8, 8, 2]], [[16, 16, 2]]], np.float32)
    # TL=(0,0), TR=(3,4) (|TL-TR| = 5), BL=(-8,6) (|TL-BL| = 10), BR = TR + BL.
    rotated = np.array([[0, 0], [3, 4], [-5, 10], [-8, 6]], np.float32)
    upright = np.array([[1, 1], [17, 1], [17, 5], [1, 5]], np.float32)  # 16 x 4
    t = codec.encode(joints, np.stack([rotated, upright]))
    np.testing.assert_allclose(t.box_scales, [math.sqrt(50) / 32, 8 / 32], rtol=1e-6)


def test_heatmap_peak_and_truncation_sigma_2():
    codec = BottomUpCodec(input_size=32, heatmap_sizes=(32,), sigma=2.0, max_people=2)
    t = codec.encode(np.array([[[10.3, 12.2, 2]]], np.float32), _boxes(1))
    hm = t.heatmaps[0][0]
    assert hm[12, 10] == 1.0  # the pixel whose [p - 0.5, p + 0.5) holds the joint: (10, 12)
    # pixel centres at integers: 10.5 already lies in pixel 11 (floor(x + 0.5) at stride 1)
    assert codec.encode(np.array([[[10.5, 12.2, 2]]], np.float32), _boxes(1)).heatmaps[0][0][12, 11] == 1.0
    # Patch (6*2+3)^2 = 15x15: offsets -7..7 around the pixel.
    assert np.count_nonzero(hm) == 225
    assert hm[12, 17] == pytest.approx(math.exp(-49 / 8), rel=1e-6)
    assert hm[12, 3] == pytest.approx(math.exp(-49 / 8), rel=1e-6)
    assert hm[19, 17] == pytest.approx(math.exp(-98 / 8), rel=1e-5)
    assert hm[12, 18] == 0 and hm[12, 2] == 0 and hm[20, 10] == 0 and hm[4, 10] == 0
    assert hm[13, 11] == pytest.approx(math.exp(-2 / 8), rel=1e-6)
    one_d = sum(math.exp(-d * d / 8) for d in range(-7, 8))
    assert hm.sum() == pytest.approx(one_d**2, rel=1e-5)


def test_heatmap_clipped_at_the_border_and_max_over_people():
    codec = BottomUpCodec(input_size=32, heatmap_sizes=(32,), sigma=2.0, max_people=4)
    joints = np.array([[[1, 1, 2]], [[10, 12, 2]], [[12, 12, 2]]], np.float32)
    hm = codec.encode(joints, _boxes(3)).heatmaps[0][0]
    assert hm[0:9, 0:9].min() > 0  # the corner joint's patch is clipped to x, y in 0..8
    assert hm[12, 11] == pytest.approx(math.exp(-1 / 8), rel=1e-6)
    assert hm[12, 12] == 1.0 and hm[12, 10] == 1.0
    # Max, not sum: at x=16 person 2 (d=4) wins over person 1 (d=6).
    assert hm[12, 16] == pytest.approx(math.exp(-16 / 8), rel=1e-6)
    assert hm.max() == 1.0


def test_joint_just_outside_the_map_is_not_used():
    """(-2 + 0.5) / 4 = -0.375 heatmap px floors to -1: outside, so no peak or slot even though its patch
    would overlap; past the input's last pixel edge (31.5) is outside too."""
    codec = BottomUpCodec(input_size=32, heatmap_sizes=(8,), sigma=2.0, max_people=2)
    t = codec.encode(np.array([[[-2.0, 10.0, 2], [31.4, 31.4, 2], [31.6, 31.6, 2]]], np.float32), _boxes(1))
    assert t.heatmaps[0][0].max() == 0 and t.heatmaps[0][2].max() == 0
    assert t.heatmaps[0][1, 7, 7] == 1.0  # (31.4 + 0.5) / 4 = 7.975 -> 7 is inside
    np.testing.assert_array_equal(t.joints[0], [[1 * 64 + 7 * 8 + 7, 1], [0, 0], [0, 0]])


def test_non_finite_joints_are_ignored():
    codec = BottomUpCodec(input_size=32, heatmap_sizes=(8,), max_people=2)
    t = codec.encode(np.array([[[np.nan, 4.0, 2], [4.0, 4.0, 2]]], np.float32), _boxes(1))
    assert t.heatmaps[0][0].max() == 0 and t.heatmaps[0][1, 1, 1] == 1.0
    np.testing.assert_array_equal(t.joints[0], [[64 + 8 + 1, 1], [0, 0]])


def test_over_cap_policy_keeps_most_joints_then_largest_box():
    codec = BottomUpCodec(input_size=32, heatmap_sizes=(8, 16), max_people=2)
    joints = np.zeros((4, 3, 3), np.float32)
    joints[0] = [[4, 4, 2], [8, 4, 2], [12, 4, 2]]  # A: 3 joints
    joints[1] = [[4, 20, 2], [0, 0, 0], [0, 0, 0]]  # B: 1 joint
    joints[2] = [[20, 4, 2], [24, 4, 2], [28, 4, 2]]  # C: 3 joints
    joints[3] = [[4, 28, 2], [8, 28, 2], [0, 0, 0]]  # D: 2 joints
    boxes = _boxes(4)
    boxes[2] *= 2  # C has the larger box
    t = codec.encode(joints, boxes)
    assert t.num_people == 2 and t.num_dropped == 2
    # A and C kept, in annotation order.
    np.testing.assert_array_equal(t.joints[:, :, 0], [[0 * 64 + 8 + 1, 64 + 8 + 2, 128 + 8 + 3],
                                                      [0 * 64 + 8 + 5, 64 + 8 + 6, 128 + 8 + 7]])
    np.testing.assert_allclose(t.box_scales, [4 / 32, 8 / 32])
    # The heatmaps still get everybody (B's only joint and D's joints).
    assert t.heatmaps[0][0, 5, 1] == 1.0 and t.heatmaps[0][0, 7, 1] == 1.0 and t.heatmaps[0][1, 7, 2] == 1.0
    assert t.heatmaps[1][0, 10, 2] == 1.0

    # Tie on joint count: the larger box wins, whatever the order.
    one = BottomUpCodec(input_size=32, heatmap_sizes=(8,), max_people=1)
    t1 = one.encode(joints[[0, 2]], boxes[[0, 2]])
    assert t1.num_people == 1 and t1.num_dropped == 1
    assert t1.joints[0, 0, 0] == 8 + 5 and t1.box_scales[0] == pytest.approx(8 / 32)
    t2 = one.encode(joints[[2, 0]], boxes[[2, 0]])
    assert t2.joints[0, 0, 0] == 8 + 5


def test_many_people_never_crash():
    codec = BottomUpCodec(input_size=64, heatmap_sizes=(16, 32), max_people=30)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 64, (45, 17, 2))
    joints = np.concatenate([xy, np.full((45, 17, 1), 2.0)], -1).astype(np.float32)
    t = codec.encode(joints, np.tile(_boxes(1), (45, 1, 1)))
    assert t.num_people == 30 and t.num_dropped == 15
    assert (t.joints[:, :, 1] == 1).all() and (t.box_scales > 0).all()


def test_no_people():
    codec = BottomUpCodec(input_size=32, heatmap_sizes=(8, 16), max_people=3)
    t = codec.encode(np.zeros((0, 17, 3), np.float32), np.zeros((0, 4, 2), np.float32))
    assert [h.shape for h in t.heatmaps] == [(17, 8, 8), (17, 16, 16)]
    assert all(h.max() == 0 for h in t.heatmaps)
    assert t.joints.shape == (3, 17, 2) and not t.joints.any() and not t.box_scales.any()
    assert (t.num_people, t.num_dropped) == (0, 0)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="ascending"):
        BottomUpCodec(heatmap_sizes=(256, 128))
    with pytest.raises(ValueError, match="sigma"):
        BottomUpCodec(sigma=0.0)
    with pytest.raises(ValueError, match="max_people"):
        BottomUpCodec(max_people=0)
    codec = BottomUpCodec(input_size=32, heatmap_sizes=(8,))
    with pytest.raises(ValueError, match="box_corners"):
        codec.encode(np.zeros((2, 17, 3)), np.zeros((3, 4, 2)))
    with pytest.raises(ValueError, match="joints"):
        codec.encode(np.zeros((2, 17, 2)), np.zeros((2, 4, 2)))


def test_default_grouping_config():
    assert BottomUpCodec().grouping == GroupingConfig()


def test_decode_delegates_to_grouping(monkeypatch):
    calls = []

    def fake_decode_people(heatmaps, tags, cfg, order):
        calls.append((heatmaps.shape, tags.shape, cfg, list(order)))
        return np.zeros((1, 3, 3), np.float32), np.ones(1, np.float32)

    monkeypatch.setattr(grouping_module, "decode_people", fake_decode_people, raising=False)
    cfg = GroupingConfig(nms_kernel=7)
    codec = BottomUpCodec(input_size=32, heatmap_sizes=(8,), embed_dim=2, grouping=cfg)
    people, scores = codec.decode(torch.zeros(3, 32, 32), torch.zeros(3, 32, 32, 4), order=[2, 0, 1])
    assert people.shape == (1, 3, 3) and scores.tolist() == [1.0]
    assert calls == [(torch.Size([3, 32, 32]), torch.Size([3, 32, 32, 4]), cfg, [2, 0, 1])]
    with pytest.raises(ValueError, match="tag dimension"):
        codec.decode(torch.zeros(3, 32, 32), torch.zeros(3, 32, 32, 3), order=[0, 1, 2])
    with pytest.raises(ValueError, match="permutation"):
        codec.decode(torch.zeros(3, 32, 32), torch.zeros(3, 32, 32, 2), order=[0, 1])
