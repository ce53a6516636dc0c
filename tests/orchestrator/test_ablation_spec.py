"""Ablation specs and grid expansion (pure logic, no Ray, no MLflow)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from orchestrator.ablation_spec import (AUGMENTATIONS, MAX_TRIAL_ID_LENGTH, AblationSpec, Trial, expand_grid,
                                        trial_id_for)
from pose.config import ConfigError
from pose.presets import get_preset

SPEC = """\
name: synth-semi-small
preset: synth100-supervised-r18-128x96
overrides:
  train.epochs: 2
  semi.num_unlabeled: 200
  method.hard.rot_factor: 15.0
axes:
  method: [supervised, posecons, posedual]
  augmentation: [affine, joint_cutout]
  label_budget: [100, 250]
  seed: [0, 1, 2]
  train.lr: [0.001]
metric: AP50
"""
BASE = "synth100-supervised-r18-128x96"


def _spec_file(tmp_path: Path, text: str = SPEC, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _spec(axes: dict, **extra) -> AblationSpec:
    return AblationSpec.from_dict({"name": "abl", "preset": BASE, "axes": axes, **extra}, source="my.yaml")


def test_load_resolves_the_base_and_overrides(tmp_path):
    spec = AblationSpec.load(_spec_file(tmp_path))
    assert spec.name == "synth-semi-small" and spec.metric == "AP50" and spec.source.endswith("spec.yaml")
    assert spec.axis_names == ["method", "augmentation", "label_budget", "seed", "train.lr"]
    assert spec.axes[2] == ("label_budget", (100, 250))
    assert spec.overrides == (("train.epochs", 2), ("semi.num_unlabeled", 200),
                              ("method.hard.rot_factor", 15.0))
    preset = get_preset(BASE).config
    assert spec.base.train.epochs == 2 and preset.train.epochs != 2
    assert spec.base.semi.num_unlabeled == 200 and spec.base.model == preset.model
    assert AblationSpec.from_dict({"name": "x", "preset": BASE, "axes": {"seed": [0]}}).metric == "AP"


def test_grid_order_seeds_and_skipped_supervised_augmentations(tmp_path):
    spec = AblationSpec.load(_spec_file(tmp_path))
    plan = expand_grid(spec)
    assert plan.combinations == 3 * 2 * 2 * 3 == 36
    assert len(plan) == len(plan.trials) == 30 and len(plan.skipped) == 6
    assert all(s.axes["method"] == "supervised" and s.axes["augmentation"] == "joint_cutout"
               for s in plan.skipped)
    assert plan.skipped_summary().startswith("skipped 6 of 36 combinations: supervised x joint_cutout (6): ")
    # itertools.product in axis order: the last axes vary fastest; seeds are part of the grid
    assert [t.axes["seed"] for t in plan.trials[:4]] == [0, 1, 2, 0]
    assert [tuple(t.axes.values()) for t in plan.trials[:4]] == [
        ("supervised", "affine", 100, 0, 0.001), ("supervised", "affine", 100, 1, 0.001),
        ("supervised", "affine", 100, 2, 0.001), ("supervised", "affine", 250, 0, 0.001)]
    assert [t.axes["method"] for t in plan][6:8] == ["posecons", "posecons"]
    assert list(plan) == list(plan.trials)
    assert plan.trials == expand_grid(AblationSpec.load(_spec_file(tmp_path))).trials  # deterministic

    first = plan.trials[0]
    assert first.trial_id == "method=supervised,augmentation=affine,label_budget=100,seed=0,train.lr=0.001"
    assert first.config.name == f"synth-semi-small/{first.trial_id}"
    assert first.config.run_dir == Path("runs") / "synth-semi-small" / first.trial_id
    by_id = {t.trial_id: t for t in plan}
    assert len(by_id) == 30
    t = by_id["method=posedual,augmentation=joint_cutout,label_budget=250,seed=2,train.lr=0.001"]
    cfg = t.config
    assert (cfg.method.kind, cfg.data.num_labeled, cfg.train.seed) == ("posedual", 250, 2)
    assert cfg.train.lr == 0.001
    assert cfg.method.hard.cutout_joints == 5 and not cfg.method.hard.randaugment
    assert cfg.train.epochs == 2 and cfg.semi.num_unlabeled == 200
    assert cfg.method.hard.rot_factor == 15.0  # the bundle sets the augmentation, not the geometry
    assert cfg.model == spec.base.model


def test_augmentation_bundles():
    plan = expand_grid(_spec({"method": ["posedual"], "augmentation": list(AUGMENTATIONS)}))
    hard = {t.axes["augmentation"]: t.config.method.hard for t in plan}
    assert (hard["affine"].cutout_joints, hard["affine"].randaugment) == (0, False)
    assert (hard["joint_cutout"].cutout_joints, hard["joint_cutout"].randaugment) == (5, False)
    ra = hard["randaugment"]
    assert (ra.cutout_joints, ra.randaugment) == (0, True)
    assert (ra.randaugment_n, ra.randaugment_magnitude) == (2, 20.0)
    both = hard["joint_cutout+randaugment"]
    assert (both.cutout_joints, both.randaugment) == (5, True)
    # on a Joint Cutout preset, "affine" really removes the cutout
    jc = AblationSpec.from_dict({"name": "x", "preset": "synth100-posedual-jc-r18-128x96",
                                 "axes": {"augmentation": ["affine", "joint_cutout"]}})
    assert jc.base.method.hard.cutout_joints == 5
    assert [t.config.method.hard.cutout_joints for t in expand_grid(jc)] == [0, 5]


def test_supervised_base_without_a_method_axis_skips_augmentations_too():
    plan = expand_grid(_spec({"augmentation": ["affine", "randaugment"], "seed": [0, 1]}))
    assert [t.trial_id for t in plan] == ["augmentation=affine,seed=0", "augmentation=affine,seed=1"]
    assert len(plan.skipped) == 2 and plan.skipped[0].label == "supervised x randaugment"
    assert expand_grid(_spec({"seed": [0, 1]})).skipped_summary() == ""


def test_any_dotted_config_field_is_an_axis():
    plan = expand_grid(_spec({"method.hard.rot_factor": [10.0, 20.0], "train.lr_steps": [[1], [1, 2]],
                              "test.flip_test": [True, False]}))
    assert len(plan) == 8
    cfgs = [t.config for t in plan]
    assert [c.method.hard.rot_factor for c in cfgs] == [10.0] * 4 + [20.0] * 4
    assert cfgs[0].train.lr_steps == (1,) and cfgs[2].train.lr_steps == (1, 2)
    assert [c.test.flip_test for c in cfgs[:2]] == [True, False]
    ids = [t.trial_id for t in plan]
    assert len(set(ids)) == 8 and all(re.fullmatch(r"[A-Za-z0-9._+=,-]+", i) for i in ids)
    # brackets are not filesystem-friendly: replaced, and a hash keeps the ids distinct
    assert re.fullmatch(r"method\.hard\.rot_factor=10\.0,train\.lr_steps=_1_,test\.flip_test=true"
                        r"-[0-9a-f]{8}", ids[0])


def test_trial_ids_are_stable_unique_and_bounded():
    axes = {"method": "posedual", "augmentation": "joint_cutout", "label_budget": 100, "seed": 0}
    assert trial_id_for(axes) == "method=posedual,augmentation=joint_cutout,label_budget=100,seed=0"
    assert trial_id_for(dict(axes)) == trial_id_for(axes)
    long_a = {f"method.hard.field_{i}": "x" * 20 for i in range(8)}
    long_b = {**long_a, "method.hard.field_7": "y" * 20}
    a, b = trial_id_for(long_a), trial_id_for(long_b)
    assert len(a) == MAX_TRIAL_ID_LENGTH and a != b and a[:-9] == b[:-9]
    assert trial_id_for({"data.root": "a/b"}) != trial_id_for({"data.root": "a_b"}) == "data.root=a_b"


def test_trial_dict_round_trip_through_json():
    plan = expand_grid(_spec({"method": ["posecons"], "train.lr_steps": [[1, 2]], "seed": [3]},
                             overrides={"train.epochs": 3}))
    trial = plan.trials[0]
    shipped = json.loads(json.dumps(trial.to_dict()))
    assert set(shipped) == {"trial_id", "axes", "config"}
    back = Trial.from_dict(shipped)
    assert back == trial and back.config.train.lr_steps == (1, 2) and back.config.train.seed == 3
    with pytest.raises(ConfigError, match="does not match its axes"):
        Trial.from_dict({**shipped, "trial_id": "seed=4"})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['extra'\]"):
        Trial.from_dict({**shipped, "extra": 1})


def test_config_file_base_is_relative_to_the_spec(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.yaml").write_text("name: b\ntrain:\n  epochs: 4\nmethod:\n  kind: posecons\n")
    spec = AblationSpec.load(_spec_file(tmp_path / "sub", "name: f\nconfig: base.yaml\naxes:\n  seed: [0]\n"))
    assert spec.base.train.epochs == 4 and spec.base.method.kind == "posecons"
    with pytest.raises(ConfigError, match=r"spec\.yaml: .*config file not found"):
        AblationSpec.load(_spec_file(tmp_path, "name: f\nconfig: missing.yaml\naxes:\n  seed: [0]\n"))


@pytest.mark.parametrize("text, message", [
    (SPEC + "sweep: true\n", r"unknown key\(s\) sweep"),
    (SPEC.replace("  train.lr: [0.001]", "  train.learning_rate: [0.001]"),
     r"unknown axis 'train.learning_rate': not a named axis \(.*\) nor a ExperimentConfig field"),
    (SPEC.replace("seed: [0, 1, 2]", "seed: []"), "axis 'seed' has no values"),
    (SPEC.replace("seed: [0, 1, 2]", "seed: [0, 1, 0]"), "axis 'seed' repeats value"),
    (SPEC.replace("seed: [0, 1, 2]", "seed: 0"), "axis 'seed' must be a list"),
    (SPEC.replace("  train.epochs: 2", "  train.epoch: 2"), "unknown config key: train.epoch"),
    (SPEC.replace("  train.epochs: 2", "  train.seed: 2"),
     "override 'train.seed' conflicts with axis 'seed'"),
    (SPEC.replace("  train.lr: [0.001]", "  train.seed: [5]"), "axes 'seed' and 'train.seed' both set"),
    (SPEC.replace("  train.lr: [0.001]", "  method.hard.cutout_joints: [1]"), "axes 'augmentation' and"),
    (SPEC.replace("joint_cutout]", "jointcutout]"), "unknown augmentation 'jointcutout'"),
    (SPEC.replace("posedual]", "posetrio]"), "axis 'method' value 'posetrio'"),
    (SPEC.replace("[100, 250]", "[100, -1]"), "data.num_labeled must be >= 0"),
    (SPEC.replace("[0.001]", "[1e-3]"), "YAML reads 1e-3 as a string"),
    (SPEC.replace("name: synth-semi-small", "name: a/b"), "'name' must be"),
    (SPEC.replace("preset:", "config: x.yaml\npreset:"), "exactly one of 'preset'"),
    (SPEC.replace("preset: synth100", "preset: synth101"), "unknown preset 'synth101"),
    (SPEC.replace("  train.lr: [0.001]", "  name: [a]"), "axis 'name' is not allowed"),
    ("name: x\npreset: " + BASE + "\naxes: {}\n", "'axes' must be a non-empty mapping"),
    ("- just\n- a list\n", "an ablation spec is a mapping"),
    ("name: x\n  preset: [\n", "malformed YAML"),
    (SPEC + "when: [1]\n", "'when' must be a mapping"),
    (SPEC + "when:\n  methods=supervised: {train.epochs: 3}\n", "'methods=supervised' must be 'axis=value'"),
    (SPEC + "when:\n  method=posetrio: {train.epochs: 3}\n", "'posetrio' is not a value of axis 'method'"),
    (SPEC + "when:\n  method=supervised: {train.seed: 3}\n", "override 'train.seed' conflicts with axis 'seed'"),
    (SPEC + "when:\n  method=supervised: {train.epoch: 3}\n", "unknown config key: train.epoch"),
    (SPEC + "when:\n  method=supervised: {}\n", "non-empty mapping"),
    (SPEC + "synth: quick\n", "'synth' must be a mapping"),
    (SPEC + "synth: {profile: huge}\n", "synth: profile must be one of default, quick, crowd"),
    (SPEC + "synth: {profile: quick, people: 3}\n", r"synth: unknown key\(s\) people"),
    (SPEC + "synth: {images: -5}\n", "synth: images must be >= 0"),
])
def test_spec_errors_name_the_file_and_the_key(tmp_path, text, message):
    path = _spec_file(tmp_path, text, name="bad-spec.yaml")
    with pytest.raises(ConfigError, match=message) as info:
        AblationSpec.load(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize("text, message", [
    (SPEC.replace("  seed: [0, 1, 2]", "  seeds: [0, 1, 2]"),
     r"unknown axis 'seeds': not a named axis \(.*\) nor a ExperimentConfig field; "
     r"did you mean: seed, train\.seed\?$"),
    (SPEC.replace("  train.lr: [0.001]", "  train.l_r: [0.001]"),
     r"unknown axis 'train\.l_r'.*did you mean: train\.lr\?$"),
    (SPEC.replace("metric: AP50", "metrics: AP50"), r"unknown key\(s\) metrics; did you mean: metric\?$"),
    (SPEC.replace("  train.epochs: 2", "  train.ephocs: 2"),
     r"unknown config key: train\.ephocs; did you mean: train\.epochs\?$"),
    (SPEC.replace("joint_cutout]", "jointcutout]"),
     r"unknown augmentation 'jointcutout' .*; did you mean: joint_cutout, joint_cutout\+randaugment\?$"),
    (SPEC.replace("preset: synth100-supervised", "preset: synth100-supervized"),
     r"unknown preset 'synth100-supervized-r18-128x96'; did you mean: synth100-supervised-r18-128x96, "),
])
def test_unknown_names_in_a_spec_suggest_the_closest_valid_ones(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as info:
        AblationSpec.load(_spec_file(tmp_path, text))
    assert len(str(info.value).split("did you mean: ")[1].split(", ")) <= 5


def test_when_overrides_apply_to_the_trials_with_that_axis_value():
    spec = _spec({"method": ["supervised", "posedual"], "label_budget": [100, 250], "seed": [0]},
                 overrides={"train.epochs": 5},
                 when={"method=supervised": {"train.epochs": 120, "train.lr_steps": [90]},
                       "label_budget=250": {"train.lr": 0.002}})
    by_id = {t.trial_id: t.config for t in expand_grid(spec)}
    sup100 = by_id["method=supervised,label_budget=100,seed=0"]
    assert (sup100.train.epochs, sup100.train.lr_steps, sup100.train.lr) == (120, (90,), spec.base.train.lr)
    dual250 = by_id["method=posedual,label_budget=250,seed=0"]
    assert (dual250.train.epochs, dual250.train.lr) == (5, 0.002)
    assert by_id["method=supervised,label_budget=250,seed=0"].train.lr == 0.002


def test_synth_settings_say_how_to_generate_the_data():
    import dataclasses

    from pose.synth.config import quick_config

    assert _spec({"seed": [0]}).synth is None
    spec = _spec({"seed": [0]}, synth={"profile": "quick", "images": 2000, "blur": 0.0})
    assert spec.synth == dataclasses.replace(quick_config(2000), blur=0.0)
    assert spec.synth.num_val == 500 and spec.synth.format == "coco"


def test_missing_spec_file():
    with pytest.raises(FileNotFoundError, match="ablation spec not found"):
        AblationSpec.load("/nonexistent/spec.yaml")


def test_table_orders_augmentations_like_the_spec_module():
    from orchestrator.table import _AXIS_ORDER

    assert _AXIS_ORDER["augmentation"] == tuple(AUGMENTATIONS)


def test_bottomup_spec_sweeps_embedding_dimension_and_beta(tmp_path):
    spec = AblationSpec.load(_spec_file(tmp_path, """\
