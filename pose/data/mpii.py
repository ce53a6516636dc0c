"""MPII Human Pose in the SimpleBaseline / HRNet layout: ``annot/{train,valid}.json`` and ``gt_valid.mat``.

Layout (``data/mpii``)::

    annot/train.json      list of {image, center, scale, joints (16 x 2), joints_vis (16)}
    annot/valid.json      the same for the 2,958 validation people
    annot/gt_valid.mat    the validation ground truth of the standard evaluation: joints, missing flags
                          and head boxes (``pos_gt_src``, ``jnt_missing``, ``headboxes_src``)
    images/               the MPII images, named as ``image`` says

Conventions, as the SimpleBaseline / HRNet code reads these files (``lib/dataset/mpii.py``):

* coordinates are 1-based (MATLAB); everything here is 0-based (``- 1``);
* ``center`` is the person's rough centre and ``scale`` the person height / 200 px. Before the crop the
  centre moves down by 15 x scale px and the scale grows by x1.25 (both only when ``center[0] != -1``),
  then ``- 1`` makes the centre 0-based;
* the crop window is ``scale x 200`` px wide (the original's ``scale[0] * pixel_std``); its height follows
  the model input's aspect ratio. This library's :class:`~pose.data.coco.PersonInstance` stores the window
  in pixels, ``(w, h) = (250 s, 250 s / aspect_ratio)`` for a record of scale ``s`` (a square window for
  MPII's 256x256 input), which :func:`pose.data.transforms.crop_matrix` maps onto the input exactly as the
  original's ``get_affine_transform`` does.

Instance order is the file's record order. Errors name the file and the record (its 0-based index in
the file); expected filtering (records without a labeled joint) is a counted skip, reported once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pose.data.coco import LoadReport, PersonInstance, read_json
from pose.metainfo import MPII

PIXEL_STD = 200.0
"""MPII's ``scale`` is in units of 200 px."""

NUM_JOINTS = MPII.num_keypoints

MAT_JOINT_NAMES: tuple[str, ...] = (
    "rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor",
    "neck", "head", "rwri", "relb", "rsho", "lsho", "lelb", "lwri",
)
"""``dataset_joints`` of ``gt_valid.mat``: MPII's order under its MATLAB names (``head`` = head top,
``neck`` = upper neck)."""


