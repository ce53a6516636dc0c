"""Bottom-up losses: heatmap losses, (regularised) Associative Embedding tag losses (spec section 3).

Shape legend: B images, K joint types, S_i side of heatmap i (S_0 = the 1/4 map that carries the
tags), R tag dimensions per joint, P person slots per image.

- Classic AE ("ae"): masked heatmap MSE + pull + push (any R, R = 1 is Associative Embedding).
- Coupled Embedding ("ce"): scale-wise heatmap loss whose target width follows the scale read from
  the detached tags, + pull + push + the scale (coupling) loss on |mean tag|.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def bin_centres(
    r: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> torch.Tensor:
    """(R,) scale-bin centres c_d = (d + 0.5) / R."""
    if r < 1:
        raise ValueError(f"the number of scale bins must be >= 1, got {r}")
    return (torch.arange(r, dtype=torch.float64, device=device) + 0.5).div(r).to(dtype)


def predicted_scale(tags: torch.Tensor) -> torch.Tensor:
    """Per-pixel scale read from the tags (spec 3.1), without gradient.

    Args:
        tags: (B, K, H, W, R) predicted tags.

    Returns:
        (B, K, H, W) s_hat = sum_d c_d |t_d| / sum_d |t_d|, the expected bin centre under the
        L1-normalised |t|. In [c_0, c_{R-1}]; 0.5 (the uniform value) where all R tags are exactly 0.
    """
    if tags.ndim != 5:
        raise ValueError(f"predicted_scale: tags must be (B, K, H, W, R), got {tuple(tags.shape)}")
    t = tags.detach().abs()
    c = bin_centres(t.shape[-1], t.dtype, t.device)
    total = t.sum(-1)
    num = (t * c).sum(-1)
    ratio = num / total.clamp_min(torch.finfo(t.dtype).tiny)
    return torch.where(total > 0, ratio, torch.full_like(total, 0.5))


def scale_target(s: torch.Tensor, r: int) -> torch.Tensor:
    """Scale (coupling) target u(s) (spec 3.3).

    Args:
        s: (N,) normalised person scales sqrt(box area) / input_size.
        r: R, the number of bins.

    Returns:
        (N, R) u(s)_d proportional to 1 / (|s - c_d| + 1e-12), L2-normalised (computed in float64,
        returned in ``s``'s floating dtype, float32 for integer input).
    """
    if s.ndim != 1:
        raise ValueError(f"scale_target: s must be (N,), got {tuple(s.shape)}")
    out_dtype = s.dtype if s.is_floating_point() else torch.float32
    c = bin_centres(r, torch.float64, s.device)
    u = 1.0 / ((s.to(torch.float64)[:, None] - c[None]).abs() + 1e-12)
    return (u / u.norm(dim=-1, keepdim=True)).to(out_dtype)


def tag_losses(
    tags: torch.Tensor, joints: torch.Tensor, box_scales: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pull, push and scale losses per image (spec 3.3), vectorised over people.

    Args:
        tags: (B, K, H, W, R) predicted tags at the 1/4 resolution.
        joints: (B, P, K, 2) int encoded joints ``(k*H*W + y*W + x, flag)``; a slot is used if
            flag > 0. A person is valid if it has at least one used slot.
        box_scales: (B, P) person scales (only read for valid people).

    Returns:
        pull, push, scale, each (B,). With N valid people in image b:
        pull = (1/N) sum_n mean_j ||e_nj - mean_n||^2; push = 0.5 * mean over ordered pairs n != m of
        exp(-||mean_n - mean_m||^2); scale = (1/N) sum_n [1 - cos(|mean_n|, u(s_n))].
        N = 0 gives zeros; N = 1 gives push 0.
    """
    if tags.ndim != 5:
        raise ValueError(f"tag_losses: tags must be (B, K, H, W, R), got {tuple(tags.shape)}")
    b, k, h, w, r = tags.shape
    if joints.ndim != 4 or joints.shape[0] != b or joints.shape[2] != k or joints.shape[3] != 2:
        raise ValueError(f"tag_losses: joints must be ({b}, P, {k}, 2) for tags {tuple(tags.shape)}, "
                         f"got {tuple(joints.shape)}")
    if tuple(box_scales.shape) != tuple(joints.shape[:2]):
        raise ValueError(
            f"tag_losses: box_scales must be {tuple(joints.shape[:2])}, got {tuple(box_scales.shape)}"
        )
    index = joints[..., 0].long()
    used = joints[..., 1] > 0
    index = torch.where(used, index, torch.zeros_like(index))
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= k * h * w):
        raise ValueError(
            f"tag_losses: joint index out of range [0, {k * h * w}) for tags {tuple(tags.shape)}"
        )

    flat = tags.reshape(b, k * h * w, r)
    e = flat[torch.arange(b, device=tags.device)[:, None, None], index]  # (B, P, K, R)
    wgt = used.to(tags.dtype)  # (B, P, K)
    count = wgt.sum(-1)  # (B, P)
    valid = count > 0
    n_valid = valid.sum(-1).to(tags.dtype)  # (B,)
    mean = (e * wgt[..., None]).sum(2) / count.clamp_min(1)[..., None]  # (B, P, R)

    per_person_pull = ((e - mean[:, :, None]).pow(2).sum(-1) * wgt).sum(-1) / count.clamp_min(1)
    pull = (per_person_pull * valid).sum(-1) / n_valid.clamp_min(1)

    d2 = (mean[:, :, None] - mean[:, None, :]).pow(2).sum(-1)  # (B, P, P)
    p = mean.shape[1]
    pairs = valid[:, :, None] & valid[:, None, :] & ~torch.eye(p, dtype=torch.bool, device=tags.device)
    push = 0.5 * (torch.exp(-d2) * pairs).sum((1, 2)) / (n_valid * (n_valid - 1)).clamp_min(1)

    u = scale_target(box_scales.reshape(-1).to(tags.dtype), r).reshape(b, p, r)
    cos = F.cosine_similarity(mean.abs(), u, dim=-1, eps=1e-8)
    scale = ((1.0 - cos) * valid).sum(-1) / n_valid.clamp_min(1)
    return pull, push, scale


