"""Every bottom-up preset (paper scale and CPU scale) builds its network and loss and takes one
training step on crowded SynthPose at a tiny input size; the paper settings are the spec's."""

from __future__ import annotations

import math

import pytest

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
