"""Dataset metainfo as data: keypoint names, flip pairs, OKS sigmas, skeleton, grouping order.

Built in: COCO (17), CrowdPose (14), MPII (16) and AI Challenger (14), plus the AIC -> MPII joint
correspondence (:data:`AIC_TO_MPII`, :func:`remap_keypoints`).

Everything that depends on the number of keypoints K reads it from a :class:`DatasetMeta`; nothing
else in the library hard-codes 17 or 14. A custom dataset declares its own metainfo once, either in
Python (``DatasetMeta(...)``) or as a JSON file loaded with :func:`load_metainfo`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pose.names import suggest, with_suggestion


@dataclass(frozen=True)
class DatasetMeta:
    """Keypoint layout of one dataset.

    Attributes:
        name: dataset name used on the command line (``coco``, ``crowdpose``, ...).
        keypoint_names: K names, in annotation order.
        flip_pairs: left/right partner index pairs (each unordered pair once).
        sigmas: K per-keypoint OKS sigmas (the COCO ``kpt_oks_sigmas`` convention, already /10).
        skeleton: limb index pairs (0-based) for drawing.
        grouping_order: order in which bottom-up grouping visits joint types (0-based).
        upper_body_ids: joints that count as upper body (half-body augmentation, diagnostics).
    """

    name: str
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...]
    skeleton: tuple[tuple[int, int], ...]
    grouping_order: tuple[int, ...]
    upper_body_ids: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        k = len(self.keypoint_names)
        if k == 0:
            raise ValueError(f"metainfo '{self.name}': no keypoints declared")
        if len(set(self.keypoint_names)) != k:
            raise ValueError(f"metainfo '{self.name}': duplicate keypoint names")
        if len(self.sigmas) != k:
            raise ValueError(f"metainfo '{self.name}': {len(self.sigmas)} sigmas for {k} keypoints")
        seen: set[int] = set()
        for a, b in self.flip_pairs:
            for i in (a, b):
                if not 0 <= i < k or i in seen:
                    raise ValueError(f"metainfo '{self.name}': bad or repeated flip index {i}")
                seen.add(i)
        for a, b in self.skeleton:
            if not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"metainfo '{self.name}': skeleton edge ({a}, {b}) out of range")
        if sorted(self.grouping_order) != list(range(k)):
            raise ValueError(f"metainfo '{self.name}': grouping_order must be a permutation of 0..{k - 1}")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def flip_indices(self) -> np.ndarray:
        """(K,) int array: index of each joint's mirror partner (itself when unpaired)."""
        idx = np.arange(self.num_keypoints)
        for a, b in self.flip_pairs:
            idx[a], idx[b] = b, a
        return idx

    @property
    def sigmas_array(self) -> np.ndarray:
        return np.asarray(self.sigmas, dtype=np.float64)

    def index(self, name: str) -> int:
        return self.keypoint_names.index(name)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "keypoint_names": list(self.keypoint_names),
            "flip_pairs": [list(p) for p in self.flip_pairs],
            "sigmas": list(self.sigmas),
            "skeleton": [list(e) for e in self.skeleton],
            "grouping_order": list(self.grouping_order),
            "upper_body_ids": list(self.upper_body_ids),
        }

    @classmethod
    def from_dict(cls, d: dict) -> DatasetMeta:
        allowed = {"name", "keypoint_names", "flip_pairs", "sigmas", "skeleton", "grouping_order", "upper_body_ids"}
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(with_suggestion(f"unknown metainfo keys: {sorted(unknown)}", sorted(unknown),
                                             allowed))
        missing = {"name", "keypoint_names", "flip_pairs", "sigmas"} - set(d)
        if missing:
            raise ValueError(f"metainfo is missing keys: {sorted(missing)}")
        k = len(d["keypoint_names"])
        return cls(
            name=str(d["name"]),
            keypoint_names=tuple(d["keypoint_names"]),
            flip_pairs=tuple(tuple(p) for p in d["flip_pairs"]),
            sigmas=tuple(float(s) for s in d["sigmas"]),
            skeleton=tuple(tuple(e) for e in d.get("skeleton", ())),
            grouping_order=tuple(d.get("grouping_order", range(k))),
            upper_body_ids=tuple(d.get("upper_body_ids", ())),
        )

    def coco_category(self) -> dict:
        """The COCO ``categories`` entry for this layout (skeleton 1-based, as COCO files store it)."""
        return {
            "supercategory": "person",
            "id": 1,
            "name": "person",
            "keypoints": list(self.keypoint_names),
            "skeleton": [[a + 1, b + 1] for a, b in self.skeleton],
        }


