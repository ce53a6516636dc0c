"""Top-down prediction on whole frames: person boxes -> crops -> heatmaps -> COCO keypoint results.

The per-person work is the evaluation's (:class:`pose.engine.loop.TopDownEvaluator` on a dataset
without augmentation): the crop geometry of :class:`pose.data.topdown.TopDownSampler`, the ImageNet
normalisation, the flip test of the config's ``test`` section
(:func:`pose.engine.predict.predict_heatmaps_with_flip`), the codec's decoding and back-projection
(:func:`pose.engine.predict.heatmaps_to_instances`), and rescoring with per-image OKS-NMS
(:func:`pose.engine.predict.to_coco_results`). So a model applied to a validation split's images with
its ground-truth boxes reproduces the evaluation's results.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from pose.data.topdown import Normalizer, TopDownSampler
from pose.data.transforms import AugmentParams, warp_crop
from pose.engine.predict import (
    InstancePredictions,
    heatmaps_to_instances,
    predict_heatmaps_with_flip,
    to_coco_results,
)
from pose.inference.boxes import PersonBoxes
from pose.inference.media import Frame
from pose.inference.model import PoseModel

FrameResults = tuple[Frame, list[dict]]


class TopDownPredictor:
    """Applies a top-down model to frames with their person boxes.

    Crops of consecutive frames share forward passes of up to ``batch_size`` crops; a frame's results
    are complete (rescored, OKS-NMS across its people) when it is yielded, in input order.

    Args:
        model: a top-down :class:`PoseModel` (already on ``device``).
        device: where the network runs.
        batch_size: crops per forward pass (with the flip test, each pass also runs the mirrored crops).
    """

    def __init__(self, model: PoseModel, device: torch.device, batch_size: int) -> None:
        if model.bottomup:
            raise ValueError(f"TopDownPredictor: {model.source} is a bottom-up model")
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.model = model
        self.cfg = model.cfg
        self.meta = model.meta
        self.device = device
        self.batch_size = batch_size
        self.sampler = TopDownSampler(self.meta, self.cfg.codec)
        self.normalizer = Normalizer().to(device)
        self._next_index = 0

    @property
    def threshold(self) -> float:
        """The joint score below which a joint counts as invisible (rescoring, drawing)."""
        return self.cfg.test.in_vis_threshold

    def crops(self, frame: Frame, boxes: PersonBoxes) -> dict[str, torch.Tensor]:
        """The evaluation's batch items for one frame's N boxes: ``image`` (N, 3, H, W) uint8 crops,
        ``matrix`` (N, 2, 3) image->crop, ``scale`` (N, 2), ``score`` (N,), ``image_id`` (N,), ``index`` (N,)
        (a running instance number)."""
        n = len(boxes)
        k = self.meta.num_keypoints
        no_keypoints = np.zeros((n, k, 2), np.float32), np.zeros((n, k), np.float32)
        matrices, _, _ = self.sampler.geometry_batch(boxes.centers, boxes.scales, *no_keypoints,
                                                     [AugmentParams()] * n)
        w, h = self.cfg.codec.input_size
        images = np.zeros((n, 3, h, w), np.uint8)
        for i, m in enumerate(matrices):
            images[i] = warp_crop(frame.image, m, self.cfg.codec.input_size).transpose(2, 0, 1)
        index = np.arange(self._next_index, self._next_index + n, dtype=np.int64)
        self._next_index += n
        return {"image": torch.from_numpy(images),
                "matrix": torch.from_numpy(matrices.astype(np.float32)),
                "scale": torch.from_numpy(boxes.scales.copy()),
                "score": torch.from_numpy(boxes.scores.copy()),
                "image_id": torch.full((n,), frame.image_id, dtype=torch.int64),
                "index": torch.from_numpy(index)}

    @torch.no_grad()
    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 crops (B, 3, H, W) -> heatmaps (B, K, h, w) float32 on the CPU, flip-tested as the config's
        ``test`` section says."""
        x = self.normalizer(images.to(self.device))
        net = self.model.network
        out = predict_heatmaps_with_flip(lambda t: {"net": net(t)}, x, self.meta.flip_indices,
                                         self.cfg.test.flip_test, self.cfg.test.shift_heatmap)
        return out["net"].float().cpu()

    def instances(self, batch: dict[str, torch.Tensor]) -> InstancePredictions:
        """Image-space keypoints of a batch of crops (forward passes of at most ``batch_size``)."""
        parts = []
        for start in range(0, len(batch["index"]), self.batch_size):
            part = {k: v[start:start + self.batch_size] for k, v in batch.items()}
            parts.append(heatmaps_to_instances(self.heatmaps(part["image"]), part, self.cfg.codec))
        return InstancePredictions.concat(parts)

    def results(self, preds: InstancePredictions) -> list[dict]:
        """COCO keypoint results of one frame's people (rescored; OKS-NMS as the config's ``test`` says)."""
        test = self.cfg.test
        return to_coco_results(preds, self.meta, test.in_vis_threshold, test.oks_nms_threshold)

    def predict(self, frames: Iterable[tuple[Frame, PersonBoxes]]) -> Iterator[FrameResults]:
        """(frame, its person boxes) -> (frame, its COCO keypoint results), in input order."""
        pending: list[tuple[Frame, dict[str, torch.Tensor]]] = []
        count = 0
        for frame, boxes in frames:
            pending.append((frame, self.crops(frame, boxes)))
            count += len(boxes)
            if count >= self.batch_size:
                yield from self._flush(pending)
                pending, count = [], 0
        yield from self._flush(pending)

    def _flush(self, pending: list[tuple[Frame, dict[str, torch.Tensor]]]) -> Iterator[FrameResults]:
        batches = [b for _, b in pending if len(b["index"])]
        preds = None
        if batches:
            preds = self.instances({k: torch.cat([b[k] for b in batches]) for k in batches[0]})
        for frame, batch in pending:
            if preds is None or not len(batch["index"]):
                yield frame, []
                continue
            rows = np.isin(preds.index, batch["index"].numpy())
            mine = InstancePredictions(**{f: getattr(preds, f)[rows] for f in
                                          ("index", "image_id", "keypoints", "box_score", "area")})
            yield frame, self.results(mine)
