"""Named experiment configs (presets). Each is an ordinary :class:`ExperimentConfig` (top-down) or
:class:`BottomUpExperimentConfig` (bottom-up: ``pose.bottomup.presets``, the Coupled Embedding tables).

``poselab presets`` lists them; ``poselab train PRESET key=value ...`` runs one with overrides.
Presets that reproduce a row of a paper's table say which in ``paper_row``.

The semi-supervised grid (Xie et al., ICCV 2021; ``shared/specs/semi_pose_spec.md`` section 5):
``coco{1,5,10}k-{supervised,posecons,posecons-jc,posedual,posedual-ra,posedual-jc}-r18-256x192`` (the
semi table), ``coco-full-{supervised,posedual-jc}-{r50-256x192,hrnet-w48-384x288}`` (the full-label
table, WILD unlabeled set with detector boxes), and the same grid at CPU scale on SynthPose:
``synth{100,250,500}-...-r18-128x96`` and ``synthfull-{supervised,posedual-jc}-r18-128x96``.

The MPII + AI Challenger setting (labeled MPII, unlabeled AIC human boxes, PCKh on MPII):
``mpii-aic-posedual-jc-{r18,hrnet-w32}-256x256`` (the repository's ``mix_mpii_ai`` config and the paper's
HRNet-W32 row), ``mpii-supervised-{r152,hrnet-w32}-256x256`` (the cited supervised rows), and at CPU scale
on SynthPose's MPII and AIC layouts ``synthmpii-{supervised,aic-posedual-jc}-r18-128x128``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pose.bottomup.config import BottomUpExperimentConfig
from pose.codecs.heatmap import HeatmapCodec
from pose.experiment import DataConfig, ExperimentConfig, MethodConfig, SemiConfig, TestConfig, TrainConfig
from pose.methods.hard_view import HardViewConfig
from pose.models.config import ModelConfig
from pose.names import suggest

PRESETS_HINT = "`poselab presets` lists them all"
"""What an unknown preset's error says when no preset name is close."""


@dataclass(frozen=True)
class Preset:
    """A named config; ``paper_row`` names the paper table row it reproduces ("" when none)."""

    name: str
    description: str
    config: ExperimentConfig | BottomUpExperimentConfig
    paper_row: str = ""


