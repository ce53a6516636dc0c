"""Loading local ImageNet checkpoints into backbones: round trips, wrappers, and loud failures."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torchvision

from pose.models import (
    CLASSIFIER_PREFIXES,
    HRNetBackbone,
    ModelConfig,
    ResNetBackbone,
    build_topdown_model,
    load_backbone_checkpoint,
)

torch.set_num_threads(2)


def _randomize(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Distinct values everywhere, so 'loaded' cannot be confused with 'freshly initialised'."""
    g = torch.Generator().manual_seed(1)
    return {k: (torch.rand(v.shape, generator=g) + 0.5 if v.is_floating_point() else v.clone())
            for k, v in sd.items()}


def _assert_backbone_equals(backbone: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    for k, v in backbone.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, sd[k]), k


@pytest.fixture(scope="module")
def resnet18_sd() -> dict[str, torch.Tensor]:
    # a full torchvision classifier state dict, fc.* included (what resnet18-*.pth holds)
    return _randomize(torchvision.models.resnet18(weights=None).state_dict())


@pytest.fixture(scope="module")
def hrnet8_imagenet_sd() -> dict[str, torch.Tensor]:
    """State dict shaped like an HRNet ImageNet file: multi-scale stage 4 + classifier keys."""
    sd = _randomize(HRNetBackbone(8, multiscale_output=True).state_dict())
    sd["incre_modules.0.0.conv1.weight"] = torch.zeros(4, 8, 1, 1)
    sd["downsamp_modules.0.0.weight"] = torch.zeros(8, 4, 3, 3)
    sd["final_layer.0.weight"] = torch.zeros(16, 8, 1, 1)
    sd["classifier.weight"] = torch.zeros(1000, 16)
    sd["classifier.bias"] = torch.zeros(1000)
    return sd


def test_resnet18_round_trip_via_config(tmp_path: Path, resnet18_sd: dict) -> None:
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(resnet18_sd, path)
    model = build_topdown_model(ModelConfig(depth=18, pretrained=str(path)), 17)
    _assert_backbone_equals(model.backbone, resnet18_sd)
    report = model.pretrained_report
    assert report is not None and report.path == path
    assert set(report.ignored_classifier) == {"fc.weight", "fc.bias"} and not report.ignored_other
    assert len(report.loaded) == len(model.backbone.state_dict())


def test_resnet18_into_three_stages_declares_layer4_unused(tmp_path: Path, resnet18_sd: dict) -> None:
    """A whole ResNet-18 ImageNet file loads into the 3-stage body: layer4 is ignored without a warning."""
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(resnet18_sd, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build_topdown_model(ModelConfig(depth=18, resnet_stages=3, num_deconv=2, pretrained=str(path)), 17)
    _assert_backbone_equals(model.backbone, {k: v for k, v in resnet18_sd.items() if not k.startswith("layer4.")})
    report = model.pretrained_report
    assert report is not None and not report.ignored_other
    assert {k for k in report.ignored_classifier if not k.startswith("layer4.")} == {"fc.weight", "fc.bias"}
    assert len(report.loaded) == len(model.backbone.state_dict())


@pytest.mark.parametrize("wrap", ["state_dict", "model", "module_prefix"])
def test_wrapped_checkpoints(tmp_path: Path, resnet18_sd: dict, wrap: str) -> None:
    prefixed = {f"module.{k}": v for k, v in resnet18_sd.items()}
    obj = {"module_prefix": prefixed, "state_dict": {"state_dict": prefixed, "epoch": 3},
           "model": {"model": resnet18_sd, "optimizer": {}}}[wrap]
    path = tmp_path / f"{wrap}.pth"
    torch.save(obj, path)
    backbone = ResNetBackbone(18)
    load_backbone_checkpoint(backbone, path)
    _assert_backbone_equals(backbone, resnet18_sd)


def test_old_checkpoint_without_num_batches_tracked(tmp_path: Path, resnet18_sd: dict) -> None:
    path = tmp_path / "old.pth"
    torch.save({k: v for k, v in resnet18_sd.items() if not k.endswith("num_batches_tracked")}, path)
    backbone = ResNetBackbone(18)
    load_backbone_checkpoint(backbone, path)
    _assert_backbone_equals(backbone, resnet18_sd)


def test_hrnet_imagenet_layout_loads_without_warnings(tmp_path: Path, hrnet8_imagenet_sd: dict) -> None:
    path = tmp_path / "hrnet_w8.pth"
    torch.save(hrnet8_imagenet_sd, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = build_topdown_model(ModelConfig(arch="hrnet", width=8, pretrained=str(path)), 14)
    _assert_backbone_equals(model.backbone, hrnet8_imagenet_sd)
    report = model.pretrained_report
    assert not report.ignored_other
    ignored = set(report.ignored_classifier)
    assert {"classifier.weight", "final_layer.0.weight", "incre_modules.0.0.conv1.weight"} <= ignored
    assert any(k.startswith("stage4.2.fuse_layers.3.") for k in ignored)  # multi-scale rows, unused
    # the multi-scale backbone takes those fuse rows too
    multi = HRNetBackbone(8, multiscale_output=True)
    report = load_backbone_checkpoint(multi, path)
    assert all(k.startswith(CLASSIFIER_PREFIXES) for k in report.ignored_classifier)
    _assert_backbone_equals(multi, hrnet8_imagenet_sd)


def test_unknown_extra_keys_warn(tmp_path: Path, resnet18_sd: dict) -> None:
    path = tmp_path / "extra.pth"
    torch.save({**resnet18_sd, "aux_head.weight": torch.zeros(3)}, path)
    with pytest.warns(UserWarning, match="aux_head.weight"):
        report = load_backbone_checkpoint(ResNetBackbone(18), path)
    assert report.ignored_other == ("aux_head.weight",)


def test_resnet18_into_resnet50_raises(tmp_path: Path, resnet18_sd: dict) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18_sd, path)
    with pytest.raises(ValueError, match="backbone keys are missing") as e:
        build_topdown_model(ModelConfig(depth=50, pretrained=str(path)), 17)
    assert str(path) in str(e.value) and "layer1.0.conv3.weight" in str(e.value)
    assert "more" in str(e.value)  # only the first keys are named, then the count


def test_resnet_into_hrnet_raises(tmp_path: Path, resnet18_sd: dict) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18_sd, path)
    with pytest.raises(ValueError, match="missing") as e:
        load_backbone_checkpoint(HRNetBackbone(8), path)
    assert str(path) in str(e.value) and "conv2.weight" in str(e.value)


