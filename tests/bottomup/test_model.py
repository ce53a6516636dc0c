"""Bottom-up networks: output shapes of both heads, the tag layout, input checks, the LR schedule."""

from __future__ import annotations

import pytest
import torch

from pose.bottomup.model import BottomUpModelConfig, build_bottomup_model
from pose.bottomup.schedule import warmup_multistep

TINY = dict(width=8, stem_channels=16, stage1_blocks=1, num_modules=(1, 1, 1), num_blocks=1, higher_blocks=1)


@pytest.mark.parametrize("head", ["ae", "higher"])
@pytest.mark.parametrize("embed_dim", [1, 8])
def test_output_shapes(head, embed_dim):
    model = build_bottomup_model(BottomUpModelConfig(head=head, **TINY), num_keypoints=17, embed_dim=embed_dim).eval()
    heatmaps, tags = model(torch.randn(2, 3, 128, 96))
    assert tags.shape == (2, 17, 32, 24, embed_dim)
    assert [tuple(h.shape) for h in heatmaps] == [(2, 17, 32, 24)] + ([(2, 17, 64, 48)] if head == "higher" else [])


def test_tag_channel_layout_is_joint_major():
    model = build_bottomup_model(BottomUpModelConfig(**TINY), num_keypoints=3, embed_dim=4).eval()
    feats = model.backbone(torch.randn(1, 3, 64, 64))[0]
    raw = model.head.tag_layer(feats)  # (1, K*R, h, w): channel k*R + d
    _, tags = model.head(feats)
    assert torch.equal(tags[0, 2, :, :, 1], raw[0, 2 * 4 + 1])
    assert torch.equal(tags[0, 0, :, :, 3], raw[0, 3])


def test_higher_head_concatenates_features_and_quarter_heatmaps_only():
    model = build_bottomup_model(BottomUpModelConfig(head="higher", **TINY), num_keypoints=14, embed_dim=8)
    assert model.head.deconv[0].in_channels == 8 + 14


def test_input_size_must_be_multiple_of_32():
    model = build_bottomup_model(BottomUpModelConfig(**TINY), num_keypoints=17, embed_dim=8)
    with pytest.raises(ValueError, match="multiple of 32"):
        model(torch.randn(1, 3, 100, 128))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(3, 128, 128))


def test_config_rejects_unknown_head():
    with pytest.raises(ValueError, match="model.head"):
        BottomUpModelConfig(head="mid")


def test_warmup_then_steps():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_multistep(opt, warmup_iters=10, warmup_ratio=0.001, milestones=[20, 30], factor=0.1)
    lrs = []
    for _ in range(35):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.001)
    assert lrs[5] == pytest.approx(0.001 + 0.999 * 0.5)
    assert lrs[10] == pytest.approx(1.0) and lrs[19] == pytest.approx(1.0)
    assert lrs[20] == pytest.approx(0.1) and lrs[30] == pytest.approx(0.01)


@pytest.mark.parametrize("head", ["ae", "higher"])
def test_head_channels_put_a_conv_before_every_final_layer(head):
    """model.head_channels=32: a 3x3 conv from the backbone's 8 features to 32, which the 1x1 layers and
    the HigherHRNet branch read; 0 (the paper) adds no parameter, so earlier checkpoints still load."""
    plain = build_bottomup_model(BottomUpModelConfig(head=head, **TINY), num_keypoints=17, embed_dim=8)
    assert not any(k.startswith("stem.") for k in plain.state_dict())
    model = build_bottomup_model(BottomUpModelConfig(head=head, head_channels=32, **TINY), num_keypoints=17,
                                 embed_dim=8).eval()
    assert model.stem[0].weight.shape == (32, 8, 3, 3)
    assert model.head.heatmap_layer.in_channels == model.head.tag_layer.in_channels == 32
    if head == "higher":
        assert model.head.deconv[0].in_channels == 32 + 17 and model.head.higher_heatmap_layer.in_channels == 32
    heatmaps, tags = model(torch.randn(1, 3, 64, 64))
    assert tags.shape == (1, 17, 16, 16, 8) and heatmaps[0].shape == (1, 17, 16, 16)
    with pytest.raises(ValueError, match="head_channels"):
        BottomUpModelConfig(head_channels=-1)
