"""A warm-started run through the plain Trainer: it fine-tunes from the source run's weights with fresh
optimiser, schedule and counters, and resuming it neither reloads nor needs the source."""

from __future__ import annotations

import shutil

import torch

from pose.config import apply_overrides
from pose.engine.trainer import Trainer
from pose.presets import get_preset

torch.set_num_threads(2)


def _tiny(coco_mini, out_dir, *extra: str):
    return apply_overrides(get_preset("synth-r18-128x96").config, [
        f"data.root={coco_mini}", "data.train_ann=annotations/person_keypoints_val2017.json",
        "data.train_images=images/val2017", "data.val_ann=annotations/person_keypoints_val2017.json",
        "data.val_images=images/val2017", "data.num_workers=0", "codec.input_size=[64,96]",
        "codec.heatmap_size=[16,24]", f"output_dir={out_dir}", "test.batch_size=8", "data.num_labeled=5",
        "model.deconv_channels=32", "train.batch_size=6", "train.lr_steps=[1]", "train.epochs=1", *extra])


def _quiet(metrics, step) -> None:
    pass


def test_warm_started_run_fine_tunes_and_resumes_without_its_source(coco_mini, tmp_path):
    Trainer(_tiny(coco_mini, tmp_path, "name=source"), log_metrics=_quiet, resume=False).fit()
    source = torch.load(tmp_path / "source" / "last.pth", weights_only=False)
    assert source["epoch"] == 1 and source["scheduler"]["last_epoch"] == 1

    cfg = _tiny(coco_mini, tmp_path, "name=fine", "method.kind=posecons", f"model.init={tmp_path / 'source'}")
    fine = Trainer(cfg, log_metrics=_quiet)
    for key, value in fine.method.networks["net"].state_dict().items():
        assert torch.equal(value, source["method"][f"networks.net.{key}"]), key
    assert (fine.epoch, fine.step, fine.best_ap) == (0, 0, -1.0)  # fine-tuning, not resuming the source
    assert fine.scheduler.last_epoch == 0 and fine.optimizer.state_dict()["state"] == {}
    fine.fit()
    assert torch.load(tmp_path / "fine" / "last.pth", weights_only=False)["config"]["model"]["init"] == \
        str(tmp_path / "source")

    shutil.rmtree(tmp_path / "source")  # a resumed run does not warm-start again, so it needs no source
    longer = Trainer(_tiny(coco_mini, tmp_path, "name=fine", "method.kind=posecons", "train.epochs=2",
                           f"model.init={tmp_path / 'source'}"), log_metrics=_quiet)
    longer.fit()
    assert longer.epoch == 2
