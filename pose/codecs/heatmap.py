"""The heatmap codec: one object that makes Gaussian targets and decodes predictions.

The data pipeline calls :meth:`HeatmapCodec.encode` and the head / evaluator call
:meth:`HeatmapCodec.decode` and :meth:`HeatmapCodec.flip_back` on the same instance, so targets and
decoding cannot drift apart (mmpose's MSRAHeatmap idea).

Coordinates: keypoints are in input-crop pixels; heatmap pixel = input pixel / stride.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class HeatmapCodec:
    """Gaussian heatmap targets with argmax (+quarter-pixel shift) or DARK decoding.

    Args:
        input_size: network input (width, height) in pixels.
        heatmap_size: heatmap (width, height); the stride is input / heatmap (4 by default).
        sigma: Gaussian sigma in heatmap pixels.
        unbiased: DARK encoding: centre the Gaussian at the exact sub-pixel position instead of the
            rounded one (SimpleBaseline rounds).
        decode_mode: "shift" (argmax + 0.25 px towards the higher neighbour) or "dark"
            (Gaussian-smoothed Taylor refinement).
        blur_kernel: smoothing kernel size for DARK decoding (11 for sigma 2, as in DARK).
    """

    input_size: tuple[int, int] = (192, 256)
    heatmap_size: tuple[int, int] = (48, 64)
    sigma: float = 2.0
    unbiased: bool = False
    decode_mode: Literal["shift", "dark"] = "shift"
    blur_kernel: int = 11

    def __post_init__(self) -> None:
        sx = self.input_size[0] / self.heatmap_size[0]
        sy = self.input_size[1] / self.heatmap_size[1]
        if abs(sx - sy) > 1e-6:
            raise ValueError(f"input {self.input_size} and heatmap {self.heatmap_size} have different strides")
        if self.decode_mode not in ("shift", "dark"):
            raise ValueError(f"decode_mode must be 'shift' or 'dark', got {self.decode_mode!r}")
        if self.blur_kernel % 2 != 1:
            raise ValueError("blur_kernel must be odd")

    @property
    def stride(self) -> float:
        return self.input_size[0] / self.heatmap_size[0]

    # ------------------------------------------------------------------ encode
    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Targets for one instance.

        Args:
            keypoints: (K, 2) input-crop pixel coordinates.
            visible: (K,) 1 for labeled joints, 0 otherwise.

        Returns:
            heatmaps (K, h, w) float32 with peak 1 (a 6*sigma+1 window, zero outside it), and
            weights (K,) float32: 0 for unlabeled joints and for joints whose window misses the map.
        """
        heatmaps, weights = self.encode_batch(keypoints[None], visible[None])
        return heatmaps[0], weights[0]

    def encode_batch(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`encode` for a batch: (B, K, 2) and (B, K) -> (B, K, h, w) and (B, K), elementwise the
        same arithmetic (so the same numbers as encoding one instance at a time)."""
        gy, gx, weights = self.encode_factors(keypoints, visible)
        heatmaps = self.expand_factors(gy, gx)
        assert heatmaps.shape == (*keypoints.shape[:2], self.heatmap_size[1], self.heatmap_size[0])
        return heatmaps, weights

    def encode_factors(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The separable parts of :meth:`encode_batch`: the Gaussian's factors gy (B, K, h) and gx (B, K, w),
        float32, with ``heatmaps = expand_factors(gy, gx)`` exactly, and the weights (B, K).

        The factors are (h + w) / (h w) of the heatmaps' bytes: the Ray Data pipeline moves them and
        expands them where the batch is used (``pose.data.shards.decode.collate_batch``)."""
        w, h = self.heatmap_size
        mu = keypoints.astype(np.float64) / self.stride
        if not self.unbiased:
            mu = np.floor(mu + 0.5)
        radius = 3.0 * self.sigma
        lo, hi = np.floor(mu - radius), np.floor(mu + radius) + 1  # the window [lo, hi)
        weights = visible.astype(np.float32)  # a copy
        outside = (lo[..., 0] >= w) | (lo[..., 1] >= h) | (hi[..., 0] <= 0) | (hi[..., 1] <= 0)
        weights[outside] = 0.0
        xs = np.arange(w, dtype=np.float64)
        ys = np.arange(h, dtype=np.float64)
        gx = np.exp(-((xs - mu[..., :1]) ** 2) / (2 * self.sigma**2))
        gy = np.exp(-((ys - mu[..., 1:]) ** 2) / (2 * self.sigma**2))
        gx *= (xs >= lo[..., :1]) & (xs < hi[..., :1])
        gy *= (ys >= lo[..., 1:]) & (ys < hi[..., 1:])
        gy *= (weights > 0)[..., None]  # zero maps for unlabeled and off-map joints
        # the float64 factors rounded once each; expand_factors makes one float32 multiply per pixel
        return gy.astype(np.float32), gx.astype(np.float32), weights

    @staticmethod
    def expand_factors(gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
        """(..., h) and (..., w) float32 factors -> (..., h, w) heatmaps: their outer product."""
        return np.multiply(gy[..., :, None], gx[..., None, :])

    # ------------------------------------------------------------------ decode
    def decode(self, heatmaps: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints from heatmaps.

        Args:
            heatmaps: (B, K, h, w) predictions.

        Returns:
            coords (B, K, 2) in input-crop pixels and scores (B, K) (the heatmap maxima).
        """
        hm = heatmaps.detach().float().cpu().numpy() if isinstance(heatmaps, torch.Tensor) else heatmaps
        hm = np.asarray(hm, dtype=np.float32)
        b, k, h, w = hm.shape
        flat = hm.reshape(b, k, -1)
        idx = flat.argmax(axis=2)
        scores = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
        coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float32)
        coords[scores <= 0] = 0.0
        if self.decode_mode == "dark":
            coords = self._refine_dark(hm, coords)
        else:
            coords = self._refine_shift(hm, coords)
        return coords * self.stride, scores

    @staticmethod
    def _refine_shift(hm: np.ndarray, coords: np.ndarray) -> np.ndarray:
        """Move 0.25 px towards the higher neighbour on each axis (interior pixels only)."""
        b, k, h, w = hm.shape
        x = coords[..., 0].astype(int)
        y = coords[..., 1].astype(int)
        bi, ki = np.meshgrid(np.arange(b), np.arange(k), indexing="ij")
        inner = (x > 0) & (x < w - 1) & (y > 0) & (y < h - 1)
        xc, yc = np.clip(x, 1, w - 2), np.clip(y, 1, h - 2)
        dx = hm[bi, ki, yc, xc + 1] - hm[bi, ki, yc, xc - 1]
        dy = hm[bi, ki, yc + 1, xc] - hm[bi, ki, yc - 1, xc]
        out = coords.copy()
        out[..., 0] += np.where(inner, np.sign(dx) * 0.25, 0.0)
        out[..., 1] += np.where(inner, np.sign(dy) * 0.25, 0.0)
        return out

    def _refine_dark(self, hm: np.ndarray, coords: np.ndarray) -> np.ndarray:
        """DARK: blur each map (keeping its maximum), take the log, one Newton step at the argmax."""
        b, k, h, w = hm.shape
        sm = np.empty_like(hm)
        for i in range(b):
            for j in range(k):
                m = hm[i, j]
                peak = m.max()
                s = cv2.GaussianBlur(m, (self.blur_kernel, self.blur_kernel), 0, borderType=cv2.BORDER_CONSTANT)
                s_peak = s.max()
                sm[i, j] = s * (peak / s_peak) if s_peak > 0 else s
        logm = np.log(np.maximum(sm, 1e-10))
        pad = np.pad(logm, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
        out = coords.copy()
        x = coords[..., 0].astype(int) + 1
        y = coords[..., 1].astype(int) + 1
        bi, ki = np.meshgrid(np.arange(b), np.arange(k), indexing="ij")
        p = lambda dy, dx: pad[bi, ki, y + dy, x + dx]  # noqa: E731
        dx = 0.5 * (p(0, 1) - p(0, -1))
        dy = 0.5 * (p(1, 0) - p(-1, 0))
        dxx = p(0, 1) - 2 * p(0, 0) + p(0, -1)
        dyy = p(1, 0) - 2 * p(0, 0) + p(-1, 0)
        dxy = 0.25 * (p(1, 1) - p(1, -1) - p(-1, 1) + p(-1, -1))
        det = dxx * dyy - dxy**2
        ok = (np.abs(det) > 1e-12) & (coords[..., 0] > 0) & (coords[..., 0] < w - 1) \
            & (coords[..., 1] > 0) & (coords[..., 1] < h - 1)
        safe = np.where(ok, det, 1.0)
        off_x = -(dyy * dx - dxy * dy) / safe
        off_y = -(dxx * dy - dxy * dx) / safe
        ok &= (np.abs(off_x) < 1.0) & (np.abs(off_y) < 1.0)
        out[..., 0] += np.where(ok, off_x, 0.0)
        out[..., 1] += np.where(ok, off_y, 0.0)
        return out

    # ------------------------------------------------------------------ flip test
    @staticmethod
    def flip_back(heatmaps: torch.Tensor, flip_indices: np.ndarray | list[int], shift: bool = True) -> torch.Tensor:
        """Heatmaps predicted on a mirrored input, back in the original frame.

        Args:
            heatmaps: (B, K, h, w) predictions on horizontally flipped crops.
            flip_indices: (K,) partner index of each joint.
            shift: move the result one heatmap pixel right (SimpleBaseline's ``SHIFT_HEATMAP``),
                which compensates for the stride when mirroring at input resolution.
        """
        out = heatmaps.flip(-1)[:, torch.as_tensor(np.asarray(flip_indices), device=heatmaps.device)]
        if shift:
            out = torch.cat([out[..., :1], out[..., :-1]], dim=-1)
        return out
