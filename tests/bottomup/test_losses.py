"""Bottom-up losses on hand-computed cases (spec section 3)."""

import math

import numpy as np
import pytest
import torch

from pose.bottomup.codec import BottomUpCodec
from pose.bottomup.losses import (
    BottomUpLoss,
    BottomUpLossConfig,
    focal_factor,
    masked_mse_heatmap_loss,
    predicted_scale,
    scale_adapted_target,
    scale_target,
    scale_wise_heatmap_loss,
    tag_losses,
)


def _tags_with(values, k=2, h=2, w=2, r=1):
    """(1, K, H, W, R) zeros with ``values[(k, y, x)] = vector`` filled in."""
    tags = torch.zeros(1, k, h, w, r, dtype=torch.float64)
    for (kk, y, x), vec in values.items():
        tags[0, kk, y, x] = torch.as_tensor(vec, dtype=torch.float64)
    return tags


def _person(*indices, p=4, k=2):
    """(P, K, 2) slots with the given flat indices packed first, in the first person slot."""
    out = torch.zeros(p, k, 2, dtype=torch.int64)
    for j, idx in enumerate(indices):
        out[0, j] = torch.tensor([idx, 1])
    return out


def _pad_r(vec, r):
    return list(vec) + [0.0] * (r - len(vec))


# ---------------------------------------------------------------------------- predicted scale
def test_predicted_scale_by_hand():
    tags = torch.zeros(1, 1, 1, 4, 8)
    tags[0, 0, 0, 0] = 1.0  # uniform -> mean of the centres = 0.5
    tags[0, 0, 0, 1, 2] = -3.0  # one-hot (sign ignored) -> c_2 = 2.5/8
    tags[0, 0, 0, 2, 0], tags[0, 0, 0, 2, 7] = 1.0, -3.0  # (1*0.0625 + 3*0.9375) / 4
    # pixel 3: all zero -> 0.5
    tags.requires_grad_(True)
    s = predicted_scale(tags)
    assert s.shape == (1, 1, 1, 4) and not s.requires_grad
    np.testing.assert_allclose(s[0, 0, 0].numpy(), [0.5, 0.3125, 0.71875, 0.5], rtol=1e-6)


def test_predicted_scale_is_about_half_for_small_uniform_tags():
    tags = 1e-3 * (1 + 0.01 * torch.rand(2, 3, 4, 4, 8))
    assert torch.allclose(predicted_scale(tags), torch.full((2, 3, 4, 4), 0.5), atol=2e-3)


