"""AI Challenger 2017 keypoints: the native layout and its COCO conversion.

Native layout (``data/aic``, as the challenge distributes it and the semi-supervised repository reads it)::

    train/keypoint_train_annotation.json            list of records (below)
    train/images/<image_id>.jpg
    validation/keypoint_validation_annotation.json
    validation/images/<image_id>.jpg

A record is ``{"image_id": "<hash>", "human_annotations": {"human1": [x1, y1, x2, y2], ...},
"keypoint_annotations": {"human1": [x, y, v] x 14, ...}}`` with v = 1 visible, 2 occluded, 3 not labeled,
in :data:`pose.metainfo.AIC`'s joint order. The COCO-converted layout (mmpose's ``aic_{train,val}.json``,
or :func:`aic_to_coco`'s output) is a COCO keypoint file in the same joint order with COCO visibilities
(2 visible, 1 occluded, 0 not labeled).

Reading follows the COCO reader's rules: a deterministic order (records in file order, people in the
order of their ``keypoint_annotations`` keys; COCO: image order, then annotation order), a
:class:`~pose.data.coco.PersonInstance` per person, errors that name the file and the record, and
expected filtering (people without a labeled joint) as a counted skip reported once. Native boxes are
used as given (the native file has no image sizes to clip them to, and the original does not clip
either): ``[x1, y1, x2, y2]`` -> xywh ``[x1, y1, x2 - x1, y2 - y1]`` -> centre and window with the input
aspect ratio and x1.25 padding.

Ids: the native file has string image ids, so an image's id here is its record's position + 1 and a
person's id is its position among all the file's people + 1, the same numbers :func:`aic_to_coco` gives
the converted file's images and annotations (so results of one evaluate against the other).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pose.data.coco import LoadReport, PersonInstance, gt_instances_from_data, read_json
from pose.data.transforms import box_to_center_scale
from pose.metainfo import AIC

NUM_JOINTS = AIC.num_keypoints
VISIBLE, OCCLUDED, NOT_LABELED = 1, 2, 3
"""The native visibility values."""
NATIVE_TO_COCO_VISIBILITY = {VISIBLE: 2, OCCLUDED: 1, NOT_LABELED: 0}


def _person(rec: dict, human: str, kps: object, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One native person, checked: (keypoints (14, 3) with native v, box (4,) x1 y1 x2 y2)."""
    try:
        arr = np.asarray(kps, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: keypoints are not numbers") from None
    if arr.shape != (3 * NUM_JOINTS,):
        raise ValueError(f"{where}: {arr.size} keypoint values, expected {3 * NUM_JOINTS} (14 joints x (x, y, v))")
    arr = arr.reshape(NUM_JOINTS, 3)
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: keypoints contain NaN or inf")
    bad = ~np.isin(arr[:, 2], (VISIBLE, OCCLUDED, NOT_LABELED))
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where}: visibility {arr[j, 2]:g} of joint {AIC.keypoint_names[j]} is outside 1..3 "
                         "(1 visible, 2 occluded, 3 not labeled)")
    boxes = rec["human_annotations"]
    if human not in boxes:
        raise ValueError(f"{where}: no box in human_annotations")
    try:
        box = np.asarray(boxes[human], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: box is not numbers") from None
    if box.shape != (4,) or not np.isfinite(box).all():
        raise ValueError(f"{where}: box must be 4 finite numbers [x1, y1, x2, y2], got {boxes[human]!r}")
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"{where}: box {box.tolist()} has zero area (needs x2 > x1 and y2 > y1)")
    return arr, box


