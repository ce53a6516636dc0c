"""Builders shared by the plain bottom-up trainer and the Ray Train worker: one place that turns a
:class:`BottomUpExperimentConfig` into datasets, the method, the optimiser and the schedule."""

from __future__ import annotations

import logging

import torch

from pose.bottomup.config import BottomUpExperimentConfig
from pose.bottomup.data import BottomUpDataset, BottomUpImage, ValImageDataset, load_bottomup_images
from pose.bottomup.losses import BottomUpLoss
from pose.bottomup.method import BottomUpMethod
from pose.bottomup.model import build_bottomup_model
from pose.bottomup.schedule import warmup_multistep
from pose.metainfo import DatasetMeta

log = logging.getLogger(__name__)


def load_train_images(cfg: BottomUpExperimentConfig, meta: DatasetMeta) -> list[BottomUpImage]:
    images, _ = load_bottomup_images(cfg.data.path(cfg.data.train_ann), cfg.data.path(cfg.data.train_images),
                                     meta, train=True)  # logs its skips once
    if not images:
        raise ValueError(f"{cfg.data.path(cfg.data.train_ann)}: no training image with an annotation")
    return images


def load_val_images(cfg: BottomUpExperimentConfig, meta: DatasetMeta) -> list[BottomUpImage]:
    images, _ = load_bottomup_images(cfg.data.path(cfg.data.val_ann), cfg.data.path(cfg.data.val_images),
                                     meta, train=False)
    if cfg.data.max_val_images:
        images = images[: cfg.data.max_val_images]
    return images


def build_train_dataset(cfg: BottomUpExperimentConfig, meta: DatasetMeta) -> BottomUpDataset:
    return BottomUpDataset(load_train_images(cfg, meta), meta, cfg.codec, cfg.augment, seed=cfg.train.seed)


def build_val_dataset(cfg: BottomUpExperimentConfig, meta: DatasetMeta) -> ValImageDataset:
    return ValImageDataset(load_val_images(cfg, meta), cfg.codec.input_size, cfg.test.size_divisor,
                           cfg.test.scale_factors)


def build_method(cfg: BottomUpExperimentConfig, meta: DatasetMeta) -> BottomUpMethod:
    network = build_bottomup_model(cfg.model, meta.num_keypoints, cfg.codec.embed_dim)
    return BottomUpMethod(network, BottomUpLoss(cfg.loss))


def build_optimizer(cfg: BottomUpExperimentConfig, method: BottomUpMethod) -> torch.optim.Optimizer:
    params = [p for p in method.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)


def build_scheduler(cfg: BottomUpExperimentConfig, optimizer: torch.optim.Optimizer,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration warm-up + steps; ``train.lr_steps`` (epochs) become iterations with
    ``steps_per_epoch`` (the loader's length, so the milestones fall on epoch boundaries)."""
    tc = cfg.train
    return warmup_multistep(optimizer, tc.warmup_iters, tc.warmup_ratio,
                            [e * steps_per_epoch for e in tc.lr_steps], tc.lr_factor)

