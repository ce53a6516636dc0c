"""The bottom-up task behind :class:`pose.engine.parts.TaskParts`: whole images, per-iteration LR
schedule, predictions as COCO result lists (one image per validation item)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pose.bottomup.components import build_method, build_optimizer, build_scheduler, build_train_dataset, build_val_dataset
from pose.bottomup.config import BottomUpExperimentConfig
from pose.bottomup.diagnostics import BottomUpDiagnostics
from pose.bottomup.inference import BottomUpEvaluator
from pose.data.image_io import read_rgb
from pose.visualization import draw_pose

#: a rank's validation output: COCO results per source, the image ids it evaluated, its diagnostics
BottomUpPredictions = tuple[dict[str, list[dict]], list[int], BottomUpDiagnostics]


class BottomUpParts:
    """Datasets, method, schedule and evaluator of one bottom-up experiment.

    Predictions of a rank are ``(results, image_ids, diagnostics)``: COCO keypoint results, the ids
    of the images it evaluated and :class:`pose.bottomup.diagnostics.BottomUpDiagnostics`; merged,
    their image count must equal the validation set's.
    """

    scheduler_per_step = True
    collapse = None
    val_batch_size = None  # validation images differ in size: one per step

    def __init__(self, cfg: BottomUpExperimentConfig) -> None:
        self.cfg = cfg
        self.selection_metric = cfg.selection_metric
        self.meta = cfg.data.metainfo()
        self.train_set = build_train_dataset(cfg, self.meta)
        self.train_stream = self.train_set
        self.val_set = build_val_dataset(cfg, self.meta)
        self.method = build_method(cfg, self.meta)
        self.evaluator = BottomUpEvaluator(self.meta, cfg.codec, cfg.test, cfg.data.path(cfg.data.val_ann),
                                           image_ids=[im.image_id for im in self.val_set.images])

    def build_optimizer(self) -> torch.optim.Optimizer:
        return build_optimizer(self.cfg, self.method)

    def build_scheduler(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int
                        ) -> torch.optim.lr_scheduler.LRScheduler:
        return build_scheduler(self.cfg, optimizer, steps_per_epoch)

    def predict(self, batches: Any, device: torch.device, channels_last: bool) -> BottomUpPredictions:
        return self.evaluator.predict(self.method, batches, device)

    def merge(self, parts: list[BottomUpPredictions]) -> BottomUpPredictions:
        """Every rank's (results per source, image ids, diagnostics) -> one: lists concatenated,
        diagnostics added."""
        results = {name: [r for part in parts for r in part[0][name]] for name in parts[0][0]} if parts else {"net": []}
        seen = [i for part in parts for i in part[1]]
        diag = sum((part[2] for part in parts), BottomUpDiagnostics())
        return results, seen, diag

    def count(self, merged: BottomUpPredictions) -> int:
        return len(set(merged[1]))

    def score(self, merged: BottomUpPredictions, out_dir: Path | None) -> dict[str, dict[str, float]]:
        return {"net": self.evaluator.score(merged[0], out_dir, merged[2])}

    @torch.no_grad()
    def draw(self, device: torch.device, count: int) -> np.ndarray:
        """The first ``count`` validation images with every predicted person drawn, side by side."""
        tiles = []
        for i in range(min(count, len(self.val_set))):
            record = self.val_set.images[i]
            image = read_rgb(record.image_path, record.image_id)
            people, scores = self.evaluator.predict_image(self.method, image, device)
            out = image
            for person in people[: self.cfg.test.max_people]:
                out = draw_pose(out, person[:, :2], person[:, 2], self.meta, threshold=self.cfg.codec.grouping.val_threshold)
            tiles.append(out)
        if not tiles:
            raise ValueError("no validation images to draw")
        h = max(t.shape[0] for t in tiles)
        padded = [np.pad(t, ((0, h - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
        return np.concatenate(padded, axis=1)
