"""COCO-format reading for top-down training and evaluation.

Person instances come from ground-truth keypoint annotations (labeled sets, validation with GT
boxes) or from person-detection result files (validation with detector boxes, unlabeled sets whose
images are listed in an ``image_info`` file). Instance order is deterministic: JSON image order,
then annotation order within an image, so "the first N instances" reproduces the paper's label
subsets.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pose.data.transforms import box_to_center_scale
from pose.metainfo import DatasetMeta

log = logging.getLogger(__name__)


@dataclass
class PersonInstance:
    """One person crop source.

    Attributes:
        image_id: COCO image id.
        image_path: path of the image file.
        instance_id: annotation id (GT) or a running index of the detection (detections).
        bbox: (4,) xywh, clipped to the image for GT boxes.
        center: (2,) crop centre in image pixels.
        scale: (2,) crop window (w, h) in image pixels, padded and at the input aspect ratio.
        keypoints: (K, 2) image coordinates (zeros when unlabeled).
        visible: (K,) 1.0 for labeled joints (COCO v >= 1), else 0.0.
        score: box score (1.0 for GT boxes).
        area: annotation area (GT) or box area (detections).
        rank: position in the deterministic instance order of its file.
    """

    image_id: int
    image_path: Path
    instance_id: int
    bbox: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    keypoints: np.ndarray
    visible: np.ndarray
    score: float = 1.0
    area: float = 0.0
    rank: int = 0


@dataclass
class LoadReport:
    """What a reader kept and what it skipped, by reason (reported once, never silently)."""

    source: str
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def log(self) -> None:
        if self.skipped:
            reasons = ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items()))
            log.warning("%s: kept %d instances, skipped %d (%s)", self.source, self.kept,
                        sum(self.skipped.values()), reasons)


def read_json(path: str | Path) -> object:
    """Read a JSON file; errors name the file."""
    path = Path(path)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: malformed JSON ({e})") from None


def _images_by_id(data: dict, path: Path) -> dict[int, dict]:
    if isinstance(data, list):
        raise ValueError(f"{path}: not a COCO file but a JSON list (detection results? MPII's annot/*.json and "
                         "native AI Challenger files have their own readers: pose.data.mpii, pose.data.aic)")
    if not isinstance(data, dict) or "images" not in data:
        raise ValueError(f"{path}: not a COCO file (no 'images' list)")
    images = {}
    for img in data["images"]:
        for key in ("id", "file_name", "width", "height"):
            if key not in img:
                raise ValueError(f"{path}: image {img.get('id', '?')} has no '{key}'")
        images[int(img["id"])] = img
    return images


def read_image_records(path: str | Path) -> dict[int, dict]:
    """{image id: image record} of a COCO annotation or ``image_info`` file (each record has ``id``,
    ``file_name``, ``width`` and ``height``; errors name the file)."""
    return _images_by_id(read_json(path), Path(path))  # type: ignore[arg-type]


def clip_box(bbox: list[float] | np.ndarray, width: int, height: int) -> np.ndarray | None:
    """Clip an xywh box to the image the SimpleBaseline way; None when nothing is left."""
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 < x1 or y2 < y1 or (x2 - x1) * (y2 - y1) <= 0:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float32)


def load_gt_instances(
    ann_file: str | Path,
    image_root: str | Path,
    meta: DatasetMeta,
    aspect_ratio: float,
    padding: float = 1.25,
) -> list[PersonInstance]:
    """Top-down person instances from a COCO keypoint annotation file.

    Keeps non-crowd annotations with at least one labeled keypoint (v >= 1) whose box, clipped to
    the image, has positive area. Skips are counted and logged once.
    """
    path = Path(ann_file)
    return gt_instances_from_data(read_json(path), path, image_root, meta, aspect_ratio, padding)


def gt_instances_from_data(
    data: object,
    path: Path,
    image_root: str | Path,
    meta: DatasetMeta,
    aspect_ratio: float,
    padding: float = 1.25,
) -> list[PersonInstance]:
    """:func:`load_gt_instances` of COCO data already read from ``path`` (messages name ``path``)."""
    images = _images_by_id(data, path)  # type: ignore[arg-type]
    if "annotations" not in data:  # type: ignore[operator]
        raise ValueError(f"{path}: no 'annotations' list (an image_info file cannot give GT instances)")
    by_image: dict[int, list[dict]] = {}
    k = meta.num_keypoints
    for ann in data["annotations"]:  # type: ignore[index]
        ann_id = ann.get("id", "?")
        if "image_id" not in ann or int(ann["image_id"]) not in images:
            raise ValueError(f"{path}: annotation {ann_id} refers to unknown image {ann.get('image_id')}")
        kp = ann.get("keypoints")
        if kp is None or len(kp) != 3 * k:
            n = None if kp is None else len(kp)
            raise ValueError(
                f"{path}: annotation {ann_id} (image {ann['image_id']}) has {n} keypoint values, "
                f"expected {3 * k} for dataset '{meta.name}'"
            )
        by_image.setdefault(int(ann["image_id"]), []).append(ann)

    report = LoadReport(source=str(path))
    out: list[PersonInstance] = []
    root = Path(image_root)
    for img in data["images"]:  # type: ignore[index]
        image_id = int(img["id"])
        for ann in by_image.get(image_id, []):
            if ann.get("iscrowd", 0):
                report.skip("crowd")
                continue
            kps = np.asarray(ann["keypoints"], dtype=np.float32).reshape(k, 3)
            if not np.isfinite(kps).all():
                raise ValueError(f"{path}: annotation {ann['id']} (image {image_id}) has non-finite keypoints")
            visible = (kps[:, 2] >= 1).astype(np.float32)
            if visible.sum() == 0:
                report.skip("without labeled keypoints")
                continue
            if "bbox" not in ann:
                raise ValueError(f"{path}: annotation {ann['id']} (image {image_id}) has no bbox")
            bbox = clip_box(ann["bbox"], int(img["width"]), int(img["height"]))
            if bbox is None:
                report.skip("with zero-area boxes")
                continue
            center, scale = box_to_center_scale(bbox, aspect_ratio, padding)
            area = float(ann["area"]) if "area" in ann else float(bbox[2] * bbox[3])
            out.append(PersonInstance(
                image_id=image_id, image_path=root / img["file_name"], instance_id=int(ann["id"]),
                bbox=bbox, center=center, scale=scale, keypoints=kps[:, :2].copy(), visible=visible,
                score=1.0, area=area, rank=len(out),
            ))
    report.kept = len(out)
    report.log()
    return out


def load_detection_instances(
    det_file: str | Path,
    image_file: str | Path,
    image_root: str | Path,
    meta: DatasetMeta,
    aspect_ratio: float,
    score_threshold: float = 0.0,
    padding: float = 1.25,
) -> list[PersonInstance]:
    """Top-down instances from a person-detection results file.

    Args:
        det_file: COCO detection results (list of {image_id, category_id, bbox, score}).
        image_file: a COCO annotation or ``image_info`` file that lists the images.
        score_threshold: boxes scoring below it are dropped (counted in the report).

    Instances follow the image order of ``image_file``, then detection order. Keypoints are zeros.
    """
    images = read_image_records(image_file)
    return detection_instances(det_file, images, str(image_file), image_root, meta, aspect_ratio,
                               score_threshold, padding)


def detection_instances(
    det_file: str | Path,
    images: Mapping[int, Mapping],
    images_source: str,
    image_root: str | Path,
    meta: DatasetMeta,
    aspect_ratio: float,
    score_threshold: float = 0.0,
    padding: float = 1.25,
) -> list[PersonInstance]:
    """:func:`load_detection_instances` with the images given as {image id: image record with a
    ``file_name``} (``images_source`` names where they came from in messages)."""
    det_path = Path(det_file)
    dets = read_json(det_path)
    if not isinstance(dets, list):
        raise ValueError(f"{det_path}: expected a list of detections")
    by_image: dict[int, list[tuple[int, dict]]] = {}
    for i, det in enumerate(dets):
        for key in ("image_id", "bbox", "score"):
            if key not in det:
                raise ValueError(f"{det_path}: detection {i} has no '{key}'")
        if int(det["image_id"]) not in images:
            raise ValueError(f"{det_path}: detection {i} refers to image {det['image_id']} not in "
                             f"{images_source}")
        if len(det["bbox"]) != 4:
            raise ValueError(f"{det_path}: detection {i} (image {det['image_id']}) bbox needs 4 values")
        by_image.setdefault(int(det["image_id"]), []).append((i, det))

    report = LoadReport(source=str(det_path))
    k = meta.num_keypoints
    root = Path(image_root)
    out: list[PersonInstance] = []
    for image_id, img in images.items():
        for i, det in by_image.get(image_id, []):
            if det.get("category_id", 1) != 1:
                report.skip("non-person detections")
                continue
            if float(det["score"]) < score_threshold:
                report.skip(f"below score {score_threshold}")
                continue
            bbox = np.asarray(det["bbox"], dtype=np.float32)
            if not np.isfinite(bbox).all() or bbox[2] <= 0 or bbox[3] <= 0:
                report.skip("with zero-area boxes")
                continue
            center, scale = box_to_center_scale(bbox, aspect_ratio, padding)
            out.append(PersonInstance(
                image_id=image_id, image_path=root / img["file_name"], instance_id=i, bbox=bbox,
                center=center, scale=scale, keypoints=np.zeros((k, 2), np.float32),
                visible=np.zeros(k, np.float32), score=float(det["score"]),
                area=float(bbox[2] * bbox[3]), rank=len(out),
            ))
    report.kept = len(out)
    report.log()
    return out

