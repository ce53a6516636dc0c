"""SimpleBaseline backbone: the torchvision ResNet body (stem + layer1..layer4, output stride 32; or up to
layer3, output stride 16, for small CPU-scale inputs).

SimpleBaseline (Xiao et al., "Simple Baselines for Human Pose Estimation and Tracking", ECCV 2018)
= this backbone + :class:`pose.models.heads.DeconvHead`; :func:`pose.models.build.build_topdown_model`
puts the two together. The parameter names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``,
...), so torchvision's ImageNet files (``resnet50-0676ba61.pth``, ``resnet50-19c8e357.pth``, ...) load
with :func:`pose.models.pretrained.load_backbone_checkpoint` (their ``fc.*`` keys are ignored).
"""

from __future__ import annotations

import torch
from torch import nn

from pose.models.config import RESNET_DEPTHS


def _torchvision_resnet(depth: int) -> nn.Module:
    """``torchvision.models.resnet{depth}(weights=None)``: random init, never a download."""
    # imported here: torchvision's import costs seconds (it pulls in torch._dynamo), and HRNet-only
    # users of pose.models should not pay for it
    import torchvision

    if depth == 18:
        return torchvision.models.resnet18(weights=None)
    if depth == 34:
        return torchvision.models.resnet34(weights=None)
    if depth == 50:
        return torchvision.models.resnet50(weights=None)
    if depth == 101:
        return torchvision.models.resnet101(weights=None)
    if depth == 152:
        return torchvision.models.resnet152(weights=None)
    raise ValueError(f"ResNetBackbone: unknown depth {depth} (choose one of {list(RESNET_DEPTHS)})")


class ResNetBackbone(nn.Module):
    """torchvision ResNet-{18,34,50,101,152} without ``avgpool``/``fc``.

    ``forward(x: (B, 3, H, W)) -> [features (B, C, H/32, W/32)]`` (a one-element list, like every
    poselab backbone: features ordered from highest resolution down). ``C`` is 512 for depth 18/34
    and 2048 otherwise (``out_channels[0]``).

    ``stages=3`` keeps the body up to ``layer3``: features ``(B, C/2, H/16, W/16)`` (``stride`` 16), at
    about 0.6x the cost per training step of the whole body (bench/bench_method_steps.py --against). It is
    for inputs a third of the paper's size, where stride 32 leaves a 2x3 grid for a 64x96 crop (the
    paper's 256x192 crop has 8x6); an ImageNet checkpoint's ``layer4.*`` keys are then declared unused
    (``unused_checkpoint_prefixes``).

    Weights start from torchvision's random init (``weights=None``; nothing is downloaded); load
    ImageNet weights from a local file with :func:`pose.models.pretrained.load_backbone_checkpoint`.
    """

    def __init__(self, depth: int = 50, stages: int = 4) -> None:
        super().__init__()
        if stages not in (3, 4):
            raise ValueError(f"ResNetBackbone: stages must be 3 or 4, got {stages!r}")
        net = _torchvision_resnet(depth)
        self.depth = depth
        self.stages = stages
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4 if stages == 4 else None
        self.out_channels: list[int] = [net.fc.in_features if stages == 4 else net.fc.in_features // 2]
        self.stride = 32 if stages == 4 else 16
        self.unused_checkpoint_prefixes: tuple[str, ...] = () if stages == 4 else ("layer4.",)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return [x if self.layer4 is None else self.layer4(x)]
