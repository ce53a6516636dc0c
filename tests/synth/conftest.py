"""Tiny SynthPose datasets shared by the synth tests (generated once per session, in-process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pose.synth import SynthConfig, generate_dataset

# Small images and few of them: the whole synth suite must stay well under 30 s on 2 cores.
TINY = {"long_side": (192, 256), "workers": 1, "crowd_region_every": 3}


@pytest.fixture(scope="session")
def coco_tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthConfig, dict]:
    cfg = SynthConfig(format="coco", images=6, val_images=4, unlabeled_images=3, seed=11, **TINY)
    out = tmp_path_factory.mktemp("synth_coco")
    summary = generate_dataset(cfg, out, progress=False)
    return out, cfg, summary


@pytest.fixture(scope="session")
def crowdpose_tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthConfig, dict]:
    cfg = SynthConfig(format="crowdpose", images=10, val_images=4, unlabeled_images=2, seed=3, **TINY)
    out = tmp_path_factory.mktemp("synth_crowdpose")
    summary = generate_dataset(cfg, out, progress=False)
    return out, cfg, summary