def mpii_center_scale(center: np.ndarray | list[float], scale: float,
                      aspect_ratio: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """An annotation's 1-based ``center`` (2,) and ``scale`` -> (0-based crop centre (2,), window (w, h) px).

    The SimpleBaseline adjustment: centre y + 15 x scale and scale x 1.25 (unless ``center[0] == -1``),
    then the centre becomes 0-based; the window is ``scale x 200`` px wide and ``/ aspect_ratio`` high.
    """
    c = np.asarray(center, dtype=np.float64).copy()
    s = float(scale)
    if c[0] != -1:
        c[1] += 15.0 * s
        s *= 1.25
    c -= 1.0
    width = s * PIXEL_STD
    return c.astype(np.float32), np.array([width, width / aspect_ratio], dtype=np.float32)


def mpii_record(image: str, bbox: np.ndarray | list[float], keypoints: np.ndarray, visible: np.ndarray) -> dict:
    """The ``annot/*.json`` record of a person box, the inverse of :func:`mpii_center_scale`'s conventions.

    Args:
        image: the image's name under the image folder.
        bbox: (4,) the person box x, y, w, h, 0-based.
        keypoints: (16, 2) 0-based joints; visible: (16,) > 0 where a joint is labeled.

    Returns:
        ``{image, center, scale, joints, joints_vis}``: ``scale`` = the box's longer side / 200 (4 decimals),
        ``center`` 1-based and moved *up* by 15 x scale, so that the reader's adjustment puts the crop centre
        back at the box centre and its window (1.25 x 200 x scale) holds the whole box with a 12.5 % margin;
        labeled joints 1-based (2 decimals), unlabeled ones ``[-1, -1]`` with ``joints_vis`` 0 (as the
        SimpleBaseline files write them).
    """
    x, y, w, h = (float(v) for v in bbox)
    scale = round(max(w, h) / PIXEL_STD, 4)
    if scale <= 0:
        raise ValueError(f"image {image}: box {list(bbox)} has zero area")
    lab = np.asarray(visible) > 0
    joints = np.where(lab[:, None], np.round(np.asarray(keypoints, np.float64) + 1.0, 2), -1.0)
    return {
        "image": image,
        "center": [round(x + w / 2 + 1.0, 2), round(y + h / 2 - 15.0 * scale + 1.0, 2)],
        "scale": scale,
        "joints": joints.tolist(),
        "joints_vis": lab.astype(int).tolist(),
    }


def _record_arrays(rec: object, where: str) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """(center (2,), scale, joints (16, 2), joints_vis (16,)) of one record, checked."""
    if not isinstance(rec, dict):
        raise ValueError(f"{where} is not an object")  # noqa: TRY004
    for key in ("image", "center", "scale", "joints", "joints_vis"):
        if key not in rec:
            raise ValueError(f"{where} has no '{key}'")
    try:
        center = np.asarray(rec["center"], dtype=np.float64)
        scale = float(rec["scale"])
        joints = np.asarray(rec["joints"], dtype=np.float64)
        vis = np.asarray(rec["joints_vis"], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: center, scale, joints and joints_vis must be numbers") from None
    if center.shape != (2,):
        raise ValueError(f"{where}: center has shape {center.shape}, expected (2,)")
    if joints.ndim != 2 or joints.shape[1] != 2 or len(joints) != NUM_JOINTS:
        raise ValueError(f"{where}: joints have shape {joints.shape}, expected ({NUM_JOINTS}, 2): "
                         f"MPII has {NUM_JOINTS} joints")
    if vis.shape != (NUM_JOINTS,):
        raise ValueError(f"{where}: joints_vis has shape {vis.shape}, expected ({NUM_JOINTS},)")
    if not (np.isfinite(center).all() and np.isfinite(joints).all() and np.isfinite(vis).all()
            and np.isfinite(scale)):
        raise ValueError(f"{where}: non-finite center, scale or joints")
    if scale <= 0:
        raise ValueError(f"{where}: scale {scale} gives a person box of zero area")
    return center, scale, joints, vis


def load_mpii_instances(
    ann_file: str | Path,
    image_root: str | Path,
    aspect_ratio: float = 1.0,
    labeled_only: bool = True,
) -> list[PersonInstance]:
    """Top-down person instances from an MPII ``annot/*.json`` file.

    Args:
        ann_file: the annotation list (``train.json`` / ``valid.json``).
        image_root: the directory of the images (``data/mpii/images``).
        aspect_ratio: model input width / height (1.0 for MPII's 256x256); sets the window height.
        labeled_only: skip (and count) records without a labeled joint; False keeps every record.

    Returns:
        One :class:`PersonInstance` per kept record, in file order: ``instance_id`` = the record's index
        in the file (also the column of ``gt_valid.mat``), ``image_id`` = the image's index in order of
        first appearance, ``keypoints`` (16, 2) 0-based, ``visible`` (16,) = ``joints_vis > 0``, ``bbox``
        the unpadded square ``200 x scale`` px around the adjusted centre (xywh), ``area`` its area.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a list, or a record without one of its keys, with the wrong number of joints, with
            non-finite numbers or a scale <= 0 (a zero-area person); the message names file and record.
    """
    path = Path(ann_file)
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of MPII records, got {type(data).__name__}")  # noqa: TRY004
    root = Path(image_root)
    report = LoadReport(source=str(path))
    image_ids: dict[str, int] = {}
    out: list[PersonInstance] = []
    for i, rec in enumerate(data):
        where = f"{path}: record {i}" + (f" (image {rec['image']})" if isinstance(rec, dict) and "image" in rec else "")
        center, scale, joints, vis = _record_arrays(rec, where)
        image_id = image_ids.setdefault(str(rec["image"]), len(image_ids))
        visible = (vis > 0).astype(np.float32)
        if labeled_only and visible.sum() == 0:
            report.skip("without labeled joints")
            continue
        c, window = mpii_center_scale(center, scale, aspect_ratio)
        side = scale * PIXEL_STD
        bbox = np.array([c[0] - side / 2, c[1] - side / 2, side, side], dtype=np.float32)
        out.append(PersonInstance(
            image_id=image_id, image_path=root / str(rec["image"]), instance_id=i, bbox=bbox, center=c,
            scale=window, keypoints=(joints - 1.0).astype(np.float32) * visible[:, None], visible=visible,
            score=1.0, area=float(side * side), rank=len(out),
        ))
    report.kept = len(out)
    report.log()
    return out


@dataclass(frozen=True)
class MPIIGroundTruth:
    """The standard MPII evaluation's ground truth (``gt_valid.mat``), 0-based.

    Attributes:
        source: the file it was read from.
        joints: (N, 16, 2) joint coordinates, 0-based.
        visible: (N, 16) bool, True where the joint is annotated (``jnt_missing == 0``).
        head_boxes: (N, 4) head boxes x1, y1, x2, y2, 0-based.
    """

    source: str
    joints: np.ndarray
    visible: np.ndarray
    head_boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.joints)

    @property
    def head_sizes(self) -> np.ndarray:
        """(N,) head-box diagonals in pixels (PCKh's reference length is 0.6 x this)."""
        return np.linalg.norm(self.head_boxes[:, 2:] - self.head_boxes[:, :2], axis=1)


def save_mpii_gt(path: str | Path, records: list[dict], head_boxes: np.ndarray) -> None:
    """Write ``gt_valid.mat`` (scipy) for ``records`` (``annot/valid.json``'s, in order), what
    :func:`load_mpii_gt` reads back.

    Args:
        records: MPII records (their ``joints`` are 1-based, ``joints_vis`` > 0 where annotated).
        head_boxes: (N, 4) head boxes x1, y1, x2, y2, 0-based (written 1-based).
    """
    from scipy.io import savemat

    n = len(records)
    boxes = np.asarray(head_boxes, dtype=np.float64).reshape(n, 4) + 1.0
    joints = np.array([r["joints"] for r in records], dtype=np.float64).reshape(n, NUM_JOINTS, 2)
    vis = np.array([r["joints_vis"] for r in records], dtype=np.float64).reshape(n, NUM_JOINTS)
    names = np.empty((1, NUM_JOINTS), dtype=object)
    for j, name in enumerate(MAT_JOINT_NAMES):
        names[0, j] = np.array([name])
    savemat(str(path), {
        "dataset_joints": names,
        "jnt_missing": (vis <= 0).astype(np.float64).T,  # (16, N)
        "pos_gt_src": joints.transpose(1, 2, 0),  # (16, 2, N)
        "headboxes_src": boxes.reshape(n, 2, 2).transpose(1, 2, 0),  # (2, 2, N): corner, x/y, person
    })


def _mat_joint_names(value: np.ndarray) -> list[str]:
    """``dataset_joints`` as loadmat returns it (a (1, 16) object array of string arrays) -> names."""
    names = []
    for item in np.asarray(value, dtype=object).reshape(-1):
        while isinstance(item, np.ndarray) and item.size == 1 and item.dtype == object:
            item = item.reshape(-1)[0]
        names.append(str(np.asarray(item).reshape(-1)[0]) if isinstance(item, np.ndarray) else str(item))
    return names


def load_mpii_gt(path: str | Path) -> MPIIGroundTruth:
    """Read ``gt_valid.mat`` (scipy): ``pos_gt_src`` (16, 2, N), ``jnt_missing`` (16, N), ``headboxes_src``
    (2, 2, N) = (corner, x/y, person), and, when present, ``dataset_joints`` (checked against MPII's order).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable MATLAB file, a missing key, shapes that disagree, joint names out of
            order, or a record whose head box is not finite or has zero size while it has annotated
            joints; the message names the file (and the record, 0-based, for a record's fault).
    """
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MPII head-box file not found: {path}")
    try:
        mat = loadmat(str(path))
    except (MatReadError, ValueError, TypeError, OSError, IndexError, KeyError) as e:
        raise ValueError(f"{path}: not a readable MATLAB head-box file ({type(e).__name__}: {e})") from None
    for key in ("pos_gt_src", "jnt_missing", "headboxes_src"):
        if key not in mat:
            raise ValueError(f"{path}: no '{key}' (not an MPII gt_*.mat head-box file)")
    try:
        pos = np.asarray(mat["pos_gt_src"], dtype=np.float64)
        missing = np.asarray(mat["jnt_missing"], dtype=np.float64)
        boxes = np.asarray(mat["headboxes_src"], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: pos_gt_src, jnt_missing and headboxes_src must be numeric arrays") from None
    if pos.ndim == 2 and pos.shape == (NUM_JOINTS, 2):  # MATLAB drops a trailing singleton dimension
        pos = pos[:, :, None]
    if missing.ndim == 1:
        missing = missing[:, None]
    if boxes.ndim == 2:
        boxes = boxes[:, :, None]
    n = pos.shape[-1] if pos.ndim == 3 else -1
    if pos.shape != (NUM_JOINTS, 2, n):
        raise ValueError(f"{path}: pos_gt_src has shape {pos.shape}, expected ({NUM_JOINTS}, 2, N)")
    if missing.shape != (NUM_JOINTS, n):
        raise ValueError(f"{path}: jnt_missing has shape {missing.shape}, expected ({NUM_JOINTS}, {n})")
    if boxes.shape != (2, 2, n):
        raise ValueError(f"{path}: headboxes_src has shape {boxes.shape}, expected (2, 2, {n})")
    if "dataset_joints" in mat:
        names = _mat_joint_names(mat["dataset_joints"])
        if names != list(MAT_JOINT_NAMES):
            raise ValueError(f"{path}: dataset_joints {names} are not MPII's order {list(MAT_JOINT_NAMES)}")
    bad = ~np.isin(missing, (0.0, 1.0))
    if bad.any():
        j, i = np.argwhere(bad)[0]
        raise ValueError(f"{path}: record {i}: jnt_missing[{j}] = {missing[j, i]:g}, expected 0 or 1")
    visible = (missing == 0).T
    joints = pos.transpose(2, 0, 1) - 1.0
    head_boxes = boxes.transpose(2, 0, 1).reshape(n, 4) - 1.0
    for i in range(n):
        if not np.isfinite(head_boxes[i]).all():
            raise ValueError(f"{path}: record {i}: head box {head_boxes[i] + 1} is not finite")
        if visible[i].any() and not np.isfinite(joints[i][visible[i]]).all():
            raise ValueError(f"{path}: record {i}: annotated joints are not finite")
    gt = MPIIGroundTruth(str(path), joints, visible, head_boxes)
    empty = np.flatnonzero((gt.head_sizes <= 0) & visible.any(axis=1))
    if len(empty):
        i = int(empty[0])
        raise ValueError(f"{path}: record {i}: head box {head_boxes[i] + 1} has zero size (PCKh needs its "
                         f"diagonal); {len(empty)} such record(s)")
    return gt
