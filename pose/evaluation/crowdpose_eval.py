"""CrowdPose keypoint evaluation, re-implemented without xtcocotools.

Computes what xtcocotools (checked against 1.14.3) reports for::

    ev = COCOeval(gt, gt.loadRes(results), iouType="keypoints_crowd", sigmas=sigmas, use_area=False)
    ev.evaluate(); ev.accumulate(); ev.summarize(); ev.stats

i.e. AP, AP50, AP75, AR, AR50, AR75 (maxDets 20, area range "all") and AP(easy/medium/hard) split by the
per-image ``crowdIndex`` (``get_type_result(first=0.2, second=0.8)``). Details reproduced from
``xtcocotools/cocoeval.py`` and ``xtcocotools/coco.py``:

* GT ``ignore`` = ``iscrowd`` or ``num_keypoints == 0``, where ``num_keypoints`` is the stored field (in
  CrowdPose it counts only v=2 joints), not a count over the keypoints. A missing ``iscrowd`` is 0.
* Detections whose keypoint scores (every third value) are all <= 0 are dropped before anything else.
* Per image, detections are sorted by score (stable) and only the top 20 are kept.
* OKS scale is ``bbox_h * bbox_w * 0.53`` of the GT box, never ``area`` (``use_area=False``); OKS
  averages over GT joints with v > 0, and for a GT with no such joint it uses the distance to the GT box
  enlarged to 3x (the COCO rule).
* Matching is the COCO greedy one: ignored GT are sorted last, a crowd GT can absorb any number of
  detections, and detections matched to an ignored GT are ignored. The GT "area" range check uses
  ``0.53 * w * h``; the detection one uses ``bbox w*h`` when the *first* result has a non-empty ``bbox``
  and the keypoint extent otherwise (``loadRes``).
* AP/AR average the entries > -1 (``-1`` when there are none). The easy/medium/hard AP re-run the
  accumulation on each image subset and average *all* precision entries (so -1 for a subset without
  non-ignored GT), rounded to 4 decimals with ``np.round``.

Sums are taken in the same order as xtcocotools so every number matches to the last bit.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np
from pycocotools.coco import COCO

IOU_THRESHOLDS: np.ndarray = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS: np.ndarray = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = 20
AREA_RANGE_ALL = (0.0**2, 1e5**2)
BBOX_AREA_FACTOR = 0.53
EASY_BELOW = 0.2
HARD_FROM = 0.8

STAT_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "AP_easy", "AP_medium", "AP_hard")


@dataclass(frozen=True)
class ImageEval:
    """Greedy matching of one (image, category).

    Attributes:
        dt_scores: (D,) scores of the kept detections, highest first.
        dt_matched: (T, D) bool, detection matched to some GT at each OKS threshold.
        dt_ignore: (T, D) bool, detection ignored (matched to an ignored GT, or unmatched and out of area range).
        gt_ignore: (G,) bool, GT ignored (crowd, ``num_keypoints == 0`` or out of area range).
    """

    dt_scores: np.ndarray
    dt_matched: np.ndarray
    dt_ignore: np.ndarray
    gt_ignore: np.ndarray


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))


def check_crowdpose_gt(gt: COCO, gt_name: str) -> None:
    """Raise ``ValueError`` naming ``gt_name`` and the image id for a missing or non-numeric ``crowdIndex``."""
    for img in gt.dataset.get("images", []):
        img_id = img.get("id")
        if "crowdIndex" not in img:
            raise ValueError(
                f"{gt_name}: image {img_id} has no 'crowdIndex' (required by the CrowdPose protocol)"
            )
        if not _is_number(img["crowdIndex"]):
            raise ValueError(f"{gt_name}: image {img_id} has a non-numeric crowdIndex {img['crowdIndex']!r}")


def crowd_index_split(gt: COCO) -> tuple[list[Hashable], list[Hashable], list[Hashable]]:
    """Image ids split by ``crowdIndex``: easy < 0.2 <= medium < 0.8 <= hard (GT ``images`` order)."""
    easy: list[Hashable] = []
    medium: list[Hashable] = []
    hard: list[Hashable] = []
    for img in gt.dataset["images"]:
        if img["crowdIndex"] < EASY_BELOW:
            easy.append(img["id"])
        elif img["crowdIndex"] < HARD_FROM:
            medium.append(img["id"])
        else:
            hard.append(img["id"])
    return easy, medium, hard


def detection_areas(results: Sequence[dict]) -> list[float]:
    """Area of each result as ``loadRes`` sets it: bbox w*h if the first result has a non-empty bbox,
    otherwise the extent of the keypoints (x and y of every joint, whatever its score)."""
    if not results:
        return []
    if "bbox" in results[0] and results[0]["bbox"] != []:
        return [r["bbox"][2] * r["bbox"][3] for r in results]
    areas = []
    for r in results:
        x, y = r["keypoints"][0::3], r["keypoints"][1::3]
        areas.append((np.max(x) - np.min(x)) * (np.max(y) - np.min(y)))
    return areas


def compute_oks(gts: Sequence[dict], dt_kpts: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """OKS of every detection against every GT, xtcocotools ``computeOks`` with ``use_area=False``.

    Args:
        gts: G GT annotations (``keypoints`` of length 3K, ``bbox``).
        dt_kpts: (D, K, 3) detections, already sorted by score and truncated.
        sigmas: (K,) per-joint sigmas.

    Returns:
        (D, G) float64 OKS matrix (``(0,)``-shaped when D or G is 0, as xtcocotools returns ``[]``).
    """
    if len(gts) == 0 or len(dt_kpts) == 0:
        return np.zeros((0,))
    variances = (sigmas * 2) ** 2
    xd, yd = dt_kpts[:, :, 0], dt_kpts[:, :, 1]
    ious = np.zeros((len(dt_kpts), len(gts)))
    for j, gt in enumerate(gts):
        g = np.asarray(gt["keypoints"], dtype=np.float64)
        xg, yg, vg = g[0::3], g[1::3], g[2::3]
        visible = vg > 0
        bb = gt["bbox"]
        if np.count_nonzero(visible) > 0:
            dx = xd - xg
            dy = yd - yg
        else:
            x0, x1 = bb[0] - bb[2], bb[0] + bb[2] * 2
            y0, y1 = bb[1] - bb[3], bb[1] + bb[3] * 2
            dx = np.maximum(0.0, x0 - xd) + np.maximum(0.0, xd - x1)
            dy = np.maximum(0.0, y0 - yd) + np.maximum(0.0, yd - y1)
        area = bb[3] * bb[2] * BBOX_AREA_FACTOR
        e = (dx**2 + dy**2) / variances / (area + np.spacing(1)) / 2
        if np.count_nonzero(visible) > 0:
            e = e[:, visible]
        terms = np.exp(-e)
        # One 1-D sum per row: numpy sums a 2-D array along axis 1 in a different order.
        ious[:, j] = [np.sum(row) / e.shape[1] for row in terms]
    return ious


def evaluate_image(
    gts: Sequence[dict], dts: Sequence[dict], sigmas: np.ndarray, max_dets: int = MAX_DETS
) -> ImageEval | None:
    """Match the detections of one (image, category) to its GT (xtcocotools ``evaluateImg``, area "all").

    Args:
        gts: GT annotations with ``keypoints``, ``bbox``, ``num_keypoints``, optional ``iscrowd``.
        dts: detections with ``keypoints`` (3K floats), ``score`` and ``_area`` (loadRes area).
        sigmas: (K,) OKS sigmas.
        max_dets: detections kept per image, highest score first.

    Returns:
        The matching, or None when the image has neither GT nor detections.
    """
    if len(gts) == 0 and len(dts) == 0:
        return None
    order = np.argsort([-d["score"] for d in dts], kind="mergesort")[:max_dets]
    dts = [dts[i] for i in order]
    k = len(sigmas)
    dt_kpts = np.asarray([d["keypoints"] for d in dts], dtype=np.float64).reshape(len(dts), k, 3)
    ious = compute_oks(gts, dt_kpts, sigmas)

    lo, hi = AREA_RANGE_ALL
    ignore = []
    for g in gts:
        base = bool(g.get("iscrowd", 0)) or g["num_keypoints"] == 0
        area = g["bbox"][2] * g["bbox"][3] * BBOX_AREA_FACTOR
        ignore.append(1 if base or area < lo or area > hi else 0)
    gt_order = np.argsort(ignore, kind="mergesort")
    gt_ignore = [ignore[i] for i in gt_order]
    iscrowd = [int(gts[i].get("iscrowd", 0)) for i in gt_order]

    n_thr, n_gt, n_dt = len(IOU_THRESHOLDS), len(gts), len(dts)
    dt_matched = np.zeros((n_thr, n_dt), dtype=bool)
    dt_ignore = np.zeros((n_thr, n_dt), dtype=bool)
    if len(ious):
        oks = ious[:, gt_order].tolist()
        for tind, t in enumerate(IOU_THRESHOLDS.tolist()):
            gt_taken = [False] * n_gt
            for dind in range(n_dt):
                best = min(t, 1 - 1e-10)
                m = -1
                for gind in range(n_gt):
                    if gt_taken[gind] and not iscrowd[gind]:
                        continue
                    # matched to a regular GT and reached the ignored ones (sorted last): stop
                    if m > -1 and gt_ignore[m] == 0 and gt_ignore[gind] == 1:
                        break
                    if oks[dind][gind] < best:
                        continue
                    best = oks[dind][gind]
                    m = gind
                if m == -1:
                    continue
                dt_ignore[tind, dind] = bool(gt_ignore[m])
                dt_matched[tind, dind] = True
                gt_taken[m] = True
    out_of_range = np.array([d["_area"] < lo or d["_area"] > hi for d in dts], dtype=bool).reshape(1, n_dt)
    dt_ignore = dt_ignore | (~dt_matched & out_of_range)
    return ImageEval(
        dt_scores=np.asarray([d["score"] for d in dts], dtype=np.float64),
        dt_matched=dt_matched,
        dt_ignore=dt_ignore,
        gt_ignore=np.asarray(gt_ignore, dtype=bool),
    )


def accumulate(evals: Sequence[Sequence[ImageEval | None]]) -> tuple[np.ndarray, np.ndarray]:
    """Precision/recall curves (xtcocotools ``accumulate`` for area "all", maxDets 20).

    Args:
        evals: per category, the per-image matchings in ascending image-id order.

    Returns:
        precision (T, R, C) and recall (T, C), -1 where a category has no non-ignored GT.
    """
    n_thr, n_rec, n_cat = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(evals)
    precision = -np.ones((n_thr, n_rec, n_cat))
    recall = -np.ones((n_thr, n_cat))
    for c, per_image in enumerate(evals):
        found = [e for e in per_image if e is not None]
        if not found:
            continue
        scores = np.concatenate([e.dt_scores[:MAX_DETS] for e in found])
        inds = np.argsort(-scores, kind="mergesort")
        matched = np.concatenate([e.dt_matched[:, :MAX_DETS] for e in found], axis=1)[:, inds]
        dt_ignore = np.concatenate([e.dt_ignore[:, :MAX_DETS] for e in found], axis=1)[:, inds]
        gt_ignore = np.concatenate([e.gt_ignore for e in found])
        npig = np.count_nonzero(gt_ignore == 0)
        if npig == 0:
            continue
        tp_sum = np.cumsum(matched & ~dt_ignore, axis=1).astype(np.float64)
        fp_sum = np.cumsum(~matched & ~dt_ignore, axis=1).astype(np.float64)
        nd = tp_sum.shape[1]
        for t in range(n_thr):
            tp, fp = tp_sum[t], fp_sum[t]
            rc = tp / npig
            pr = tp / (fp + tp + np.spacing(1))
            recall[t, c] = rc[-1] if nd else 0
            pr = np.maximum.accumulate(pr[::-1])[::-1]  # precision envelope
            idx = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
            q = np.zeros((n_rec,))
            ok = idx < nd
            q[ok] = pr[idx[ok]]
            precision[t, :, c] = q
    return precision, recall


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return -1.0 if valid.size == 0 else float(np.mean(valid))


def _select_thr(values: np.ndarray, iou_thr: float | None) -> np.ndarray:
    if iou_thr is None:
        return values
    return values[np.where(iou_thr == IOU_THRESHOLDS)[0]]


def evaluate_crowdpose(
    gt: COCO, results: Sequence[dict], sigmas: np.ndarray, gt_name: str, image_ids: Sequence[int] | None = None
) -> dict[str, float]:
    """CrowdPose protocol stats, equal to xtcocotools' ``keypoints_crowd`` ``stats``.

    Args:
        gt: ground truth (CrowdPose format: ``crowdIndex`` per image, ``num_keypoints`` and ``bbox`` per
            annotation; ``area`` and ``segmentation`` are not needed).
        results: validated result dicts (``image_id``, ``category_id``, ``keypoints`` 3K floats, ``score``,
            optional ``bbox``).
        sigmas: (K,) OKS sigmas.
        gt_name: GT file name for error messages.
        image_ids: evaluate these images only (default: all of the GT's).

    Returns:
        ``{name: value}`` for :data:`STAT_NAMES`, in that order.
    """
    check_crowdpose_gt(gt, gt_name)
    sigmas = np.asarray(sigmas, dtype=np.float64)
    cat_ids = sorted(gt.getCatIds())
    img_ids = sorted(gt.getImgIds() if image_ids is None else set(image_ids))
    cat_set, img_set = set(cat_ids), set(img_ids)

    gts: dict[tuple, list[dict]] = defaultdict(list)
    for ann in gt.dataset["annotations"]:
        if ann["category_id"] in cat_set and ann["image_id"] in img_set:
            gts[ann["image_id"], ann["category_id"]].append(ann)
    dts: dict[tuple, list[dict]] = defaultdict(list)
    for res, area in zip(results, detection_areas(results)):
        if res["category_id"] not in cat_set or res["image_id"] not in img_set:
            continue
        if not any(v > 0 for v in res["keypoints"][2::3]):
            continue  # xtcocotools drops detections without any positive keypoint score
        dts[res["image_id"], res["category_id"]].append({**res, "_area": area})

    per_image = {
        (img, cat): evaluate_image(gts[img, cat], dts[img, cat], sigmas) for cat in cat_ids for img in img_ids
    }

    def curves(images: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray]:
        ordered = sorted(set(images))
        return accumulate([[per_image[img, cat] for img in ordered] for cat in cat_ids])

    precision, recall = curves(img_ids)
    stats = {
        "AP": _mean_valid(precision),
        "AP50": _mean_valid(_select_thr(precision, 0.5)),
        "AP75": _mean_valid(_select_thr(precision, 0.75)),
        "AR": _mean_valid(recall),
        "AR50": _mean_valid(_select_thr(recall, 0.5)),
        "AR75": _mean_valid(_select_thr(recall, 0.75)),
    }
    for name, images in zip(("AP_easy", "AP_medium", "AP_hard"), crowd_index_split(gt)):
        subset_precision, _ = curves([i for i in images if i in img_set])
        stats[name] = float(np.round(np.mean(subset_precision), 4))
    return stats
