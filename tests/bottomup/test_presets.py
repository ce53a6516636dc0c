"""Every bottom-up preset (paper scale and CPU scale) builds its network and loss and takes one
training step on crowded SynthPose at a tiny input size; the paper settings are the spec's; the CPU
presets' networks have the right output shapes at their own input size and read >= 32 channels into
every final 1x1 layer."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from pose.bottomup.model import build_bottomup_model
from pose.config import apply_overrides
from pose.engine.loop import run_train_step
from pose.engine.trainer import Trainer
from pose.presets import PRESETS

BOTTOMUP = [n for n, p in PRESETS.items() if p.config.task == "bottomup"]


# The CrowdPose paper presets build the same networks as the COCO ones (checked below), so one
# step each is spent on the COCO ones and on every CPU-scale preset.
@pytest.mark.parametrize("name", [n for n in BOTTOMUP if "-crowdpose-" not in n])
def test_every_bottomup_preset_builds_and_steps(crowd_dataset, tmp_path, name):
    preset = PRESETS[name].config
    sizes = "[16]" if preset.model.head == "ae" else "[16,32]"
    cfg = apply_overrides(preset, [f"data.root={crowd_dataset(preset.data.dataset)}", "data.train_ann=annotations/person_keypoints_train.json",
                                   "data.train_images=images/train", "data.val_ann=annotations/person_keypoints_val.json",
                                   "data.val_images=images/val", "data.num_workers=0", f"output_dir={tmp_path}",
                                   "codec.input_size=64", f"codec.heatmap_sizes={sizes}", "train.batch_size=2",
                                   "train.device=cpu"])
    trainer = Trainer(cfg, log_metrics=lambda m, s: None, resume=False)
    assert trainer.method.network.embed_dim == preset.codec.embed_dim
    batch = next(iter(trainer.train_loader()))
    out = run_train_step(trainer.method, trainer.optimizer, batch, None, cfg.train, trainer.device)
    assert math.isfinite(out.logs["loss"]) and out.logs["heatmap"] > 0
    if preset.loss.kind == "ae":
        assert out.logs["scale"] == 0


def test_paper_presets_follow_the_spec():
    paper = [PRESETS[n].config for n in BOTTOMUP if not n.startswith("synth")]
    assert len(paper) == 2 * 2 * 2 * 2  # dataset x head x width x (CE, AE)
    for cfg in paper:
        assert cfg.train.lr == 1.5e-3 and cfg.train.batch_size == 10 and cfg.train.epochs == 300
        assert cfg.train.lr_steps == (200, 260) and cfg.train.warmup_iters == 500
        assert cfg.loss.beta == (0.40 if cfg.data.dataset == "coco" else 0.55)
        assert cfg.codec.grouping.nms_kernel == (5 if cfg.model.width == 32 else 7)
        assert cfg.codec.embed_dim == (8 if cfg.loss.kind == "ce" else 1)
        assert cfg.codec.input_size == (512 if cfg.model.width == 32 else 640)
        assert (cfg.loss.pull_weight, cfg.loss.push_weight, cfg.loss.scale_weight) == (1e-3, 1e-3, 1e-4)
    for name in BOTTOMUP:
        if "-crowdpose-" in name:
            twin = PRESETS[name.replace("-crowdpose-", "-coco-")].config
            assert PRESETS[name].config.model == twin.model and PRESETS[name].config.codec == twin.codec
    rows = [PRESETS[n].paper_row for n in BOTTOMUP if PRESETS[n].paper_row]
    assert any("67.0" in r for r in rows) and any("71.1" in r for r in rows) and any("68.9" in r for r in rows)


SYNTH = [n for n in BOTTOMUP if n.startswith("synthcrowd")]


def _final_1x1_layers(network: torch.nn.Module) -> list[torch.nn.Conv2d]:
    """The convs that output heatmaps or tags: the head's 1x1 layers (HigherHRNet's 1/2 layer too)."""
    head = network.head
    layers = [head.heatmap_layer, head.tag_layer]
    if hasattr(head, "higher_heatmap_layer"):
        layers.append(head.higher_heatmap_layer)
    return layers


@pytest.mark.parametrize("name", SYNTH)
def test_synthcrowd_presets_build_with_the_right_shapes(name):
    """Each CPU preset's network at its own input size: heatmaps (B, K, S/4, S/4) (and (B, K, S/2, S/2)
    with HigherHRNet), tags (B, K, S/4, S/4, R); the name says the format, embedding, head and size."""
    cfg = PRESETS[name].config
    meta = cfg.data.metainfo()
    k, r, s = meta.num_keypoints, cfg.codec.embed_dim, cfg.codec.input_size
    assert k == (14 if "-cp-" in name else 17) and cfg.data.dataset == ("crowdpose" if "-cp-" in name else "coco")
    kind = next(k for k in ("ae-r8", "ce", "ae") if f"-{k}-" in name)
    assert (cfg.loss.kind, r) == {"ce": ("ce", 8), "ae": ("ae", 1), "ae-r8": ("ae", 8)}[kind]
    assert name.endswith(f"-{s}") and cfg.model.head == ("higher" if "higherhrnet" in name else "ae")
    network = build_bottomup_model(cfg.model, k, r).eval()
    with torch.no_grad():
        heatmaps, tags = network(torch.randn(2, 3, s, s))
    assert [tuple(h.shape) for h in heatmaps] == [(2, k, h, h) for h in cfg.codec.heatmap_sizes]
    assert tuple(tags.shape) == (2, k, s // 4, s // 4, r)
    assert [c.out_channels for c in _final_1x1_layers(network)] == [k, k * r] + ([k] if cfg.model.head == "higher" else [])


@pytest.mark.parametrize("name", SYNTH)
def test_synthcrowd_final_layers_read_at_least_32_channels(name):
    """Issue 23: a 1x1 layer from 8 features cannot make 17 separate heatmap peaks. Every final layer of
    every CPU preset reads >= 32 channels (HRNet-W8 here: through the head's own 3x3 conv)."""
    cfg = PRESETS[name].config
    network = build_bottomup_model(cfg.model, cfg.data.metainfo().num_keypoints, cfg.codec.embed_dim)
    for layer in _final_1x1_layers(network):
        assert layer.kernel_size == (1, 1) and layer.in_channels >= 32, (name, layer)
    assert cfg.model.final_channels >= 32


def test_the_ce_vs_ae_scale_has_every_embedding_in_both_formats():
    scale = [n for n in SYNTH if n.endswith("-160")]
    assert sorted(scale) == sorted(f"synthcrowd{cp}-{kind}-higherhrnet-w8h32-160"
                                   for cp in ("", "-cp") for kind in ("ce", "ae", "ae-r8"))
    for name in scale:  # the same network and codec apart from R: the embedding is the only difference
        cfg, ce = PRESETS[name].config, PRESETS[name.replace("-ae-r8-", "-ce-").replace("-ae-", "-ce-")].config
        assert cfg.model == ce.model and cfg.train == ce.train and cfg.loss.beta == ce.loss.beta
        assert dataclasses.replace(cfg.codec, embed_dim=8) == ce.codec
