"""Typed config of a top-down heatmap model (plain values only, so ``pose.config.from_dict`` builds it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RESNET_DEPTHS: tuple[int, ...] = (18, 34, 50, 101, 152)
ARCHS: tuple[str, ...] = ("simple_baseline", "hrnet")
MAX_NUM_DECONV = 5  # 32 / 2**5 = output stride 1


@dataclass(frozen=True)
class ModelConfig:
    """Which top-down model to build.

    Attributes:
        arch: ``"simple_baseline"`` (ResNet + deconvolution head, Xiao et al. 2018) or ``"hrnet"``
            (HRNet, Sun et al. 2019, highest-resolution branch + 1x1 conv).
        depth: ResNet depth for ``simple_baseline`` (18, 34, 50, 101 or 152). Ignored by ``hrnet``.
        resnet_stages: ResNet stages kept by ``simple_baseline``: 4 (the paper's whole body, output
            stride 32) or 3 (up to ``layer3``, output stride 16, about 0.6x the cost per training step; for
            CPU-scale inputs: a 64x96 crop keeps a 4x6 grid, not 2x3; use one deconvolution fewer for
            the same heatmap size). Must be 4 with ``hrnet``.
        width: HRNet width ``w`` (branches have w, 2w, 4w, 8w channels). 32 and 48 are the paper
            widths; small widths (8, 16) are for CPU tests. Ignored by ``simple_baseline``.
        deconv_channels: channels of each deconvolution layer of the SimpleBaseline head.
        num_deconv: number of stride-2 deconvolutions of the SimpleBaseline head. The output stride
            is ``32 / 2**num_deconv``; the default 3 gives stride 4 (64x48 heatmaps for 256x192).
        pretrained: path to a local ImageNet checkpoint of the backbone (torchvision ResNet
            ``resnet50-*.pth`` or HRNet ``hrnet_w32-36af842e.pth``); ``None`` = random init.
            Nothing is ever downloaded.
        init: initialise the whole network from an earlier poselab run (fine-tuning; a warm start):
            a training-state checkpoint (``last.pth`` / ``best.pth``), a run directory (its
            ``last.pth``) or, through the Ray/MLflow layer only, ``runs:/<MLflow run id>``. The
            checkpoint's primary network (``net``; ``net1`` of a PoseDual checkpoint) is loaded into
            the method's primary network, strictly (:mod:`pose.models.warm_start`); the optimiser,
            LR schedule and epoch counter start fresh. A run resumed from its own ``last.pth`` is not
            re-initialised. Excludes ``pretrained``.
        init_net2: the same for PoseDual's second network (required with ``init`` for PoseDual,
            an error for the single-network methods: see ``ExperimentConfig``).
    """

    arch: Literal["simple_baseline", "hrnet"] = "simple_baseline"
    depth: int = 50
    resnet_stages: int = 4
    width: int = 32
    deconv_channels: int = 256
    num_deconv: int = 3
    pretrained: str | None = None
    init: str | None = None
    init_net2: str | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"model.arch: unknown architecture {self.arch!r} (choose one of {list(ARCHS)})")
        for name in ("depth", "resnet_stages", "width", "deconv_channels", "num_deconv"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"model.{name}: expected an integer, got {value!r}")
        if self.depth not in RESNET_DEPTHS:
            raise ValueError(
                f"model.depth: unknown ResNet depth {self.depth} (choose one of {list(RESNET_DEPTHS)})"
            )
        if self.resnet_stages not in (3, 4):
            raise ValueError(f"model.resnet_stages: 4 (the whole ResNet, output stride 32) or 3 (up to layer3, "
                             f"output stride 16), got {self.resnet_stages}")
        if self.arch == "hrnet" and self.resnet_stages != 4:
            raise ValueError("model.resnet_stages applies to arch simple_baseline (a ResNet), not hrnet")
        if self.width < 4:
            raise ValueError(
                f"model.width: HRNet width must be >= 4 (paper widths: 32, 48), got {self.width}"
            )
        if self.deconv_channels < 1:
            raise ValueError(f"model.deconv_channels: must be >= 1, got {self.deconv_channels}")
        if not 1 <= self.num_deconv <= MAX_NUM_DECONV:
            raise ValueError(
                f"model.num_deconv: must be in 1..{MAX_NUM_DECONV} (3 gives output stride 4), "
                f"got {self.num_deconv}"
            )
        if self.resnet_stages == 3 and self.num_deconv == MAX_NUM_DECONV:
            raise ValueError(f"model.num_deconv: at most {MAX_NUM_DECONV - 1} with model.resnet_stages=3 (output "
                             f"stride 16 / 2**num_deconv must be at least 1), got {self.num_deconv}")
        bad_path = not isinstance(self.pretrained, str) or not self.pretrained.strip()
        if self.pretrained is not None and bad_path:
            raise ValueError(f"model.pretrained: expected a checkpoint path or null, got {self.pretrained!r}")
        for name in ("init", "init_net2"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"model.{name}: expected a checkpoint file, a run directory, runs:/<run id> "
                                 f"or null, got {value!r}")
        if self.init_net2 is not None and self.init is None:
            raise ValueError("model.init_net2 starts PoseDual's second network: set model.init (the first "
                             "network's start) too")
        if self.init is not None and self.pretrained is not None:
            raise ValueError(f"model.init={self.init!r} replaces the whole network, so model.pretrained="
                             f"{self.pretrained!r} would be overwritten: set one of them")

    @property
    def output_stride(self) -> int:
        """Input size / heatmap size of the model this config builds."""
        if self.arch == "hrnet":
            return 4
        return (32 if self.resnet_stages == 4 else 16) // 2**self.num_deconv
