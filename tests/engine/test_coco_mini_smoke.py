"""End-to-end on the real coco-mini photographs: crop, evaluate, train, resume."""

import json

import numpy as np
import pytest
import torch

from pose.codecs.heatmap import HeatmapCodec
from pose.config import apply_overrides
from pose.data.coco import load_gt_instances
from pose.data.topdown import TopDownDataset
from pose.engine.predict import heatmaps_to_instances, to_coco_results, InstancePredictions
from pose.engine.trainer import Trainer
from pose.evaluation.keypoint_eval import evaluate_keypoints
from pose.metainfo import COCO
from pose.presets import get_preset


def test_ground_truth_as_predictions_gives_ap_one(coco_mini_ann):
    data = json.loads(coco_mini_ann.read_text())
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in data["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
    stats = evaluate_keypoints(coco_mini_ann, results, COCO)
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)


@pytest.mark.parametrize("flip", [False, True])
def test_encoded_ground_truth_survives_crop_decode_and_back_projection(coco_mini_ann, coco_mini_images, flip):
    """GT -> crop -> target heatmaps -> decode -> image space -> AP stays near 1."""
    from pose.data.transforms import AugmentParams

    codec = HeatmapCodec()
    inst = load_gt_instances(coco_mini_ann, coco_mini_images, COCO, 0.75)
    ds = TopDownDataset(inst, COCO, codec)
    ds.params_for = lambda i, draw=None: AugmentParams(scale=1.1, rotation=20.0, flip=flip)  # type: ignore[method-assign]
    batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
    preds = heatmaps_to_instances(batch["heatmaps"], batch, codec)
    vis = np.stack([i.visible for i in inst]) > 0
    gt_kps = np.stack([i.keypoints[COCO.flip_indices] if flip else i.keypoints for i in inst])
    err = np.linalg.norm(preds.keypoints[..., :2] - gt_kps, axis=-1)[vis]
    crop_px = np.mean([i.scale[0] for i in inst]) / codec.input_size[0] * 1.1
    assert np.median(err) < 0.5 * codec.stride * crop_px * 1.5
    if not flip:
        results = to_coco_results(preds, COCO, oks_nms_threshold=None)
        assert evaluate_keypoints(coco_mini_ann, results, COCO)["AP"] > 0.85


def test_concat_deduplicates_and_orders():
    a = InstancePredictions(np.array([2, 0]), np.array([5, 5]), np.zeros((2, 3, 3), np.float32),
                            np.ones(2, np.float32), np.ones(2, np.float32))
    b = InstancePredictions(np.array([1, 2]), np.array([5, 5]), np.ones((2, 3, 3), np.float32),
                            np.ones(2, np.float32), np.ones(2, np.float32))
    c = InstancePredictions.concat([a, b])
    assert c.index.tolist() == [0, 1, 2]


def _coco_mini_config(coco_mini, tmp_path, epochs):
    cfg = get_preset("synth-r18-128x96").config
    return apply_overrides(cfg, [
        f"data.root={coco_mini}", "data.train_ann=annotations/person_keypoints_val2017.json",
        "data.train_images=images/val2017", "data.val_ann=annotations/person_keypoints_val2017.json",
        "data.val_images=images/val2017", "data.num_workers=0", "codec.input_size=[64,96]",
        "codec.heatmap_size=[16,24]", "model.deconv_channels=32", f"train.epochs={epochs}",
        "train.batch_size=6", "train.lr_steps=[1]", f"output_dir={tmp_path}", "name=mini", "test.batch_size=8",
    ])


def test_training_steps_checkpoints_and_resume(coco_mini, tmp_path):
    cfg = _coco_mini_config(coco_mini, tmp_path, epochs=1)
    trainer = Trainer(cfg, log_metrics=lambda m, s: None)
    first = trainer.fit()
    assert 0.0 <= first["AP"] <= 1.0
    run = tmp_path / "mini"
    assert {"last.pth", "best.pth", "config.json", "results_net.json"} <= {p.name for p in run.iterdir()}
    results = json.loads((run / "results_net.json").read_text())
    assert len(results) > 0 and len(results[0]["keypoints"]) == 51
    assert trainer.step == 2  # 12 instances, batch 6: the tail is kept, nothing dropped

    more = Trainer(_coco_mini_config(coco_mini, tmp_path, epochs=2), log_metrics=lambda m, s: None)
    more.fit()
    assert more.epoch == 2 and more.step == 4  # resumed at epoch 1, trained one more epoch
    assert more.scheduler.last_epoch == 2 and more.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)

    done = Trainer(_coco_mini_config(coco_mini, tmp_path, epochs=2), log_metrics=lambda m, s: None)
    again = done.fit()  # nothing left to train: the finished run is evaluated, not reported empty
    assert done.step == 4 and set(again) >= {"AP", "AR", "best_AP"}


def test_checkpoint_interval_writes_last_every_n_epochs_and_at_the_end(coco_mini, tmp_path, monkeypatch):
    cfg = apply_overrides(_coco_mini_config(coco_mini, tmp_path, epochs=3),
                          ["train.checkpoint_interval=2", "train.val_interval=3"])
    saved: list[tuple[int, str]] = []
    save = Trainer.save
    monkeypatch.setattr(Trainer, "save", lambda self, name: saved.append((self.epoch, name)) or save(self, name))
    Trainer(cfg, log_metrics=lambda m, s: None).fit()
    assert [epoch for epoch, name in saved if name == "last.pth"] == [2, 3]
    assert [epoch for epoch, name in saved if name == "best.pth"] == [3]
    with pytest.raises(ValueError, match="checkpoint_interval must be >= 1"):
        apply_overrides(cfg, ["train.checkpoint_interval=0"])
