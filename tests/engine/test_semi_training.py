"""Semi-supervised training through the Trainer on coco-mini, and every preset's pipeline."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pose.config import apply_overrides
from pose.data.semi import MixedDataset
from pose.engine.loop import run_train_step, split_batch
from pose.engine.trainer import Trainer
from pose.methods import PoseCons, PoseDual, Supervised
from pose.presets import PRESETS, get_preset

torch.set_num_threads(2)

METRIC_KEYS = {"AP", "AP50", "AR"}


def _mini(coco_mini, tmp_path, base, *extra, size=(64, 96)):
    w, h = size
    return apply_overrides(base, [
        f"data.root={coco_mini}", "data.train_ann=annotations/person_keypoints_val2017.json",
        "data.train_images=images/val2017", "data.val_ann=annotations/person_keypoints_val2017.json",
        "data.val_images=images/val2017", "data.num_workers=0", f"codec.input_size=[{w},{h}]",
        f"codec.heatmap_size=[{w // 4},{h // 4}]", f"output_dir={tmp_path}", "test.batch_size=8", *extra])


@pytest.mark.parametrize("kind", ["posecons", "posedual"])
def test_two_step_semi_training_through_the_trainer(coco_mini, tmp_path, kind):
    cfg = _mini(coco_mini, tmp_path, get_preset("synth-r18-128x96").config,
                f"method.kind={kind}", "method.hard.cutout_joints=5", "method.hard.randaugment=true",
                "data.num_labeled=5", "model.deconv_channels=32", "train.epochs=1", "train.batch_size=6",
                "train.lr_steps=[1]", f"name={kind}", "train.log_interval=1")
    logged: list[tuple[int, dict]] = []
    trainer = Trainer(cfg, log_metrics=lambda m, s: logged.append((s, m)), resume=False)
    assert isinstance(trainer.train_stream, MixedDataset)
    final = trainer.fit()
    assert trainer.step == 2  # 12 unlabeled instances, 6 + 6 per step: one pass over the unlabeled set
    step_logs = [m for s, m in logged if "epoch" not in m]
    assert len(step_logs) == 2 and all("loss_unsup" in m and "unsup_max_response" in m for m in step_logs)
    epoch = [m for _, m in logged if "epoch" in m][-1]
    assert "train/collapse_collapsed" in epoch and "train/unsup_agreement" in epoch
    nets = ["net1", "net2", "mean"] if kind == "posedual" else ["net"]
    run = tmp_path / kind
    for net in nets:
        assert METRIC_KEYS <= {k.split("/")[-1] for k in epoch if k.startswith(f"val/{net}/")}
        assert (run / f"results_{net}.json").exists()
        assert isinstance(json.loads((run / f"results_{net}.json").read_text()), list)
    primary = "net1" if kind == "posedual" else "net"
    assert final["AP"] == epoch[f"val/{primary}/AP"]  # checkpoint selection on net 1
    assert {"best.pth", "last.pth"} <= {p.name for p in run.iterdir()}
    state = torch.load(run / "last.pth", weights_only=False)
    assert len(state["collapse"]["values"]) == 2


def _tiny_overrides(preset) -> list[str]:
    cfg = preset.config
    out = ["train.batch_size=2", "semi.num_unlabeled=2", "train.device=cpu"]
    if cfg.data.num_labeled:
        out.append("data.num_labeled=4")
    if cfg.semi.unlabeled == "detections":
        out += ["semi.unlabeled_image_info=annotations/person_keypoints_val2017.json",
                "semi.unlabeled_detections=person_detection_results/COCO_val2017_detections_AP_H_56_person.json",
                "semi.unlabeled_images=images/val2017", "semi.det_score_threshold=0.9"]
    return out


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items()
                                  if p.config.task == "topdown" and p.config.data.dataset == "coco"])
def test_every_preset_builds_and_steps_on_coco_mini(coco_mini, tmp_path, name):
    """The preset's own model and method, its data pipeline on coco-mini (tiny input), one step (the
    MPII presets: tests/engine/test_mpii_aic_training.py)."""
    preset = PRESETS[name]
    cfg = _mini(coco_mini, tmp_path, preset.config, *_tiny_overrides(preset), f"name={name}", size=(32, 64))
    assert cfg.model == preset.config.model and cfg.method == preset.config.method
    trainer = Trainer(cfg, log_metrics=lambda m, s: None, resume=False)
    expected = {"supervised": Supervised, "posecons": PoseCons, "posedual": PoseDual}[preset.config.method.kind]
    assert type(trainer.method) is expected
    labeled, unlabeled = split_batch(next(iter(trainer.train_loader())))
    assert (unlabeled is None) == (preset.config.method.kind == "supervised")
    if unlabeled is not None:
        assert labeled["image"].shape[0] == unlabeled["image"].shape[0] == 2
    out = run_train_step(trainer.method, trainer.optimizer, labeled, unlabeled, cfg.train, trainer.device)
    assert math.isfinite(out.logs["loss"])
    if preset.paper_row:
        assert preset.config.test.flip_test is False  # the paper's tables: GT boxes, no flip


def test_semi_presets_cover_both_paper_tables():
    rows = [p for p in PRESETS.values() if p.paper_row]
    coco = [p.name for p in rows if p.name.startswith("coco")]
    synth = [p.name for p in rows if p.name.startswith("synth") and p.config.data.dataset == "coco"]
    mpii = [p.name for p in rows if p.config.data.dataset == "mpii"]  # the MPII + AIC setting's rows
    assert len(coco) == 6 * 3 + 4 and len(synth) == 6 * 3 + 2 and len(mpii) == 4 + 2
    for budget, n in (("coco1k", 1000), ("coco5k", 5000), ("coco10k", 10000)):
        for suffix in ("supervised", "posecons", "posecons-jc", "posedual", "posedual-ra", "posedual-jc"):
            cfg = PRESETS[f"{budget}-{suffix}-r18-256x192"].config
            assert cfg.data.num_labeled == n and cfg.model.depth == 18 and cfg.codec.input_size == (192, 256)
            assert cfg.train.lr == 1e-3 and cfg.train.batch_size == 32
            assert cfg.method.hard.cutout_joints == (5 if suffix.endswith("-jc") else 0)
            assert cfg.method.hard.randaugment == suffix.endswith("-ra")
    assert PRESETS["coco1k-posedual-r18-256x192"].config.train.epochs == 30
    assert PRESETS["coco1k-posedual-r18-256x192"].config.train.lr_steps == (20, 25)
    assert PRESETS["coco1k-posedual-jc-r18-256x192"].config.train.lr_steps == (50, 60)
    assert PRESETS["coco10k-posedual-r18-256x192"].config.train.lr_steps == (70, 90)
    full = PRESETS["coco-full-posedual-jc-hrnet-w48-384x288"].config
    assert full.semi.unlabeled == "detections" and full.train.epochs == 300 and full.codec.sigma == 3.0
    assert PRESETS["coco-full-posedual-jc-r50-256x192"].config.train.lr_steps == (300, 350)


def test_presets_command_shows_the_paper_row(capsys):
    from pose.cli import main

    assert main(["presets"]) == 0
    text = capsys.readouterr().out
    assert "paper row: semi table, COCO 1K labels" in text
    assert main(["presets", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["coco1k-posedual-jc-r18-256x192"]["paper_row"].startswith("semi table")
    assert data["coco1k-posedual-jc-r18-256x192"]["config"]["method"]["kind"] == "posedual"


@pytest.mark.parametrize("kind,teacher", [("posecons", "network"), ("posedual", "oracle")])
def test_training_on_unlabeled_ground_truth_logs_teacher_and_student_pck(coco_mini, tmp_path, kind, teacher):
    cfg = _mini(coco_mini, tmp_path, get_preset("synth-r18-128x96").config,
                f"method.kind={kind}", f"method.teacher={teacher}", "method.hard.cutout_joints=5",
                "data.num_labeled=5", "model.deconv_channels=32", "train.epochs=1", "train.batch_size=6",
                "train.lr_steps=[1]", f"name={kind}-{teacher}", "train.log_interval=1", size=(32, 64))
    assert cfg.semi.unlabeled == "train_gt"
    logged: list[tuple[int, dict]] = []
    trainer = Trainer(cfg, log_metrics=lambda m, s: logged.append((s, m)), resume=False)
    trainer.fit()
    step_logs = [m for s, m in logged if "epoch" not in m]
    epoch = [m for _, m in logged if "epoch" in m][-1]
    assert len(step_logs) == 2
    nets = ["", "_net1", "_net2"] if kind == "posedual" else [""]
    for key in (f"unsup_{who}_pck{net}" for who in ("teacher", "student") for net in nets):
        assert all(0.0 <= m[key] <= 1.0 for m in step_logs), key
        assert 0.0 <= epoch[f"train/{key}"] <= 1.0
    if teacher == "oracle":  # the sanity check: the ground truth finds its own joints
        assert all(m["unsup_teacher_pck"] == 1.0 for m in step_logs)
        assert epoch["train/unsup_teacher_pck"] == 1.0


def test_epoch_means_skip_undefined_diagnostics():
    from pose.engine.loop import train_epoch
    from pose.experiment import TrainConfig
    from pose.methods import Method, StepOutput

    class Fake(Method):
        def __init__(self) -> None:
            super().__init__()
            self.networks["net"] = torch.nn.Linear(1, 1)
            self.values = iter([0.5, float("nan"), 1.0, float("nan")])

        def training_step(self, labeled, unlabeled=None):
            loss = self.networks["net"](torch.ones(1, 1)).sum() * 0
            return StepOutput(loss=loss, logs={"loss": 0.0, "pck": next(self.values)})

    method = Fake()
    opt = torch.optim.SGD(method.parameters(), lr=0.1)
    batches = [{"image": torch.zeros(1, 3, 2, 2)}] * 4
    means, step = train_epoch(method, opt, batches, TrainConfig(log_interval=100), torch.device("cpu"))
    assert step == 4 and means["pck"] == 0.75 and means["loss"] == 0.0  # over the 2 steps that had it
    method.values = iter([float("nan")] * 4)
    means, _ = train_epoch(method, opt, batches, TrainConfig(log_interval=100), torch.device("cpu"))
    assert "pck" in means and math.isnan(means["pck"])  # never defined: NaN, but the key is there