name: ce-vs-ae
preset: synthcrowd-ce-hrnet-w8h32-128
overrides:
  train.epochs: 1
axes:
  embedding: [ae, ce]
  loss.beta: [0.4, 0.55]
  seed: [0]
"""))
    plan = expand_grid(spec)
    assert [t.trial_id for t in plan] == ["embedding=ae,loss.beta=0.4,seed=0", "embedding=ae,loss.beta=0.55,seed=0",
                                          "embedding=ce,loss.beta=0.4,seed=0", "embedding=ce,loss.beta=0.55,seed=0"]
    ae, ce = plan.trials[0].config, plan.trials[3].config
    assert ae.task == "bottomup" and (ae.loss.kind, ae.codec.embed_dim) == ("ae", 1)
    assert (ce.loss.kind, ce.codec.embed_dim, ce.loss.beta, ce.train.epochs) == ("ce", 8, 0.55, 1)
    assert Trial.from_dict(json.loads(json.dumps(plan.trials[3].to_dict()))) == plan.trials[3]
    with pytest.raises(ConfigError, match="embedding.*codec.embed_dim"):  # two axes setting one field
        AblationSpec.load(_spec_file(tmp_path, "name: x\npreset: synthcrowd-ce-hrnet-w8h32-128\n"
                                     "axes:\n  embedding: [ae, ce]\n  codec.embed_dim: [4, 8]\n", "two.yaml"))
    with pytest.raises(ConfigError, match="label_budget"):  # a top-down axis on a bottom-up base
        AblationSpec.load(_spec_file(tmp_path, "name: x\npreset: synthcrowd-ce-hrnet-w8h32-128\n"
                                     "axes:\n  label_budget: [100]\n", "three.yaml"))


# ---------------------------------------------------------------------------------------------- warm start
WARM = SPEC.replace("  seed: [0, 1, 2]\n  train.lr: [0.001]\n", "  seed: [0, 1, 2]\n") + """\
warm_start:
  overrides: {train.epochs: 40, train.lr_steps: [30]}
  seeds: [0, 1, 2]
