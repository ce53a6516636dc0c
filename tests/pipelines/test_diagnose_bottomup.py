"""pipelines/diagnose_bottomup.py on a run directory the plain trainer wrote: three scores, the signed
peak offsets and the tag correlation, Markdown tables and a JSON last line; a missing run or a top-down run is a one-line error."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pose.config import apply_overrides
from pose.engine.trainer import Trainer
from pose.presets import get_preset

SCRIPT = Path(__file__).parents[2] / "pipelines" / "diagnose_bottomup.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def _main(*args: str) -> int:
    """The script's ``main(argv)`` in this process (its exit status; what it prints goes to capsys): no
    interpreter start-up and torch import per call."""
    spec = importlib.util.spec_from_file_location("pipelines_diagnose_bottomup", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(list(args))


@pytest.fixture(scope="module")
def bottomup_run(crowd_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("diag")
    cfg = apply_overrides(get_preset("synthcrowd-ce-hrnet-w8h32-128").config, [
        f"data.root={crowd_dataset('coco')}", "data.num_workers=0", f"output_dir={out}", "name=diag",
        "train.epochs=1", "train.batch_size=4", "train.val_interval=1", "train.warmup_iters=2", "train.device=cpu"])
    Trainer(cfg, log_metrics=lambda m, s: None, resume=False).fit()
    return out / "diag"


def test_diagnosis_prints_the_three_scores(bottomup_run):
    # after one epoch no peak passes the default threshold: take every candidate to measure the offsets
    proc = _run(str(bottomup_run), "data.max_val_images=2", "codec.grouping.val_threshold=-1e9", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["images"] == 2 and figures["step"] == 3  # 12 images, batch 4
    for key in ("AP", "AR50", "AP_oracle_tags", "AR50_oracle_tags", "AP_oracle_heatmaps", "AR50_oracle_heatmaps"):
        assert 0.0 <= figures[key] <= 1.0
    assert "| oracle heatmaps (network tags) |" in proc.stdout
    # the signed offsets (heatmap px) and, R = 8, the tag-dimension correlation
    assert all(np.isfinite(figures[k]) for k in ("peak_dx", "peak_dy", "peak_dx_std", "peak_dy_std"))
    assert 0.0 < figures["peak_found"] <= 1.0 and 0.0 <= figures["tag_corr_offdiag"] <= 1.0
    assert "| nearest peak - joint (heatmap px) |" in proc.stdout and "off-diagonal correlation" in proc.stdout


def test_diagnosis_names_a_missing_run_and_rejects_top_down(tmp_path, capsys):
    assert _main(str(tmp_path / "nowhere")) == 2
    assert "nowhere/config.json: not found" in capsys.readouterr().err
    top = tmp_path / "top"
    top.mkdir()
    (top / "config.json").write_text(json.dumps({"name": "x"}))
    (top / "last.pth").write_bytes(b"")
    assert _main(str(top)) == 2
    assert "top-down experiment" in capsys.readouterr().err