def _native_people(data: object, path: Path, report: LoadReport | None = None
                   ) -> list[tuple[int, str, int, str, np.ndarray, np.ndarray]]:
    """Every person of a native file, checked, in the reading order: (record index, image id string, person
    index over the file, human key, keypoints (14, 3) native v, box (4,) xyxy)."""
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected the native AI Challenger list of records, got {type(data).__name__}")
    seen: dict[str, int] = {}
    out = []
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise ValueError(f"{path}: record {i} is not an object")  # noqa: TRY004
        for key in ("image_id", "human_annotations", "keypoint_annotations"):
            if key not in rec:
                raise ValueError(f"{path}: record {i} has no '{key}'")
        image = str(rec["image_id"])
        if image in seen:
            raise ValueError(f"{path}: record {i}: image {image} already annotated by record {seen[image]}")
        seen[image] = i
        kp_ann, box_ann = rec["keypoint_annotations"], rec["human_annotations"]
        if not isinstance(kp_ann, dict) or not isinstance(box_ann, dict):
            raise ValueError(f"{path}: record {i} (image {image}): keypoint_annotations and human_annotations "
                             "must be objects {humanN: ...}")
        for human, kps in kp_ann.items():
            where = f"{path}: record {i} (image {image}) {human}"
            arr, box = _person(rec, human, kps, where)
            out.append((i, image, len(out), human, arr, box))
        if report is not None:
            for _ in set(box_ann) - set(kp_ann):
                report.skip("boxes without keypoint annotations")
    return out


def read_aic_native(path: str | Path) -> list[dict]:
    """Read and check a native annotation file (every error names the file and the record)."""
    path = Path(path)
    data = read_json(path)
    _native_people(data, path)
    return data  # type: ignore[return-value]


def _check_image_files(files: list[tuple[str, str]], root: Path, path: Path) -> None:
    """Raise naming the annotation file and the image when an image file is missing."""
    for image, name in files:
        if not (root / name).is_file():
            raise FileNotFoundError(f"{path}: image {image} has no image file {root / name}")


def load_aic_instances(
    ann_file: str | Path,
    image_root: str | Path,
    aspect_ratio: float = 1.0,
    padding: float = 1.25,
    labeled_only: bool = True,
) -> list[PersonInstance]:
    """Top-down person instances from an AI Challenger annotation file, native or COCO-converted.

    A JSON list is the native layout; a JSON object the COCO-converted one.

    Args:
        ann_file: ``keypoint_{train,validation}_annotation.json`` or a COCO-converted file.
        image_root: the directory of the images (``<image_id>.jpg`` / the COCO ``file_name``).
        aspect_ratio: model input width / height (1.0 for the 256x256 of the MPII + AIC setting).
        padding: box padding (SimpleBaseline's x1.25).
        labeled_only: skip (and count) people without a labeled joint (v 1 or 2); False keeps them (crops
            for an unlabeled set). Native only; the COCO-converted layout always skips them, as COCO does.

    Returns:
        :class:`PersonInstance` list: ``keypoints`` (14, 2), ``visible`` (14,) 1 for v in {1, 2} (visible or
        occluded: labeled), ``bbox`` xywh, ``area`` the box area; ids as the module docstring says.

    Raises:
        FileNotFoundError: no annotation file, or an image without its image file.
        ValueError: a visibility outside 1..3 (native) or 0..2 (converted), a box of zero area, a wrong
            keypoint count or a malformed record; the message names the file and the record.
    """
    path = Path(ann_file)
    data = read_json(path)
    root = Path(image_root)
    if isinstance(data, dict):
        return _load_converted(data, path, root, aspect_ratio, padding)
    report = LoadReport(source=str(path))
    people = _native_people(data, path, report)
    _check_image_files([(str(rec["image_id"]), f"{rec['image_id']}.jpg") for rec in data], root, path)
    out: list[PersonInstance] = []
    for rec_index, image, person_index, _human, arr, box in people:
        visible = (arr[:, 2] != NOT_LABELED).astype(np.float32)
        if labeled_only and visible.sum() == 0:
            report.skip("without labeled keypoints")
            continue
        bbox = np.array([box[0], box[1], box[2] - box[0], box[3] - box[1]], dtype=np.float32)
        center, scale = box_to_center_scale(bbox, aspect_ratio, padding)
        out.append(PersonInstance(
            image_id=rec_index + 1, image_path=root / f"{image}.jpg", instance_id=person_index + 1, bbox=bbox,
            center=center, scale=scale, keypoints=(arr[:, :2] * visible[:, None]).astype(np.float32),
            visible=visible, score=1.0, area=float(bbox[2] * bbox[3]), rank=len(out),
        ))
    report.kept = len(out)
    report.log()
    return out


