"""Shared fixtures: the real coco-mini images and small SynthPose datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
