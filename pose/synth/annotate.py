"""COCO / CrowdPose annotation records from a rendered scene.

Per annotated person: ``bbox`` (xywh) is the extent of its visible pixels united with its labelled
keypoints, clipped to the image; ``area`` is its visible pixel count; ``segmentation`` is the outline
polygon(s) of its visible pixels (COCO format only; CrowdPose files omit it like the real CrowdPose).
People below ``min_keypoint_px`` or with fewer than ``min_visible_keypoints`` visible joints get all-zero
keypoints (``num_keypoints`` 0); people with almost nothing visible are not annotated. The people of
an iscrowd region become one ``iscrowd=1`` annotation with an RLE mask. Floats are rounded to 2 decimals.
"""

from __future__ import annotations

import cv2
import numpy as np
from pycocotools import mask as mask_util

from pose.metainfo import DatasetMeta
from pose.synth.config import SynthConfig
from pose.synth.raster import CROWD_ID
from pose.synth.render import SceneRender
from pose.synth.skeleton3d import JOINT_INDEX, NUM_BODY_JOINTS
from pose.synth.visibility import visible_mask

MIN_VISIBLE_PIXELS = 12  # people with fewer visible pixels are not annotated at all
_ALIASES = {"head_top": "top_head"}  # MPII's and AIC's name of CrowdPose's top_head


def keypoint_joint_index(meta: DatasetMeta) -> np.ndarray:
    """(K,) internal joint index of each of the dataset's keypoints, matched by name.

    Raises:
        ValueError: a keypoint name the body model does not have.
    """
    out = []
    for name in meta.keypoint_names:
        key = _ALIASES.get(name, name)
        if key not in JOINT_INDEX:
            raise ValueError(f"SynthPose cannot generate keypoint '{name}' of dataset '{meta.name}' "
                             f"(known joints: {', '.join(JOINT_INDEX)})")
        out.append(JOINT_INDEX[key])
    return np.array(out, np.int64)


def r2(x: float) -> float:
    """Round to 2 decimals as a plain float (the fixed JSON precision)."""
    return round(float(x), 2)


def mask_polygons(mask: np.ndarray, x0: int, y0: int) -> list[list[float]]:
    """Outline polygons ``[x1, y1, x2, y2, ...]`` (image coordinates) of a bool mask cropped at (x0, y0)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        c = cv2.approxPolyDP(c, 0.8, True).reshape(-1, 2)
        if len(c) >= 3:
            polys.append([r2(v) for xy in c for v in (xy[0] + x0, xy[1] + y0)])
    return polys


def person_annotation(render: SceneRender, index: int, kp_index: np.ndarray, cfg: SynthConfig,
                      with_segmentation: bool) -> dict | None:
    """The annotation (without ``id`` / ``image_id``) of annotated person ``index``, or None when it is
    (almost) invisible. Adds the private keys ``_quality`` (fraction of its in-image body-model joints
    visible) for the detection simulator and ``_head_box`` (x1, y1, x2, y2; MPII's head box) for the
    MPII layout; callers drop keys starting with ``_`` before writing COCO files."""
    h_img, w_img = render.ids.shape
    mask, x0, y0 = visible_mask(render.ids, index, render.extents.get(index))
    n_px = int(mask.sum())
    if n_px < MIN_VISIBLE_PIXELS:
        return None
    ys, xs = np.nonzero(mask)
    bx0, by0, bx1, by1 = xs.min() + x0, ys.min() + y0, xs.max() + x0 + 1, ys.max() + y0 + 1
    person = render.people[index]
    uv = person.uv[kp_index]
    vis = person.visibility[kp_index]
    lab = vis > 0
    if lab.any():
        bx0, by0 = min(bx0, uv[lab, 0].min()), min(by0, uv[lab, 1].min())
        bx1, by1 = max(bx1, uv[lab, 0].max()), max(by1, uv[lab, 1].max())
    bx0, by0 = max(0.0, float(bx0)), max(0.0, float(by0))
    bx1, by1 = min(float(w_img), float(bx1)), min(float(h_img), float(by1))
    zero = (by1 - by0) < cfg.min_keypoint_px or int((vis == 2).sum()) < cfg.min_visible_keypoints
    k = len(kp_index)
    if zero or not lab.any():
        keypoints = [0] * (3 * k)
        num = 0
    else:
        keypoints = []
        for (x, y), v in zip(uv, vis):
            keypoints += [r2(x), r2(y), int(v)] if v > 0 else [0, 0, 0]
        num = int(lab.sum())
    body = person.visibility[:NUM_BODY_JOINTS]  # not the derived MPII points: COCO files stay as they were
    quality = float((body == 2).sum() / max(1, (body > 0).sum()))
    ann: dict = {"category_id": 1}
    if with_segmentation:
        polys = mask_polygons(mask, x0, y0) or [[r2(bx0), r2(by0), r2(bx1), r2(by0), r2(bx1), r2(by1),
                                                   r2(bx0), r2(by1)]]
        ann["segmentation"] = polys
    ann.update({
        "area": float(n_px),
        "bbox": [r2(bx0), r2(by0), r2(bx1 - bx0), r2(by1 - by0)],
        "iscrowd": 0,
        "keypoints": keypoints,
        "num_keypoints": num,
        "_quality": round(quality, 3),
        "_head_box": [r2(v) for v in person.head_box],
    })
    return ann


def crowd_annotation(render: SceneRender, num_keypoints: int) -> dict | None:
    """One ``iscrowd=1`` annotation (RLE mask of the visible iscrowd-region people), or None."""
    if CROWD_ID not in render.extents:
        return None
    mask = render.ids == CROWD_ID
    if int(mask.sum()) < MIN_VISIBLE_PIXELS:
        return None
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    bbox = mask_util.toBbox(rle).tolist()
    return {
        "category_id": 1,
        "segmentation": {"size": [int(rle["size"][0]), int(rle["size"][1])],
                         "counts": rle["counts"].decode("ascii")},
        "area": float(mask_util.area(rle)),
        "bbox": [r2(v) for v in bbox],
        "iscrowd": 1,
        "keypoints": [0] * (3 * num_keypoints),
        "num_keypoints": 0,
    }


def crowd_index(annotations: list[dict]) -> float:
    """CrowdPose crowdIndex of one image: for each person with labelled keypoints, the number of *other*
    people's labelled keypoints inside its bbox divided by its own labelled keypoints; the mean over
    people, capped at 1 (0 for fewer than two people)."""
    people = []
    for a in annotations:
        if a.get("iscrowd", 0) or a.get("num_keypoints", 0) <= 0:
            continue
        kp = np.asarray(a["keypoints"], np.float64).reshape(-1, 3)
        people.append((a["bbox"], kp[kp[:, 2] > 0, :2]))
    if len(people) < 2:
        return 0.0
    ratios = []
    for i, (box, own) in enumerate(people):
        x, y, w, h = box
        n_other = 0
        for j, (_, pts) in enumerate(people):
            if j != i:
                n_other += int(((pts[:, 0] >= x) & (pts[:, 0] <= x + w) & (pts[:, 1] >= y)
                                & (pts[:, 1] <= y + h)).sum())
        ratios.append(n_other / len(own))
    return float(min(1.0, np.mean(ratios)))


def crowd_level(ci: float) -> str:
    """CrowdPose difficulty of a crowdIndex: easy < 0.2 <= medium < 0.8 <= hard."""
    return "easy" if ci < 0.2 else ("medium" if ci < 0.8 else "hard")
