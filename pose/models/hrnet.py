"""HRNet backbone (Sun et al., "Deep High-Resolution Representation Learning", CVPR 2019).

Topology of the pose / ImageNet HRNets (HRNet-W32: widths 32/64/128/256, W48: 48/96/192/384):

* stem: two 3x3 stride-2 convs (64 ch) with BN + ReLU -> stride 4;
* ``layer1``: 4 Bottlenecks (64 -> 256 ch);
* ``stage2`` / ``stage3`` / ``stage4``: 1 / 4 / 3 :class:`HighResolutionModule` s with 2 / 3 / 4
  branches of widths w, 2w, 4w, 8w (strides 4, 8, 16, 32), 4 BasicBlocks per branch, then fuse
  layers that exchange information between all branches (low -> high: 1x1 conv + BN + nearest
  upsampling; high -> low: chains of 3x3 stride-2 conv + BN);
* ``transition1..3``: create the new, lower-resolution branch (3x3 stride-2 conv + BN + ReLU).

Parameter names are those of the official code (``conv1, bn1, conv2, bn2, layer1, transition1,
stage2, transition2, stage3, transition3, stage4``; e.g. ``stage2.0.branches.0.0.conv1.weight``,
``stage2.0.fuse_layers.1.0.0.0.weight``), so the ImageNet checkpoints used by the HRNet pose repos
(``hrnet_w32-36af842e.pth``, ``hrnet_w48-8ef0771d.pth``) load with
:func:`pose.models.pretrained.load_backbone_checkpoint`.

With ``multiscale_output=False`` (the pose default, as in the official top-down HRNet and in
HigherHRNet) the last module of stage 4 fuses every branch into the highest-resolution one only and
the backbone returns ``[features (B, w, H/4, W/4)]``; with ``True`` it returns all four branches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BN_MOMENTUM = 0.1


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (ResNet basic block)."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) conv-BN layers with a residual connection."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


def _make_blocks(
    block: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int, num_blocks: int, stride: int = 1
) -> nn.Sequential:
    """``num_blocks`` residual blocks; the first one gets a 1x1 conv-BN shortcut when shapes change."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion, momentum=BN_MOMENTUM),
        )
    layers: list[nn.Module] = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks followed by the all-to-all fuse layers.

    ``forward(xs: list of num_branches tensors, branch i at stride 4 * 2**i)`` returns the fused
    branches: all of them when ``multi_scale_output`` is True, else only branch 0.
    """

    def __init__(self, channels: list[int], num_blocks: int, multi_scale_output: bool = True) -> None:
        super().__init__()
        self.num_branches = len(channels)
        if self.num_branches < 2:
            raise ValueError("HighResolutionModule needs at least 2 branches")
        self.channels = list(channels)
        self.multi_scale_output = multi_scale_output
        self.branches = nn.ModuleList(_make_blocks(BasicBlock, c, c, num_blocks) for c in channels)
        self.fuse_layers = self._make_fuse_layers()
        self.relu = nn.ReLU(inplace=True)

    def _make_fuse_layers(self) -> nn.ModuleList:
        ch = self.channels
        n_out = self.num_branches if self.multi_scale_output else 1
        rows = []
        for i in range(n_out):
            row: list[nn.Module] = []
            for j in range(self.num_branches):
                if j > i:  # lower resolution -> 1x1 conv + BN, upsampled in forward
                    row.append(nn.Sequential(
                        nn.Conv2d(ch[j], ch[i], kernel_size=1, bias=False),
                        nn.BatchNorm2d(ch[i], momentum=BN_MOMENTUM),
                    ))
                elif j == i:
                    row.append(nn.Identity())
                else:  # higher resolution -> (i - j) stride-2 3x3 convs
                    convs: list[nn.Module] = []
                    for k in range(i - j):
                        if k == i - j - 1:
                            convs.append(nn.Sequential(
                                _conv3x3(ch[j], ch[i], stride=2),
                                nn.BatchNorm2d(ch[i], momentum=BN_MOMENTUM),
                            ))
                        else:
                            convs.append(nn.Sequential(
                                _conv3x3(ch[j], ch[j], stride=2),
                                nn.BatchNorm2d(ch[j], momentum=BN_MOMENTUM),
                                nn.ReLU(inplace=True),
                            ))
                    row.append(nn.Sequential(*convs))
            rows.append(nn.ModuleList(row))
        return nn.ModuleList(rows)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(xs) != self.num_branches:
            raise ValueError(f"HighResolutionModule: expected {self.num_branches} inputs, got {len(xs)}")
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            size = xs[i].shape[-2:]
            y = xs[i]
            for j, layer in enumerate(row):
                if j == i:
                    continue
                t = layer(xs[j])
                if j > i:
                    # nearest upsampling by 2**(j-i); the explicit size also handles inputs whose
                    # size is not a multiple of 32 (where the official scale_factor version fails)
                    t = F.interpolate(t, size=size, mode="nearest")
                y = y + t
            out.append(self.relu(y))
        return out


class HRNetBackbone(nn.Module):
    """HRNet-W``width`` feature extractor.

    ``forward(x: (B, 3, H, W)) -> list of features``, highest resolution first: branch i has
    ``out_channels[i]`` channels (``width * 2**i``) at stride ``strides[i]`` (4 * 2**i), i.e.
    ``ceil(H / strides[i])`` rows. One tensor when ``multiscale_output`` is False (the default).

    Args:
        width: channels of the highest-resolution branch (32 and 48 are the paper widths).
        multiscale_output: keep all 4 fused branches in the last module of stage 4 (the ImageNet
            classifier does) instead of only the highest-resolution one (pose top-down / HigherHRNet).
        stem_channels: channels of the two stem convs (64 in the paper).
        stage1_channels: bottleneck width of ``layer1`` (64; its output has 4x as many channels).
        stage1_blocks: Bottlenecks in ``layer1`` (4).
        num_modules: HighResolutionModules in stages 2, 3, 4 ((1, 4, 3)).
        num_blocks: BasicBlocks per branch in every module (4).

    The small settings of the CPU test recipes (e.g. ``stem_channels=16, stage1_blocks=1,
    num_modules=(1, 1, 1), num_blocks=1``) keep the topology but are not checkpoint compatible.
    Init: every conv N(0, 0.001^2), BN weight 1 / bias 0.
    """

    def __init__(
        self,
        width: int = 32,
        *,
        multiscale_output: bool = False,
        stem_channels: int = 64,
        stage1_channels: int = 64,
        stage1_blocks: int = 4,
        num_modules: tuple[int, int, int] = (1, 4, 3),
        num_blocks: int = 4,
    ) -> None:
        super().__init__()
        if width < 1 or stem_channels < 1 or stage1_channels < 1 or stage1_blocks < 1 or num_blocks < 1:
            raise ValueError(
                f"HRNetBackbone: sizes must be >= 1 (width={width}, stem_channels={stem_channels}, "
                f"stage1_channels={stage1_channels}, stage1_blocks={stage1_blocks}, num_blocks={num_blocks})"
            )
        if len(num_modules) != 3 or any(m < 1 for m in num_modules):
            raise ValueError(f"HRNetBackbone: num_modules must be 3 integers >= 1, got {num_modules}")
        self.width = width
        self.multiscale_output = multiscale_output

        self.conv1 = nn.Conv2d(3, stem_channels, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(stem_channels, stem_channels, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem_channels, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _make_blocks(Bottleneck, stem_channels, stage1_channels, stage1_blocks)

        pre = [stage1_channels * Bottleneck.expansion]
        widths = [width * 2**i for i in range(4)]
        for s, n_mod in zip((2, 3, 4), num_modules):
            cur = widths[:s]
            setattr(self, f"transition{s - 1}", self._make_transition(pre, cur))
            last_multi = multiscale_output or s < 4
            modules = [
                HighResolutionModule(cur, num_blocks, multi_scale_output=last_multi or m < n_mod - 1)
                for m in range(n_mod)
            ]
            setattr(self, f"stage{s}", nn.Sequential(*modules))
            pre = cur

        self.out_channels: list[int] = widths if multiscale_output else widths[:1]
        self.strides: list[int] = [4 * 2**i for i in range(len(self.out_channels))]
        # Keys of the ImageNet checkpoints that this backbone does not have by design: the
        # classifier's last stage-4 module fuses into all 4 branches, ours (single-scale) into one.
        last = num_modules[2] - 1
        self.unused_checkpoint_prefixes: tuple[str, ...] = (
            () if multiscale_output else tuple(f"stage4.{last}.fuse_layers.{i}." for i in (1, 2, 3))
        )
        self.init_weights()

    @staticmethod
    def _make_transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
        layers: list[nn.Module] = []
        for i, c in enumerate(cur):
            if i < len(pre):
                if c != pre[i]:
                    layers.append(nn.Sequential(
                        _conv3x3(pre[i], c), nn.BatchNorm2d(c, momentum=BN_MOMENTUM), nn.ReLU(inplace=True)
                    ))
                else:
                    layers.append(nn.Identity())
            else:  # new branch: stride-2 convs from the lowest-resolution previous branch
                convs = []
                for j in range(i + 1 - len(pre)):
                    out_c = c if j == i - len(pre) else pre[-1]
                    convs.append(nn.Sequential(
                        _conv3x3(pre[-1], out_c, stride=2),
                        nn.BatchNorm2d(out_c, momentum=BN_MOMENTUM),
                        nn.ReLU(inplace=True),
                    ))
                layers.append(nn.Sequential(*convs))
        return nn.ModuleList(layers)

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _transition(transition: nn.ModuleList, ys: list[torch.Tensor]) -> list[torch.Tensor]:
        return [layer(ys[i] if i < len(ys) else ys[-1]) for i, layer in enumerate(transition)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        ys = self.stage2(self._transition(self.transition1, ys))
        ys = self.stage3(self._transition(self.transition2, ys))
        ys = self.stage4(self._transition(self.transition3, ys))
        return ys
