"""Bottom-up models: HRNet with the associative-embedding head or the HigherHRNet head.

Both heads predict K heatmaps and K x R tag maps at 1/4 resolution (R = 1 is classic Associative
Embedding, R = 8 is Coupled Embedding); the HigherHRNet head adds K heatmaps at 1/2 resolution from a
deconvolution over the concatenated 1/4 features and heatmaps (the CE repository does not concatenate
the tags, unlike the original HigherHRNet: spec section 2).

``head_channels`` > 0 (the CPU presets) puts a 3x3 conv + BN + ReLU to that many channels between the
backbone and the head, so the final 1x1 layers read ``head_channels`` features instead of the backbone's
``width``: with a narrow backbone (W8) the 17 heatmaps would otherwise be linear maps of 8 features (at
any pixel they lie in an 8-dimensional subspace and cannot form 17 separate peaks). The paper's W32 /
W48 need none (``head_channels=0``: the 1x1 layers read the backbone directly).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from pose.models.heads import BN_MOMENTUM
from pose.models.hrnet import BasicBlock, HRNetBackbone
from pose.models.pretrained import LoadReport, load_backbone_checkpoint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BottomUpModelConfig:
    """Which bottom-up network to build.

    Attributes:
        head: "ae" (HRNet + 1x1 heatmap and tag convs, heatmaps at 1/4) or "higher" (HigherHRNet:
            also heatmaps at 1/2).
        width: HRNet width (32 / 48 in the paper; 8 or 16 for CPU runs).
        stem_channels, stage1_blocks, num_modules, num_blocks: HRNet depth settings (paper: 64, 4,
            (1, 4, 3), 4); the CPU presets shrink them (16, 1, (1, 1, 1), 1).
        higher_blocks: residual BasicBlocks after the HigherHRNet deconvolution (4 in the paper).
        head_channels: 0 (the paper): the head's 1x1 layers read the backbone's ``width`` features;
            > 0: a 3x3 conv + BN + ReLU from ``width`` to ``head_channels`` first, and every final 1x1
            layer (and the HigherHRNet branch) reads its ``head_channels`` features.
        pretrained: local ImageNet HRNet checkpoint for the backbone, or None (random init).
    """

    head: Literal["ae", "higher"] = "ae"
    width: int = 32
    stem_channels: int = 64
    stage1_blocks: int = 4
    num_modules: tuple[int, int, int] = (1, 4, 3)
    num_blocks: int = 4
    higher_blocks: int = 4
    head_channels: int = 0
    pretrained: str | None = None

    def __post_init__(self) -> None:
        if self.head not in ("ae", "higher"):
            raise ValueError(f"model.head: expected 'ae' or 'higher', got {self.head!r}")
        for name in ("width", "stem_channels", "stage1_blocks", "num_blocks"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("higher_blocks", "head_channels"):
            if getattr(self, name) < 0:
                raise ValueError(f"model.{name}: must be >= 0, got {getattr(self, name)}")

    @property
    def final_channels(self) -> int:
        """Input channels of the head's final 1x1 layers: ``head_channels`` or the backbone's ``width``."""
        return self.head_channels or self.width

    @property
    def num_resolutions(self) -> int:
        return 2 if self.head == "higher" else 1


def _init_conv(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.normal_(conv.weight, std=0.001)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class AssociativeEmbeddingHead(nn.Module):
    """1x1 convs for heatmaps and tags at the feature's resolution.

    ``forward(x: (B, C, h, w)) -> ([heatmaps (B, K, h, w)], tags (B, K, h, w, R))``; tag channel
    ``k * R + d`` is joint k, dimension d.
    """

    def __init__(self, in_channels: int, num_keypoints: int, embed_dim: int) -> None:
        super().__init__()
        if in_channels < 1 or num_keypoints < 1 or embed_dim < 1:
            raise ValueError(f"AssociativeEmbeddingHead: bad sizes in={in_channels} K={num_keypoints} R={embed_dim}")
        self.num_keypoints = num_keypoints
        self.embed_dim = embed_dim
        self.heatmap_layer = _init_conv(nn.Conv2d(in_channels, num_keypoints, kernel_size=1))
        self.tag_layer = _init_conv(nn.Conv2d(in_channels, num_keypoints * embed_dim, kernel_size=1))

    def tags(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return self.tag_layer(x).view(b, self.num_keypoints, self.embed_dim, h, w).permute(0, 1, 3, 4, 2)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        return [self.heatmap_layer(x)], self.tags(x)


class HigherAssociativeEmbeddingHead(AssociativeEmbeddingHead):
    """The HigherHRNet head: the AE head at 1/4, then concat(features, heatmaps_1/4) ->
    ConvTranspose2d(k4, s2, p1) + BN + ReLU -> ``num_blocks`` BasicBlocks -> 1x1 conv -> heatmaps at 1/2.

    ``forward(x: (B, C, h, w)) -> ([(B, K, h, w), (B, K, 2h, 2w)], tags (B, K, h, w, R))``.
    """

    def __init__(self, in_channels: int, num_keypoints: int, embed_dim: int, num_blocks: int = 4) -> None:
        super().__init__(in_channels, num_keypoints, embed_dim)
        deconv = nn.ConvTranspose2d(in_channels + num_keypoints, in_channels, kernel_size=4, stride=2, padding=1,
                                    bias=False)
        nn.init.normal_(deconv.weight, std=0.001)
        self.deconv = nn.Sequential(deconv, nn.BatchNorm2d(in_channels, momentum=BN_MOMENTUM), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[BasicBlock(in_channels, in_channels) for _ in range(num_blocks)])
        self.higher_heatmap_layer = _init_conv(nn.Conv2d(in_channels, num_keypoints, kernel_size=1))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        quarter = self.heatmap_layer(x)
        y = self.blocks(self.deconv(torch.cat([x, quarter], dim=1)))
        return [quarter, self.higher_heatmap_layer(y)], self.tags(x)


class HeadStem(nn.Sequential):
    """3x3 conv (no bias) + BN + ReLU: (B, C_in, h, w) -> (B, C_out, h, w), the head's own features."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        nn.init.normal_(conv.weight, std=0.001)
        super().__init__(conv, nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM), nn.ReLU(inplace=True))


