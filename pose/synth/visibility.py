"""Keypoint visibility from the rendered depth buffer, and per-person visible masks.

Rules (COCO convention):

* ``v = 0`` (and x = y = 0): the joint projects outside the image (or behind the camera);
* ``v = 2``: inside the image and nothing is in front of the joint's own surface at its pixel:
  ``depth_buffer[pixel] >= joint_depth - tolerance`` (the tolerance is how far the body surface
  around that joint lies in front of the joint centre, :data:`~pose.synth.skeleton3d.JOINT_TOLERANCE`);
* ``v = 1``: inside the image but covered by something nearer: another person, the person's own body
  (a far-side arm behind the torso, the face seen from behind) or a foreground object.

"Inside" means ``0 <= x <= W - 1`` and ``0 <= y <= H - 1`` (pixel centres at integer coordinates), so
no keypoint with ``v > 0`` lies outside the image.
"""

from __future__ import annotations

import numpy as np


def inside_image(uv: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N,) bool: ``uv`` (N, 2) lies in ``[0, W-1] x [0, H-1]``."""
    return (uv[:, 0] >= 0) & (uv[:, 0] <= width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= height - 1)


def joint_visibility(uv: np.ndarray, z: np.ndarray, tolerance: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """(N,) int visibility 0/1/2 of joints at pixels ``uv`` (N, 2) with camera depth ``z`` (N,).

    Args:
        tolerance: (N,) metres the joint's own surface may lie in front of it.
        depth: (H, W) rendered depth buffer (``inf`` where empty).
    """
    height, width = depth.shape
    inside = inside_image(uv, width, height) & (z > 0)
    vis = np.zeros(len(uv), np.int64)
    if inside.any():
        px = np.clip(np.rint(uv[inside, 0]).astype(np.int64), 0, width - 1)
        py = np.clip(np.rint(uv[inside, 1]).astype(np.int64), 0, height - 1)
        front = depth[py, px]
        vis[inside] = np.where(front >= z[inside] - tolerance[inside], 2, 1)
    return vis


def occluded_by(uv: np.ndarray, ids: np.ndarray, visibility: np.ndarray) -> np.ndarray:
    """(N,) owner id of the pixel at each labelled joint (-9 where the joint is not labelled)."""
    height, width = ids.shape
    out = np.full(len(uv), -9, np.int64)
    lab = visibility > 0
    if lab.any():
        px = np.clip(np.rint(uv[lab, 0]).astype(np.int64), 0, width - 1)
        py = np.clip(np.rint(uv[lab, 1]).astype(np.int64), 0, height - 1)
        out[lab] = ids[py, px]
    return out


def visible_mask(ids: np.ndarray, owner: int, extent: list[int] | None) -> tuple[np.ndarray, int, int]:
    """The owner's visible pixels as a bool mask cropped to its drawn extent.

    Returns:
        (mask (h, w) bool, x0, y0): the crop's top-left corner in the image; an empty (0, 0) mask when
        the owner was never drawn.
    """
    if extent is None:
        return np.zeros((0, 0), bool), 0, 0
    x0, y0, x1, y1 = extent
    return ids[y0:y1, x0:x1] == owner, x0, y0
