"""SynthConfig validation and the ``synth`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys

import pytest

from pose.synth import SynthConfig, add_synth_subcommand
from pose.synth.cli import config_from_args, main
from pose.synth.config import crowd_config, quick_config


def test_defaults_and_derived_counts():
    cfg = SynthConfig(images=100)
    assert (cfg.num_val, cfg.num_unlabeled) == (25, 100)
    assert SynthConfig(images=8).num_val == 4
    assert SynthConfig(images=8, val_images=0, unlabeled_images=3).split_sizes() == {"train": 8, "val": 0,
                                                                                     "unlabeled": 3}
    r = cfg.resolved()
    assert (r.val_images, r.unlabeled_images) == (25, 100)
    assert SynthConfig(long_side=[200, 300]).long_side == (200, 300)  # lists from JSON become tuples
    assert SynthConfig(blur=1).blur == 1.0 and isinstance(SynthConfig(blur=1).blur, float)
    # MPII and AIC have their own layouts, without an unlabeled split
    assert SynthConfig(images=8, format="aic").split_sizes() == {"train": 8, "val": 4, "unlabeled": 0}


@pytest.mark.parametrize("kwargs, match", [
    ({"images": -1}, "images must be >= 0"),
    ({"format": "lsp"}, "format must be one of"),
    ({"format": "mpii", "unlabeled_images": 3}, "unlabeled_images must be 0 or -1 for format 'mpii'"),
    ({"long_side": (500, 300)}, "long_side"),
    ({"long_side": (300,)}, "long_side must be 2 values"),
    ({"group_fraction": 0.8, "crowd_fraction": 0.5}, "group_fraction \\+ crowd_fraction"),
    ({"max_people": 0}, "max_people"),
    ({"noise": -1.0}, "noise must be >= 0"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"truncation": 2.0}, "truncation must be in"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SynthConfig(**kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poselab")
    sub = parser.add_subparsers(dest="command", required=True)
    add_synth_subcommand(sub)
    return parser


def test_help_describes_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["synth", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--out", "--images", "--seed", "--format", "--val-images", "--unlabeled-images", "--workers",
                 "--overwrite", "--occluders", "--clutter", "--distractors", "--blur", "--noise",
                 "--pose-variety", "--person-height", "--long-side", "--max-people", "--crowd-fraction"):
        assert flag in out, flag
    assert "(default: 320 448)" in " ".join(out.split())


def test_bad_values_give_one_clean_line(tmp_path, capsys):
    args = _parser().parse_args(["synth", "--out", str(tmp_path / "x"), "--images", "-3"])
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == "poselab synth: error: --images must be >= 0, got -3"
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["synth", "--out", str(tmp_path), "--format", "lsp"])
    assert e.value.code == 2
    assert "invalid choice: 'lsp'" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("x")
    assert main(["--out", str(tmp_path / "busy"), "--images", "1"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--overwrite" in err and "Traceback" not in err


def test_cli_generates_a_dataset(tmp_path, capsys):
    out = tmp_path / "ds"
    code = main(["--out", str(out), "--images", "2", "--val-images", "1", "--unlabeled-images", "1",
                 "--seed", "4", "--format", "crowdpose", "--long-side", "160", "192", "--workers", "1",
                 "--no-progress"])
    assert code == 0
    splits = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert splits["train"]["images"] == 2
    card = json.loads((out / "synthpose.json").read_text())
    assert card["config"]["format"] == "crowdpose" and card["config"]["long_side"] == [160, 192]
    assert card["config"]["seed"] == 4 and "workers" not in card["config"]


def test_module_entry_point_help():
    res = subprocess.run([sys.executable, "-m", "pose.synth", "--help"], capture_output=True, text=True,
                         check=True)
    assert "--images" in res.stdout and "--format" in res.stdout


@pytest.mark.parametrize("profile, expected", [
    ("default", SynthConfig(images=40, seed=3, format="crowdpose", blur=0.1)),
    ("quick", quick_config(40, seed=3)),
    ("crowd", crowd_config(40, seed=3, format="crowdpose")),
])
def test_profile_is_the_starting_point_and_options_override_it(profile, expected):
    parser = argparse.ArgumentParser()
    add_synth_subcommand(parser.add_subparsers())
    argv = ["synth", "--out", "x", "--profile", profile, "--images", "40", "--seed", "3", "--format", "crowdpose",
            "--blur", "0.1"]
    cfg = config_from_args(parser.parse_args(argv))
    want = dataclasses.replace(expected, format="crowdpose", blur=0.1)
    assert cfg == want
    assert cfg.num_val == 10


def test_unknown_profile_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["--out", "x", "--profile", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err
