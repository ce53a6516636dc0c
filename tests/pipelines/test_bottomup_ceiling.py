"""pipelines/bottomup_ceiling.py: the round-trip ceiling of a preset on a dataset (a Markdown row and a
JSON last line), --help, and one-line errors for a bad preset or dataset path."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "pipelines"))
import bottomup_ceiling  # noqa: E402


def test_ceiling_of_a_preset_on_crowded_synthpose(crowd_dataset, capsys):
    root = crowd_dataset("coco")
    assert bottomup_ceiling.main(["synthcrowd-ae-hrnet-w8h32-128", "--root", str(root), "--max-images", "2"]) == 0
    out = capsys.readouterr().out
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["images"] == 2 and figures["heatmap_stride"] == 4.0 and figures["joints"] > 0
    assert 0.0 < figures["ap"] <= 1.0 and figures["median_px"] > 0
    assert "| AP | AP50 | AR |" in out and "input 128, heatmaps [32]" in out


def test_overrides_change_the_resolution(crowd_dataset, capsys):
    root = crowd_dataset("coco")
    argv = ["synthcrowd-ce-higherhrnet-w8h32-128", "--root", str(root), "--max-images", "1",
            "codec.input_size=256", "codec.heatmap_sizes=[64,128]"]
    assert bottomup_ceiling.main(argv) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["heatmap_stride"] == 2.0


def test_help_and_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bottomup_ceiling.main(["--help"])
    assert e.value.code == 0 and "round-trip ceiling" in capsys.readouterr().out
    assert bottomup_ceiling.main(["synthcrowd-xx-nonsense"]) == 2
    assert "unknown preset 'synthcrowd-xx-nonsense'" in capsys.readouterr().err
    assert bottomup_ceiling.main(["synthcrowd-ce-hrnet-w8h32-128", "--root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere/annotations/person_keypoints_val.json: validation annotations not found" in err
    assert bottomup_ceiling.main(["synthcrowd-ce-hrnet-w8h32-128", "codec.no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        bottomup_ceiling.main(["synthcrowd-ce-hrnet-w8h32-128", "--max-images", "-1"])
    assert e.value.code == 2 and "--max-images must be >= 0" in capsys.readouterr().err
    assert bottomup_ceiling.main(["coco-hrnet-w32-256x192"]) == 2
    assert "a top-down experiment" in capsys.readouterr().err
    assert bottomup_ceiling.main([str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: config file not found" in capsys.readouterr().err
