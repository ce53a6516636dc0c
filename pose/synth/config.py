"""SynthConfig: every knob of the SynthPose generator as a plain, validated dataclass.

All fields are plain types (int / float / str / bool / tuple) with defaults. The help text of each
field lives in its ``metadata["help"]``; the ``poselab synth`` command line and the dataset card are
generated from / written against it. ``-1`` for ``val_images`` / ``unlabeled_images`` / ``workers``
means "derive it" (see :meth:`SynthConfig.resolved`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

FORMATS: tuple[str, ...] = ("coco", "crowdpose", "mpii", "aic")
OWN_LAYOUT_FORMATS: tuple[str, ...] = ("mpii", "aic")
"""Formats in their dataset's own layout (:mod:`pose.synth.layouts`): train and val splits only, no
unlabeled split, no detections, no crowd annotations."""
MAX_IMAGES_PER_SPLIT = 9_999_999  # image ids are split base (0 / 1e7 / 2e7) + index + 1


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class SynthConfig:
    """Configuration of one SynthPose dataset. The seed and these fields fully determine the output
    (``workers`` only changes the speed)."""

    format: str = _f("coco", "annotation format: 'coco' (the COCO keypoints), 'crowdpose' (the CrowdPose "
                             "keypoints + per-image crowdIndex), 'mpii' (MPII's 16 joints in the SimpleBaseline "
                             "layout: annot/{train,valid}.json, annot/gt_valid.mat) or 'aic' (AI Challenger's 14 "
                             "joints, its native layout); the images are the same for all")
    images: int = _f(1000, "number of labelled train images")
    val_images: int = _f(-1, "number of labelled val images (-1: max(images // 4, 4))")
    unlabeled_images: int = _f(-1, "number of unlabeled images (-1: same as images; 0 for the mpii and aic "
                                   "formats, which have no unlabeled split)")
    seed: int = _f(0, "dataset seed (>= 0); the same seed gives byte-identical annotations")
    workers: int = _f(0, "worker processes (0: all CPU cores); never changes the output")
    long_side: tuple[int, int] = _f((320, 448), "range of the image's long side in pixels (min max)")
    aspect: tuple[float, float] = _f((0.7, 1.45), "range of the image aspect ratio width/height (min max)")
    min_people: int = _f(1, "fewest annotated people per image")
    max_people: int = _f(16, "most annotated people per image (crowded scenes reach it)")
    group_fraction: float = _f(0.3, "fraction of images with an overlapping group (medium crowdIndex)")
    crowd_fraction: float = _f(0.2, "fraction of images with a dense crowd (hard crowdIndex)")
    person_height: tuple[float, float] = _f(
        (0.12, 0.95), "range of a standing person's height as a fraction of the image height (min max, "
                      "log-uniform per image)")
    min_person_px: int = _f(24, "smallest standing person height in pixels")
    min_keypoint_px: int = _f(32, "people whose box is lower than this get zero keypoints (num_keypoints 0)")
    min_visible_keypoints: int = _f(2, "people with fewer visible (v=2) keypoints get zero keypoints")
    truncation: float = _f(0.15, "probability that a person is placed across an image border")
    pose_variety: float = _f(1.0, "spread of the sampled joint angles, body pitch/roll and random poses "
                                  "(0: canonical poses only, 1: default, 2: wild)")
    occluders: float = _f(0.6, "mean number of foreground objects (poles, boxes, bushes) per image")
    clutter: float = _f(1.0, "background clutter: scales the number of background shapes and lines")
    distractors: float = _f(4.0, "mean number of limb-like distractors (skin/clothing sticks, balls) per "
                                 "image")
    blur: float = _f(1.2, "maximum Gaussian blur sigma in pixels (per image uniform in [0, blur], at least "
                          "0.45 to anti-alias edges; 0: no blur)")
    noise: float = _f(6.0, "maximum pixel noise standard deviation on the 0-255 scale")
    lighting: float = _f(0.4, "strength of lighting variation (gradients, vignetting, colour cast; 0..1)")
    jpeg_quality: tuple[int, int] = _f((75, 95), "range of the JPEG quality (min max)")
    crowd_region_every: int = _f(20, "every Nth image of a split (index % N == 0) has an iscrowd=1 region "
                                     "of tiny people (0: none)")
    det_jitter: float = _f(0.08, "detection box jitter (standard deviation as a fraction of the box size)")
    det_miss_rate: float = _f(0.05, "base probability that the detector misses a person (more when occluded "
                                    "or tiny)")
    det_false_positives: float = _f(0.4, "mean number of false-positive detections per image")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            default = f.default
            if isinstance(default, tuple):
                if not isinstance(value, (tuple, list)) or len(value) != len(default):
                    raise ValueError(f"{f.name} must be {len(default)} values, got {value!r}")
                value = tuple(_coerce(f.name, v, type(d)) for v, d in zip(value, default))
            else:
                value = _coerce(f.name, value, type(default))
            object.__setattr__(self, f.name, value)
        self._validate()

    def _validate(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got '{self.format}'")
        _at_least("images", self.images, 0)
        if self.val_images != -1:
            _at_least("val_images", self.val_images, 0)
        if self.unlabeled_images != -1:
            _at_least("unlabeled_images", self.unlabeled_images, 0)
        if self.format in OWN_LAYOUT_FORMATS and self.unlabeled_images > 0:
            raise ValueError(f"unlabeled_images must be 0 or -1 for format '{self.format}': its layout has no "
                             "unlabeled split (the MPII + AIC setting's unlabeled set is the train split of an "
                             "aic dataset)")
        for name in ("images", "val_images", "unlabeled_images"):
            if getattr(self, name) > MAX_IMAGES_PER_SPLIT:
                raise ValueError(f"{name} must be <= {MAX_IMAGES_PER_SPLIT}, got {getattr(self, name)}")
        _at_least("seed", self.seed, 0)
        _at_least("workers", self.workers, 0)
        lo, hi = self.long_side
        if not 64 <= lo <= hi <= 4096:
            raise ValueError(f"long_side must satisfy 64 <= min <= max <= 4096, got {self.long_side}")
        if not 0.25 <= self.aspect[0] <= self.aspect[1] <= 4.0:
            raise ValueError(f"aspect must satisfy 0.25 <= min <= max <= 4, got {self.aspect}")
        _at_least("min_people", self.min_people, 1)
        if self.max_people < self.min_people or self.max_people > 40:
            raise ValueError(f"max_people must be in [min_people, 40], got {self.max_people}")
        for name in ("group_fraction", "crowd_fraction", "truncation", "lighting", "det_miss_rate"):
            _in_unit(name, getattr(self, name))
        if self.group_fraction + self.crowd_fraction > 1.0:
            raise ValueError("group_fraction + crowd_fraction must be <= 1")
        if not 0.0 < self.person_height[0] <= self.person_height[1] <= 2.0:
            raise ValueError(f"person_height must satisfy 0 < min <= max <= 2, got {self.person_height}")
        _at_least("min_person_px", self.min_person_px, 8)
        _at_least("min_keypoint_px", self.min_keypoint_px, 0)
        _at_least("min_visible_keypoints", self.min_visible_keypoints, 0)
        for name in ("pose_variety", "occluders", "clutter", "distractors", "blur", "noise", "det_jitter",
                     "det_false_positives"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.pose_variety > 3:
            raise ValueError(f"pose_variety must be <= 3, got {self.pose_variety}")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"jpeg_quality must satisfy 1 <= min <= max <= 100, got {self.jpeg_quality}")
        _at_least("crowd_region_every", self.crowd_region_every, 0)

    # ------------------------------------------------------------------ derived values
    @property
    def num_val(self) -> int:
        """Resolved number of val images."""
        return max(self.images // 4, 4) if self.val_images == -1 else self.val_images

    @property
    def num_unlabeled(self) -> int:
        """Resolved number of unlabeled images (none for the mpii and aic layouts)."""
        if self.format in OWN_LAYOUT_FORMATS:
            return 0
        return self.images if self.unlabeled_images == -1 else self.unlabeled_images

    @property
    def num_workers(self) -> int:
        """Resolved number of worker processes (CPU cores available to this process when 0)."""
        if self.workers > 0:
            return self.workers
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            return max(1, os.cpu_count() or 1)

    def split_sizes(self) -> dict[str, int]:
        """Images per split, in generation order."""
        return {"train": self.images, "val": self.num_val, "unlabeled": self.num_unlabeled}

    def resolved(self) -> SynthConfig:
        """A copy with the -1 ("derive it") counts replaced by their values (``workers`` left as is)."""
        return dataclasses.replace(self, val_images=self.num_val, unlabeled_images=self.num_unlabeled)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}


def field_help(name: str) -> str:
    """The help text of a SynthConfig field."""
    return SynthConfig.__dataclass_fields__[name].metadata["help"]


def _coerce(name: str, value: Any, tp: type) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
        return value
    return value


def _at_least(name: str, value: int, lo: int) -> None:
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")


def _in_unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def quick_config(images: int = 600, seed: int = 0) -> SynthConfig:
    """The *quick* SynthPose profile: small images with one or two large, unoccluded people in
    sparse scenes (no crowds, little clutter, mild poses), for CPU runs that must learn something in
    minutes (the README's ablation). The default profile is the benchmark; this one is a smoke-scale
    stand-in (docs/synthpose.md, "The quick profile")."""
    return SynthConfig(images=images, val_images=max(images // 4, 4), unlabeled_images=images, seed=seed,
                       long_side=(160, 224), max_people=2, group_fraction=0.0, crowd_fraction=0.0,
                       person_height=(0.5, 0.95), min_keypoint_px=48, truncation=0.0, pose_variety=0.25,
                       occluders=0.0, clutter=0.2, distractors=0.0, blur=0.5, noise=2.0, lighting=0.2,
                       crowd_region_every=0)


def crowd_config(images: int = 400, seed: int = 0, format: str = "coco") -> SynthConfig:
    """The *crowd* SynthPose profile for bottom-up CPU runs: small images with 2 to 8 people, half of
    them in overlapping groups or dense crowds (medium and hard crowdIndex), an iscrowd region every
    10th image, moderate clutter and poses; no unlabeled split (bottom-up training is supervised)."""
    return SynthConfig(format=format, images=images, val_images=max(images // 4, 4), unlabeled_images=0, seed=seed,
                       long_side=(192, 256), min_people=2, max_people=8, group_fraction=0.4, crowd_fraction=0.3,
                       person_height=(0.35, 0.9), min_keypoint_px=32, truncation=0.1, pose_variety=0.5,
                       occluders=0.2, clutter=0.4, distractors=1.0, blur=0.6, noise=3.0, lighting=0.2,
                       crowd_region_every=10)


#: The named profiles (``poselab synth --profile``, a spec's ``synth.profile``); options given with a
#: profile override its values.
PROFILES = {
    "default": "the benchmark profile: the SynthConfig defaults (varied scenes up to dense crowds)",
    "quick": "one or two large people in sparse scenes: CPU runs that learn in minutes (the README's ablation, "
             "the calibration)",
    "crowd": "2 to 8 people per image, half in groups or crowds, no unlabeled split: CPU bottom-up runs",
}


def profile_config(profile: str, images: int | None = None, seed: int = 0, format: str = "coco") -> SynthConfig:
    """The SynthConfig of a named profile (:data:`PROFILES`) with ``images`` train images (``None``: the
    profile's own count); the val and unlabeled split sizes follow the profile's rule for ``images``."""
    sized = {} if images is None else {"images": images}
    if profile == "default":
        return SynthConfig(format=format, seed=seed, **sized)
    if profile == "quick":
        own = {"unlabeled_images": 0} if format in OWN_LAYOUT_FORMATS else {}
        return dataclasses.replace(quick_config(seed=seed, **sized), format=format, **own)
    if profile == "crowd":
        return crowd_config(seed=seed, format=format, **sized)
    raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
