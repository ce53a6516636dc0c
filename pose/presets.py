"""Named experiment configs (presets). Each is an ordinary :class:`ExperimentConfig`.

``poselab presets`` lists them; ``poselab train PRESET key=value ...`` runs one with overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pose.codecs.heatmap import HeatmapCodec
from pose.experiment import DataConfig, ExperimentConfig, TestConfig, TrainConfig
from pose.models.config import ModelConfig


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    config: ExperimentConfig


def _coco(name: str, model: ModelConfig, input_size: tuple[int, int], sigma: float, batch: int,
          description: str) -> Preset:
    w, h = input_size
    return Preset(name, description, ExperimentConfig(
        name=name,
        data=DataConfig(root="data/coco", train_ann="annotations/person_keypoints_train2017.json",
                        train_images="train2017", val_ann="annotations/person_keypoints_val2017.json",
                        val_images="val2017", num_workers=8),
        codec=HeatmapCodec(input_size=(w, h), heatmap_size=(w // 4, h // 4), sigma=sigma),
        model=model,
        train=TrainConfig(epochs=210, batch_size=batch, lr=1e-3, lr_steps=(170, 200)),
        test=TestConfig(batch_size=64, flip_test=True),
    ))


def _synth(name: str, model: ModelConfig, description: str, epochs: int = 8) -> Preset:
    return Preset(name, description, ExperimentConfig(
        name=name,
        data=DataConfig(root="data/synthpose", num_workers=2),
        codec=HeatmapCodec(input_size=(96, 128), heatmap_size=(24, 32), sigma=2.0),
        model=model,
        train=TrainConfig(epochs=epochs, batch_size=32, lr=1e-3, lr_steps=(int(epochs * 0.75),), log_interval=10),
        test=TestConfig(batch_size=64, flip_test=True),
    ))


PRESETS: dict[str, Preset] = {p.name: p for p in (
    _coco("coco-simplebaseline-r50-256x192", ModelConfig(arch="simple_baseline", depth=50), (192, 256), 2.0, 32,
          "SimpleBaseline ResNet-50, COCO train2017 -> val2017 (GT boxes), 210 epochs"),
    _coco("coco-hrnet-w32-256x192", ModelConfig(arch="hrnet", width=32), (192, 256), 2.0, 32,
          "HRNet-W32, COCO train2017 -> val2017 (GT boxes), 210 epochs"),
    _coco("coco-hrnet-w48-384x288", ModelConfig(arch="hrnet", width=48), (288, 384), 3.0, 32,
          "HRNet-W48 at 384x288 (sigma 3), COCO train2017 -> val2017 (GT boxes), 210 epochs"),
    _synth("synth-r18-128x96", ModelConfig(arch="simple_baseline", depth=18, deconv_channels=128),
           "SimpleBaseline ResNet-18 (128-channel deconvs) on SynthPose at 128x96: the CPU default"),
    _synth("synth-hrnet-w16-128x96", ModelConfig(arch="hrnet", width=16),
           "HRNet-W16 on SynthPose at 128x96 (CPU scale)"),
)}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}': available presets are {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def with_name(cfg: ExperimentConfig, name: str) -> ExperimentConfig:
    return replace(cfg, name=name)
