"""The hard view: warps that keep images and heatmaps aligned, Joint Cutout, RandAugment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pose.codecs.heatmap import HeatmapCodec
from pose.methods.hard_view import (
    CUTOUT_FILL,
    RANDAUGMENT_OPS,
    HardView,
    HardViewConfig,
    affine_about_center,
    apply_randaugment_op,
    draw_affine,
    forward_points,
    joint_cutout,
    rampup_factor,
    randaugment,
    scale_matrix,
    warp,
)

torch.set_num_threads(2)

W, H = 96, 128  # non-square, 3:4 like the paper's 192x256
CODEC = HeatmapCodec(input_size=(W, H), heatmap_size=(24, 32), sigma=2.0, unbiased=True)


def _argmax_xy(x: torch.Tensor) -> torch.Tensor:
    b, k, h, w = x.shape
    i = x.reshape(b, k, -1).argmax(-1)
    return torch.stack([i % w, i // w], -1).float()


def _blobs(points: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """(B, K, 2) points -> (B, K, H, W) Gaussian blobs (an "image" with a bright dot per channel)."""
    ys, xs = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    d2 = (xs - points[..., 0, None, None]) ** 2 + (ys - points[..., 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * sigma**2))


def _random_theta(b: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return affine_about_center(torch.rand(b, generator=g) * 120 - 60, torch.rand(b, generator=g) * 0.5 + 0.75, (W, H))


def test_warped_image_and_warped_teacher_heatmap_agree():
    """A keypoint moved by the transform lands within a pixel of the warped heatmap's peak, and the
    warped image's dot sits at the same place."""
    g = torch.Generator().manual_seed(1)
    b = 24
    kp = torch.stack([torch.rand(b, generator=g) * 40 + 28, torch.rand(b, generator=g) * 56 + 36], -1)[:, None]
    theta = _random_theta(b, seed=2)
    moved = forward_points(kp, theta)  # (B, 1, 2) input pixels in the hard view
    assert (moved - kp).abs().max() > 5  # the transforms really move things

    heatmaps = torch.from_numpy(np.stack([CODEC.encode(k.numpy(), np.ones(1, np.float32))[0] for k in kp]))
    view = HardView(HardViewConfig(), (W, H), CODEC.stride)
    warped_hm = view.warp_heatmaps(heatmaps, theta)
    hm_peak = _argmax_xy(warped_hm)
    assert (hm_peak - moved / CODEC.stride).norm(dim=-1).max() <= 1.0  # within one heatmap pixel

    warped_img = view.warp_images(_blobs(kp), theta)
    img_peak = _argmax_xy(warped_img)
    assert (img_peak - moved).norm(dim=-1).max() <= 1.0  # within one input pixel
    assert (img_peak / CODEC.stride - hm_peak).norm(dim=-1).max() <= 1.0


def test_extra_transform_is_rigid_in_pixel_space():
    """Distances scale by 1/s in every direction (the original's normalised-coordinate rotation
    would stretch them differently along x and y on a 3:4 crop)."""
    b = 12
    rot = torch.linspace(-60, 60, b)
    scale = torch.full((b,), 1.2)
    theta = affine_about_center(rot, scale, (W, H))
    pts = torch.tensor([[30.0, 40.0], [66.0, 40.0], [30.0, 88.0]]).expand(b, 3, 2)
    peaks = _argmax_xy(warp(_blobs(pts), theta))
    moved = forward_points(pts, theta)
    assert (peaks - moved).norm(dim=-1).max() <= 1.0
    d_x = (moved[:, 1] - moved[:, 0]).norm(dim=-1)
    d_y = (moved[:, 2] - moved[:, 0]).norm(dim=-1)
    torch.testing.assert_close(d_x, torch.full((b,), 36 / 1.2), atol=1e-3, rtol=0)
    torch.testing.assert_close(d_y, torch.full((b,), 48 / 1.2), atol=1e-3, rtol=0)


def test_heatmap_matrix_is_the_input_matrix_at_heatmap_resolution():
    theta = _random_theta(4)
    pts = torch.tensor([[[10.0, 20.0], [50.0, 100.0]]]).expand(4, 2, 2)
    on_input = forward_points(pts, theta) / 4
    on_heatmap = forward_points(pts / 4, scale_matrix(theta, 4.0))
    torch.testing.assert_close(on_input, on_heatmap, atol=1e-4, rtol=0)


