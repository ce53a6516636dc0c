"""Top-down heatmap models (backbone + head), built from a ModelConfig by build_topdown_model."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from pose.models.config import ModelConfig
from pose.models.heads import DeconvHead, HeatmapHead
from pose.models.hrnet import HRNetBackbone
from pose.models.pretrained import LoadReport, load_backbone_checkpoint
from pose.models.simple_baseline import ResNetBackbone

logger = logging.getLogger(__name__)


class TopDownModel(nn.Module):
    """Backbone + heatmap head for single-person crops.

    ``forward(x: (B, 3, H, W)) -> heatmaps (B, K, H / output_stride, W / output_stride)``; the head
    reads the highest-resolution backbone feature (``backbone(x)[0]``). ``output_stride`` is 4 for
    the paper settings (SimpleBaseline with 3 deconvs, HRNet); ``H`` and ``W`` must be multiples of
    ``input_divisor`` (32 for SimpleBaseline, 4 for HRNet), else a ValueError says so.

    Attributes:
        backbone: module returning a list of features, highest resolution first.
        head: module mapping that feature to K heatmaps.
        num_keypoints: K.
        output_stride: input size / heatmap size.
        input_divisor: H and W must be multiples of it.
        pretrained_report: what was loaded from ``cfg.pretrained`` (None when nothing was).
    """

    def __init__(
        self, backbone: nn.Module, head: nn.Module, num_keypoints: int, output_stride: int, input_divisor: int
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.num_keypoints = num_keypoints
        self.output_stride = output_stride
        self.input_divisor = input_divisor
        self.pretrained_report: LoadReport | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"TopDownModel: expected input (B, 3, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.input_divisor or w % self.input_divisor:
            raise ValueError(
                f"TopDownModel: input size {h}x{w} must be a multiple of {self.input_divisor} "
                f"(e.g. 256x192) to give {h / self.output_stride:g}x{w / self.output_stride:g} heatmaps"
            )
        return self.head(self.backbone(x)[0])


def build_topdown_model(cfg: ModelConfig, num_keypoints: int) -> TopDownModel:
    """Build the top-down model described by ``cfg`` with ``num_keypoints`` heatmap channels.

    * ``simple_baseline``: :class:`ResNetBackbone` (``cfg.depth``, ``cfg.resnet_stages``) + :class:`DeconvHead`
      (``cfg.num_deconv`` x ``cfg.deconv_channels``); backbone keeps torchvision's random init.
    * ``hrnet``: :class:`HRNetBackbone` (``cfg.width``, single-scale output) + :class:`HeatmapHead`
      (the official ``final_layer``); every conv N(0, 0.001^2).

    When ``cfg.pretrained`` is set, the backbone weights are loaded from that local file with
    :func:`load_backbone_checkpoint`, which raises (FileNotFoundError / ValueError) rather than
    leaving the backbone randomly initialised.
    """
    if isinstance(num_keypoints, bool) or not isinstance(num_keypoints, int) or num_keypoints < 1:
        raise ValueError(
            f"build_topdown_model: num_keypoints must be a positive integer, got {num_keypoints!r}"
        )
    backbone: nn.Module
    head: nn.Module
    if cfg.arch == "simple_baseline":
        backbone = ResNetBackbone(cfg.depth, cfg.resnet_stages)
        head = DeconvHead(backbone.out_channels[0], num_keypoints, cfg.num_deconv, cfg.deconv_channels)
        model = TopDownModel(backbone, head, num_keypoints, cfg.output_stride, input_divisor=backbone.stride)
    elif cfg.arch == "hrnet":
        backbone = HRNetBackbone(cfg.width, multiscale_output=False)
        head = HeatmapHead(backbone.out_channels[0], num_keypoints)
        model = TopDownModel(backbone, head, num_keypoints, output_stride=4, input_divisor=4)
    else:  # ModelConfig validates arch; this guards configs built around __post_init__
        raise ValueError(f"build_topdown_model: unknown arch {cfg.arch!r}")
    if cfg.pretrained is not None:
        report = load_backbone_checkpoint(backbone, Path(cfg.pretrained))
        logger.info(
            "loaded %d backbone tensors from %s (ignored %d classifier keys)",
            len(report.loaded), report.path, len(report.ignored_classifier),
        )
        model.pretrained_report = report
    return model
