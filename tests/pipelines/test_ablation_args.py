"""pipelines/ablation.py's command line (parsing only; the runs are in tests/orchestrator/test_ablation.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _ablation_script():
    spec = importlib.util.spec_from_file_location("pipelines_ablation", REPO / "pipelines" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_threads_and_concurrency_are_parsed():
    args = _ablation_script().parse_args(["spec.yaml", "--threads", "1", "--max-concurrent", "2"])
    assert (args.spec, args.threads, args.max_concurrent) == ("spec.yaml", 1, 2)
    assert _ablation_script().parse_args([]).threads is None  # derived from the cores


@pytest.mark.parametrize("flag", ["--threads", "--max-concurrent"])
def test_a_count_below_one_is_an_error_naming_the_flag(flag, capsys):
    with pytest.raises(SystemExit) as info:
        _ablation_script().parse_args(["spec.yaml", flag, "0"])
    assert info.value.code == 2 and f"{flag} must be at least 1, got 0" in capsys.readouterr().err


def test_the_mpii_aic_spec_generates_its_two_synthpose_datasets(tmp_path, capsys):
    """pipelines/specs/synth-mpii-aic.yaml: PCKh as the table's metric, Supervised vs PoseDual + Joint Cutout
    from warm starts, and both datasets (MPII layout, AIC layout of other images) generated on first use."""
    import dataclasses

    from orchestrator.ablation_spec import AblationSpec, expand_grid, set_fields
    from pose.config import ConfigError

    spec = AblationSpec.load(REPO / "pipelines" / "specs" / "synth-mpii-aic.yaml")
    assert spec.metric == "PCKh" and spec.base.data.dataset == "mpii" and spec.base.semi.unlabeled == "aic"
    assert (spec.synth.format, spec.synth_unlabeled.format) == ("mpii", "aic")
    assert spec.synth.seed != spec.synth_unlabeled.seed  # other images for the unlabeled set
    trials = expand_grid(spec).trials
    assert [t.config.method.kind for t in trials] == ["supervised", "posedual"]
    assert trials[1].config.method.hard.cutout_joints == 5 and spec.warm_start.seeds == (0, 1)
    with pytest.raises(ConfigError, match="'synth_unlabeled' generates semi.root"):
        AblationSpec.from_dict({"name": "x", "preset": "synth100-supervised-r18-128x96", "axes": {"seed": [0]},
                                "synth_unlabeled": {"format": "aic"}})

    mpii, aic = tmp_path / "mpii", tmp_path / "aic"
    tiny = {"images": 3, "val_images": 2, "workers": 1, "long_side": (128, 160)}
    small = dataclasses.replace(spec, base=set_fields(spec.base, [("data.root", str(mpii)), ("semi.root", str(aic))]),
                                synth=dataclasses.replace(spec.synth, **tiny),
                                synth_unlabeled=dataclasses.replace(spec.synth_unlabeled, **tiny))
    script = _ablation_script()
    script.ensure_synthpose(small, 600)
    assert (mpii / "annot" / "gt_valid.mat").is_file() and (aic / "train" / "keypoint_train_annotation.json").is_file()
    out = capsys.readouterr().out
    assert "(the spec's synth settings, mpii, 3 train images)" in out
    assert "(the spec's synth_unlabeled settings, aic, 3 train images)" in out
    script.ensure_synthpose(small, 600)  # both exist: nothing is generated again
    assert "generating" not in capsys.readouterr().out
