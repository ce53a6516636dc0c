"""Heatmap heads: the SimpleBaseline deconvolution head and a 1x1-conv heatmap head.

Attribute names follow the official pose repos (``deconv_layers``, ``final_layer``), so a
checkpoint of those repos maps onto ``head.<name>`` by a plain prefix change.
"""

from __future__ import annotations

import torch
from torch import nn

BN_MOMENTUM = 0.1


class HeatmapHead(nn.Module):
    """1x1 conv from ``in_channels`` to ``num_keypoints`` heatmaps (HRNet top-down head).

    Shapes: ``(B, in_channels, h, w) -> (B, K, h, w)``. Init: weight N(0, 0.001^2), bias 0.
    """

    def __init__(self, in_channels: int, num_keypoints: int) -> None:
        super().__init__()
        if in_channels < 1 or num_keypoints < 1:
            raise ValueError(
                f"HeatmapHead: in_channels={in_channels}, num_keypoints={num_keypoints} must be >= 1"
            )
        self.in_channels = in_channels
        self.num_keypoints = num_keypoints
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, kernel_size=1, stride=1, padding=0)
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(x)


class DeconvHead(nn.Module):
    """SimpleBaseline head: ``num_deconv`` x [ConvTranspose2d(k4, s2, p1, no bias) -> BN -> ReLU] + 1x1 conv.

    Shapes: ``(B, in_channels, h, w) -> (B, K, h * 2**num_deconv, w * 2**num_deconv)``.
    Init (as in the paper's code): deconv weights N(0, 0.001^2), BN gamma 1 / beta 0,
    final conv N(0, 0.001^2) with bias 0.
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int,
        num_deconv: int = 3,
        deconv_channels: int = 256,
    ) -> None:
        super().__init__()
        if in_channels < 1 or num_keypoints < 1 or deconv_channels < 1 or num_deconv < 0:
            raise ValueError(
                f"DeconvHead: bad sizes in_channels={in_channels}, num_keypoints={num_keypoints}, "
                f"num_deconv={num_deconv}, deconv_channels={deconv_channels}"
            )
        self.in_channels = in_channels
        self.num_keypoints = num_keypoints
        self.upsample_factor = 2**num_deconv
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_deconv):
            layers += [
                nn.ConvTranspose2d(channels, deconv_channels, kernel_size=4, stride=2, padding=1,
                                   output_padding=0, bias=False),
                nn.BatchNorm2d(deconv_channels, momentum=BN_MOMENTUM),
                nn.ReLU(inplace=True),
            ]
            channels = deconv_channels
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(channels, num_keypoints, kernel_size=1, stride=1, padding=0)
        self.init_weights()

    def init_weights(self) -> None:
        for m in self.deconv_layers.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(x))