def _check_lists(
    preds: Sequence[torch.Tensor], targets: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], name: str
) -> None:
    if not (len(preds) == len(targets) == len(masks)) or not preds:
        raise ValueError(f"{name}: need one target and mask per prediction, got {len(preds)} predictions, "
                         f"{len(targets)} targets, {len(masks)} masks")
    for i, (p, t, m) in enumerate(zip(preds, targets, masks)):
        if p.shape != t.shape:
            raise ValueError(f"{name}: prediction {i} {tuple(p.shape)} and target {tuple(t.shape)} differ")
        if p.ndim != 4 or tuple(m.shape) != (p.shape[0], p.shape[2], p.shape[3]):
            raise ValueError(
                f"{name}: mask {i} must be (B, H, W) = {(p.shape[0], *p.shape[2:])}, got {tuple(m.shape)}"
            )


def masked_mse_heatmap_loss(
    preds: Sequence[torch.Tensor], targets: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Associative Embedding / HigherHRNet heatmap loss.

    Args:
        preds, targets: one (B, K, S_i, S_i) per resolution.
        masks: one (B, S_i, S_i) per resolution (1 = use, 0 = ignore).

    Returns:
        Scalar: sum over resolutions of mean_{b,k,y,x} (P - T)^2 * M (ignored pixels count in the
        denominator).
    """
    _check_lists(preds, targets, masks, "masked_mse_heatmap_loss")
    total = preds[0].new_zeros(())
    for p, t, m in zip(preds, targets, masks):
        total = total + ((p - t).pow(2) * m[:, None].to(p.dtype)).mean()
    return total


def scale_adapted_target(target: torch.Tensor, scale: torch.Tensor, beta: float) -> torch.Tensor:
    """T' = T ** ((beta / s_hat) ** 2), without gradient (spec 3.2).

    Args:
        target: (B, K, H, W) Gaussian targets in [0, 1] (sigma in heatmap pixels, peak 1).
        scale: (B, K, H, W) predicted scale s_hat at the same resolution.
        beta: reference scale.

    Returns:
        (B, K, H, W): a Gaussian of sigma * s_hat / beta on the original patch; exactly 0 where T is 0
        (or where the power underflows).
    """
    t = target.detach().clamp(0.0, 1.0)
    exponent = (beta / scale.detach().clamp_min(1e-6)).pow(2)
    return torch.where(t > 0, t.clamp_min(torch.finfo(t.dtype).tiny).pow(exponent), torch.zeros_like(t))


def focal_factor(t_adj: torch.Tensor, gamma: float) -> torch.Tensor:
    """pi = (1 - ln T') ** -gamma, without gradient: 1 at the peak, ~0.97 where T' > 0, exactly 0 where
    T' = 0 (ln 0 = -inf); computed so that no inf or NaN appears."""
    t = t_adj.detach()
    positive = t > 0
    log_t = torch.log(torch.where(positive, t, torch.ones_like(t)))
    return torch.where(positive, (1.0 - log_t).pow(-gamma), torch.zeros_like(t))


def scale_wise_heatmap_loss(
    preds: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    scale: torch.Tensor,
    beta: float,
    gamma: float,
) -> torch.Tensor:
    """Coupled Embedding's scale-wise, weight-adaptive heatmap loss (spec 3.2).

    Args:
        preds, targets: one (B, K, S_i, S_i) per resolution (targets: Gaussians with peak 1).
        masks: one (B, S_i, S_i) per resolution.
        scale: (B, K, S_0, S_0) predicted scale s_hat (no gradient), bilinearly resized to each S_i.
        beta: reference scale: the target becomes T' = T ** ((beta / s_hat) ** 2), i.e. a Gaussian of
            sigma * s_hat / beta on the original patch.
        gamma: focal exponent: pi = (1 - ln T') ** -gamma (1 at the peak, exactly 0 where T' = 0).

    Returns:
        Scalar: sum over resolutions of mean_{b,k,y,x} (P - T')^2 * (pi |1 - P| + (1 - pi) |P|) * M.
    """
    _check_lists(preds, targets, masks, "scale_wise_heatmap_loss")
    if not beta > 0:
        raise ValueError(f"scale_wise_heatmap_loss: beta must be > 0, got {beta}")
    if scale.ndim != 4 or tuple(scale.shape[:2]) != tuple(preds[0].shape[:2]):
        raise ValueError(f"scale_wise_heatmap_loss: scale must be (B, K, S_0, S_0) for predictions "
                         f"{tuple(preds[0].shape)}, got {tuple(scale.shape)}")
    scale = scale.detach()
    total = preds[0].new_zeros(())
    for p, t, m in zip(preds, targets, masks):
        s = scale if scale.shape[-2:] == p.shape[-2:] else F.interpolate(
            scale, size=tuple(p.shape[-2:]), mode="bilinear", align_corners=False)
        t_adj = scale_adapted_target(t.to(p.dtype), s, beta)
        pi = focal_factor(t_adj, gamma)
        weight = pi * (1.0 - p).abs() + (1.0 - pi) * p.abs()
        total = total + ((p - t_adj).pow(2) * weight * m[:, None].to(p.dtype)).mean()
    return total


@dataclass(frozen=True)
class BottomUpLossConfig:
    """Loss recipe (spec 3.4).

    Args:
        kind: "ae" (masked MSE heatmaps + pull + push; the scale term is reported as 0) or "ce"
            (scale-wise heatmap loss + pull + push + scale loss).
        heatmap_weight, pull_weight, push_weight, scale_weight: weights of the four terms.
        beta: scale-wise heatmap reference scale (0.40 COCO, 0.55 CrowdPose).
        focal_gamma: exponent of the weight-adaptive factor.
    """

    kind: Literal["ae", "ce"] = "ce"
    heatmap_weight: float = 1.0
    pull_weight: float = 1e-3
    push_weight: float = 1e-3
    scale_weight: float = 1e-4
    beta: float = 0.40
    focal_gamma: float = 0.01

    def __post_init__(self) -> None:
        if self.kind not in ("ae", "ce"):
            raise ValueError(f"BottomUpLossConfig.kind must be 'ae' or 'ce', got {self.kind!r}")
        for name in ("heatmap_weight", "pull_weight", "push_weight", "scale_weight", "focal_gamma"):
            if getattr(self, name) < 0:
                raise ValueError(f"BottomUpLossConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not self.beta > 0:
            raise ValueError(f"BottomUpLossConfig.beta must be > 0, got {self.beta}")


class BottomUpLoss(nn.Module):
    """The weighted bottom-up training loss.

    ``forward(heatmaps, tags, batch)`` takes the model outputs (a list of (B, K, S_i, S_i) heatmaps
    and (B, K, S_0, S_0, R) tags) and a batch dict with ``heatmaps_{i}`` (B, K, S_i, S_i),
    ``mask_{i}`` (B, S_i, S_i), ``joints`` (B, P, K, 2) and ``box_scales`` (B, P). It returns a dict of
    scalars: ``loss`` (the weighted total) and the unweighted terms ``heatmap``, ``pull``, ``push``,
    ``scale`` (each a mean over images).
    """

    def __init__(self, cfg: BottomUpLossConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg if cfg is not None else BottomUpLossConfig()

    def forward(
        self, heatmaps: Sequence[torch.Tensor], tags: torch.Tensor, batch: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        wanted = [key for i in range(len(heatmaps)) for key in (f"heatmaps_{i}", f"mask_{i}")]
        missing = [key for key in wanted if key not in batch]
        missing += [key for key in ("joints", "box_scales") if key not in batch]
        if missing:
            raise ValueError(f"BottomUpLoss: batch lacks {missing} (have {sorted(batch)})")
        if tags.ndim != 5 or tuple(tags.shape[:4]) != tuple(heatmaps[0].shape):
            raise ValueError(f"BottomUpLoss: tags must be (B, K, S_0, S_0, R) matching heatmaps[0] "
                             f"{tuple(heatmaps[0].shape)}, got {tuple(tags.shape)}")
        targets = [batch[f"heatmaps_{i}"] for i in range(len(heatmaps))]
        masks = [batch[f"mask_{i}"] for i in range(len(heatmaps))]
        if cfg.kind == "ce":
            scale_map = predicted_scale(tags)
            hm = scale_wise_heatmap_loss(heatmaps, targets, masks, scale_map, cfg.beta, cfg.focal_gamma)
        else:
            hm = masked_mse_heatmap_loss(heatmaps, targets, masks)
        pull, push, scale = tag_losses(tags, batch["joints"], batch["box_scales"])
        pull, push = pull.mean(), push.mean()
        scale = scale.mean() if cfg.kind == "ce" else tags.new_zeros(())
        loss = cfg.heatmap_weight * hm + cfg.pull_weight * pull + cfg.push_weight * push
        if cfg.kind == "ce":
            loss = loss + cfg.scale_weight * scale
        return {"loss": loss, "heatmap": hm, "pull": pull, "push": push, "scale": scale}
