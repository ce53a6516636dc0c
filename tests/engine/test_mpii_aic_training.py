"""MPII + AIC end to end on tiny SynthPose data (tests/conftest.py): the PCKh evaluation pass of training,
and ``poselab train`` of the PoseDual + Joint Cutout CPU preset for a few steps, scored by PCKh."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pose.cli import main
from pose.config import apply_overrides
from pose.data.mpii import load_mpii_gt, save_mpii_gt
from pose.engine.components import load_val_instances
from pose.engine.pckh_eval import PCKhEvaluator
from pose.engine.predict import InstancePredictions
from pose.evaluation.pckh import PCKH_STAT_NAMES
from pose.metainfo import MPII
from pose.engine.loop import run_train_step, split_batch
from pose.engine.trainer import Trainer
from pose.presets import PRESETS, get_preset

PRESET = "synthmpii-aic-posedual-jc-r18-128x128"
TINY = ["codec.input_size=[64,64]", "codec.heatmap_size=[16,16]", "model.deconv_channels=32", "data.num_workers=0"]


def _evaluator(mpii: Path, aic: Path, head_boxes: Path | None = None) -> tuple[PCKhEvaluator, list]:
    cfg = apply_overrides(get_preset(PRESET).config, [f"data.root={mpii}", f"semi.root={aic}", *TINY])
    val = load_val_instances(cfg, MPII)
    gt_file = head_boxes or mpii / "annot" / "gt_valid.mat"
    return PCKhEvaluator(MPII, cfg.codec, cfg.test, gt_file, val, mpii / "annot" / "valid.json"), val


def _predictions(val: list, order: np.ndarray, shift: float = 0.0) -> InstancePredictions:
    """Ground truth (+ ``shift`` px in x) as the predictions of the instances in ``order``."""
    kps = np.stack([np.concatenate([v.keypoints + [shift, 0.0], np.ones((16, 1))], axis=1) for v in val])
    return InstancePredictions(index=order, image_id=np.zeros(len(order), np.int64),
                               keypoints=kps[order].astype(np.float32), box_score=np.ones(len(order), np.float32),
                               area=np.ones(len(order), np.float32))


def test_ground_truth_as_predictions_scores_pckh_one_in_any_order(synth_mpii_aic, tmp_path, capsys):
    mpii, aic = synth_mpii_aic
    evaluator, val = _evaluator(mpii, aic)
    order = np.arange(len(val))[::-1].copy()  # shards arrive in any order: rows follow the instance's record
    stats = evaluator.score({"net": _predictions(val, order)}, tmp_path)["net"]
    assert list(stats) == list(PCKH_STAT_NAMES)
    assert stats["PCKh"] == 1.0 and stats["PCKh_0.1"] == 1.0
    # a shift of 0.6 x the largest head diagonal misses every joint at 0.5
    far = 0.6 * float(load_mpii_gt(mpii / "annot" / "gt_valid.mat").head_sizes.max())
    assert evaluator.score({"net": _predictions(val, order, shift=far)}, None)["net"]["PCKh"] == 0.0
    # the results file is what `poselab evaluate --dataset mpii` scores, to the same numbers
    assert main(["evaluate", "--dataset", "mpii", "--gt", str(mpii / "annot" / "gt_valid.mat"),
                 "--results", str(tmp_path / "results_net.json"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == pytest.approx(stats)
    with pytest.raises(ValueError, match=r"gt_valid.mat: record 0 has annotated joints but no prediction"):
        evaluator.score({"net": _predictions(val, order[:-1])}, None)


def test_head_boxes_of_other_people_are_an_error_naming_both_files(synth_mpii_aic, tmp_path):
    mpii, aic = synth_mpii_aic
    records = json.loads((mpii / "annot" / "valid.json").read_text())
    records[1]["joints_vis"][3] = 1 - records[1]["joints_vis"][3]
    save_mpii_gt(tmp_path / "gt_other.mat", records, np.tile([0.0, 0.0, 20.0, 20.0], (len(records), 1)))
    evaluator, val = _evaluator(mpii, aic, tmp_path / "gt_other.mat")
    with pytest.raises(ValueError, match=r"valid.json and .*gt_other.mat describe different people: record 1"):
        evaluator.score({"net": _predictions(val, np.arange(len(val)))}, None)


def test_train_posedual_jc_on_synthpose_mpii_with_unlabeled_aic(synth_mpii_aic, tmp_path, capsys):
    """`poselab train` of the CPU preset: 2 PoseDual steps of 4 MPII + 4 AIC crops, then PCKh on MPII val."""
    mpii, aic = synth_mpii_aic
    argv = ["train", PRESET, f"data.root={mpii}", f"semi.root={aic}", f"output_dir={tmp_path}", *TINY,
            "train.epochs=1", "train.lr_steps=[1]", "train.batch_size=4", "semi.num_unlabeled=8", "test.batch_size=8",
            "train.threads=1"]  # one thread: no OpenMP spinning on a busy machine
    threads = torch.get_num_threads()
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    final = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(final) == {*PCKH_STAT_NAMES, "best_PCKh"} and 0.0 <= final["PCKh"] <= 1.0
    assert final["best_PCKh"] == final["PCKh"]
    run = tmp_path / PRESET
    state = torch.load(run / "last.pth", map_location="cpu", weights_only=False)
    assert state["step"] == 2 and state["best_ap"] == pytest.approx(final["PCKh"], abs=1e-4)
    assert (run / "best.pth").exists()
    for net in ("net1", "net2", "mean"):
        results = json.loads((run / f"results_{net}.json").read_text())
        assert sorted(r["index"] for r in results) == list(range(len(results))) and len(results[0]["keypoints"]) == 48
    assert main(["evaluate", "--dataset", "mpii", "--gt", str(mpii / "annot" / "gt_valid.mat"),
                 "--results", str(run / "results_net1.json"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["PCKh"] == pytest.approx(final["PCKh"], abs=1e-4)


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items()
                                  if p.config.task == "topdown" and p.config.data.dataset == "mpii"])
def test_every_mpii_preset_builds_and_steps_on_tiny_synthpose(synth_mpii_aic, tmp_path, name):
    """The preset's own model and method, its MPII (+ AIC) data pipeline on tiny SynthPose, one step."""
    mpii, aic = synth_mpii_aic
    preset = get_preset(name)
    semi = [f"semi.root={aic}", "semi.num_unlabeled=2"] if preset.config.method.semi_supervised else []
    tiny = [o for o in TINY if not o.startswith("model.")]  # the preset's own network
    cfg = apply_overrides(preset.config, [f"data.root={mpii}", *semi, *tiny, "train.batch_size=2",
                                          "train.device=cpu", f"output_dir={tmp_path}", "test.batch_size=8"])
    assert cfg.model == preset.config.model and cfg.method == preset.config.method
    trainer = Trainer(cfg, log_metrics=lambda m, s: None, resume=False)
    labeled, unlabeled = split_batch(next(iter(trainer.train_loader())))
    assert labeled["heatmaps"].shape[1] == 16  # MPII's joints
    assert (unlabeled is None) == (not preset.config.method.semi_supervised)
    out = run_train_step(trainer.method, trainer.optimizer, labeled, unlabeled, cfg.train, trainer.device)
    assert np.isfinite(out.logs["loss"])
