"""Shapes, gradients, parameter counts, init and config validation of the top-down models."""

from __future__ import annotations

import functools

import pytest
import torch

from pose.config import ConfigError, from_dict
from pose.models import (
    DeconvHead,
    HeatmapHead,
    HRNetBackbone,
    ModelConfig,
    ResNetBackbone,
    TopDownModel,
    build_topdown_model,
)

torch.set_num_threads(2)

SMALL_CFGS = {
    "sb_r18": ModelConfig(arch="simple_baseline", depth=18),
    "sb_r50": ModelConfig(arch="simple_baseline", depth=50),
    "sb_r18_s3": ModelConfig(arch="simple_baseline", depth=18, resnet_stages=3, num_deconv=2, deconv_channels=64),
    "hrnet_w8": ModelConfig(arch="hrnet", width=8),
}


@functools.lru_cache(maxsize=None)
def _model(name: str, k: int) -> TopDownModel:
    torch.manual_seed(0)
    return build_topdown_model(SMALL_CFGS[name], k)


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize(
    ("name", "k", "hw"),
    [
        ("sb_r18", 17, (128, 96)),
        ("sb_r18", 14, (64, 64)),
        ("sb_r50", 17, (64, 64)),
        ("sb_r50", 14, (128, 96)),
        ("sb_r18_s3", 17, (96, 64)),
        ("sb_r18_s3", 14, (48, 32)),
        ("hrnet_w8", 17, (64, 48)),
        ("hrnet_w8", 14, (128, 96)),
    ],
)
def test_output_shape(name: str, k: int, hw: tuple[int, int]) -> None:
    model = _model(name, k).eval()
    h, w = hw
    with torch.no_grad():
        out = model(torch.randn(2, 3, h, w))
    assert model.output_stride == 4
    assert out.shape == (2, k, h // 4, w // 4)
    assert torch.isfinite(out).all()


def test_hrnet_size_not_multiple_of_32() -> None:
    # 72x56 -> branch sizes 18x14, 9x7, 5x4, 3x2: the fuse upsampling must still line up
    model = _model("hrnet_w8", 17).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 72, 56))
    assert out.shape == (1, 17, 18, 14)


def test_bad_input_size_raises() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        _model("sb_r18", 17)(torch.randn(1, 3, 64, 48))
    with pytest.raises(ValueError, match="multiple of 4"):
        _model("hrnet_w8", 17)(torch.randn(1, 3, 66, 48))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        _model("hrnet_w8", 17)(torch.randn(1, 1, 64, 48))


@pytest.mark.parametrize("name", sorted(SMALL_CFGS))
def test_backward_reaches_every_parameter(name: str) -> None:
    model = _model(name, 14).train()
    model.zero_grad(set_to_none=True)
    out = model(torch.randn(2, 3, 64, 32))
    out.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient (would break DDP): {no_grad[:5]}"
    assert model.head.final_layer.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_three_resnet_stages_stop_at_layer3_with_stride_16() -> None:
    """``resnet_stages=3``: layer3's features (256 channels for R18, 1,024 for R50) at 1/16 of the input."""
    for depth, channels in ((18, 256), (50, 1024)):
        backbone = ResNetBackbone(depth, stages=3).eval()
        assert backbone.stride == 16 and backbone.out_channels == [channels]
        assert not any(name.startswith("layer4") for name in backbone.state_dict())
        with torch.no_grad():
            assert backbone(torch.randn(1, 3, 96, 64))[0].shape == (1, channels, 6, 4)
    assert ModelConfig(depth=18, resnet_stages=3, num_deconv=2).output_stride == 4
    assert ModelConfig(depth=18, resnet_stages=3, num_deconv=3).output_stride == 2


def test_num_deconv_sets_output_stride() -> None:
    model = build_topdown_model(ModelConfig(depth=18, num_deconv=2, deconv_channels=16), 5).eval()
    assert model.output_stride == 8
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 32)).shape == (1, 5, 8, 4)


# ------------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize(
    ("cfg", "published"),
    [
        (ModelConfig(arch="simple_baseline", depth=50), 34.0e6),
        (ModelConfig(arch="hrnet", width=32), 28.5e6),
        (ModelConfig(arch="hrnet", width=48), 63.6e6),
    ],
    ids=["sb_r50", "hrnet_w32", "hrnet_w48"],
)
def test_param_count_matches_published(cfg: ModelConfig, published: float) -> None:
    n = _num_params(build_topdown_model(cfg, 17))  # no forward pass: these are big
    assert abs(n - published) / published < 0.01, f"{n / 1e6:.2f}M params, published {published / 1e6}M"