def test_draw_affine_follows_the_paper_distribution():
    g = torch.Generator().manual_seed(0)
    m = draw_affine(4000, (W, H), generator=g).double()
    s = torch.sqrt(torch.det(m[:, :, :2]))
    r = torch.rad2deg(torch.atan2(m[:, 0, 1], m[:, 0, 0]))
    assert s.min() >= 0.75 - 1e-5 and s.max() <= 1.25 + 1e-5
    assert r.abs().max() <= 60 + 1e-3
    rotated = (r.abs() > 1e-4).double().mean()
    assert 0.77 < rotated < 0.83  # rotation with probability 0.8
    assert (r.abs() > 59.99).any()  # clipped at +-60
    centre = torch.tensor([(W - 1) / 2, (H - 1) / 2])
    torch.testing.assert_close(forward_points(centre.expand(4000, 1, 2).float(), m.float())[:, 0],
                               centre.expand(4000, 2).float(), atol=1e-3, rtol=0)  # about the crop centre
    none = draw_affine(50, (W, H), rot_prob=0.0, scale_factor=0.0, generator=g)
    torch.testing.assert_close(none, affine_about_center(torch.zeros(50), torch.ones(50), (W, H)))


# ---------------------------------------------------------------------------------------------- cutout
@pytest.mark.parametrize("size", [(192, 256), (96, 128)])
def test_cutout_boxes_cover_the_chosen_joints_including_the_bottom_quarter(size):
    w, h = size
    g = torch.Generator().manual_seed(3)
    b, k = 32, 3
    # joints all over the crop, half of them in the bottom quarter (rows >= 0.75 h)
    x = torch.rand(b, k, generator=g) * (w - 1)
    y = torch.where(torch.arange(b)[:, None] % 2 == 0, 0.75 * h + torch.rand(b, k, generator=g) * (0.25 * h - 1),
                    torch.rand(b, k, generator=g) * (h - 1))
    joints = torch.stack([x, y], -1).floor()
    images = torch.ones(b, 3, h, w)
    out, boxes = joint_cutout(images, joints, num=5, jitter=0.0, half_size=(4, 9), generator=g)
    assert boxes.shape == (b, 5, 4)
    filled = out[:, 0] == 0
    for i in range(b):
        for x0, y0, x1, y1 in boxes[i].tolist():
            assert 0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h
            # the box is centred on one of this image's joints and that joint is filled
            centre_hits = [(x0 <= jx < x1 and y0 <= jy < y1) for jx, jy in joints[i].tolist()]
            assert any(centre_hits)
            assert filled[i, y0:y1, x0:x1].all()
        # nothing outside the boxes is touched
        inside = torch.zeros(h, w, dtype=torch.bool)
        for x0, y0, x1, y1 in boxes[i].tolist():
            inside[y0:y1, x0:x1] = True
        assert torch.equal(filled[i], inside)
    bottom = filled[:, int(0.75 * h):, :]
    assert bottom.any(dim=(1, 2))[::2].all()  # every image with bottom-quarter joints is cut there


def test_cutout_picks_joints_with_replacement_and_sizes_in_range():
    g = torch.Generator().manual_seed(0)
    joints = torch.tensor([[[40.0, 60.0]]]).expand(200, 1, 2)
    _, boxes = joint_cutout(torch.ones(200, 3, 128, 96), joints, num=5, jitter=0.0, half_size=(10, 19), generator=g)
    half = (boxes[..., 2:] - boxes[..., :2]) / 2
    assert half.min() == 10 and half.max() == 19
    # jitter N(0, 10) px moves the centres
    _, jittered = joint_cutout(torch.ones(200, 3, 128, 96), joints, num=1, jitter=10.0, half_size=(10, 10),
                               generator=g)
    centres = (jittered[:, 0, :2] + jittered[:, 0, 2:]).float() / 2
    assert 7 < centres[:, 0].std() < 13


