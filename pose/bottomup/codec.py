"""The bottom-up codec: training targets (heatmaps, joint indices, box scales) and grouping decode.

The dataset calls :meth:`BottomUpCodec.encode` and the inference driver calls
:meth:`BottomUpCodec.decode` on the same instance, so target geometry and decoding settings live in
one place (spec section 1.2 step 4 and section 4).

Coordinates: joints come in INPUT pixels (after augmentation), pixel centres at integers
(:mod:`pose.bottomup.data`), so input pixel ``p`` spans ``[p - 0.5, p + 0.5)``. A joint is placed at
the heatmap pixel that contains it, ``floor((p + 0.5) * heatmap_size / input_size)``, whose centre is
input pixel ``stride * q + (stride - 1) / 2``, exactly where inference's bilinear up-sampling
(align_corners=False) puts it back; it is used only if ``v > 0`` and that pixel lies inside the map.
(The reference floors ``p * heatmap_size / input_size`` in its corner convention; floored in the
centre convention that is half an input pixel up and left of the joint, which the round trip of
``tests/bottomup/test_ceiling.py`` measures.)

Shape legend: N people in the image, K joint types, S_i side of heatmap i, P = ``max_people``,
R = ``embed_dim``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from pose.bottomup import grouping as _grouping
from pose.bottomup.grouping import GroupingConfig


@dataclass
class BottomUpTargets:
    """Targets of one training image.

    Attributes:
        heatmaps: one (K, S_i, S_i) float32 per resolution: truncated Gaussians, max over people.
        joints: (P, K, 2) int64 at heatmap 0: for each kept person its encoded joints packed into the
            first slots as ``(k*S*S + y*S + x, 1)``; unused slots are ``(0, 0)``.
        box_scales: (P,) float32 ``sqrt(|TL-BL| * |TL-TR|) / input_size``; 0 for unused slots.
        num_people: people stored in ``joints`` / ``box_scales`` (<= P).
        num_dropped: people with encoded joints left out because there were more than P of them.
    """

    heatmaps: list[np.ndarray]
    joints: np.ndarray
    box_scales: np.ndarray
    num_people: int
    num_dropped: int


@dataclass(frozen=True)
class BottomUpCodec:
    """Associative / Coupled Embedding targets and decoding.

    Args:
        input_size: side of the square training input in pixels.
        heatmap_sizes: ascending sides of the output heatmaps, e.g. ``(128,)`` (HRNet) or
            ``(128, 256)`` (HigherHRNet). Tags live at the first (lowest) resolution only.
        sigma: Gaussian sigma in heatmap pixels, the same at every resolution. The patch around a
            joint spans ``floor(3*sigma + 1)`` pixels each side, i.e. (6*sigma + 3)^2 for integer sigma.
        max_people: P, the number of tag / scale slots per image (over-cap policy in :meth:`encode`).
        embed_dim: R, tag dimensions per joint (1 = Associative Embedding, 8 = Coupled Embedding).
        grouping: test-time grouping settings used by :meth:`decode`.
    """

    input_size: int = 512
    heatmap_sizes: tuple[int, ...] = (128,)
    sigma: float = 2.0
    max_people: int = 30
    embed_dim: int = 8
    grouping: GroupingConfig = field(default_factory=GroupingConfig)

    def __post_init__(self) -> None:
        if self.input_size < 1:
            raise ValueError(f"BottomUpCodec.input_size must be >= 1, got {self.input_size}")
        sizes = tuple(self.heatmap_sizes)
        if not sizes or any(int(s) != s or s < 1 for s in sizes):
            raise ValueError(
                f"BottomUpCodec.heatmap_sizes must be positive integers, got {self.heatmap_sizes}"
            )
        if any(b <= a for a, b in zip(sizes, sizes[1:])):
            raise ValueError(
                f"BottomUpCodec.heatmap_sizes must be strictly ascending, got {self.heatmap_sizes}"
            )
        if not self.sigma > 0:
            raise ValueError(f"BottomUpCodec.sigma must be > 0, got {self.sigma}")
        if self.max_people < 1:
            raise ValueError(f"BottomUpCodec.max_people must be >= 1, got {self.max_people}")
        if self.embed_dim < 1:
            raise ValueError(f"BottomUpCodec.embed_dim must be >= 1, got {self.embed_dim}")

    @property
    def radius(self) -> int:
        """Half-width of the Gaussian patch in heatmap pixels (7 for sigma 2)."""
        return int(np.floor(3.0 * self.sigma + 1.0))

    # ------------------------------------------------------------------ encode
    def _joint_pixels(self, joints: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Integer heatmap pixels (N, K, 2) int64 and the usable-joint mask (N, K) at side ``size``."""
        # pixel centres at integers: input pixel p spans [p - 0.5, p + 0.5), so it lies in heatmap pixel
        # floor((p + 0.5) * size / input_size), whose centre the bilinear up-sampling of inference puts
        # back at input pixel stride * q + (stride - 1) / 2 (no bias; tests/bottomup/test_ceiling.py)
        xy = (joints[..., :2].astype(np.float64) + 0.5) * (size / self.input_size)
        finite = np.isfinite(xy).all(axis=-1)
        pix = np.floor(np.where(finite[..., None], xy, -1.0)).astype(np.int64)
        inside = (pix >= 0).all(axis=-1) & (pix < size).all(axis=-1)
        used = (joints[..., 2] > 0) & finite & inside
        return pix, used

    def _heatmap(self, pix: np.ndarray, used: np.ndarray, size: int) -> np.ndarray:
        """(K, size, size) float32: max over people of the truncated Gaussian at every used joint."""
        n, k = used.shape
        r = self.radius
        offs = np.arange(-r, r + 1)
        g1 = np.exp(-(offs.astype(np.float64) ** 2) / (2.0 * self.sigma**2))
        patch = (g1[:, None] * g1[None, :]).astype(np.float32).ravel()  # (Q,) Q = (2r+1)^2
        dy, dx = np.meshgrid(offs, offs, indexing="ij")
        hm = np.zeros(k * size * size, np.float32)
        ni, ki = np.nonzero(used)
        if ni.size:
            ys = pix[ni, ki, 1][:, None] + dy.ravel()[None]  # (J, Q)
            xs = pix[ni, ki, 0][:, None] + dx.ravel()[None]
            keep = (xs >= 0) & (xs < size) & (ys >= 0) & (ys < size)
            flat = ki[:, None] * size * size + ys * size + xs
            vals = np.broadcast_to(patch, flat.shape)
            np.maximum.at(hm, flat[keep], vals[keep])
        return hm.reshape(k, size, size)

    def encode(self, joints: np.ndarray, box_corners: np.ndarray) -> BottomUpTargets:
        """Targets for one augmented image.

        Args:
            joints: (N, K, 3) x, y in input pixels and visibility v in {0, 1, 2}.
            box_corners: (N, 4, 2) the person boxes' corners TL, TR, BR, BL in input pixels.

        Returns:
            :class:`BottomUpTargets`. Over-cap policy (never a crash): the heatmaps get every person;
            the P tag/scale slots keep the P people with the most encoded joints (ties: larger box
            area, then annotation order), stored in annotation order; the others are counted in
            ``num_dropped``. People without an encoded joint take no slot and are not counted.
        """
        joints = np.asarray(joints)
        box_corners = np.asarray(box_corners)
        if joints.ndim != 3 or joints.shape[2] != 3:
            raise ValueError(f"BottomUpCodec.encode: joints must be (N, K, 3), got {joints.shape}")
        if box_corners.shape != (joints.shape[0], 4, 2):
            raise ValueError(
                f"BottomUpCodec.encode: box_corners must be ({joints.shape[0]}, 4, 2) to match joints, "
                f"got {box_corners.shape}"
            )
        n, k = joints.shape[:2]
        heatmaps = []
        for size in self.heatmap_sizes:
            pix, used = self._joint_pixels(joints, size)
            heatmaps.append(self._heatmap(pix, used, size))

        # Tags and scales: heatmap 0 only.
        s0 = self.heatmap_sizes[0]
        pix, used = self._joint_pixels(joints, s0)
        index = np.arange(k, dtype=np.int64)[None] * s0 * s0 + pix[..., 1] * s0 + pix[..., 0]  # (N, K)
        corners = box_corners.astype(np.float64)
        height = np.linalg.norm(corners[:, 0] - corners[:, 3], axis=-1)  # |TL - BL|
        width = np.linalg.norm(corners[:, 0] - corners[:, 1], axis=-1)  # |TL - TR|
        area = height * width
        scales = np.sqrt(area) / self.input_size

        counts = used.sum(axis=1)
        candidates = np.nonzero(counts > 0)[0]
        # Most encoded joints first, then larger area, then annotation order (lexsort: last key first).
        ranked = candidates[np.lexsort((candidates, -area[candidates], -counts[candidates]))]
        kept = np.sort(ranked[: self.max_people])
        num_dropped = int(len(ranked) - len(kept))

        # Pack each person's encoded joints into its first slots (stable: joint order is kept).
        order = np.argsort(~used, axis=1, kind="stable")
        packed_index = np.take_along_axis(index, order, axis=1)
        packed_used = np.take_along_axis(used, order, axis=1)
        out_joints = np.zeros((self.max_people, k, 2), np.int64)
        out_joints[: len(kept), :, 0] = np.where(packed_used[kept], packed_index[kept], 0)
        out_joints[: len(kept), :, 1] = packed_used[kept]
        out_scales = np.zeros(self.max_people, np.float32)
        out_scales[: len(kept)] = scales[kept]
        return BottomUpTargets(heatmaps, out_joints, out_scales, int(len(kept)), num_dropped)

    # ------------------------------------------------------------------ decode
    def decode(
        self, heatmaps: torch.Tensor, tags: torch.Tensor, order: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Group joint candidates into people.

        Args:
            heatmaps: (K, H, W) heatmaps aggregated at input resolution.
            tags: (K, H, W, D) tags at the same resolution, D = R (or 2R with flip aggregation).
            order: the dataset's joint visiting order for grouping (``DatasetMeta.grouping_order``).

        Returns:
            people (P', K, 3) [x, y, val] in the same input pixels, and scores (P',).
        """
        if heatmaps.ndim != 3:
            raise ValueError(f"BottomUpCodec.decode: heatmaps must be (K, H, W), got {tuple(heatmaps.shape)}")
        if tags.ndim != 4 or tuple(tags.shape[:3]) != tuple(heatmaps.shape):
            raise ValueError(
                f"BottomUpCodec.decode: tags must be (K, H, W, D) with (K, H, W) = {tuple(heatmaps.shape)}, "
                f"got {tuple(tags.shape)}"
            )
        if tags.shape[3] not in (self.embed_dim, 2 * self.embed_dim):
            raise ValueError(
                f"BottomUpCodec.decode: tag dimension {tags.shape[3]} is neither embed_dim={self.embed_dim} "
                f"nor 2*embed_dim (flip)"
            )
        if sorted(order) != list(range(heatmaps.shape[0])):
            raise ValueError(
                f"BottomUpCodec.decode: order must be a permutation of 0..{heatmaps.shape[0] - 1}, "
                f"got {list(order)}"
            )
        return _grouping.decode_people(heatmaps, tags, self.grouping, order)
