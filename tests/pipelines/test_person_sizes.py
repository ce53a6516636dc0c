"""pipelines/person_sizes.py: people per image and relative box sizes of a COCO split, JSON last line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "pipelines" / "person_sizes.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_coco_mini_figures(coco_mini_ann):
    out = _run(str(coco_mini_ann))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    data = json.loads(Path(coco_mini_ann).read_text())
    trained = [a for a in data["annotations"] if not a.get("iscrowd") and a.get("num_keypoints", 0) > 0]
    assert result["people"] == len(trained)
    assert result["people_per_image"] == round(len(trained) / len({a["image_id"] for a in trained}), 2)
    p10, p50, p90 = result["height_of_image_p10_p50_p90"]
    assert 0 < p10 <= p50 <= p90 <= 1


def test_missing_file_is_one_line(tmp_path):
    out = _run(str(tmp_path / "nope.json"))
    assert out.returncode == 2 and "annotation file not found" in out.stderr
