"""Shared fixtures: the real coco-mini images and small SynthPose datasets."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pose.synth.config import crowd_config
from pose.synth.generate import generate_dataset

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POSELAB_SHARED", REPO.parent / "shared"))
COCO_MINI = SHARED / "data" / "coco-mini"


@pytest.fixture(scope="session")
def coco_mini() -> Path:
    if not COCO_MINI.exists():
        pytest.fail(f"coco-mini not found at {COCO_MINI} (set POSELAB_SHARED to the shared/ folder)")
    return COCO_MINI


@pytest.fixture(scope="session")
def coco_mini_ann(coco_mini: Path) -> Path:
    return coco_mini / "annotations" / "person_keypoints_val2017.json"


@pytest.fixture(scope="session")
def coco_mini_images(coco_mini: Path) -> Path:
    return coco_mini / "images" / "val2017"


@pytest.fixture(scope="session")
def crowd_dataset(tmp_path_factory) -> Callable[[str], Path]:
    """``crowd_dataset("coco" | "crowdpose")`` -> root of a 12-train / 4-val crowd-profile dataset."""
    made: dict[str, Path] = {}

    def make(fmt: str) -> Path:
        if fmt not in made:
            root = tmp_path_factory.mktemp(f"crowd-{fmt}")
            cfg = dataclasses.replace(crowd_config(images=12, seed=3, format=fmt), val_images=4, workers=1)
            generate_dataset(cfg, root)
            made[fmt] = root
        return made[fmt]

    return make