def _coco(name: str, model: ModelConfig, input_size: tuple[int, int], sigma: float, batch: int,
          description: str) -> Preset:
    w, h = input_size
    return Preset(name, description, ExperimentConfig(
        name=name,
        data=DataConfig(root="data/coco", train_ann="annotations/person_keypoints_train2017.json",
                        train_images="train2017", val_ann="annotations/person_keypoints_val2017.json",
                        val_images="val2017", num_workers=8),
        codec=HeatmapCodec(input_size=(w, h), heatmap_size=(w // 4, h // 4), sigma=sigma),
        model=model,
        train=TrainConfig(epochs=210, batch_size=batch, lr=1e-3, lr_steps=(170, 200)),
        test=TestConfig(batch_size=64, flip_test=True),
    ))


def _synth(name: str, model: ModelConfig, description: str, epochs: int = 8) -> Preset:
    return Preset(name, description, ExperimentConfig(
        name=name,
        data=DataConfig(root="data/synthpose", num_workers=2),
        codec=HeatmapCodec(input_size=(96, 128), heatmap_size=(24, 32), sigma=2.0),
        model=model,
        train=TrainConfig(epochs=epochs, batch_size=32, lr=1e-3, lr_steps=(int(epochs * 0.75),), log_interval=10),
        test=TestConfig(batch_size=64, flip_test=True),
    ))


# ---------------------------------------------------------------------------------------------- semi grid
_COCO_DATA = dict(root="data/coco", train_ann="annotations/person_keypoints_train2017.json",
                  train_images="train2017", val_ann="annotations/person_keypoints_val2017.json",
                  val_images="val2017", num_workers=8)
_COCO_WILD = SemiConfig(
    unlabeled="detections", unlabeled_image_info="annotations/image_info_unlabeled2017.json",
    unlabeled_detections="person_detection_results/COCO_unlabeled2017_detections_person_faster_rcnn.json",
    unlabeled_images="unlabeled2017")
_SYNTH_WILD = SemiConfig(unlabeled="detections")  # the SynthPose layout is SemiConfig's default

# (method kind, hard view, name suffix, row label)
_ROWS: tuple[tuple[str, HardViewConfig, str, str], ...] = (
    ("supervised", HardViewConfig(), "supervised", "Supervised (affine)"),
    ("posecons", HardViewConfig(), "posecons", "PoseCons (affine)"),
    ("posecons", HardViewConfig(cutout_joints=5), "posecons-jc", "PoseCons (affine + Joint Cutout)"),
    ("posedual", HardViewConfig(), "posedual", "PoseDual (affine)"),
    ("posedual", HardViewConfig(randaugment=True, randaugment_n=2, randaugment_magnitude=20.0), "posedual-ra",
     "PoseDual (affine + RandAugment)"),
    ("posedual", HardViewConfig(cutout_joints=5), "posedual-jc", "PoseDual (affine + Joint Cutout)"),
)
_README_AP = {  # Semi_Human_Pose README, COCO val2017, GT boxes, no flip: 1K / 5K / 10K labels
    "supervised": (31.5, 46.4, 51.1), "posecons": (38.5, 50.5, 55.4), "posecons-jc": (42.1, 52.3, 57.3),
    "posedual": (41.5, 54.8, 58.7), "posedual-ra": (43.7, 55.4, 59.3), "posedual-jc": (44.6, 55.6, 59.6),
}
_SHIPPED = {  # (row, thousands of labels) -> its yaml in experiments/mix_coco_coco/res18
    ("posecons", 1): "256x192_COCO1K_PoseCons.yaml", ("posedual", 1): "256x192_COCO1K_PoseDual.yaml",
    ("posedual-jc", 1): "256x192_COCO1K_PoseDual_JointCutout.yaml",
    ("posedual-ra", 1): "256x192_COCO1K_PoseDual_RandAug.yaml",
    ("posedual", 5): "256x192_COCO5K_PoseDual.yaml", ("posedual", 10): "256x192_COCO10K_PoseDual.yaml",
}


def _semi_schedule(suffix: str, thousands: int) -> tuple[int, tuple[int, ...], str]:
    """(epochs, lr steps, provenance) of a semi-table row (epochs of the mixed stream)."""
    if suffix == "supervised":
        return 140, (90, 120), "schedule NOT IN REPO: SimpleBaseline's 140 epochs (90, 120) over the labeled subset"
    if thousands == 1:
        epochs, steps = (30, (20, 25)) if suffix in ("posecons", "posedual") else (70, (50, 60))
    else:
        epochs, steps = 100, (70, 90)
    shipped = _SHIPPED.get((suffix, thousands))
    if shipped:
        return epochs, steps, f"config experiments/mix_coco_coco/res18/{shipped}"
    return epochs, steps, "schedule NOT IN REPO: the nearest shipped config's (1K: 30/70 epochs, 5K/10K: 100 (70, 90))"


def _method(kind: str, hard: HardViewConfig) -> MethodConfig:
    return MethodConfig(kind=kind, unsup_weight=1.0, rampup_steps=0, confidence_threshold=0.0,  # type: ignore[arg-type]
                        hard=hard)


def _coco_semi_grid() -> list[Preset]:
    out = []
    for thousands, col in ((1, 0), (5, 1), (10, 2)):
        for kind, hard, suffix, label in _ROWS:
            name = f"coco{thousands}k-{suffix}-r18-256x192"
            epochs, steps, source = _semi_schedule(suffix, thousands)
            row = (f"semi table, COCO {thousands}K labels, ResNet-18 256x192: {label}; README AP "
                   f"{_README_AP[suffix][col]}; {source}")
            unl = "labeled crops only" if kind == "supervised" else "unlabeled = all train2017 GT boxes"
            out.append(Preset(name, f"{label}, first {thousands * 1000} COCO train2017 instances labeled, "
                                    f"{unl}; {epochs} epochs {steps}", ExperimentConfig(
                name=name,
                data=DataConfig(**_COCO_DATA, num_labeled=thousands * 1000),
                codec=HeatmapCodec(input_size=(192, 256), heatmap_size=(48, 64), sigma=2.0),
                model=ModelConfig(arch="simple_baseline", depth=18),
                train=TrainConfig(epochs=epochs, batch_size=32, lr=1e-3, lr_steps=steps),
                test=TestConfig(batch_size=64, flip_test=False),
                method=_method(kind, hard),
                semi=SemiConfig(unlabeled="train_gt"),
            ), paper_row=row))
    return out


def _coco_full_rows() -> list[Preset]:
    r50 = ModelConfig(arch="simple_baseline", depth=50)
    w48 = ModelConfig(arch="hrnet", width=48)
    jc = HardViewConfig(cutout_joints=5)
    rows = (
        ("coco-full-supervised-r50-256x192", r50, (192, 256), 2.0, 32, 140, (90, 120), "supervised",
         "full-label table, ResNet-50 256x192: supervised baseline, AP 70.9 (cited from SimpleBaseline; "
         "no config in the repo: SimpleBaseline's 140 epochs (90, 120))"),
        ("coco-full-posedual-jc-r50-256x192", r50, (192, 256), 2.0, 32, 400, (300, 350), "posedual",
         "full-label table, ResNet-50 256x192: PoseDual + Joint Cutout, COCO train + WILD, AP 73.9; "
         "config experiments/mix_coco_coco/res50/256x192_COCO_COCOunlabel_PoseDual_JointCut.yaml"),
        ("coco-full-supervised-hrnet-w48-384x288", w48, (288, 384), 3.0, 32, 210, (170, 200), "supervised",
         "full-label table, HRNet-W48 384x288: supervised baseline, AP 77.2 (cited from HRNet; no config in the "
         "repo: HRNet's 210 epochs (170, 200))"),
        ("coco-full-posedual-jc-hrnet-w48-384x288", w48, (288, 384), 3.0, 8, 300, (220, 260), "posedual",
         "full-label table, HRNet-W48 384x288: PoseDual + Joint Cutout, COCO train + WILD, AP 79.2; config "
         "experiments/mix_coco_coco/hrnet/w48_384x288_COCO_COCOunlabel_PoseDual_JointCut5.yaml (batch 8 per GPU)"),
    )
    out = []
    for name, model, (w, h), sigma, batch, epochs, steps, kind, row in rows:
        semi = kind != "supervised"
        desc = (f"{'PoseDual + Joint Cutout' if semi else 'Supervised'}, all COCO train2017 labeled"
                f"{', unlabeled = unlabeled2017 with detector boxes' if semi else ''}; {epochs} epochs {steps}")
        out.append(Preset(name, desc, ExperimentConfig(
            name=name,
            data=DataConfig(**_COCO_DATA),
            codec=HeatmapCodec(input_size=(w, h), heatmap_size=(w // 4, h // 4), sigma=sigma),
            model=model,
            train=TrainConfig(epochs=epochs, batch_size=batch, lr=1e-3, lr_steps=steps),
            test=TestConfig(batch_size=64, flip_test=False),
            method=_method(kind, jc if semi else HardViewConfig()),
            semi=_COCO_WILD,
        ), paper_row=row))
    return out


_SYNTH_MODEL = ModelConfig(arch="simple_baseline", depth=18, deconv_channels=128)


def _synth_semi(name: str, description: str, row: str, kind: str, hard: HardViewConfig, num_labeled: int,
                epochs: int, steps: tuple[int, ...], semi: SemiConfig) -> Preset:
    return Preset(name, description, ExperimentConfig(
        name=name,
        data=DataConfig(root="data/synthpose", num_workers=2, num_labeled=num_labeled),
        codec=HeatmapCodec(input_size=(96, 128), heatmap_size=(24, 32), sigma=2.0),
        model=_SYNTH_MODEL,
        train=TrainConfig(epochs=epochs, batch_size=32, lr=1e-3, lr_steps=steps, log_interval=10),
        test=TestConfig(batch_size=64, flip_test=False),
        method=_method(kind, hard),
        semi=semi,
    ), paper_row=row)


def _synth_grid() -> list[Preset]:
    """The semi table at CPU scale: 100 / 250 / 500 labeled SynthPose instances stand for 1K / 5K / 10K;
    semi-supervised epochs are the paper's / 10 (3 (2), 7 (5, 6), 10 (7, 9)); supervised keeps 140 (90, 120)
    over the labeled subset."""
    out = []
    for budget, thousands, col in ((100, 1, 0), (250, 5, 1), (500, 10, 2)):
        for kind, hard, suffix, label in _ROWS:
            epochs, steps, _ = _semi_schedule(suffix, thousands)
            if kind != "supervised":
                epochs, steps = epochs // 10, tuple(max(1, s // 10) for s in steps)
                steps = tuple(sorted(set(s for s in steps if s < epochs))) or (max(1, epochs - 1),)
            name = f"synth{budget}-{suffix}-r18-128x96"
            row = (f"semi table, COCO {thousands}K labels: {label} (README AP {_README_AP[suffix][col]}), "
                   f"at CPU scale on SynthPose with {budget} labels")
            unl = "labeled crops only" if kind == "supervised" else "unlabeled = all SynthPose train GT boxes"
            out.append(_synth_semi(name, f"{label}, first {budget} SynthPose train instances labeled, "
                                         f"{unl}; {epochs} epochs {steps}",
                                   row, kind, hard, budget, epochs, steps, SemiConfig(unlabeled="train_gt")))
    jc = HardViewConfig(cutout_joints=5)
    out.append(_synth_semi(
        "synthfull-supervised-r18-128x96", "Supervised, all SynthPose train labeled; 8 epochs (6,)",
        "full-label table: supervised baseline (ResNet-50 70.9 / HRNet-W48 77.2), at CPU scale on SynthPose",
        "supervised", HardViewConfig(), 0, 8, (6,), _SYNTH_WILD))
    out.append(_synth_semi(
        "synthfull-posedual-jc-r18-128x96",
        "PoseDual + Joint Cutout, all SynthPose train labeled, unlabeled = the SynthPose unlabeled split with "
        "detector boxes; 8 epochs (6, 7)",
        "full-label table: PoseDual + Joint Cutout with WILD unlabeled images (ResNet-50 73.9 / HRNet-W48 79.2), "
        "at CPU scale on SynthPose", "posedual", jc, 0, 8, (6, 7), _SYNTH_WILD))
    return out


# ---------------------------------------------------------------------------------------------- MPII + AIC
_MPII_DATA = dict(dataset="mpii", train_ann="annot/train.json", train_images="images", val_ann="annot/valid.json",
                  val_images="images", val_head_boxes="annot/gt_valid.mat")
_AIC_UNLABELED = SemiConfig(unlabeled="aic", root="data/aic", unlabeled_ann="train/keypoint_train_annotation.json",
                            unlabeled_images="train/images")
_MIX_CONFIG = "experiments/mix_mpii_ai/res18/256x256_PoseDual_JointCut5.yaml"
_HRNET_W32_ROW = ("PCKh@0.5 on MPII test: Head 98.7, Sho 97.3, Elb 93.7, Wri 90.2, Hip 92.0, Knee 90.3, Ank 86.5, "
                  "Mean 93.0 (supervised rows of the same comparison: SimpleBaseline 91.5, HRNet 92.3)")


def _mpii(name: str, description: str, row: str, model: ModelConfig, kind: str, epochs: int,
          steps: tuple[int, ...], flip_test: bool = False) -> Preset:
    """An MPII preset at 256x256 (heatmap 64x64, sigma 2, batch 32; no flip test as the shipped config,
    unless ``flip_test``); PoseDual rows take AIC's train human boxes as the unlabeled set and cut 5
    joints."""
    semi = kind != "supervised"
    return Preset(name, description, ExperimentConfig(
        name=name,
        data=DataConfig(root="data/mpii", num_workers=8, **_MPII_DATA),
        codec=HeatmapCodec(input_size=(256, 256), heatmap_size=(64, 64), sigma=2.0),
        model=model,
        train=TrainConfig(epochs=epochs, batch_size=32, lr=1e-3, lr_steps=steps),
        test=TestConfig(batch_size=32, flip_test=flip_test),
        method=_method(kind, HardViewConfig(cutout_joints=5) if semi else HardViewConfig()),
        semi=_AIC_UNLABELED,
    ), paper_row=row)


def _mpii_aic_rows() -> list[Preset]:
    """The MPII + AIC setting: labeled MPII train, unlabeled AIC train (every human box; AIC's joints
    carried into MPII's 16 channels by name, deviation M5), PCKh on MPII valid."""
    r18 = ModelConfig(arch="simple_baseline", depth=18)
    w32 = ModelConfig(arch="hrnet", width=32)
    return [
        _mpii("mpii-aic-posedual-jc-r18-256x256",
              "PoseDual + Joint Cutout (5), MPII train labeled, AIC train unlabeled (human boxes); 100 epochs (50, 70)",
              f"MPII + AIC, ResNet-18 256x256: PoseDual + Joint Cutout 5; config {_MIX_CONFIG} (no published "
              "number for this row)", r18, "posedual", 100, (50, 70)),
        _mpii("mpii-aic-posedual-jc-hrnet-w32-256x256",
              "PoseDual + Joint Cutout (5) with HRNet-W32, MPII train labeled, AIC train unlabeled; "
              "100 epochs (50, 70)",
              f"MPII + AIC, HRNet-W32 256x256, PoseDual: {_HRNET_W32_ROW}; schedule NOT IN REPO: the shipped "
              f"ResNet-18 config's ({_MIX_CONFIG}), Joint Cutout as there", w32, "posedual", 100, (50, 70)),
        _mpii("mpii-supervised-r152-256x256",
              "Supervised SimpleBaseline ResNet-152, MPII train; 140 epochs (90, 120)",
              "MPII + AIC comparison, supervised row: SimpleBaseline (ResNet-152 256x256), PCKh@0.5 Mean 91.5 on "
              "MPII test (cited from SimpleBaseline; its MPII config: 140 epochs (90, 120), flip test)",
              ModelConfig(arch="simple_baseline", depth=152), "supervised", 140, (90, 120), flip_test=True),
        _mpii("mpii-supervised-hrnet-w32-256x256",
              "Supervised HRNet-W32, MPII train; 210 epochs (170, 200)",
              "MPII + AIC comparison, supervised row: HRNet-W32 256x256, PCKh@0.5 Mean 92.3 on MPII test (cited "
              "from HRNet; its MPII config: 210 epochs (170, 200), flip test)", w32, "supervised", 210, (170, 200),
              flip_test=True),
    ]


def _synth_mpii_rows() -> list[Preset]:
    """The MPII + AIC setting at CPU scale on SynthPose (``poselab synth --format mpii|aic``, quick
    profile): ResNet-18 with 128-channel deconvolutions at 128x128, 8 epochs."""
    rows = []
    for kind, suffix, label in (("supervised", "supervised", "Supervised, SynthPose MPII train labeled"),
                                ("posedual", "aic-posedual-jc", "PoseDual + Joint Cutout (5), SynthPose MPII train "
                                                               "labeled, SynthPose AIC train unlabeled")):
        name = f"synthmpii-{suffix}-r18-128x128"
        semi = kind != "supervised"
        rows.append(Preset(name, f"{label}; 8 epochs (6,)", ExperimentConfig(
            name=name,
            data=DataConfig(root="data/synthpose-mpii", num_workers=2, **_MPII_DATA),
            codec=HeatmapCodec(input_size=(128, 128), heatmap_size=(32, 32), sigma=2.0),
            model=_SYNTH_MODEL,
            train=TrainConfig(epochs=8, batch_size=32, lr=1e-3, lr_steps=(6,), log_interval=10),
            test=TestConfig(batch_size=64, flip_test=False),
            method=_method(kind, HardViewConfig(cutout_joints=5) if semi else HardViewConfig()),
            semi=dataclasses.replace(_AIC_UNLABELED, root="data/synthpose-aic"),
        ), paper_row=f"MPII + AIC: {'supervised' if not semi else 'PoseDual + Joint Cutout'} (ResNet-18 config "
                     f"{_MIX_CONFIG}), at CPU scale on SynthPose's MPII and AIC layouts"))
    return rows


def _bottomup_presets() -> list[Preset]:
    from pose.bottomup.presets import BOTTOMUP_ROWS

    return [Preset(name, description, cfg, row) for name, description, row, cfg in BOTTOMUP_ROWS]


PRESETS: dict[str, Preset] = {p.name: p for p in (
    _coco("coco-simplebaseline-r50-256x192", ModelConfig(arch="simple_baseline", depth=50), (192, 256), 2.0, 32,
          "SimpleBaseline ResNet-50, COCO train2017 -> val2017 (GT boxes), 210 epochs"),
    _coco("coco-hrnet-w32-256x192", ModelConfig(arch="hrnet", width=32), (192, 256), 2.0, 32,
          "HRNet-W32, COCO train2017 -> val2017 (GT boxes), 210 epochs"),
    _coco("coco-hrnet-w48-384x288", ModelConfig(arch="hrnet", width=48), (288, 384), 3.0, 32,
          "HRNet-W48 at 384x288 (sigma 3), COCO train2017 -> val2017 (GT boxes), 210 epochs"),
    _synth("synth-r18-128x96", ModelConfig(arch="simple_baseline", depth=18, deconv_channels=128),
           "SimpleBaseline ResNet-18 (128-channel deconvs) on SynthPose at 128x96: the CPU default"),
    _synth("synth-hrnet-w16-128x96", ModelConfig(arch="hrnet", width=16),
           "HRNet-W16 on SynthPose at 128x96 (CPU scale)"),
    *_coco_semi_grid(),
    *_coco_full_rows(),
    *_synth_grid(),
    *_mpii_aic_rows(),
    *_synth_mpii_rows(),
    *_bottomup_presets(),
)}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is a ``ValueError`` suggesting the closest ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset '{name}'; {suggest(name, PRESETS, hint=PRESETS_HINT)}")
    return PRESETS[name]
