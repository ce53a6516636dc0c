"""SynthPose in MPII's and AI Challenger's own layouts (``poselab synth --format mpii|aic``).

The images and people are the generator's as for COCO (the same seed gives the same pictures in every
format); only the files differ. Each layout is what this library's reader of that dataset reads
(:mod:`pose.data.mpii`, :mod:`pose.data.aic`) and what the original code reads::

    mpii:  annot/train.json, annot/valid.json   [{image, center, scale, joints (16 x 2), joints_vis}, ...]
           annot/gt_valid.mat                   the validation people's joints and head boxes (scipy)
           images/<image id, 12 digits>.jpg     one folder for both splits, as MPII's images/
    aic:   train/keypoint_train_annotation.json             [{image_id, human_annotations,
           validation/keypoint_validation_annotation.json     keypoint_annotations}, ...]
           {train,validation}/images/<image_id>.jpg

MPII (one record per person with a labeled joint, in image order, then the image's annotation order):
coordinates 1-based; ``scale`` = the person box's longer side / 200 and ``center`` its centre moved up by
15 x scale px, so the reader's SimpleBaseline adjustment (down 15 x scale, x1.25) crops the box with a
12.5 % margin (:func:`pose.data.mpii.mpii_record`); joints labeled where the COCO-style visibility is 1
or 2 (MPII annotates occluded joints too). Head box: the head ellipsoid's projected extent
(:func:`pose.synth.render.head_box`), about upper neck to head top in height. People without labeled
joints (too small, or too few visible joints) are left out, as MPII annotates only people with joints.

AI Challenger (one record per image with at least one person; every annotated person, ``human1``...
in annotation order): ``human_annotations`` the person box as ``[x1, y1, x2, y2]``, ``keypoint_annotations``
14 x (x, y, v) with v = 1 visible, 2 occluded, 3 not labeled (at (0, 0)); 0-based pixel coordinates, as
the reader uses them; ``image_id`` the file stem. People without labeled joints keep their box with
every joint at v = 3 (AIC's boxes cover everyone; the unlabeled stream crops them).

Neither layout has crowd annotations: the tiny people of an ``iscrowd`` region are drawn but not
annotated, like the unannotated bystanders of real MPII images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pose.data.aic import NOT_LABELED, OCCLUDED, VISIBLE
from pose.data.mpii import mpii_record, save_mpii_gt

AIC_SPLIT_DIRS = {"train": "train", "val": "validation"}
"""AIC's folder of each SynthPose split (``keypoint_<folder>_annotation.json`` inside)."""
MPII_SPLIT_FILES = {"train": "train.json", "val": "valid.json"}
_COCO_TO_AIC_VISIBILITY = {2: VISIBLE, 1: OCCLUDED, 0: NOT_LABELED}

ImageAnnotations = tuple[dict, list[dict]]
"""One generated image: its COCO ``images`` record and its annotations (``iscrowd`` 0 and 1; the person
annotations carry ``_head_box``)."""


def image_dir(fmt: str, split: str) -> str:
    """Where the images of ``split`` go under the output folder, relative to it."""
    if fmt == "mpii":
        return "images"
    if fmt == "aic":
        return f"{AIC_SPLIT_DIRS[split]}/images"
    return f"images/{split}"


def _people(anns: list[dict]) -> list[tuple[dict, np.ndarray]]:
    """The person annotations (not ``iscrowd`` regions) with their keypoints as (K, 3)."""
    return [(a, np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)) for a in anns if not a["iscrowd"]]


def mpii_split(images: list[ImageAnnotations]) -> tuple[list[dict], np.ndarray]:
    """The MPII records of one split and their head boxes (N, 4) x1, y1, x2, y2, 0-based."""
    records, heads = [], []
    for image, anns in images:
        for ann, kps in _people(anns):
            if ann["num_keypoints"] == 0:
                continue
            records.append(mpii_record(image["file_name"], ann["bbox"], kps[:, :2], kps[:, 2]))
            heads.append(ann["_head_box"])
    return records, np.asarray(heads, dtype=np.float64).reshape(-1, 4)


def aic_record(image: dict, anns: list[dict]) -> dict | None:
    """The native AI Challenger record of one image (None without people)."""
    people = _people(anns)
    if not people:
        return None
    boxes, keypoints = {}, {}
    for i, (ann, kps) in enumerate(people):
        x, y, w, h = ann["bbox"]
        key = f"human{i + 1}"
        boxes[key] = [x, y, round(x + w, 2), round(y + h, 2)]
        flat = []
        for px, py, v in kps:
            v = _COCO_TO_AIC_VISIBILITY[int(v)]
            flat += [px, py, v] if v != NOT_LABELED else [0, 0, v]
        keypoints[key] = flat
    return {"image_id": Path(image["file_name"]).stem, "human_annotations": boxes, "keypoint_annotations": keypoints}


def _dump(path: Path, records: list[dict]) -> None:
    """A JSON list, one record a line (compact, ASCII)."""
    lines = ",\n".join(json.dumps(r, separators=(",", ":"), ensure_ascii=True) for r in records)
    path.write_text("[\n" + lines + "\n]\n" if records else "[]\n", encoding="ascii")


def write_layout(fmt: str, out: Path, splits: dict[str, list[ImageAnnotations]]) -> dict[str, int]:
    """Write the annotation files of ``fmt`` ("mpii" or "aic") for the train and val splits.

    Returns:
        The number of records written per split (MPII: people; AIC: images).
    """
    counts = {}
    if fmt == "mpii":
        (out / "annot").mkdir(parents=True, exist_ok=True)
        for split, name in MPII_SPLIT_FILES.items():
            records, heads = mpii_split(splits[split])
            _dump(out / "annot" / name, records)
            if split == "val":
                save_mpii_gt(out / "annot" / "gt_valid.mat", records, heads)
            counts[split] = len(records)
    elif fmt == "aic":
        for split, folder in AIC_SPLIT_DIRS.items():
            records = [r for r in (aic_record(image, anns) for image, anns in splits[split]) if r is not None]
            (out / folder).mkdir(parents=True, exist_ok=True)
            _dump(out / folder / f"keypoint_{folder}_annotation.json", records)
            counts[split] = len(records)
    else:
        raise ValueError(f"no own layout for format '{fmt}' (mpii or aic)")
    return counts
