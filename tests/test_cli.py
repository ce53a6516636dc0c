"""The poselab command line as a user meets it: --help, results, bad input."""

import json
import subprocess
import sys

import pytest

from pose.cli import build_parser, main


@pytest.mark.parametrize("command", ["demo", "train", "evaluate", "presets", "synth", "predict"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: poselab " + command in capsys.readouterr().out


def test_installed_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "pose.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("demo", "train", "evaluate", "presets", "synth"):
        assert command in out.stdout


def test_evaluate_json_last_line(coco_mini_ann, tmp_path, capsys):
    data = json.loads(coco_mini_ann.read_text())
    res = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 0.9}
           for a in data["annotations"] if a["num_keypoints"] > 0]
    path = tmp_path / "res.json"
    path.write_text(json.dumps(res))
    assert main(["evaluate", "--gt", str(coco_mini_ann), "--results", str(path), "--dataset", "coco", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    stats = json.loads(lines[-1])
    assert list(stats) == ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
    assert stats["AP"] == 1.0
    assert any("Average Precision" in line for line in lines[:-1])


def test_evaluate_bad_input_is_one_clean_line(coco_mini_ann, tmp_path, capsys):
    bad = tmp_path / "res.json"
    bad.write_text("[{]")
    assert main(["evaluate", "--gt", str(coco_mini_ann), "--results", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "res.json" in err and "Traceback" not in err
    assert main(["evaluate", "--gt", str(coco_mini_ann), "--results", str(bad), "--dataset", "posetrack"]) == 2
    assert "unknown dataset 'posetrack'" in capsys.readouterr().err


def test_train_rejects_unknown_keys_and_presets(capsys):
    assert main(["train", "synth-r18-128x96", "train.epoch=3"]) == 2
    assert "unknown config key: train.epoch" in capsys.readouterr().err
    assert main(["train", "no-such-preset"]) == 2
    assert "unknown preset 'no-such-preset'" in capsys.readouterr().err


def test_unknown_names_are_one_line_with_the_closest_suggestions(capsys):
    assert main(["train", "synth-r18-128x69"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("poselab train: error: unknown preset 'synth-r18-128x69'; "
                          "did you mean: synth-r18-128x96, ")
    assert err.count("\n") == 1 and len(err.split("did you mean: ")[1].split(", ")) <= 5
    assert main(["train", "synth-r18-128x96", "train.ephocs=3", "--print-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (
        "poselab train: error: unknown config key: train.ephocs (in override 'train.ephocs=3'); "
        "did you mean: train.epochs?\n")


def test_train_print_config_applies_overrides(capsys):
    assert main(["train", "synth-r18-128x96", "train.epochs=3", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["epochs"] == 3


def test_presets_listing(capsys):
    assert main(["presets"]) == 0
    assert "synth-r18-128x96" in capsys.readouterr().out
    assert build_parser().parse_args(["presets", "--json"]).json


def test_overrides_may_follow_the_options(capsys):
    """`train PRESET --print-config key=value`: overrides after options still apply (argparse alone
    would call them unrecognized); anything else after the options is still an error."""
    assert main(["train", "synthcrowd-ce-hrnet-w8h32-128", "--print-config", "loss.beta=0.55", "train.epochs=3"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["task"] == "bottomup" and cfg["loss"]["beta"] == 0.55 and cfg["train"]["epochs"] == 3
    with pytest.raises(SystemExit):
        main(["train", "synthcrowd-ce-hrnet-w8h32-128", "--print-config", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["presets", "train.epochs=3"])  # a subcommand without overrides
    assert "unrecognized arguments: train.epochs=3" in capsys.readouterr().err
