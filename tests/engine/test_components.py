"""The builders of ``pose.engine.components``: what an unknown method says."""

from __future__ import annotations

import dataclasses

import pytest

from pose.engine.components import build_method
from pose.experiment import ExperimentConfig
from pose.metainfo import COCO


def test_unknown_method_kind_built_directly_suggests_the_closest():
    """The config loader refuses unknown kinds; a config built in code is refused by the builder."""
    cfg = ExperimentConfig()
    cfg = dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, kind="posedaul"))
    with pytest.raises(ValueError, match=r"^method\.kind: unknown method 'posedaul'; "
                                         r"did you mean: posedual\?$"):
        build_method(cfg, COCO)
