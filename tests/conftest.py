"""Shared fixtures: the real coco-mini images (in the repository, ``tests/fixtures/coco-mini``) and small
SynthPose datasets."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pose.synth.config import crowd_config, profile_config
from pose.synth.generate import generate_dataset

COCO_MINI = Path(__file__).resolve().parent / "fixtures" / "coco-mini"
"""Four COCO val2017 images with their annotations and detections, in the COCO layout (see its README)."""


@pytest.fixture(scope="session")
def coco_mini() -> Path:
    """Root of the in-repository coco-mini fixture."""
    if not COCO_MINI.is_dir():
        pytest.fail(f"coco-mini not found at {COCO_MINI} (it is part of the repository: restore tests/fixtures/)")
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


@pytest.fixture(scope="session")
def crowd_bottomup_shards(crowd_dataset, tmp_path_factory) -> Callable[[str, bool], tuple[Path, Path, Path]]:
    """``crowd_bottomup_shards(fmt, sparse)`` -> (dataset root, train annotation file, shard root holding
    ``train/`` and ``val/``) written by ``poselab shards --mode bottomup`` from ``crowd_dataset(fmt)``
    (5 rows per file, 2 per row group). ``sparse``: the train annotation file leaves out the annotations
    of images 2 and 5, which the file loader then skips from training (10 training images of 12)."""
    made: dict[tuple[str, bool], tuple[Path, Path, Path]] = {}

    def make(fmt: str, sparse: bool = False) -> tuple[Path, Path, Path]:
        if (fmt, sparse) not in made:
            from pose.cli import main

            root = crowd_dataset(fmt)
            tmp = tmp_path_factory.mktemp(f"bu-shards-{fmt}{'-sparse' if sparse else ''}")
            ann = root / "annotations" / "person_keypoints_train.json"
            if sparse:
                data = json.loads(ann.read_text())
                drop = {data["images"][2]["id"], data["images"][5]["id"]}
                data["annotations"] = [a for a in data["annotations"] if a["image_id"] not in drop]
                ann = tmp / "person_keypoints_train_sparse.json"
                ann.write_text(json.dumps(data))
            for split in ("train", "val"):
                argv = ["shards", "--root", str(root), "--split", split, "--out", str(tmp / "shards" / split),
                        "--mode", "bottomup", "--dataset", fmt, "--rows-per-shard", "5", "--row-group-size", "2",
                        "--workers", "1", "--no-progress"]
                assert main(argv + (["--ann", str(ann)] if split == "train" else [])) == 0
            made[fmt, sparse] = (root, ann, tmp / "shards")
        return made[fmt, sparse]

    return make


@pytest.fixture(scope="session")
def synth_mpii_aic(tmp_path_factory) -> tuple[Path, Path]:
    """(MPII root, AIC root): tiny quick-profile SynthPose datasets of the MPII + AIC setting, the MPII layout
    (8 train / 3 val images, seed 5) and the AIC layout of other images (6 train / 2 val, seed 6)."""
    roots = []
    for fmt, images, val, seed in (("mpii", 8, 3, 5), ("aic", 6, 2, 6)):
        root = tmp_path_factory.mktemp(f"synth-{fmt}")
        cfg = dataclasses.replace(profile_config("quick", images, seed, fmt), val_images=val, workers=1)
        generate_dataset(cfg, root, progress=False)
        roots.append(root)
    return roots[0], roots[1]