# ---------------------------------------------------------------------------------- structure/init
def test_hrnet_key_names_match_official_checkpoints() -> None:
    sd = HRNetBackbone(8, multiscale_output=True).state_dict()
    tops = {k.split(".")[0] for k in sd}
    assert tops == {"conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "stage2", "transition2",
                    "stage3", "transition3", "stage4"}
    for key in ["stage2.0.branches.0.0.conv1.weight", "stage2.0.fuse_layers.1.0.0.0.weight",
                "stage2.0.fuse_layers.0.1.0.weight", "stage3.3.branches.2.3.bn2.running_var",
                "stage4.2.fuse_layers.3.2.0.0.weight", "transition1.0.0.weight", "transition1.1.0.0.weight",
                "transition2.2.0.0.weight", "transition3.3.0.0.weight", "layer1.0.downsample.0.weight",
                "layer1.3.conv3.weight"]:
        assert key in sd, key
    assert tuple(sd["layer1.0.conv3.weight"].shape) == (256, 64, 1, 1)
    assert tuple(sd["transition1.1.0.0.weight"].shape) == (16, 256, 3, 3)
    # single-scale output: the last stage-4 module fuses into branch 0 only
    single = HRNetBackbone(8).state_dict()
    assert not any(k.startswith("stage4.2.fuse_layers.1.") for k in single)
    assert set(single) < set(sd)


def test_hrnet_multiscale_features() -> None:
    backbone = HRNetBackbone(8, multiscale_output=True).eval()
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 64, 48))
    assert backbone.out_channels == [8, 16, 32, 64] and backbone.strides == [4, 8, 16, 32]
    assert [tuple(f.shape) for f in feats] == [(1, 8, 16, 12), (1, 16, 8, 6), (1, 32, 4, 3), (1, 64, 2, 2)]


def test_hrnet_tiny_variant_for_cpu_recipes() -> None:
    backbone = HRNetBackbone(8, stem_channels=16, stage1_blocks=1, num_modules=(1, 1, 1), num_blocks=1)
    with torch.no_grad():
        feats = backbone.eval()(torch.randn(1, 3, 32, 32))
    assert len(feats) == 1 and feats[0].shape == (1, 8, 8, 8)


def test_resnet_backbone() -> None:
    backbone = ResNetBackbone(18)
    assert backbone.out_channels == [512] and backbone.stride == 32
    assert not hasattr(backbone, "fc") and not hasattr(backbone, "avgpool")
    with pytest.raises(ValueError, match="unknown depth 20"):
        ResNetBackbone(20)


def test_head_init() -> None:
    torch.manual_seed(0)
    head = DeconvHead(64, 17, num_deconv=3, deconv_channels=64)
    deconvs = [m for m in head.deconv_layers if isinstance(m, torch.nn.ConvTranspose2d)]
    bns = [m for m in head.deconv_layers if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(deconvs) == 3 and all(m.bias is None and m.kernel_size == (4, 4) for m in deconvs)
    assert all(abs(m.weight.std().item() - 0.001) < 2e-4 for m in deconvs)
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in bns)
    assert abs(head.final_layer.weight.std().item() - 0.001) < 3e-4
    assert torch.all(head.final_layer.bias == 0)
    hm = HeatmapHead(32, 14)
    assert hm.final_layer.kernel_size == (1, 1) and torch.all(hm.final_layer.bias == 0)


def test_hrnet_init() -> None:
    torch.manual_seed(0)
    model = build_topdown_model(ModelConfig(arch="hrnet", width=8), 17)
    w = model.backbone.stage3[0].branches[1][0].conv1.weight
    assert abs(w.std().item() - 0.001) < 1e-4
    assert torch.all(model.backbone.bn1.weight == 1) and torch.all(model.backbone.bn1.bias == 0)
    assert isinstance(model.head, HeatmapHead) and model.head.final_layer.in_channels == 8


# ------------------------------------------------------------------------------------------ config
def test_config_defaults_and_from_dict() -> None:
    cfg = ModelConfig()
    assert (cfg.arch, cfg.depth, cfg.width, cfg.deconv_channels, cfg.num_deconv, cfg.pretrained) == (
        "simple_baseline", 50, 32, 256, 3, None)
    cfg = from_dict(ModelConfig, {"arch": "hrnet", "width": 48, "pretrained": "/x/hrnet_w48-8ef0771d.pth"})
    assert cfg == ModelConfig(arch="hrnet", width=48, pretrained="/x/hrnet_w48-8ef0771d.pth")
    with pytest.raises(ConfigError, match="widht"):
        from_dict(ModelConfig, {"widht": 32})
    with pytest.raises(ConfigError, match="arch"):
        from_dict(ModelConfig, {"arch": "vitpose"})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"depth": 20}, "unknown ResNet depth 20"),
        ({"width": 2}, "width must be >= 4"),
        ({"arch": "resnet"}, "unknown architecture"),
        ({"num_deconv": 0}, "num_deconv"),
        ({"deconv_channels": 0}, "deconv_channels"),
        ({"depth": 50.0}, "expected an integer"),
        ({"pretrained": ""}, "pretrained"),
        ({"resnet_stages": 2}, "resnet_stages: 4 .* or 3"),
        ({"arch": "hrnet", "resnet_stages": 3}, "not hrnet"),
        ({"resnet_stages": 3, "num_deconv": 5}, "at most 4 with model.resnet_stages=3"),
    ],
)
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kwargs)


def test_build_rejects_bad_num_keypoints() -> None:
    with pytest.raises(ValueError, match="num_keypoints"):
        build_topdown_model(ModelConfig(arch="hrnet", width=8), 0)
