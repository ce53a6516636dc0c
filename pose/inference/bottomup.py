"""Bottom-up prediction on whole frames: every person of an image at once, no boxes.

The work per image is the evaluation's (:class:`pose.bottomup.inference.BottomUpEvaluator`):
ResizeAlign at every test scale factor, the forward pass with the mirrored image when
``test.flip_test``, aggregation, the codec's grouping and back-projection, and the ``test.max_people``
highest-scoring people as COCO results (:func:`pose.bottomup.inference.people_to_results`).

Batching: the images of up to ``batch_size`` consecutive frames that ResizeAlign to the same size
(every frame of a video does) share one forward pass per scale factor.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from pose.bottomup.inference import BottomUpEvaluator, people_to_results
from pose.bottomup.losses import BottomUpLoss
from pose.bottomup.method import BottomUpMethod
from pose.inference.media import Frame
from pose.inference.model import PoseModel

FrameResults = tuple[Frame, list[dict]]


class BottomUpPredictor:
    """Applies a bottom-up model to frames.

    Args:
        model: a bottom-up :class:`PoseModel` (already on ``device``).
        device: where the network runs.
        batch_size: images per forward pass (images of one size only; with the flip test each pass also
            runs the mirrored images).
    """

    def __init__(self, model: PoseModel, device: torch.device, batch_size: int) -> None:
        if not model.bottomup:
            raise ValueError(f"BottomUpPredictor: {model.source} is a top-down model")
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        cfg = model.cfg
        self.model = model
        self.cfg = cfg
        self.device = device
        self.batch_size = batch_size
        self.method = BottomUpMethod(model.network, BottomUpLoss(cfg.loss)).to(device).eval()
        self.evaluator = BottomUpEvaluator(model.meta, cfg.codec, cfg.test, gt_file=None)

    @property
    def threshold(self) -> float:
        """The joint score below which a joint is not drawn (the grouping's detection threshold)."""
        return self.cfg.codec.grouping.val_threshold

    def predict(self, frames: Iterable[Frame]) -> Iterator[FrameResults]:
        """frame -> (frame, its COCO keypoint results), in input order."""
        chunk: list[Frame] = []
        for frame in frames:
            chunk.append(frame)
            if len(chunk) == self.batch_size:
                yield from self._predict_chunk(chunk)
                chunk = []
        yield from self._predict_chunk(chunk)

    @torch.no_grad()
    def _predict_chunk(self, frames: list[Frame]) -> Iterator[FrameResults]:
        resized = [self.evaluator.resize(f.image) for f in frames]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (images, _) in enumerate(resized):
            groups.setdefault(tuple(images[0].shape[1:]), []).append(i)
        results: dict[int, list[dict]] = {}
        for members in groups.values():
            outputs = [self.evaluator.forward(self.method, torch.stack([resized[i][0][j] for i in members]),
                                              self.device)
                       for j in range(len(self.cfg.test.scale_factors))]
            for row, i in enumerate(members):
                images, matrix = resized[i]
                mine = [self.evaluator.outputs_of(out, row, len(members)) for out in outputs]
                people, scores = self.evaluator.decode_outputs(mine, (int(images[0].shape[1]),
                                                                      int(images[0].shape[2])), matrix)
                results[i] = people_to_results(people, scores, frames[i].image_id, self.cfg.test.max_people)
        for i, frame in enumerate(frames):
            yield frame, results[i]
