"""Fixtures of the shard tests: a tiny SynthPose dataset and shard directories of its train split."""

from __future__ import annotations

from pathlib import Path

import pytest
from shard_helpers import write_split

from pose.synth import SynthConfig, generate_dataset


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth_shards")
    cfg = SynthConfig(images=4, val_images=4, unlabeled_images=2, seed=5, workers=1, long_side=(192, 256),
                      crowd_region_every=2)
    generate_dataset(cfg, out, progress=False)
    return out


@pytest.fixture(scope="session")
def png_shards(synth, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("png") / "train"
    write_split(synth, out, lossless=True)
    return out


@pytest.fixture(scope="session")
def jpeg_shards(synth, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("jpeg") / "train"
    write_split(synth, out)
    return out


@pytest.fixture(scope="session")
def sized_shards(synth, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sized") / "train"
    write_split(synth, out, lossless=True, input_size=(24, 32))
    return out
