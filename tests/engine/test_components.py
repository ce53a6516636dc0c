"""The builders of ``pose.engine.components``: what an unknown method says; resuming RNG streams."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from pose.engine.components import build_method, restore_rng_state, rng_state, seed_everything
from pose.experiment import ExperimentConfig
from pose.metainfo import COCO


def test_unknown_method_kind_built_directly_suggests_the_closest():
    """The config loader refuses unknown kinds; a config built in code is refused by the builder."""
    cfg = ExperimentConfig()
    cfg = dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, kind="posedaul"))
    with pytest.raises(ValueError, match=r"^method\.kind: unknown method 'posedaul'; "
                                         r"did you mean: posedual\?$"):
        build_method(cfg, COCO)


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


@pytest.mark.parametrize("layout", ["plain", "ray"])
def test_restore_rng_state_resumes_either_engines_checkpoint(layout):
    """The plain engine saves one RNG state, the Ray engine one per rank: either resumes from both (a Ray
    checkpoint once failed the plain engine's resume with a TypeError)."""
    seed_everything(3)
    saved = rng_state()
    expected = _draws()
    restore_rng_state(saved if layout == "plain" else [saved], seed=0, epoch=5)
    assert _draws() == expected


def test_restore_rng_state_reseeds_for_another_world_size():
    seed_everything(3)
    two_ranks = [rng_state(), rng_state()]
    restore_rng_state(two_ranks, seed=7, epoch=2, rank=0, world=1)
    first = _draws()
    restore_rng_state(None, seed=7, epoch=2, rank=0, world=1)
    assert _draws() == first  # the same (seed, rank, epoch) streams as a fresh run
    restore_rng_state(None, seed=7, epoch=3, rank=0, world=1)
    assert _draws() != first
