"""Training epochs are cut into full batches (pose.data.batching), on the plain file loader too."""

from __future__ import annotations

import pytest

from pose.config import apply_overrides
from pose.data.batching import drops_partial_batch, train_steps_per_epoch
from pose.engine.trainer import Trainer
from pose.presets import get_preset


@pytest.mark.parametrize(("items", "batch", "steps", "drops"), [
    (2929, 16, 183, True),   # the semi-supervised table's unlabeled set: no 1-crop step
    (100, 16, 6, True),
    (32, 16, 2, True),
    (5, 16, 1, False),       # smaller than a batch: one short step, nothing dropped
    (0, 4, 1, False),
])
def test_full_batches_only(items, batch, steps, drops):
    assert train_steps_per_epoch(items, batch) == steps
    assert drops_partial_batch(items, batch) is drops


def test_batch_size_is_checked():
    with pytest.raises(ValueError, match="batch size"):
        train_steps_per_epoch(10, 0)


def _trainer(coco_mini, tmp_path, kind: str, labeled: int, batch: int) -> Trainer:
    cfg = apply_overrides(get_preset("synth-r18-128x96").config, [
        f"data.root={coco_mini}", "data.train_ann=annotations/person_keypoints_val2017.json",
        "data.train_images=images/val2017", "data.val_ann=annotations/person_keypoints_val2017.json",
        "data.val_images=images/val2017", "data.num_workers=0", "codec.input_size=[48,64]",
        "codec.heatmap_size=[12,16]", f"output_dir={tmp_path}", f"method.kind={kind}",
        f"data.num_labeled={labeled}", "model.deconv_channels=16", f"train.batch_size={batch}", "name=tail"])
    return Trainer(cfg, resume=False)


@pytest.mark.parametrize(("kind", "labeled", "batch", "sizes"), [
    ("supervised", 5, 2, [2, 2]),            # 5 labeled: the 1-crop tail is dropped
    ("posecons", 3, 5, [5, 5]),              # 12 unlabeled crops: 5 + 5, the 2-crop tail dropped
    ("supervised", 3, 4, [3]),               # fewer than one batch: one short batch
])
def test_the_plain_trainer_drops_the_partial_last_batch(coco_mini, tmp_path, kind, labeled, batch, sizes):
    trainer = _trainer(coco_mini, tmp_path, kind, labeled, batch)
    got = []
    for b in trainer.train_loader():
        first = b if isinstance(b, dict) else b[1]
        got.append(int(first["image"].shape[0]))
        if not isinstance(b, dict):
            assert b[0]["image"].shape[0] == first["image"].shape[0]
    assert got == sizes
