"""Geometry of top-down crops: box -> centre/scale, affine crops, augmentation parameters, flips.

Conventions: sizes are (width, height); points are (x, y) in pixels; a crop is one 2x3 affine
matrix ``M`` from image to crop coordinates, so the crop, its keypoints and the inverse mapping of
predictions all use the same matrix. A horizontal flip is folded into ``M`` (the keypoint labels
are swapped separately with the dataset's flip indices).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def box_to_center_scale(
    bbox: np.ndarray | list[float], aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """xywh box -> (centre (2,), crop window (w, h) in pixels).

    The short side is enlarged so that w / h == ``aspect_ratio`` (input width / height), then both
    sides are multiplied by ``padding`` (SimpleBaseline's x1.25).
    """
    x, y, w, h = (float(v) for v in bbox)
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    scale = np.array([w * padding, h * padding], dtype=np.float32)
    return center, scale


def crop_matrix(
    center: np.ndarray,
    scale: np.ndarray,
    rotation: float,
    output_size: tuple[int, int],
    flip: bool = False,
) -> np.ndarray:
    """2x3 matrix mapping image pixels to crop pixels.

    The window of width ``scale[0]`` centred on ``center`` and rotated by ``rotation`` degrees
    (counter-clockwise in the image as displayed) fills the output; the height follows the output
    aspect ratio (uniform scaling, so rotations are rigid). With ``flip`` the crop is mirrored
    about its vertical centre line: x' = out_w - 1 - x.
    """
    return crop_matrices(np.asarray(center)[None], np.asarray(scale)[None], [rotation], output_size, [flip])[0]


def crop_matrices(
    centers: np.ndarray,
    scales: np.ndarray,
    rotations: np.ndarray | list[float],
    output_size: tuple[int, int],
    flips: np.ndarray | list[bool] | None = None,
) -> np.ndarray:
    """:func:`crop_matrix` of N windows at once: centres (N, 2), windows (N, 2) (w, h), rotations (N,)
    in degrees, flips (N,) -> (N, 2, 3) float64. Elementwise the same float64 arithmetic for every
    window, so row i equals ``crop_matrix`` of window i exactly (one loader per instance, another
    per batch, the same matrices)."""
    out_w, out_h = output_size
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 2)
    s = out_w / np.asarray(scales, dtype=np.float64).reshape(-1, 2)[:, 0]
    r = np.deg2rad(np.asarray(rotations, dtype=np.float64).reshape(-1))
    cos, sin = np.cos(r) * s, np.sin(r) * s
    # Rotation about the centre, scaling, then translation to the output centre.
    cx, cy = centers[:, 0], centers[:, 1]
    ox, oy = (out_w - 1) * 0.5, (out_h - 1) * 0.5
    m = np.empty((len(centers), 2, 3), dtype=np.float64)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = cos, sin, ox - cos * cx - sin * cy
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = -sin, cos, oy + sin * cx - cos * cy
    if flips is not None:
        f = np.asarray(flips, dtype=bool).reshape(-1)
        if f.any():
            # The mirror [[-1, 0, out_w - 1], [0, 1, 0]] applied after m, term by term (the + 0.0 turns the
            # -0.0 of an unrotated window into the +0.0 that the matrix product gives).
            m[f, 0, :2] = -m[f, 0, :2] + 0.0
            m[f, 0, 2] = (out_w - 1.0) - m[f, 0, 2]
            m[f, 1] += 0.0
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (crop -> image)."""
    return cv2.invertAffineTransform(np.asarray(m, dtype=np.float64))


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of ``outer o inner`` (apply ``inner`` first); also for stacks (..., 2, 3)."""
    outer = np.asarray(outer, dtype=np.float64)
    inner = np.asarray(inner, dtype=np.float64)
    linear = outer[..., :2] @ inner[..., :2]
    shift = outer[..., :2] @ inner[..., 2:] + outer[..., 2:]
    return np.concatenate([linear, shift], axis=-1)


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 2x3 matrix to (..., 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)


def transform_points_batch(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply N 2x3 matrices (N, 2, 3) to their (N, P, 2) points: row i is
    ``transform_points(points[i], m[i])``."""
    pts = np.asarray(points, dtype=np.float64)
    return (pts @ m[:, :, :2].transpose(0, 2, 1) + m[:, None, :, 2]).astype(np.float32)


def warp_crop(image: np.ndarray, m: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """Bilinear affine crop, constant-0 border. (H, W, 3) uint8 -> (out_h, out_w, 3) uint8."""
    return cv2.warpAffine(image, m, (int(output_size[0]), int(output_size[1])),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@dataclass(frozen=True)
class AugmentParams:
    """One draw of the standard top-down augmentation."""

    scale: float = 1.0
    rotation: float = 0.0
    flip: bool = False


@dataclass(frozen=True)
class TopDownAugment:
    """The SimpleBaseline augmentation: scale clip(N(1, f), 1-f, 1+f), rotation clip(N(0, r), -2r, 2r)
    with probability ``rot_prob``, horizontal flip with probability ``flip_prob``."""

    scale_factor: float = 0.25
    rot_factor: float = 30.0
    rot_prob: float = 0.6
    flip_prob: float = 0.5

    def sample(self, rng: np.random.Generator) -> AugmentParams:
        sf, rf = self.scale_factor, self.rot_factor
        # min/max: the values of np.clip, without its per-call overhead on scalars
        scale = min(max(float(rng.normal(1.0, sf)), 1.0 - sf), 1.0 + sf)
        rot_draw = min(max(float(rng.normal(0.0, rf)), -2.0 * rf), 2.0 * rf)
        rotation = rot_draw if rng.random() < self.rot_prob else 0.0
        flip = bool(rng.random() < self.flip_prob)
        return AugmentParams(scale=scale, rotation=rotation, flip=flip)
