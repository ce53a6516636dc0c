"""The "hard" view of PoseCons / PoseDual, built batched on the model's device.

Order (as in Semi_Human_Pose): [RandAugment on the uint8 unlabeled crop] -> normalise -> [Joint
Cutout at the teacher's easy-view joints] -> extra rotation/scale about the crop centre. The teacher's
easy-view heatmaps are warped with the *same* transform into the hard view's frame.

Geometry conventions (the same as :mod:`pose.data.transforms` and the heatmap codec): points are
(x, y) pixel indices; heatmap pixel ``j`` sits at input pixel ``stride * j``. The extra transform is a
2x3 *sampling* matrix ``A`` in input pixels, hard-view pixel -> easy-view pixel,
``p_easy = c + s * R(r) (p_hard - c)`` with ``c`` the crop centre ``((W-1)/2, (H-1)/2)`` and
``R(r) = [[cos r, sin r], [-sin r, cos r]]`` (``cv2.getRotationMatrix2D`` about ``c``). It is rigid in
pixel space (the original applied the same matrix in normalised [-1, 1] coordinates, a shear on a
3:4 crop). A point of the easy view moves to ``A^-1 p`` (:func:`forward_points`); s > 1 zooms out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

REFERENCE_HEIGHT = 256
"""Pixel sizes below (cutout half-sizes and jitter, RandAugment's CutoutAbs) are the original's values
for 256-pixel-high crops; they scale with ``input_height / REFERENCE_HEIGHT``."""

RANDAUGMENT_OPS: tuple[str, ...] = (
    "auto_contrast", "equalize", "invert", "posterize", "solarize", "solarize_add",
    "color", "contrast", "brightness", "sharpness", "cutout",
)
"""The 11 photometric ops of the original ``rand_augment.py`` (no geometric op)."""

_RANGES: dict[str, tuple[float, float]] = {
    "auto_contrast": (0.0, 1.0), "equalize": (0.0, 1.0), "invert": (0.0, 1.0),
    "posterize": (0.0, 4.0), "solarize": (0.0, 256.0), "solarize_add": (0.0, 110.0),
    "color": (0.0, 0.9), "contrast": (0.0, 0.9), "brightness": (0.0, 0.9), "sharpness": (0.0, 0.9),
    "cutout": (0.0, 80.0),
}
CUTOUT_FILL = (125, 123, 114)


@dataclass(frozen=True)
class HardViewConfig:
    """How the hard view is made from the easy one.

    Attributes:
        randaugment: apply RandAugment (photometric ops only) to the unlabeled crop first.
        randaugment_n: ops per image, drawn with replacement.
        randaugment_magnitude: M in [0, 30]; op value = M / 30 * (max - min) + min (the paper: 20).
        cutout_joints: Joint Cutout: boxes at this many joint channels per image, drawn with
            replacement from the K channels (0 = off; the paper: 5).
        cutout_jitter: standard deviation (px at 256-pixel height) of the box-centre jitter.
        cutout_half_size: (min, max) half-size of a box per axis, integer px at 256-pixel height.
        rot_factor, rot_prob: rotation clip(N(0, rot_factor), +-2 rot_factor) degrees with
            probability ``rot_prob`` (else 0).
        scale_factor: scale clip(N(1, scale_factor), 1 +- scale_factor).
    """

    randaugment: bool = False
    randaugment_n: int = 2
    randaugment_magnitude: float = 20.0
    cutout_joints: int = 0
    cutout_jitter: float = 10.0
    cutout_half_size: tuple[int, int] = (10, 19)
    rot_factor: float = 30.0
    rot_prob: float = 0.8
    scale_factor: float = 0.25

    def __post_init__(self) -> None:
        if self.randaugment_n < 1:
            raise ValueError(f"hard.randaugment_n must be >= 1, got {self.randaugment_n}")
        if not 0 <= self.randaugment_magnitude <= 30:
            raise ValueError(f"hard.randaugment_magnitude must be in [0, 30], got {self.randaugment_magnitude}")
        if self.cutout_joints < 0:
            raise ValueError(f"hard.cutout_joints must be >= 0, got {self.cutout_joints}")
        lo, hi = self.cutout_half_size
        if not 1 <= lo <= hi:
            raise ValueError(f"hard.cutout_half_size must be 1 <= min <= max, got {self.cutout_half_size}")
        if self.cutout_jitter < 0 or self.rot_factor < 0 or not 0 <= self.scale_factor < 1:
            raise ValueError("hard.cutout_jitter and hard.rot_factor must be >= 0, hard.scale_factor in [0, 1)")
        if not 0 <= self.rot_prob <= 1:
            raise ValueError(f"hard.rot_prob must be in [0, 1], got {self.rot_prob}")


# ---------------------------------------------------------------------------------------------- geometry
def draw_affine(batch: int, input_size: tuple[int, int], rot_factor: float = 30.0, rot_prob: float = 0.8,
                scale_factor: float = 0.25, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 2, 3) float32 sampling matrices (hard pixel -> easy pixel), drawn on the CPU."""
    rot = (torch.randn(batch, generator=generator, dtype=torch.float64) * rot_factor).clamp(-2 * rot_factor,
                                                                                             2 * rot_factor)
    rot = torch.where(torch.rand(batch, generator=generator, dtype=torch.float64) < rot_prob, rot, 0.0)
    scale = (1.0 + torch.randn(batch, generator=generator, dtype=torch.float64) * scale_factor).clamp(
        1.0 - scale_factor, 1.0 + scale_factor)
    return affine_about_center(rot, scale, input_size)


def affine_about_center(rotation_deg: torch.Tensor, scale: torch.Tensor, input_size: tuple[int, int]
                        ) -> torch.Tensor:
    """Sampling matrices ``p_easy = c + s R(r) (p_hard - c)`` for per-sample rotation (degrees) and scale."""
    w, h = input_size
    cx, cy = (w - 1) * 0.5, (h - 1) * 0.5
    r = torch.deg2rad(rotation_deg.double())
    s = scale.double()
    a, b = s * torch.cos(r), s * torch.sin(r)
    m = torch.stack([
        torch.stack([a, b, cx - a * cx - b * cy], -1),
        torch.stack([-b, a, cy + b * cx - a * cy], -1),
    ], 1)
    return m.float()


def _to3(m: torch.Tensor) -> torch.Tensor:
    last = torch.tensor([0.0, 0.0, 1.0], dtype=m.dtype, device=m.device).expand(m.shape[0], 1, 3)
    return torch.cat([m, last], 1)


def forward_points(points: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Where easy-view points (B, K, 2) land in the hard view (the inverse of the sampling matrix)."""
    inv = torch.linalg.inv(_to3(matrix.double()))[:, :2]
    return (points.double() @ inv[:, :, :2].transpose(1, 2) + inv[:, None, :, 2]).to(points.dtype)


def scale_matrix(matrix: torch.Tensor, stride: float) -> torch.Tensor:
    """The same transform on a grid whose pixel j sits at input pixel ``stride * j`` (heatmaps)."""
    m = matrix.clone()
    m[:, :, 2] = m[:, :, 2] / stride
    return m


def warp(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Bilinear warp with zero padding: out[p] = images[matrix @ p] (pixel-index matrices, (B, 2, 3)).

    Works for images and heatmaps alike (give heatmaps :func:`scale_matrix`'d matrices). The 3x3
    algebra runs where ``matrix`` lives (the CPU, as drawn); only the final theta moves to the images.
    """
    b, _, h, w = images.shape
    # pixel index i <-> normalised u = 2 i / (n - 1) - 1 (align_corners=True)
    to_norm = torch.tensor([[2.0 / max(w - 1, 1), 0.0, -1.0], [0.0, 2.0 / max(h - 1, 1), -1.0], [0.0, 0.0, 1.0]],
                           dtype=torch.float64, device=matrix.device)
    from_norm = torch.linalg.inv(to_norm)
    theta = (to_norm @ _to3(matrix.double()) @ from_norm)[:, :2]
    src = images if images.is_floating_point() else images.float()
    grid = F.affine_grid(theta.to(device=images.device, dtype=torch.float32), [b, 1, h, w], align_corners=True)
    return F.grid_sample(src.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True)


# ---------------------------------------------------------------------------------------------- cutout
def size_factor(input_size: tuple[int, int]) -> float:
    return input_size[1] / REFERENCE_HEIGHT


def heatmap_argmax(heatmaps: torch.Tensor, stride: float) -> torch.Tensor:
    """Integer argmax of (B, K, h, w) heatmaps, in input pixels (B, K, 2) (index * stride)."""
    b, k, h, w = heatmaps.shape
    idx = heatmaps.detach().reshape(b, k, -1).argmax(-1)
    return torch.stack([idx % w, idx // w], -1).float() * stride


def joint_cutout(
    images: torch.Tensor,
    joints: torch.Tensor,
    num: int,
    jitter: float = 10.0,
    half_size: tuple[int, int] = (10, 19),
    fill: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint Cutout: fill ``num`` boxes per image centred near joints drawn with replacement.

    Args:
        images: (B, C, H, W) normalised images (fill 0 = the mean colour).
        joints: (B, K, 2) joint positions (x, y) in input pixels.
        jitter: box-centre jitter standard deviation in pixels (the centre is truncated to an integer).
        half_size: (min, max) integer half-size per axis, drawn independently for x and y.

    Returns:
        the filled images (a new tensor) and the boxes (B, num, 4) as x0, y0, x1, y1 (end-exclusive,
        clipped to the image: x to [0, W], y to [0, H]).
    """
    b, _, h, w = images.shape
    k = joints.shape[1]
    idx = torch.randint(0, k, (b, num), generator=generator)
    noise = torch.randn(b, num, 2, generator=generator) * jitter
    half = torch.randint(half_size[0], half_size[1] + 1, (b, num, 2), generator=generator)
    dev = images.device
    centre = torch.gather(joints.float(), 1, idx.to(dev)[..., None].expand(b, num, 2)) + noise.to(dev)
    centre = centre.trunc()
    half = half.to(dev).float()
    lo, hi = centre - half, centre + half
    limit = torch.tensor([w, h], dtype=torch.float32, device=dev)
    lo = torch.minimum(lo.clamp(min=0), limit)
    hi = torch.minimum(hi.clamp(min=0), limit)
    boxes = torch.cat([lo, hi], -1).long()
    xs = torch.arange(w, device=dev).view(1, 1, 1, w)
    ys = torch.arange(h, device=dev).view(1, 1, h, 1)
    x0, y0, x1, y1 = (boxes[..., i].view(b, num, 1, 1) for i in range(4))
    mask = ((xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)).any(1, keepdim=True)  # (B, 1, H, W)
    return images.masked_fill(mask, fill), boxes


# ---------------------------------------------------------------------------------------------- RandAugment
def op_value(op: str, magnitude: float) -> float:
    lo, hi = _RANGES[op]
    return magnitude / 30.0 * (hi - lo) + lo


def _gray(x: torch.Tensor) -> torch.Tensor:
    """PIL "L" conversion of (B, 3, H, W) uint8 -> (B, 1, H, W) float (ITU-R 601-2 luma, rounded)."""
    xf = x.float()
    return torch.floor(0.299 * xf[:, 0:1] + 0.587 * xf[:, 1:2] + 0.114 * xf[:, 2:3] + 0.5).clamp(0, 255)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance: degenerate + f (x - degenerate), clipped and truncated to uint8."""
    f = factor.view(-1, 1, 1, 1).to(x.device, torch.float32)
    out = degenerate + f * (x.float() - degenerate)
    return out.clamp(0, 255).floor().to(torch.uint8)


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """PIL ImageFilter.SMOOTH (3x3 [[1,1,1],[1,5,1],[1,1,1]] / 13), border pixels unchanged."""
    c = x.shape[1]
    kernel = torch.ones(3, 3, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    xf = x.float()
    out = xf.clone()
    if x.shape[-1] > 2 and x.shape[-2] > 2:
        out[..., 1:-1, 1:-1] = F.conv2d(xf, kernel, groups=c)
    return (out + 0.5).floor()


def apply_randaugment_op(op: str, images: torch.Tensor, magnitude: float, sign: torch.Tensor | None = None,
                         centre: torch.Tensor | None = None, cutout_scale: float = 1.0) -> torch.Tensor:
    """One RandAugment op on (b, 3, H, W) uint8 images.

    Args:
        sign: (b,) +-1, the random direction of the enhance ops (factor 1 +- value).
        centre: (b, 2) in [0, 1), the CutoutAbs square's centre as a fraction of (W, H).
        cutout_scale: multiplies CutoutAbs's side (input height / 256).
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"RandAugment works on uint8 images, got {images.dtype}")
    v = op_value(op, magnitude)
    b, _, h, w = images.shape
    if sign is None:
        sign = torch.ones(b)
    if op == "auto_contrast":
        return TF.autocontrast(images)
    if op == "equalize":
        return TF.equalize(images)
    if op == "invert":
        return 255 - images
    if op == "posterize":
        bits = max(2, 6 - int(v))
        return images & (0xFF ^ (2 ** (8 - bits) - 1))
    if op == "solarize":
        return torch.where(images.float() >= 256.0 - v, 255 - images, images)
    if op == "solarize_add":
        added = (images.float() + v).clamp(0, 255).to(torch.uint8)
        return torch.where(added >= 128, 255 - added, added)
    factor = 1.0 + sign.to(torch.float32) * v
    if op == "color":
        return _blend(_gray(images), images, factor)
    if op == "contrast":
        mean = torch.floor(_gray(images).mean(dim=(1, 2, 3), keepdim=True) + 0.5)
        return _blend(mean, images, factor)
    if op == "brightness":
        return _blend(torch.zeros_like(images, dtype=torch.float32), images, factor)
    if op == "sharpness":
        return _blend(_smooth(images), images, factor)
    if op == "cutout":
        side = v * cutout_scale
        if side <= 0:
            return images
        if centre is None:
            centre = torch.full((b, 2), 0.5)
        c = centre.to(images.device, torch.float32) * torch.tensor([w, h], device=images.device)
        lo = (c - side / 2).clamp(min=0).floor()
        hi = lo + side
        xs = torch.arange(w, device=images.device).view(1, 1, w)
        ys = torch.arange(h, device=images.device).view(1, h, 1)
        mask = ((xs >= lo[:, 0, None, None]) & (xs < hi[:, 0, None, None])
                & (ys >= lo[:, 1, None, None]) & (ys < hi[:, 1, None, None]))[:, None]
        fill = torch.tensor(CUTOUT_FILL, dtype=torch.uint8, device=images.device).view(1, 3, 1, 1)
        return torch.where(mask, fill, images)
    raise ValueError(f"unknown RandAugment op {op!r} (known: {', '.join(RANDAUGMENT_OPS)})")


def randaugment(images: torch.Tensor, n: int = 2, magnitude: float = 20.0, cutout_scale: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """RandAugment on a batch of uint8 images: per image, ``n`` ops drawn with replacement from
    :data:`RANDAUGMENT_OPS`, applied in order at fixed magnitude. Returns a new uint8 tensor."""
    if images.dtype != torch.uint8:
        raise TypeError(f"RandAugment works on uint8 images, got {images.dtype}")
    b = images.shape[0]
    ops = torch.randint(0, len(RANDAUGMENT_OPS), (b, n), generator=generator)
    signs = torch.randint(0, 2, (b, n), generator=generator) * 2 - 1
    centres = torch.rand(b, n, 2, generator=generator)
    out = images.clone()
    for slot in range(n):
        for op_id in ops[:, slot].unique().tolist():
            sel = (ops[:, slot] == op_id).nonzero().flatten()
            sel_dev = sel.to(images.device)
            out[sel_dev] = apply_randaugment_op(RANDAUGMENT_OPS[op_id], out[sel_dev], magnitude, signs[sel, slot],
                                                centres[sel, slot], cutout_scale)
    return out


# ---------------------------------------------------------------------------------------------- the view
class HardView:
    """Makes hard views and warps teacher heatmaps for one input / heatmap geometry.

    Args:
        cfg: the hard-view settings.
        input_size: network input (W, H).
        stride: input pixels per heatmap pixel.
    """

    def __init__(self, cfg: HardViewConfig, input_size: tuple[int, int], stride: float) -> None:
        self.cfg = cfg
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.stride = float(stride)
        self.size_factor = size_factor(self.input_size)

    @property
    def cutout_half_size(self) -> tuple[int, int]:
        lo, hi = self.cfg.cutout_half_size
        f = self.size_factor
        return max(1, round(lo * f)), max(1, round(hi * f))

    def draw_affine(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        c = self.cfg
        return draw_affine(batch, self.input_size, c.rot_factor, c.rot_prob, c.scale_factor, generator)

    def randaugment(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """RandAugment when enabled, else the images unchanged (uint8 in, uint8 out)."""
        if not self.cfg.randaugment:
            return images
        return randaugment(images, self.cfg.randaugment_n, self.cfg.randaugment_magnitude, self.size_factor,
                           generator)

    def cutout(self, images: torch.Tensor, teacher_heatmaps: torch.Tensor,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Joint Cutout at the argmax of ``teacher_heatmaps`` (no-op when ``cutout_joints`` is 0)."""
        if self.cfg.cutout_joints <= 0:
            return images, None
        joints = heatmap_argmax(teacher_heatmaps, self.stride)
        return joint_cutout(images, joints, self.cfg.cutout_joints, self.cfg.cutout_jitter * self.size_factor,
                            self.cutout_half_size, 0.0, generator)

    def warp_images(self, images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        return warp(images, matrix)

    def warp_heatmaps(self, heatmaps: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        return warp(heatmaps.float(), scale_matrix(matrix, self.stride))


def rampup_factor(step: int, rampup_steps: int) -> float:
    """Sigmoid-shaped ramp-up exp(-5 (1 - t)^2), t = step / rampup_steps (1 when ``rampup_steps`` is 0)."""
    if rampup_steps <= 0:
        return 1.0
    t = min(max(step / rampup_steps, 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))
