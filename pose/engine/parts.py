"""What a training loop needs from a task, behind one small interface, so the plain trainers and the
Ray Train worker loop run top-down and bottom-up experiments without copying either.

A *parts* object holds the task's datasets, method and collapse monitor, builds its optimiser and
schedule, and predicts / merges / scores validation outputs. The loops own everything else
(devices, DDP, checkpoints, logging). :func:`build_parts` picks the task from the config's type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from pose.engine.components import build_datasets, build_method, build_optimizer, build_scheduler, build_train_stream
from pose.engine.loop import TopDownEvaluator, to_device
from pose.engine.pckh_eval import PCKhEvaluator
from pose.engine.predict import InstancePredictions
from pose.experiment import ExperimentConfig
from pose.methods import CollapseMonitor, Method
from pose.visualization import pose_grid


class TaskParts(Protocol):
    """The task-specific pieces of a training loop (see the module docstring).

    Attributes:
        method: the method to train (``networks``, ``training_step``, ``primary``).
        train_stream: what an epoch iterates (has ``set_epoch``); ``val_set``: indexable validation items.
        collapse: the collapse monitor of semi-supervised methods, else None.
        scheduler_per_step: the LR schedule is stepped every iteration (else once per epoch).
        val_batch_size: batch size of the validation loader (None: one item per step, un-collated).
        selection_metric: the validation statistic of the primary network that selects ``best.pth``
            (the config's ``selection_metric``: ``AP``; ``PCKh`` for MPII). The loops log its best value as
            ``best_<metric>``.
    """

    method: Method
    train_stream: Dataset
    val_set: Dataset
    collapse: CollapseMonitor | None
    scheduler_per_step: bool
    val_batch_size: int | None
    selection_metric: str

    def build_optimizer(self) -> torch.optim.Optimizer: ...

    def build_scheduler(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int
                        ) -> torch.optim.lr_scheduler.LRScheduler: ...

    def predict(self, batches: Any, device: torch.device, channels_last: bool) -> Any: ...

    def merge(self, parts: list[Any]) -> Any: ...

    def count(self, merged: Any) -> int: ...

    def score(self, merged: Any, out_dir: Path | None) -> dict[str, dict[str, float]]: ...

    def draw(self, device: torch.device, count: int) -> np.ndarray: ...


class TopDownParts:
    """Top-down crops: :mod:`pose.engine.components` builds everything; predictions are
    :class:`InstancePredictions` per evaluated network."""

    scheduler_per_step = False

    def __init__(self, cfg: ExperimentConfig, load_init: bool = True) -> None:
        self.cfg = cfg
        self.meta = cfg.data.metainfo()
        self.train_set, self.val_set = build_datasets(cfg, self.meta)
        self.train_stream = build_train_stream(cfg, self.meta, self.train_set)
        self.collapse = CollapseMonitor(cfg.method.collapse) if cfg.method.semi_supervised else None
        self.method = build_method(cfg, self.meta, load_init=load_init)
        d = cfg.data
        self.evaluator: TopDownEvaluator
        if d.dataset == "mpii":  # PCKh against the head boxes (DataConfig requires val_head_boxes)
            self.evaluator = PCKhEvaluator(self.meta, cfg.codec, cfg.test, d.path(d.val_head_boxes),
                                           self.val_set.instances, d.path(d.val_ann))
        else:
            self.evaluator = TopDownEvaluator(self.meta, cfg.codec, cfg.test, d.path(d.val_ann))
        self.selection_metric = cfg.selection_metric
        self.val_batch_size = cfg.test.batch_size

    def build_optimizer(self) -> torch.optim.Optimizer:
        return build_optimizer(self.cfg, self.method)

    def build_scheduler(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int
                        ) -> torch.optim.lr_scheduler.LRScheduler:
        return build_scheduler(self.cfg, optimizer)

    def predict(self, batches: Any, device: torch.device, channels_last: bool) -> dict[str, InstancePredictions]:
        return self.evaluator.predict(self.method, batches, device, channels_last)

    @staticmethod
    def merge(parts: list[dict[str, InstancePredictions]]) -> dict[str, InstancePredictions]:
        """Every rank's {network: predictions} -> one set per network (a rank without validation rows
        contributes nothing)."""
        names = sorted({name for part in parts for name in part})
        return {name: InstancePredictions.concat(p[name] for p in parts if name in p) for name in names}

    def count(self, merged: dict[str, InstancePredictions]) -> int:
        return len(merged[self.method.primary]) if self.method.primary in merged else 0

    def score(self, merged: dict[str, InstancePredictions], out_dir: Path | None) -> dict[str, dict[str, float]]:
        return self.evaluator.score(merged, out_dir)

    @torch.no_grad()
    def draw(self, device: torch.device, count: int) -> np.ndarray:
        """The first ``count`` validation crops with the primary network's skeletons: (H, W, 3) RGB."""
        batch = next(iter(DataLoader(Subset(self.val_set, range(min(count, len(self.val_set)))),
                                     batch_size=count, shuffle=False)))
        self.method.eval()
        images = to_device({"image": batch["image"]}, device)["image"]
        heatmaps = self.method.predict(self.method.normalizer(images))[self.method.primary]
        coords, scores = self.cfg.codec.decode(heatmaps.float().cpu())
        return pose_grid(batch["image"].numpy(), np.asarray(coords), np.asarray(scores), self.meta,
                         threshold=self.cfg.test.in_vis_threshold)


def build_parts(cfg: Any, load_init: bool = True) -> TaskParts:
    """The parts of ``cfg``'s task (top-down :class:`ExperimentConfig` or bottom-up
    :class:`pose.bottomup.config.BottomUpExperimentConfig`). ``load_init=False``: do not warm-start the
    networks from ``model.init`` (the caller resumes its own run; bottom-up models have no ``init``)."""
    from pose.bottomup.config import BottomUpExperimentConfig

    if isinstance(cfg, BottomUpExperimentConfig):
        from pose.bottomup.parts import BottomUpParts

        return BottomUpParts(cfg)
    if isinstance(cfg, ExperimentConfig):
        return TopDownParts(cfg, load_init=load_init)
    raise TypeError(f"no training task for a {type(cfg).__name__}")
