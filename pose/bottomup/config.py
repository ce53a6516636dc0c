"""The typed config of a bottom-up experiment (Associative / Coupled Embedding), unknown keys are errors.

A config file or dict is bottom-up when its top level says ``task: bottomup``; everything else in
poselab (presets, ``poselab train``, the Ray worker, the ablation) dispatches on that field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pose.bottomup.codec import BottomUpCodec
from pose.bottomup.data import BottomUpAugment
from pose.bottomup.losses import BottomUpLossConfig
from pose.bottomup.model import BottomUpModelConfig
from pose.experiment import DatasetFiles, TrainConfig


@dataclass(frozen=True)
class BottomUpDataConfig(DatasetFiles):
    """Whole-image COCO-format data (COCO or CrowdPose keypoints; ``dataset`` picks the metainfo and
    the evaluation protocol). Paths are relative to ``root`` unless absolute. ``max_val_images`` > 0
    evaluates the first N validation images only (quick runs; the GT is restricted to them).

    ``shards`` (relative to the working directory, like ``root``): a directory of Parquet shards with
    ``train/`` and ``val/`` written by ``poselab shards --mode bottomup`` from this dataset; when set,
    Ray Train workers stream decoded, augmented images and their targets from them through Ray Data
    instead of reading image files (the same items as the file loader's; the ground-truth JSON under
    ``root`` still scores validation). The plain-PyTorch engine reads image files only and refuses it.
    """

    root: str = "data/synthpose-crowd"
    dataset: Literal["coco", "crowdpose"] = "coco"
    train_ann: str = "annotations/person_keypoints_train.json"
    train_images: str = "images/train"
    val_ann: str = "annotations/person_keypoints_val.json"
    val_images: str = "images/val"
    max_val_images: int = 0
    num_workers: int = 2
    shards: str = ""

    def __post_init__(self) -> None:
        if self.max_val_images < 0 or self.num_workers < 0:
            raise ValueError("data.max_val_images and data.num_workers must be >= 0")


@dataclass(frozen=True)
class BottomUpTrainConfig(TrainConfig):
    """The top-down :class:`TrainConfig` with the bottom-up recipe's defaults and a linear warm-up over
    ``warmup_iters`` iterations from ``warmup_ratio`` x lr; the schedule (warm-up, then x ``lr_factor``
    at each epoch of ``lr_steps``) is stepped every iteration (the CE repository: Adam 1.5e-3, 500
    iterations from 1e-3, x0.1 at 200 and 260 of 300 epochs, batch 10 per GPU, validation every 10)."""

    epochs: int = 300
    batch_size: int = 10
    lr: float = 1.5e-3
    lr_steps: tuple[int, ...] = (200, 260)
    val_interval: int = 10
    warmup_iters: int = 500
    warmup_ratio: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.warmup_ratio <= 1 or self.warmup_iters < 0:
            raise ValueError("train.warmup_ratio must be in (0, 1] and train.warmup_iters >= 0")


@dataclass(frozen=True)
class BottomUpTestConfig:
    """Inference: ``flip_test`` (heatmaps averaged, tags concatenated), ``scale_factors`` (the first
    must be 1; tags come from it), ResizeAlign to multiples of ``size_divisor``, and at most
    ``max_people`` people per image kept for scoring (the COCO evaluator's maxDets is 20).

    ``oracle_diagnosis`` also scores every validation image twice more, with the ground truth in place
    of the network's tags (``AP_oracle_tags``: what its localisation allows) and of its heatmaps
    (``AP_oracle_heatmaps``: how well its embedding groups the true joints), see
    :mod:`pose.bottomup.oracle`; it triples the validation time."""

    flip_test: bool = True
    scale_factors: tuple[float, ...] = (1.0,)
    size_divisor: int = 64
    max_people: int = 20
    oracle_diagnosis: bool = False

    def __post_init__(self) -> None:
        if not self.scale_factors or self.scale_factors[0] != 1.0 or min(self.scale_factors) <= 0:
            raise ValueError(f"test.scale_factors must start with 1.0 and be > 0, got {list(self.scale_factors)}")
        if self.size_divisor < 32 or self.size_divisor % 32:
            raise ValueError(f"test.size_divisor must be a multiple of 32, got {self.size_divisor}")
        if self.max_people < 1:
            raise ValueError("test.max_people must be >= 1")


@dataclass(frozen=True)
class BottomUpExperimentConfig:
    """One bottom-up experiment: data, codec (targets and grouping), augmentation, model, loss,
    optimisation and inference settings."""

    task: Literal["bottomup"] = "bottomup"
    name: str = "bottomup"
    output_dir: str = "runs"
    data: BottomUpDataConfig = field(default_factory=BottomUpDataConfig)
    codec: BottomUpCodec = field(default_factory=BottomUpCodec)
    augment: BottomUpAugment = field(default_factory=BottomUpAugment)
    model: BottomUpModelConfig = field(default_factory=BottomUpModelConfig)
    loss: BottomUpLossConfig = field(default_factory=BottomUpLossConfig)
    train: BottomUpTrainConfig = field(default_factory=BottomUpTrainConfig)
    test: BottomUpTestConfig = field(default_factory=BottomUpTestConfig)

    def __post_init__(self) -> None:
        res = self.model.num_resolutions
        sizes = self.codec.heatmap_sizes
        if len(sizes) != res:
            raise ValueError(f"codec.heatmap_sizes {list(sizes)}: model.head={self.model.head!r} predicts {res} "
                             f"resolution(s) ({'1/4' if res == 1 else '1/4 and 1/2'} of codec.input_size)")
        expected = tuple(self.codec.input_size // 4 * 2**i for i in range(res))
        if tuple(sizes) != expected:
            raise ValueError(f"codec.heatmap_sizes {list(sizes)} must be {list(expected)} for "
                             f"codec.input_size={self.codec.input_size} and model.head={self.model.head!r}")
        if self.codec.input_size % 32:
            raise ValueError(f"codec.input_size must be a multiple of 32, got {self.codec.input_size}")
        if self.loss.kind == "ce" and self.codec.embed_dim < 2:
            raise ValueError("loss.kind='ce' (Coupled Embedding) reads the person scale from the tag's "
                             "dimensions: codec.embed_dim must be >= 2 (8 in the paper)")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    @property
    def selection_metric(self) -> str:
        """The validation statistic that selects ``best.pth`` (logged as ``best_AP``)."""
        return "AP"
