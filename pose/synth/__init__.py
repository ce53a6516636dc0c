"""SynthPose: a procedurally generated multi-person 2D pose dataset in COCO and CrowdPose formats, and in
MPII's and AI Challenger's own layouts.

Public API:

* :class:`~pose.synth.config.SynthConfig`: every generator option (plain, validated dataclass);
* :func:`~pose.synth.generate.generate_dataset`: write a dataset (parallel, deterministic from the seed);
* :func:`~pose.synth.generate.generate_image`: render and annotate one image (tests, debugging);
* :func:`~pose.synth.cli.add_synth_subcommand`: the ``poselab synth`` command.

Modules: ``config`` (options), ``skeleton3d`` (body model, poses, camera), ``raster`` (z-buffer),
``materials`` (clothing, skin, face), ``background`` (backgrounds, distractors, occluders), ``scene``
(layout, crowd density), ``render`` (scene rendering, camera effects), ``visibility`` (keypoint
visibility), ``annotate`` (COCO records, crowdIndex), ``detections`` (simulated detector), ``layouts``
(the MPII and AIC files), ``generate`` (driver), ``progress`` (text progress bar), ``cli``. See
docs/synthpose.md.
"""

from __future__ import annotations

from typing import Any

from pose.synth.cli import add_synth_subcommand
from pose.synth.config import SynthConfig

__all__ = ["SynthConfig", "add_synth_subcommand", "generate_dataset", "generate_image"]


def __getattr__(name: str) -> Any:
    # the generator pulls in OpenCV and pycocotools: import it on first use, so that building the
    # ``poselab`` parser (which registers ``synth``) stays cheap
    if name in ("generate_dataset", "generate_image"):
        from pose.synth import generate

        return getattr(generate, name)
    raise AttributeError(f"module 'pose.synth' has no attribute '{name}'")