class BottomUpModel(nn.Module):
    """HRNet backbone (+ optional :class:`HeadStem`) + bottom-up head.

    ``forward(x: (B, 3, H, W) normalised) -> (heatmaps, tags)``: heatmaps is a list with one
    (B, K, H/4, W/4) tensor (AE head) or two, adding (B, K, H/2, W/2) (HigherHRNet head); tags are
    (B, K, H/4, W/4, R). H and W must be multiples of 32 (HRNet's lowest branch is at 1/32).
    """

    input_divisor = 32

    def __init__(self, backbone: HRNetBackbone, head: AssociativeEmbeddingHead,
                 stem: HeadStem | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.stem = stem if stem is not None else nn.Identity()
        self.head = head
        self.pretrained_report: LoadReport | None = None

    @property
    def num_keypoints(self) -> int:
        return self.head.num_keypoints

    @property
    def embed_dim(self) -> int:
        return self.head.embed_dim

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"BottomUpModel: expected input (B, 3, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.input_divisor or w % self.input_divisor:
            raise ValueError(f"BottomUpModel: input size {h}x{w} must be a multiple of {self.input_divisor}")
        return self.head(self.stem(self.backbone(x)[0]))


def build_bottomup_model(cfg: BottomUpModelConfig, num_keypoints: int, embed_dim: int) -> BottomUpModel:
    """The network of ``cfg`` with K = ``num_keypoints`` heatmaps and R = ``embed_dim`` tag dims per joint.

    ``cfg.pretrained`` loads the backbone from a local file (raises rather than silently keeping the
    random init when the keys do not fit).
    """
    backbone = HRNetBackbone(cfg.width, multiscale_output=False, stem_channels=cfg.stem_channels,
                             stage1_blocks=cfg.stage1_blocks, num_modules=cfg.num_modules, num_blocks=cfg.num_blocks)
    stem = HeadStem(backbone.out_channels[0], cfg.head_channels) if cfg.head_channels else None
    channels = cfg.final_channels
    head = (HigherAssociativeEmbeddingHead(channels, num_keypoints, embed_dim, cfg.higher_blocks)
            if cfg.head == "higher" else AssociativeEmbeddingHead(channels, num_keypoints, embed_dim))
    model = BottomUpModel(backbone, head, stem)
    if cfg.pretrained is not None:
        model.pretrained_report = load_backbone_checkpoint(backbone, Path(cfg.pretrained))
        logger.info("bottom-up backbone: %s", model.pretrained_report)
    return model
