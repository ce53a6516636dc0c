"""Drawing predicted skeletons on crops (for MLflow artifacts and quick looks)."""

from __future__ import annotations

import cv2
import numpy as np

from pose.metainfo import DatasetMeta


def _colour(i: int, n: int) -> tuple[int, int, int]:
    hsv = np.uint8([[[int(180 * i / max(n, 1)), 220, 255]]])
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def draw_pose(image: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, meta: DatasetMeta,
              threshold: float = 0.2) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 RGB with the skeleton of one person drawn on it.

    Args:
        keypoints: (K, 2) pixel coordinates in ``image``.
        scores: (K,) confidences; joints below ``threshold`` and limbs touching them are not drawn.
    """
    out = np.ascontiguousarray(image.copy())
    k = meta.num_keypoints
    if keypoints.shape != (k, 2) or scores.shape != (k,):
        raise ValueError(f"expected keypoints ({k}, 2) and scores ({k},), got {keypoints.shape} and {scores.shape}")
    radius = max(1, round(min(out.shape[:2]) / 64))
    pts = [(int(round(x)), int(round(y))) for x, y in keypoints]
    for i, (a, b) in enumerate(meta.skeleton):
        if scores[a] >= threshold and scores[b] >= threshold:
            cv2.line(out, pts[a], pts[b], _colour(i, len(meta.skeleton)), max(1, radius // 2), cv2.LINE_AA)
    for j in range(k):
        if scores[j] >= threshold:
            cv2.circle(out, pts[j], radius, (255, 255, 255), -1, cv2.LINE_AA)
    return out


def pose_grid(images: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, meta: DatasetMeta,
              columns: int = 4, threshold: float = 0.2) -> np.ndarray:
    """Crops with their predicted skeletons tiled into one (rows*H, columns*W, 3) uint8 RGB image.

    Args:
        images: (B, 3, H, W) uint8 crops (the model's input before normalisation).
        keypoints: (B, K, 2) crop pixel coordinates; scores: (B, K).
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images (B, 3, H, W), got {images.shape}")
    b, _, h, w = images.shape
    if b == 0:
        raise ValueError("no images to draw")
    columns = max(1, min(columns, b))
    rows = -(-b // columns)
    grid = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i in range(b):
        tile = draw_pose(images[i].transpose(1, 2, 0), keypoints[i], scores[i], meta, threshold)
        r, c = divmod(i, columns)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    return grid
