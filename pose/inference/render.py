"""Drawing a frame's predicted people (COCO keypoint results) with the dataset's skeleton."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pose.metainfo import DatasetMeta
from pose.visualization import draw_pose


def draw_results(image: np.ndarray, results: Sequence[dict], meta: DatasetMeta, threshold: float
                 ) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 RGB with every result's skeleton drawn
    (:func:`pose.visualization.draw_pose`: limbs coloured along ``meta.skeleton``, joints as dots).

    Args:
        results: COCO keypoint results of this image (``keypoints``: K x [x, y, score] flattened).
        threshold: joints scoring below it, and the limbs touching them, are not drawn.
    """
    out = image
    for result in results:
        kps = np.asarray(result["keypoints"], np.float32).reshape(meta.num_keypoints, 3)
        out = draw_pose(out, kps[:, :2], kps[:, 2], meta, threshold)
    return out if results else image.copy()