def test_hard_view_cutout_follows_the_teacher_argmax_and_scales_with_input_size():
    view = HardView(HardViewConfig(cutout_joints=2, cutout_jitter=0.0), (W, H), 4.0)
    assert view.cutout_half_size == (5, 10)  # (10, 19) px at 256 rows -> half at 128 rows
    teacher = torch.zeros(2, 17, 32, 24)
    teacher[:, :, 30, 3] = 1.0  # every joint at heatmap (3, 30) -> input (12, 120): bottom rows
    out, boxes = view.cutout(torch.ones(2, 3, H, W), teacher, torch.Generator().manual_seed(0))
    assert (out[:, :, 120, 12] == 0).all()
    assert (out[:, :, 10, 80] == 1).all()


# ---------------------------------------------------------------------------------------------- RandAugment
def _images(b: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, 40, 32), generator=g, dtype=torch.uint8)


@pytest.mark.parametrize("op", RANDAUGMENT_OPS)
@pytest.mark.parametrize("magnitude", [0.0, 20.0, 30.0])
def test_randaugment_ops_keep_dtype_shape_and_range(op, magnitude):
    x = _images()
    for sign in (-1, 1):
        y = apply_randaugment_op(op, x, magnitude, torch.full((6,), sign), torch.rand(6, 2))
        assert y.dtype == torch.uint8 and y.shape == x.shape
    # saturating ops clip instead of wrapping around
    bright = torch.full((2, 3, 8, 8), 250, dtype=torch.uint8)
    if op in ("brightness", "contrast", "color", "sharpness", "solarize_add"):
        y = apply_randaugment_op(op, bright, 30.0, torch.ones(2))
        assert y.min() >= 0 and (y.int() >= 0).all()
        if op == "brightness":
            assert (y == 255).all()


def test_randaugment_op_semantics():
    x = _images()
    assert torch.equal(apply_randaugment_op("invert", x, 20), 255 - x)
    post = apply_randaugment_op("posterize", x, 20)  # value 2.67 -> 6 - 2 = 4 bits
    assert (post & 0x0F).max() == 0 and torch.equal(post, x & 0xF0)
    sol = apply_randaugment_op("solarize", x, 20)  # threshold 256 - 170.7 = 85.3
    assert torch.equal(sol, torch.where(x >= 86, 255 - x, x))
    dark = apply_randaugment_op("brightness", x, 20, -torch.ones(6))  # factor 0.4
    assert (dark.int() - (x.float() * 0.4).int()).abs().max() <= 1
    gray = apply_randaugment_op("color", x, 30, -torch.ones(6))  # factor 0.1: nearly grey
    assert (gray.int().amax(1) - gray.int().amin(1)).float().mean() < 0.2 * (x.int().amax(1) - x.int().amin(1)
                                                                             ).float().mean()
    cut = apply_randaugment_op("cutout", torch.zeros(1, 3, 256, 192, dtype=torch.uint8), 20,
                               centre=torch.tensor([[0.5, 0.5]]))
    fill = torch.tensor(CUTOUT_FILL, dtype=torch.uint8).view(3, 1)
    mask = (cut[0] == fill.view(3, 1, 1)).all(0)
    side = 20 / 30 * 80
    assert abs(mask.sum().item() - side**2) < 4 * side  # a ~53 px square at 256 rows
    with pytest.raises(TypeError):
        apply_randaugment_op("invert", x.float(), 20)


def test_randaugment_batch_draws_per_image_ops_and_keeps_uint8():
    x = _images(b=32, seed=1)
    y = randaugment(x, n=2, magnitude=20, generator=torch.Generator().manual_seed(0))
    assert y.dtype == torch.uint8 and y.shape == x.shape
    changed = (y != x).flatten(1).any(1)
    assert 0.5 < changed.float().mean() <= 1.0  # most images changed, per-image ops
    assert not torch.equal(y, randaugment(x, n=2, magnitude=20, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(x, _images(b=32, seed=1))  # the input is not modified in place
    with pytest.raises(TypeError):
        randaugment(x.float())


def test_rampup_factor():
    assert rampup_factor(0, 0) == 1.0 and rampup_factor(10**6, 0) == 1.0
    assert rampup_factor(0, 100) == pytest.approx(math.exp(-5))
    assert rampup_factor(50, 100) == pytest.approx(math.exp(-5 * 0.25))
    assert rampup_factor(100, 100) == 1.0 and rampup_factor(1000, 100) == 1.0