"""


def test_warm_start_stage_runs_supervised_per_seed_and_starts_every_trial(tmp_path):
    spec = AblationSpec.load(_spec_file(tmp_path, WARM))
    stage = spec.warm_start
    assert stage.seeds == (0, 1, 2) and stage.origin == "the spec's base"
    assert stage.base.method.kind == "supervised"
    assert (stage.base.train.epochs, stage.base.train.lr_steps) == (40, (30,))
    assert stage.base.semi.num_unlabeled == 200 and stage.base.model == spec.base.model  # base + overrides
    assert stage.describe() == {"base": "the spec's base", "seeds": [0, 1, 2],
                                "overrides": {"train.epochs": 40, "train.lr_steps": [30]}}
    stage_trials = stage.stage_trials(spec.name)
    assert [t.trial_id for t in stage_trials] == ["seed=0", "seed=1", "seed=2"]
    assert [t.config.train.seed for t in stage_trials] == [0, 1, 2]
    assert stage_trials[2].config.run_dir == Path("runs/synth-semi-small/warm_start/seed=2")
    assert Trial.from_dict(json.loads(json.dumps(stage_trials[1].to_dict()))) == stage_trials[1]

    placed = [dataclasses.replace(t, config=dataclasses.replace(t.config, output_dir="/out"))
              for t in stage_trials]
    trials = {t.trial_id: t.config for t in stage.attach(expand_grid(spec).trials, placed)}
    ckpt = "/out/synth-semi-small/warm_start/seed={}/last.pth"
    dual = trials["method=posedual,augmentation=joint_cutout,label_budget=100,seed=0"].model
    assert (dual.init, dual.init_net2) == (ckpt.format(0), ckpt.format(1))
    dual = trials["method=posedual,augmentation=affine,label_budget=250,seed=2"].model
    assert (dual.init, dual.init_net2) == (ckpt.format(2), ckpt.format(0))  # the next seed, cyclic
    for tid in ("method=supervised,augmentation=affine,label_budget=100,seed=1",
                "method=posecons,augmentation=joint_cutout,label_budget=250,seed=1"):
        assert (trials[tid].model.init, trials[tid].model.init_net2) == (ckpt.format(1), None)
    assert stage.label_note(list(expand_grid(spec).trials)) == ""  # base budget 100 <= the grid's 100
    assert AblationSpec.load(_spec_file(tmp_path)).warm_start is None


def test_warm_start_from_its_own_preset_or_config_and_the_label_note(tmp_path):
    axes = {"method": ["posecons"], "label_budget": [50], "seed": [3]}
    spec = _spec(axes, warm_start={"preset": "synth-r18-128x96", "seeds": [3]})
    assert spec.warm_start.origin == "preset synth-r18-128x96" and spec.warm_start.base.data.num_labeled == 0
    assert "trains on every labeled instance" in spec.warm_start.label_note(expand_grid(spec).trials)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "stage.yaml").write_text("train: {epochs: 3}\ndata: {num_labeled: 50}\n"
                                                 "model: {depth: 18, deconv_channels: 128}\n")
    spec = AblationSpec.from_dict({"name": "abl", "preset": BASE, "axes": axes,
                                   "warm_start": {"config": "sub/stage.yaml", "seeds": [3, 4]}},
                                  source="my.yaml", base_dir=tmp_path)
    assert spec.warm_start.base.train.epochs == 3
    assert spec.warm_start.label_note(expand_grid(spec).trials) == ""


@pytest.mark.parametrize("warm, axes, message", [
    ({"seeds": [0], "epochs": 3}, None, r"warm_start: unknown key\(s\) epochs"),
    ([0, 1], None, "'warm_start' must be a mapping"),
    ({"overrides": {"train.epochs": 2}}, None, "'seeds' must be a non-empty list of integers"),
    ({"seeds": [0, 0]}, None, "repeats a seed"),
    ({"seeds": [0, 1], "overrides": {"train.seed": 1}}, None, "override 'train.seed' is not allowed"),
    ({"seeds": [0, 1], "overrides": {"model.init": "x"}}, None, "override 'model.init' is not allowed"),
    ({"seeds": [0, 1], "overrides": {"train.epoch": 1}}, None, "warm_start: overrides: unknown config key"),
    ({"seeds": [0, 1], "preset": BASE, "config": "x.yaml"}, None, "at most one of 'preset' and 'config'"),
    ({"seeds": [0, 1], "preset": "nope"}, None, "warm_start: unknown preset 'nope'"),
    ({"seeds": [0, 1]}, {"method": ["posecons"], "seed": [0, 2]},
     "trial method=posecons,seed=2 has train.seed 2, which the stage does not train"),
    ({"seeds": [1]}, {"method": ["posecons"]}, "trial method=posecons has train.seed 0, which the stage"),
    ({"seeds": [0]}, {"method": ["posecons", "posedual"], "seed": [0]},
     "PoseDual trial method=posedual,seed=0 needs at least 2 seeds"),
    ({"seeds": [0, 1], "overrides": {"model.deconv_channels": 64}}, None,
     "the stage's model .* differs from trial"),
])
def test_warm_start_errors_name_the_spec_file(warm, axes, message):
    with pytest.raises(ConfigError, match=message) as info:
        _spec(axes or {"method": ["posecons", "posedual"], "seed": [0, 1]}, warm_start=warm)
    assert str(info.value).startswith("my.yaml: ")


def test_a_trial_that_sets_model_init_itself_is_an_error_with_a_warm_start():
    with pytest.raises(ConfigError, match="my.yaml: warm_start: the spec's base sets model.init='runs/a'"):
        _spec({"method": ["posecons"], "seed": [0]}, overrides={"model.init": "runs/a"},
              warm_start={"seeds": [0]})
    with pytest.raises(ConfigError, match="my.yaml: warm_start: trial model.init=runs_a,seed=0-[0-9a-f]{8} "
                                          "sets model.init itself"):
        _spec({"model.init": ["runs/a"], "seed": [0]}, warm_start={"seeds": [0]})
    with pytest.raises(ConfigError, match="my.yaml: warm_start: trial method=posecons,seed=0 sets "):
        _spec({"method": ["supervised", "posecons"], "seed": [0]}, warm_start={"seeds": [0]},
              when={"method=posecons": {"model.init": "runs/a"}})