def test_prefixed_keys_are_not_silently_skipped(tmp_path: Path, resnet18_sd: dict) -> None:
    # the pose repos' strict=False load would load nothing here and say nothing
    path = tmp_path / "prefixed.pth"
    torch.save({f"backbone.{k}": v for k, v in resnet18_sd.items()}, path)
    with pytest.raises(ValueError, match=r"missing.*backbone\.conv1\.weight"):
        load_backbone_checkpoint(ResNetBackbone(18), path)


def test_shape_mismatch_raises(tmp_path: Path, hrnet8_imagenet_sd: dict) -> None:
    path = tmp_path / "hrnet_w8.pth"
    torch.save(hrnet8_imagenet_sd, path)
    with pytest.raises(ValueError, match="other shapes") as e:
        load_backbone_checkpoint(HRNetBackbone(16), path)
    assert str(path) in str(e.value) and "transition1.0.0.weight" in str(e.value)


def test_missing_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "hrnet_w32-36af842e.pth"
    with pytest.raises(FileNotFoundError, match="hrnet_w32-36af842e.pth"):
        build_topdown_model(ModelConfig(arch="hrnet", width=8, pretrained=str(path)), 17)
    with pytest.raises(FileNotFoundError, match="not a file"):
        load_backbone_checkpoint(ResNetBackbone(18), tmp_path)


@pytest.mark.parametrize("content", [b"", b"this is not a checkpoint\n", b"PK\x03\x04garbage"])
def test_garbage_file_raises(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a readable torch checkpoint") as e:
        load_backbone_checkpoint(ResNetBackbone(18), path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        (torch.zeros(3), "expected a state dict"),
        ({}, "empty"),
        ({"conv1.weight": 3, "epoch": 1}, "non-tensor"),
    ],
)
def test_not_a_state_dict_raises(tmp_path: Path, obj: object, match: str) -> None:
    path = tmp_path / "odd.pth"
    torch.save(obj, path)
    with pytest.raises(ValueError, match=match) as e:
        load_backbone_checkpoint(ResNetBackbone(18), path)
    assert str(path) in str(e.value)


def test_legacy_serialization_format_loads(tmp_path: Path, resnet18_sd: dict) -> None:
    # the 2018-2019 ImageNet files (resnet*-5c106cde.pth, hrnet_w32-36af842e.pth) predate the zip format
    path = tmp_path / "legacy.pth"
    torch.save(resnet18_sd, path, _use_new_zipfile_serialization=False)
    backbone = ResNetBackbone(18)
    load_backbone_checkpoint(backbone, path)
    _assert_backbone_equals(backbone, resnet18_sd)


def test_checkpoint_with_python_objects_raises(tmp_path: Path) -> None:
    import argparse

    path = tmp_path / "train_ckpt.pth"
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(ValueError, match="Python objects besides tensors") as e:
        load_backbone_checkpoint(ResNetBackbone(18), path)
    assert str(path) in str(e.value)