COCO = DatasetMeta(
    name="coco",
    keypoint_names=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    sigmas=(
        0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
        0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
    ),
    skeleton=(
        (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
        (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
    ),
    grouping_order=tuple(range(17)),  # the CE repository visits 0..16 (HigherHRNet: hips before elbows)
    upper_body_ids=tuple(range(11)),
)

CROWDPOSE = DatasetMeta(
    name="crowdpose",
    keypoint_names=(
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
        "top_head", "neck",
    ),
    flip_pairs=((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)),
    sigmas=(0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089, 0.079, 0.079),
    skeleton=(
        (12, 13), (13, 0), (13, 1), (0, 2), (2, 4), (1, 3), (3, 5), (0, 6), (1, 7), (6, 7),
        (6, 8), (8, 10), (7, 9), (9, 11),
    ),
    grouping_order=(13, 12, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11),
    upper_body_ids=(0, 1, 2, 3, 4, 5, 12, 13),
)

MPII = DatasetMeta(
    name="mpii",
    # The standard MPII order (the SimpleBaseline / HRNet ``annot/*.json`` and ``gt_valid.mat``).
    keypoint_names=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "pelvis", "thorax", "upper_neck", "head_top",
        "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    # MPII is scored by PCKh (pose.evaluation.pckh); these sigmas only serve OKS-NMS and OKS diagnostics.
    # Values as in mmpose's configs/_base_/datasets/mpii.py ("adapted from COCO"; its shoulders read 0.179
    # where COCO has 0.079, kept as published).
    sigmas=(
        0.089, 0.083, 0.107, 0.107, 0.083, 0.089, 0.026, 0.026, 0.026, 0.026,
        0.062, 0.072, 0.179, 0.179, 0.072, 0.062,
    ),
    skeleton=(
        (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9),
        (8, 12), (12, 11), (11, 10), (8, 13), (13, 14), (14, 15),
    ),
    grouping_order=tuple(range(16)),
    upper_body_ids=tuple(range(7, 16)),
)

AIC = DatasetMeta(
    name="aic",
    # AI Challenger 2017 keypoint order (``keypoint_annotations``: 14 x (x, y, v)).
    keypoint_names=(
        "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
        "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "head_top", "neck",
    ),
    flip_pairs=((0, 3), (1, 4), (2, 5), (6, 9), (7, 10), (8, 11)),
    # OKS sigmas of the official AI Challenger keypoint evaluation (AIChallenger/AI_Challenger_2017,
    # Evaluation/keypoint_eval/keypoint_eval.py, which stores delta = 2 x sigma), as listed in mmpose's
    # configs/_base_/datasets/aic.py.
    sigmas=(
        0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144,
        0.03909642, 0.03686941, 0.01981803, 0.03843971, 0.03412318, 0.02415081,
        0.01291456, 0.01236173,
    ),
    skeleton=(
        (2, 1), (1, 0), (0, 13), (13, 3), (3, 4), (4, 5), (8, 7), (7, 6), (6, 9), (9, 10), (10, 11),
        (12, 13), (0, 6), (3, 9),
    ),
    grouping_order=(13, 12, *range(12)),
    upper_body_ids=(0, 1, 2, 3, 4, 5, 12, 13),
)

BUILTIN: dict[str, DatasetMeta] = {m.name: m for m in (COCO, CROWDPOSE, MPII, AIC)}


def joint_correspondence(src: DatasetMeta, dst: DatasetMeta) -> tuple[tuple[int, int], ...]:
    """(source index, destination index) of every joint both layouts name alike, in source order."""
    return tuple((i, dst.index(name)) for i, name in enumerate(src.keypoint_names) if name in dst.keypoint_names)


AIC_TO_MPII: tuple[tuple[int, int], ...] = joint_correspondence(AIC, MPII)
"""AI Challenger -> MPII: the 12 limb joints and the head top (13 pairs). AIC's ``neck`` (the base of
the neck) has no MPII joint: MPII's ``thorax`` and ``upper_neck`` lie below and above it, and the
original code keeps it as a channel of its own (``neck`` in its 24-joint union, apart from ``thorax``
and ``upper neck``). MPII's pelvis, thorax and upper neck have no AIC joint."""


def remap_keypoints(keypoints: np.ndarray, visible: np.ndarray, pairs: tuple[tuple[int, int], ...],
                    num_dst: int) -> tuple[np.ndarray, np.ndarray]:
    """Carry keypoints into another layout.

    Args:
        keypoints: (..., K_src, 2) coordinates.
        visible: (..., K_src) visibility weights.
        pairs: (source index, destination index) pairs, e.g. :data:`AIC_TO_MPII`.
        num_dst: K_dst, the destination layout's joint count.

    Returns:
        (..., K_dst, 2) keypoints and (..., K_dst) visibility; destination joints without a source are
        zeros with visibility 0.
    """
    keypoints, visible = np.asarray(keypoints), np.asarray(visible)
    out = np.zeros((*keypoints.shape[:-2], num_dst, 2), dtype=keypoints.dtype)
    vis = np.zeros((*visible.shape[:-1], num_dst), dtype=visible.dtype)
    if pairs:
        src, dst = (list(c) for c in zip(*pairs))
        out[..., dst, :] = keypoints[..., src, :]
        vis[..., dst] = visible[..., src]
    return out, vis


def get_metainfo(name_or_path: str | Path) -> DatasetMeta:
    """Return a built-in metainfo by name, or load a custom one from a JSON file path."""
    key = str(name_or_path)
    if key in BUILTIN:
        return BUILTIN[key]
    path = Path(key)
    if path.suffix == ".json":
        return load_metainfo(path)
    hint = f"expected one of {sorted(BUILTIN)} or a metainfo .json file"
    raise ValueError(f"unknown dataset '{key}'; {suggest(key, BUILTIN, hint=hint)}")


def load_metainfo(path: str | Path) -> DatasetMeta:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"metainfo file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: malformed JSON ({e})") from None
    try:
        return DatasetMeta.from_dict(data)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None