# ---------------------------------------------------------------------------- scale target
def test_scale_target_spec_examples():
    u = scale_target(torch.tensor([0.3, 0.5, 0.5625]), 8)
    assert u.shape == (3, 8)
    np.testing.assert_allclose(u.norm(dim=1).numpy(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(u[0, :4].numpy(), [0.05, 0.11, 0.99, 0.09], atol=0.006)
    # s = 0.5: distances 0.4375, 0.3125, 0.1875, 0.0625 mirrored; 16 / sqrt(2 * sum(1/d^2)).
    inv = [1 / 0.4375, 1 / 0.3125, 1 / 0.1875, 1 / 0.0625]
    norm = math.sqrt(2 * sum(v * v for v in inv))
    assert 16 / norm == pytest.approx(0.653, abs=1e-3)
    np.testing.assert_allclose(u[1].numpy(), [v / norm for v in inv + inv[::-1]], rtol=1e-5)
    # s on a bin centre: one-hot.
    np.testing.assert_allclose(u[2].numpy(), np.eye(8)[4], atol=1e-6)


def test_scale_target_r1_is_one():
    assert scale_target(torch.tensor([0.1, 0.9]), 1).tolist() == [[1.0], [1.0]]


# ---------------------------------------------------------------------------- pull / push / scale
@pytest.mark.parametrize("r", [1, 8])
def test_pull_two_joints_tags_1_and_3(r):
    # joint 0 at (y=0, x=0) -> index 0; joint 1 at (y=1, x=1) -> 1*4 + 1*2 + 1 = 7.
    tags = _tags_with({(0, 0, 0): _pad_r([1.0], r), (1, 1, 1): _pad_r([3.0], r)}, r=r)
    pull, push, scale = tag_losses(tags, _person(0, 7)[None], torch.tensor([[0.3, 0, 0, 0]]))
    assert pull.tolist() == [1.0]  # mean of (1-2)^2 and (3-2)^2
    assert push.tolist() == [0.0]  # one person
    assert scale.shape == (1,)


def test_pull_is_squared_l2_over_dims():
    tags = _tags_with({(0, 0, 0): [1.0, 1.0], (1, 1, 1): [3.0, -1.0]}, r=2)
    pull, _, _ = tag_losses(tags, _person(0, 7)[None], torch.zeros(1, 4))
    assert pull.item() == pytest.approx(2.0)  # diffs (-1, 1) and (1, -1)


@pytest.mark.parametrize("r", [1, 8])
def test_push_two_and_three_people(r):
    tags = _tags_with({(0, 0, 0): _pad_r([0.5], r), (0, 0, 1): _pad_r([1.5], r), (0, 1, 0): _pad_r([3.5], r)},
                      r=r)
    joints = torch.zeros(1, 4, 2, 2, dtype=torch.int64)
    joints[0, 0, 0] = torch.tensor([0, 1])  # person 0: tag 0.5
    joints[0, 1, 0] = torch.tensor([1, 1])  # person 1: tag 1.5
    pull, push, _ = tag_losses(tags, joints, torch.zeros(1, 4))
    assert pull.item() == 0.0
    assert push.item() == pytest.approx(0.5 * math.exp(-1.0))  # both ordered pairs give exp(-1)
    joints[0, 3, 0] = torch.tensor([2, 1])  # person in slot 3: tag 3.5 (gaps in the slots are fine)
    _, push3, _ = tag_losses(tags, joints, torch.zeros(1, 4))
    expected = 0.5 * 2 * (math.exp(-1) + math.exp(-9) + math.exp(-4)) / (3 * 2)
    assert push3.item() == pytest.approx(expected)


def test_person_mean_uses_only_flagged_slots():
    # Slot 1 of the person points at index 7 but is unflagged: it must not enter the mean.
    tags = _tags_with({(0, 0, 0): [2.0], (1, 1, 1): [100.0]})
    joints = torch.zeros(1, 1, 2, 2, dtype=torch.int64)
    joints[0, 0, 0] = torch.tensor([0, 1])
    joints[0, 0, 1] = torch.tensor([7, 0])
    pull, push, scale = tag_losses(tags, joints, torch.tensor([[0.5]]))
    assert pull.item() == 0.0 and push.item() == 0.0 and scale.item() == 0.0  # R=1: cos(|2|, 1) = 1


@pytest.mark.parametrize("r", [1, 8])
def test_no_people_gives_zeros(r):
    tags = torch.randn(2, 2, 2, 2, r, requires_grad=True)
    pull, push, scale = tag_losses(tags, torch.zeros(2, 3, 2, 2, dtype=torch.int64), torch.zeros(2, 3))
    assert pull.tolist() == push.tolist() == scale.tolist() == [0.0, 0.0]
    (pull + push + scale).sum().backward()
    assert torch.isfinite(tags.grad).all() and (tags.grad == 0).all()


def test_scale_loss_by_hand():
    r = 8
    u = scale_target(torch.tensor([0.3]), r)[0].double()
    joints = _person(0, 7, p=2)[None]
    s = torch.tensor([[0.3, 0.0]])
    # Tags whose |mean| points along u(s): loss 0, whatever the sign pattern and the length.
    signs = torch.tensor([1, -1, 1, 1, -1, -1, 1, -1], dtype=torch.float64)
    tags = _tags_with({(0, 0, 0): (2.0 * u * signs).tolist(), (1, 1, 1): (2.0 * u * signs).tolist()}, r=r)
    pull, _, scale = tag_losses(tags, joints, s)
    assert pull.item() == pytest.approx(0.0, abs=1e-12) and scale.item() == pytest.approx(0.0, abs=1e-7)
    # |mean| = e_0 and s = 0.5: 1 - u_0(0.5) with u_0 = (1/0.4375) / sqrt(2 * sum 1/d^2).
    norm = math.sqrt(2 * sum(1 / d**2 for d in (0.4375, 0.3125, 0.1875, 0.0625)))
    tags = _tags_with({(0, 0, 0): _pad_r([-1.0], r), (1, 1, 1): _pad_r([-1.0], r)}, r=r)
    _, _, scale = tag_losses(tags, joints, torch.tensor([[0.5, 0.0]]))
    assert scale.item() == pytest.approx(1 - (1 / 0.4375) / norm, rel=1e-6)


# ---------------------------------------------------------------------------- heatmap losses
def test_masked_mse_counts_masked_pixels_in_the_denominator():
    p0 = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    m0 = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    p1 = torch.full((1, 1, 4, 4), 0.5)
    m1 = torch.ones(1, 4, 4)
    m1[0, 0] = 0  # 4 of 16 pixels ignored
    loss = masked_mse_heatmap_loss([p0, p1], [torch.zeros_like(p0), torch.zeros_like(p1)], [m0, m1])
    assert loss.item() == pytest.approx((1 + 16) / 4 + 12 * 0.25 / 16)


def test_scale_adapted_target_is_a_narrower_gaussian_inside_the_patch():
    codec = BottomUpCodec(input_size=32, heatmap_sizes=(32,), sigma=2.0, max_people=1)
    hm = codec.encode(np.array([[[16, 16, 2]]], np.float32), np.zeros((1, 4, 2))).heatmaps[0]
    t = torch.from_numpy(hm)[None]
    for s_hat in (0.1, 0.2, 0.4, 0.7):
        t_adj = scale_adapted_target(t, torch.full_like(t, s_hat), beta=0.4)
        sigma_eff = 2.0 * s_hat / 0.4
        for dy, dx in [(0, 0), (0, 1), (1, 1), (0, 3), (2, -3), (7, 7)]:
            expected = math.exp(-(dx * dx + dy * dy) / (2 * sigma_eff**2))
            assert t_adj[0, 0, 16 + dy, 16 + dx].item() == pytest.approx(expected, rel=1e-4, abs=1e-30)
        assert t_adj[0, 0, 16, 24].item() == 0.0 and t_adj[0, 0, 8, 16].item() == 0.0  # outside the patch


def test_focal_factor_zero_where_target_zero_and_one_at_peak():
    t = torch.tensor([0.0, 1.0, 0.5, 1e-30])
    pi = focal_factor(t, 0.01)
    assert pi[0].item() == 0.0 and pi[1].item() == 1.0
    assert pi[2].item() == pytest.approx((1 - math.log(0.5)) ** -0.01)
    assert pi[3].item() == pytest.approx((1 - math.log(1e-30)) ** -0.01, rel=1e-5)
    assert torch.isfinite(pi).all()


def test_scale_wise_loss_by_hand():
    pred = torch.tensor([[[[0.5, 0.2]]]])
    target = torch.tensor([[[[1.0, 0.0]]]])
    scale = torch.full((1, 1, 1, 2), 0.4)  # = beta: T' = T
    # pixel 0: pi = 1, w = |1 - 0.5| -> 0.25 * 0.5; pixel 1: pi = 0, w = |0.2| -> 0.04 * 0.2.
    full = scale_wise_heatmap_loss([pred], [target], [torch.ones(1, 1, 2)], scale, 0.4, 0.01)
    assert full.item() == pytest.approx((0.125 + 0.008) / 2)
    masked = scale_wise_heatmap_loss([pred], [target], [torch.tensor([[[1.0, 0.0]]])], scale, 0.4, 0.01)
    assert masked.item() == pytest.approx(0.125 / 2)
    # T = 0.5, s_hat = 0.2, beta = 0.4: T' = 0.5^4 = 0.0625, pi = (1 - ln 0.0625)^-0.01; P = 0 -> w = pi.
    loss = scale_wise_heatmap_loss([torch.zeros(1, 1, 1, 1)], [torch.full((1, 1, 1, 1), 0.5)],
                                   [torch.ones(1, 1, 1)], torch.full((1, 1, 1, 1), 0.2), 0.4, 0.01)
    assert loss.item() == pytest.approx(0.0625**2 * (1 - math.log(0.0625)) ** -0.01, rel=1e-6)


def test_scale_wise_loss_upsamples_scale_bilinearly_for_the_half_map():
    scale = torch.tensor([[[[0.2, 0.4], [0.2, 0.4]]]])  # at S_0 = 2
    p0, t0, m0 = torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2)  # contributes 0
    p1, t1, m1 = torch.zeros(1, 1, 4, 4), torch.full((1, 1, 4, 4), 0.5), torch.ones(1, 4, 4)
    loss = scale_wise_heatmap_loss([p0, p1], [t0, t1], [m0, m1], scale, 0.4, 0.01)
    # align_corners=False, 2 -> 4 columns: sources -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
    cols = [0.2, 0.25, 0.35, 0.4]
    terms = []
    for s in cols:
        t_adj = 0.5 ** ((0.4 / s) ** 2)
        terms.append(t_adj**2 * (1 - math.log(t_adj)) ** -0.01)
    assert loss.item() == pytest.approx(sum(terms) / 4, rel=1e-5)


# ---------------------------------------------------------------------------- BottomUpLoss
def _batch(b=2, k=3, sizes=(8, 16), p=4, r=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = {}
    for i, s in enumerate(sizes):
        hm = torch.rand(b, k, s, s, generator=g)
        hm[hm < 0.6] = 0.0  # plenty of exact zeros
        hm[:, :, 0, 0] = 1.0
        batch[f"heatmaps_{i}"] = hm
        mask = torch.ones(b, s, s)
        mask[:, :2] = 0
        batch[f"mask_{i}"] = mask
    joints = torch.zeros(b, p, k, 2, dtype=torch.int64)
    s0 = sizes[0]
    for n in range(2):  # image 0: two people, image 1 (if any): none
        for kk in range(k):
            joints[0, n, kk] = torch.tensor([kk * s0 * s0 + n * s0 + kk, 1])
    batch["joints"] = joints
    batch["box_scales"] = torch.tensor([[0.3, 0.6] + [0.0] * (p - 2)] + [[0.0] * p] * (b - 1))
    preds = [torch.rand(b, k, s, s, generator=g) for s in sizes]
    preds[0][:, :, :2, :2] = 0.0
    preds[-1][:, :, -1] = 1.0
    tags = torch.randn(b, k, s0, s0, r, generator=g)
    tags[:, :, :1] = 0.0  # all-zero tag vectors: person 0 of image 0 (row 0), not person 1 (row 1)
    return preds, tags, batch


@pytest.mark.parametrize("kind", ["ae", "ce"])
@pytest.mark.parametrize("r", [1, 8])
@pytest.mark.parametrize("sizes", [(8,), (8, 16)])
def test_bottomup_loss_total_and_finite_gradients(kind, r, sizes):
    preds, tags, batch = _batch(r=r, sizes=sizes)
    preds = [p.requires_grad_(True) for p in preds]
    tags.requires_grad_(True)
    loss_fn = BottomUpLoss(BottomUpLossConfig(kind=kind))
    out = loss_fn(preds, tags, batch)
    assert set(out) == {"loss", "heatmap", "pull", "push", "scale"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in out.values())
    expected = out["heatmap"] + 1e-3 * out["pull"] + 1e-3 * out["push"]
    if kind == "ce":
        expected = expected + 1e-4 * out["scale"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    if kind == "ae":
        assert out["scale"].item() == 0.0
        hm = masked_mse_heatmap_loss(preds, [batch[f"heatmaps_{i}"] for i in range(len(sizes))],
                                     [batch[f"mask_{i}"] for i in range(len(sizes))])
        assert out["heatmap"].item() == pytest.approx(hm.item())
    # Image 1 has no people: the tag terms are half of image 0's.
    pull, push, scale = tag_losses(tags[:1], batch["joints"][:1], batch["box_scales"][:1])
    assert out["pull"].item() == pytest.approx(pull.item() / 2, rel=1e-6)
    assert out["push"].item() == pytest.approx(push.item() / 2, rel=1e-6)
    if kind == "ce":
        assert out["scale"].item() == pytest.approx(scale.item() / 2, rel=1e-6)
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in preds)
    assert torch.isfinite(tags.grad).all()
    if kind == "ce":
        # s_hat is detached: the heatmap term alone sends no gradient into the tags.
        tags.grad = None
        BottomUpLoss(BottomUpLossConfig(kind="ce", pull_weight=0, push_weight=0, scale_weight=0))(
            preds, tags, batch)["loss"].backward()
        assert tags.grad is None or (tags.grad == 0).all()


def test_ce_loss_ignores_masked_pixels():
    preds, tags, batch = _batch(b=1, sizes=(8,))
    loss_fn = BottomUpLoss(BottomUpLossConfig(kind="ce"))
    base = loss_fn(preds, tags, batch)["heatmap"]
    preds[0][:, :, :2] += 5.0  # rows 0-1 are masked
    assert loss_fn(preds, tags, batch)["heatmap"].item() == pytest.approx(base.item())


def test_bottomup_loss_errors():
    with pytest.raises(ValueError, match="kind"):
        BottomUpLossConfig(kind="bce")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="beta"):
        BottomUpLossConfig(beta=0.0)
    preds, tags, batch = _batch(sizes=(8, 16))
    del batch["mask_1"]
    with pytest.raises(ValueError, match="mask_1"):
        BottomUpLoss()(preds, tags, batch)
    preds, tags, batch = _batch(sizes=(8,))
    with pytest.raises(ValueError, match="tags"):
        BottomUpLoss()(preds, tags[:, :, :4], batch)
    bad = batch["joints"].clone()
    bad[0, 0, 0, 0] = 3 * 8 * 8
    with pytest.raises(ValueError, match="out of range"):
        tag_losses(tags, bad, batch["box_scales"])


def test_codec_targets_feed_the_loss():
    """Encoded joints index the tags where the people are: constant per-person tags give pull 0."""
    codec = BottomUpCodec(input_size=32, heatmap_sizes=(8,), max_people=3, embed_dim=8)
    joints = np.array([[[4, 4, 2], [8, 8, 2]], [[20, 20, 2], [28, 4, 1]]], np.float32)
    boxes = np.tile(np.array([[0, 0], [8, 0], [8, 8], [0, 8]], np.float32), (2, 1, 1))
    t = codec.encode(joints, boxes)
    tags = torch.zeros(1, 2, 8, 8, 8)
    u = scale_target(torch.tensor([0.25]), 8)[0]
    for n, val in enumerate((1.0, -1.0)):
        for kk in range(2):
            x, y = (joints[n, kk, :2] / 4).astype(int)
            tags[0, kk, y, x] = val * 3 * u
    enc_joints, enc_scales = torch.from_numpy(t.joints)[None], torch.from_numpy(t.box_scales)[None]
    pull, push, scale = tag_losses(tags, enc_joints, enc_scales)
    assert pull.item() == pytest.approx(0.0, abs=1e-10)
    assert scale.item() == pytest.approx(0.0, abs=1e-6)  # box scale sqrt(64)/32 = 0.25
    assert push.item() == pytest.approx(0.5 * math.exp(-36.0), rel=1e-4)  # |(3u) - (-3u)|^2 = 36
