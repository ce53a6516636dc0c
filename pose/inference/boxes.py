"""Image ids and top-down person boxes for the frames a model is applied to.

Image ids come from a COCO annotation or ``image_info`` file (the input images are matched by
``file_name``) or are the frames' running index. Person boxes come from

* a COCO ground-truth annotation file: its people, read as the evaluation reads them with
  ``data.val_boxes=gt`` (:func:`pose.data.coco.load_gt_instances`: non-crowd, labeled, clipped);
* a detection results file (a list of ``{image_id, category_id, bbox, score}``): read as the evaluation
  reads detector boxes (:func:`pose.data.coco.detection_instances`: category 1, score threshold);
* by default, the whole image as one box (score 1, unpadded: the image is the crop window, widened to
  the model's aspect ratio).

Each box becomes a crop window (centre, size) with the config's ``data.box_padding``, as in the
evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pose.data.coco import (
    PersonInstance,
    detection_instances,
    load_gt_instances,
    read_image_records,
    read_json,
)
from pose.data.transforms import box_to_center_scale
from pose.inference.media import Frame
from pose.metainfo import DatasetMeta


class PersonBoxes:
    """The crop windows of one frame's people.

    Args:
        centers: (N, 2) window centres in image pixels.
        scales: (N, 2) window (w, h) in image pixels (padded, at the model's aspect ratio).
        scores: (N,) box scores (1 for ground-truth and whole-image boxes).
    """

    def __init__(self, centers: np.ndarray, scales: np.ndarray, scores: np.ndarray) -> None:
        self.centers = np.asarray(centers, np.float32).reshape(-1, 2)
        self.scales = np.asarray(scales, np.float32).reshape(-1, 2)
        self.scores = np.asarray(scores, np.float32).reshape(-1)

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def of_instances(instances: Sequence[PersonInstance]) -> PersonBoxes:
        return PersonBoxes(np.array([i.center for i in instances], np.float32),
                           np.array([i.scale for i in instances], np.float32),
                           np.array([i.score for i in instances], np.float32))


class ImageIds:
    """The image id of each input frame: from an annotation file's ``images`` (matched by ``file_name``),
    or the frame's running index.

    Args:
        by_file_name: {file name: image id}; None: running indices.
        source: the annotation file (for messages).
    """

    def __init__(self, by_file_name: dict[str, int] | None = None, source: str = "") -> None:
        self.by_file_name = by_file_name
        self.source = source

    @staticmethod
    def from_file(path: str | Path) -> ImageIds:
        """The ids of a COCO annotation or ``image_info`` file."""
        records = read_image_records(path)
        return ImageIds({str(r["file_name"]): image_id for image_id, r in records.items()}, str(path))

    @property
    def from_annotations(self) -> bool:
        return self.by_file_name is not None

    def check(self, file_names: Sequence[str]) -> None:
        """Raises ValueError naming the first input image the annotation file does not list."""
        if self.by_file_name is None:
            return
        missing = [n for n in file_names if n not in self.by_file_name]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ValueError(f"{self.source} lists no image named {missing[0]!r}{more}: its images are "
                             "matched to the input images by file_name")

    def id_of(self, frame: Frame) -> int:
        return frame.index if self.by_file_name is None else self.by_file_name[frame.file_name]


class WholeImageBoxes:
    """One box per frame: the whole image (score 1, no padding), at the model's aspect ratio."""

    def __init__(self, aspect_ratio: float) -> None:
        self.aspect_ratio = aspect_ratio

    def describe(self) -> str:
        return "the whole image as one box"

    def for_frame(self, frame: Frame) -> PersonBoxes:
        w, h = frame.size
        center, scale = box_to_center_scale([0.0, 0.0, float(w), float(h)], self.aspect_ratio, padding=1.0)
        return PersonBoxes(center[None], scale[None], np.ones(1, np.float32))


class InstanceBoxes:
    """Boxes read from a file, grouped by image id (frames without boxes get none).

    Args:
        instances: the people (:class:`PersonInstance`, with crop windows) of every image.
        source: what they were read from (for :meth:`describe`).
    """

    def __init__(self, instances: Sequence[PersonInstance], source: str) -> None:
        self.by_image: dict[int, list[PersonInstance]] = {}
        for inst in instances:
            self.by_image.setdefault(int(inst.image_id), []).append(inst)
        self.count = len(instances)
        self.source = source

    def describe(self) -> str:
        return f"{self.count} boxes of {len(self.by_image)} images from {self.source}"

    def for_frame(self, frame: Frame) -> PersonBoxes:
        return PersonBoxes.of_instances(self.by_image.get(frame.image_id, []))


BoxSource = WholeImageBoxes | InstanceBoxes


def is_detections_file(path: str | Path) -> bool:
    """A detection results file (a JSON list) rather than an annotation file (a JSON object).

    Raises:
        FileNotFoundError, ValueError: missing file, malformed JSON, or neither form.
    """
    data = read_json(path)
    if isinstance(data, list):
        return True
    if isinstance(data, dict) and "images" in data:
        return False
    raise ValueError(f"{path}: neither a detection results list nor a COCO annotation file (an object with "
                     "'images' and 'annotations')")


def ground_truth_boxes(ann_file: str | Path, meta: DatasetMeta, aspect_ratio: float, padding: float
                       ) -> InstanceBoxes:
    """The people of a COCO ground-truth file, as the evaluation's ``data.val_boxes=gt`` reads them."""
    instances = load_gt_instances(ann_file, "", meta, aspect_ratio, padding)
    return InstanceBoxes(instances, f"ground truth {ann_file}")


def detection_boxes(det_file: str | Path, images: dict[int, str], images_source: str, meta: DatasetMeta,
                    aspect_ratio: float, score_threshold: float, padding: float) -> InstanceBoxes:
    """The person detections of a results file, as the evaluation reads detector boxes.

    Args:
        images: {image id: file name} of the inputs the detections may refer to.
        images_source: where those ids come from (an annotation file, or the inputs' running index).
        score_threshold: detections scoring below it are dropped (counted and logged).
    """
    records = {image_id: {"file_name": name} for image_id, name in images.items()}
    instances = detection_instances(det_file, records, images_source, "", meta, aspect_ratio, score_threshold,
                                    padding)
    return InstanceBoxes(instances, f"detections {det_file} (score >= {score_threshold:g})")