def _load_converted(data: dict, path: Path, root: Path, aspect_ratio: float, padding: float) -> list[PersonInstance]:
    """The COCO-converted layout: the COCO reader, after the AIC checks (visibility, zero-area boxes,
    image files) that it does not make."""
    annotations = data.get("annotations", [])
    for i, ann in enumerate(annotations if isinstance(annotations, list) else []):
        if not isinstance(ann, dict):
            raise ValueError(f"{path}: annotations[{i}] is not an object")  # noqa: TRY004
        where = f"{path}: annotation {ann.get('id', f'#{i}')} (image {ann.get('image_id')})"
        try:
            kps = np.asarray(ann.get("keypoints", []), dtype=np.float64)
            bbox = np.asarray(ann.get("bbox", [0, 0, 1, 1]), dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: keypoints and bbox must be numbers") from None
        if kps.shape == (3 * NUM_JOINTS,):
            bad = ~np.isin(kps[2::3], (0, 1, 2))
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise ValueError(f"{where}: visibility {kps[2::3][j]:g} of joint {AIC.keypoint_names[j]} is outside "
                                 "0..2 (COCO-converted: 2 visible, 1 occluded, 0 not labeled)")
        if bbox.shape != (4,) or not (bbox[2] > 0 and bbox[3] > 0):
            raise ValueError(f"{where}: box {ann.get('bbox')} has zero area (needs w > 0 and h > 0)")
    instances = gt_instances_from_data(data, path, root, AIC, aspect_ratio, padding)
    files = [(str(img.get("id")), str(img["file_name"])) for img in data["images"]]
    _check_image_files(files, root, path)
    return instances


def aic_to_coco(data: list[dict], source: str | Path = "<AI Challenger records>") -> dict:
    """Native records -> a COCO keypoint ground-truth dict (for ``poselab evaluate --dataset aic``).

    Images: id = record position + 1, ``file_name`` = ``<image_id>.jpg``. Annotations: one per person,
    id = position among the file's people + 1, ``bbox`` = xywh of the native box, ``area`` = its area
    (AIC has no segmentation areas; mmpose evaluates AIC with ``use_area=False``, the box area, too),
    visibility 1/2/3 -> 2/1/0 with unlabeled joints at (0, 0), ``num_keypoints`` = labeled joints.
    Images carry no width/height (the native file has none; the evaluation does not need them).
    """
    path = Path(str(source))
    people = _native_people(data, path)
    images = [{"id": i + 1, "file_name": f"{rec['image_id']}.jpg", "aic_image_id": str(rec["image_id"])}
              for i, rec in enumerate(data)]
    annotations = []
    for rec_index, _image, person_index, _human, arr, box in people:
        labeled = arr[:, 2] != NOT_LABELED
        v = np.array([NATIVE_TO_COCO_VISIBILITY[int(x)] for x in arr[:, 2]], dtype=np.float64)
        kps = np.concatenate([arr[:, :2] * labeled[:, None], v[:, None]], axis=1)
        w, h = float(box[2] - box[0]), float(box[3] - box[1])
        annotations.append({
            "id": person_index + 1, "image_id": rec_index + 1, "category_id": 1, "iscrowd": 0,
            "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h,
            "keypoints": kps.reshape(-1).tolist(), "num_keypoints": int(labeled.sum()),
        })
    return {"images": images, "annotations": annotations, "categories": [AIC.coco_category()]}
