"""Top-down inference: heatmaps -> image-space keypoints -> COCO results (rescoring, OKS-NMS).

The prediction arrays are plain, concatenable NumPy (:class:`InstancePredictions`), so a
distributed evaluator can gather shards from every worker and score them once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from pose.codecs.heatmap import HeatmapCodec
from pose.data.transforms import invert_affine, transform_points
from pose.evaluation.nms import oks_nms
from pose.metainfo import DatasetMeta


@dataclass
class InstancePredictions:
    """Predictions for N person instances.

    Attributes:
        index: (N,) dataset index of each instance (to order and de-duplicate shards).
        image_id: (N,) COCO image ids.
        keypoints: (N, K, 3) image-space x, y and heatmap-maximum score.
        box_score: (N,) detector (or GT, 1.0) box score.
        area: (N,) padded crop-window area (scale_w * scale_h), used by OKS-NMS.
    """

    index: np.ndarray
    image_id: np.ndarray
    keypoints: np.ndarray
    box_score: np.ndarray
    area: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    @staticmethod
    def concat(parts: Iterable[InstancePredictions]) -> InstancePredictions:
        """Join shards, sorted by index, keeping the first copy of any repeated index."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return InstancePredictions(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0, 3), np.float32),
                                       np.zeros(0, np.float32), np.zeros(0, np.float32))
        cat = {f: np.concatenate([getattr(p, f) for p in parts]) for f in
               ("index", "image_id", "keypoints", "box_score", "area")}
        _, first = np.unique(cat["index"], return_index=True)
        return InstancePredictions(**{f: v[first] for f, v in cat.items()})


HeatmapFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]


@torch.no_grad()
def predict_heatmaps_with_flip(
    heatmap_fn: HeatmapFn, images: torch.Tensor, flip_indices: np.ndarray, flip_test: bool, shift: bool
) -> dict[str, torch.Tensor]:
    """Run ``heatmap_fn`` (normalised images -> {name: (B, K, h, w)}), averaging with the flipped
    input when ``flip_test``."""
    out = heatmap_fn(images)
    if flip_test:
        flipped = heatmap_fn(images.flip(-1))
        out = {k: 0.5 * (v + HeatmapCodec.flip_back(flipped[k], flip_indices, shift)) for k, v in out.items()}
    return out


def heatmaps_to_instances(
    heatmaps: torch.Tensor, batch: dict[str, torch.Tensor], codec: HeatmapCodec
) -> InstancePredictions:
    """Decode (B, K, h, w) heatmaps and map the points back to image coordinates."""
    coords, scores = codec.decode(heatmaps)
    matrices = batch["matrix"].cpu().numpy()
    pts = np.stack([transform_points(c, invert_affine(m)) for c, m in zip(coords, matrices)])
    kps = np.concatenate([pts, scores[..., None]], axis=-1).astype(np.float32)
    scale = batch["scale"].cpu().numpy()
    return InstancePredictions(
        index=batch["index"].cpu().numpy().astype(np.int64),
        image_id=batch["image_id"].cpu().numpy().astype(np.int64),
        keypoints=kps,
        box_score=batch["score"].cpu().numpy().astype(np.float32),
        area=(scale[:, 0] * scale[:, 1]).astype(np.float32),
    )


def to_coco_results(
    preds: InstancePredictions,
    meta: DatasetMeta,
    in_vis_threshold: float = 0.2,
    oks_nms_threshold: float | None = 0.9,
) -> list[dict]:
    """COCO keypoint results: instance score = box score x mean of joint scores above
    ``in_vis_threshold``; per-image OKS-NMS at ``oks_nms_threshold`` (None disables it)."""
    results: list[dict] = []
    if len(preds) == 0:
        return results
    joint_scores = preds.keypoints[:, :, 2]
    above = joint_scores > in_vis_threshold
    counts = above.sum(axis=1)
    mean_above = np.where(counts > 0, (joint_scores * above).sum(axis=1) / np.maximum(counts, 1), 0.0)
    inst_scores = preds.box_score * mean_above
    for image_id in np.unique(preds.image_id):
        sel = np.flatnonzero(preds.image_id == image_id)
        if oks_nms_threshold is not None and len(sel) > 1:
            keep = oks_nms(preds.keypoints[sel], inst_scores[sel], preds.area[sel], oks_nms_threshold,
                           meta.sigmas_array)
            sel = sel[np.asarray(keep, dtype=np.int64)]
        for i in sel:
            results.append({
                "image_id": int(image_id),
                "category_id": 1,
                "keypoints": [round(float(v), 3) for v in preds.keypoints[i].reshape(-1)],
                "score": float(inst_scores[i]),
            })
    return results
