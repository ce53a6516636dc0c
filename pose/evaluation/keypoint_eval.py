"""COCO-style keypoint evaluation: loading GT and results, validating them, and computing AP/AR.

COCO and custom datasets use pycocotools' ``COCOeval(gt, dt, "keypoints")`` with the dataset's OKS
sigmas, so the numbers are pycocotools' own. ``meta.name == "crowdpose"`` selects the CrowdPose protocol
(:mod:`pose.evaluation.crowdpose_eval`, equal to xtcocotools' ``keypoints_crowd``).

A result is a dict ``{"image_id", "category_id", "keypoints": 3K floats (x, y, score per joint), "score",
"bbox" (optional)}``; K always comes from the :class:`~pose.metainfo.DatasetMeta`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from collections.abc import Iterator, Sequence
from numbers import Real
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from pose.evaluation.crowdpose_eval import STAT_NAMES as CROWDPOSE_STAT_NAMES
from pose.evaluation.crowdpose_eval import evaluate_crowdpose
from pose.metainfo import DatasetMeta

COCO_STAT_NAMES: tuple[str, ...] = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

_IN_MEMORY_GT = "<in-memory ground truth>"
_IN_MEMORY_RESULTS = "<in-memory results>"

# name -> (title, kind, IoU label, "area"/"type", range label), as the pycocotools / xtcocotools summaries print
_SUMMARY_ROWS: dict[str, tuple[str, str, str, str, str]] = {
    "AP": ("Average Precision", "(AP)", "0.50:0.95", "area", "all"),
    "AP50": ("Average Precision", "(AP)", "0.50", "area", "all"),
    "AP75": ("Average Precision", "(AP)", "0.75", "area", "all"),
    "APm": ("Average Precision", "(AP)", "0.50:0.95", "area", "medium"),
    "APl": ("Average Precision", "(AP)", "0.50:0.95", "area", "large"),
    "AR": ("Average Recall", "(AR)", "0.50:0.95", "area", "all"),
    "AR50": ("Average Recall", "(AR)", "0.50", "area", "all"),
    "AR75": ("Average Recall", "(AR)", "0.75", "area", "all"),
    "ARm": ("Average Recall", "(AR)", "0.50:0.95", "area", "medium"),
    "ARl": ("Average Recall", "(AR)", "0.50:0.95", "area", "large"),
    "AP_easy": ("Average Precision", "(AP)", "0.50:0.95", "type", "easy"),
    "AP_medium": ("Average Precision", "(AP)", "0.50:0.95", "type", "medium"),
    "AP_hard": ("Average Precision", "(AP)", "0.50:0.95", "type", "hard"),
}
_MAX_DETS = 20


def is_crowdpose(meta: DatasetMeta) -> bool:
    """Whether ``meta`` selects the CrowdPose protocol."""
    return meta.name == "crowdpose"


def stat_names(meta: DatasetMeta) -> tuple[str, ...]:
    """Keys of :func:`evaluate_keypoints`' result for this dataset, in order."""
    return CROWDPOSE_STAT_NAMES if is_crowdpose(meta) else COCO_STAT_NAMES


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    if verbose:
        yield
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            yield


def _read_json(path: Path, what: str) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: malformed JSON ({e})") from None


def gt_source(gt: COCO) -> str:
    """The file a GT object was loaded from by :func:`load_gt` (a placeholder for other COCO objects)."""
    return getattr(gt, "source", _IN_MEMORY_GT)


def load_gt(path: str | Path, meta: DatasetMeta | None = None) -> COCO:
    """Load a COCO-format keypoint GT file into a pycocotools ``COCO`` (quietly).

    With ``meta`` = AI Challenger, a native AIC annotation file (a JSON list) is converted on the way in
    (:func:`pose.data.aic.aic_to_coco`).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: malformed JSON, or no ``images`` / ``annotations`` / ``categories`` list, or an
            image / annotation without the ids pycocotools indexes by (the message names the file).
    """
    path = Path(path)
    data = _read_json(path, "ground-truth")
    if isinstance(data, list) and meta is not None and meta.name == "aic":
        from pose.data.aic import aic_to_coco

        data = aic_to_coco(data, path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a COCO JSON object, got {type(data).__name__}")  # noqa: TRY004
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"{path}: missing '{key}' (not a COCO keypoint ground-truth file)")
        if not isinstance(data[key], list):
            raise ValueError(f"{path}: '{key}' is not a list but {type(data[key]).__name__}")  # noqa: TRY004
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img:
            raise ValueError(f"{path}: images[{i}] has no 'id'")
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise ValueError(f"{path}: annotations[{i}] is not an object")  # noqa: TRY004
        for key in ("id", "image_id", "category_id"):
            if key not in ann:
                raise ValueError(f"{path}: annotations[{i}] (image {ann.get('image_id')}) has no '{key}'")
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat:
            raise ValueError(f"{path}: categories[{i}] has no 'id'")
    coco = COCO()
    coco.dataset = data
    with _quiet(False):
        coco.createIndex()
    coco.source = str(path)
    return coco


def _check_gt_annotations(gt: COCO, meta: DatasetMeta, required: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the GT file and ids for an annotation the evaluator would choke on."""
    name, k = gt_source(gt), meta.num_keypoints
    for ann in gt.dataset["annotations"]:
        where = f"{name}: annotation {ann['id']} (image {ann['image_id']})"
        for key in required:
            if key not in ann:
                raise ValueError(f"{where} has no '{key}'")
        if len(ann["keypoints"]) != 3 * k:
            raise ValueError(
                f"{where}: {len(ann['keypoints'])} keypoint values, expected {3 * k} for '{meta.name}' (K={k})"
            )
        if len(ann["bbox"]) != 4:
            raise ValueError(f"{where}: bbox must have 4 values, got {len(ann['bbox'])}")


def _plain_id(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _known(key: object, index: dict) -> bool:
    if isinstance(key, bool):
        return False
    try:
        return key in index
    except TypeError:  # unhashable
        return False


def _finite_number(value: object) -> bool:
    value = _plain_id(value)
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _validate_result(rec: object, i: int, name: str, gt: COCO, k: int) -> dict:
    if not isinstance(rec, dict):
        raise ValueError(f"{name}: result #{i} is not an object")  # noqa: TRY004
    img_id = _plain_id(rec.get("image_id"))
    where = f"{name}: result #{i} (image_id {img_id!r})"
    for key in ("image_id", "category_id", "keypoints", "score"):
        if key not in rec:
            raise ValueError(f"{where} has no '{key}'")
    if not _known(img_id, gt.imgs):
        raise ValueError(f"{where}: image_id is not an image of the ground truth")
    cat_id = _plain_id(rec["category_id"])
    if not _known(cat_id, gt.cats):
        raise ValueError(f"{where}: category_id {cat_id!r} is not a category of the ground truth")
    try:
        kpts = np.asarray(rec["keypoints"], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: keypoints are not numbers") from None
    if kpts.shape not in ((3 * k,), (k, 3)):
        raise ValueError(f"{where}: keypoints have shape {kpts.shape}, expected {3 * k} values (K={k})")
    if not np.isfinite(kpts).all():
        raise ValueError(f"{where}: keypoints contain NaN or inf")
    if not _finite_number(rec["score"]):
        raise ValueError(f"{where}: score {rec['score']!r} is not a finite number")
    out = {
        "image_id": img_id,
        "category_id": cat_id,
        "keypoints": kpts.reshape(-1).tolist(),
        "score": float(_plain_id(rec["score"])),
    }
    if "bbox" in rec:
        bbox = rec["bbox"]
        bbox = bbox.tolist() if isinstance(bbox, np.ndarray) else bbox
        if not isinstance(bbox, (list, tuple)) or (len(bbox) not in (0, 4)):
            raise ValueError(f"{where}: bbox must be [x, y, w, h] or []")
        if not all(_finite_number(v) for v in bbox):
            raise ValueError(f"{where}: bbox values must be finite numbers")
        out["bbox"] = [float(_plain_id(v)) for v in bbox]
    return out


def load_results(results: str | Path | Sequence[dict], gt: COCO, meta: DatasetMeta) -> list[dict]:
    """Load (from a JSON file) or take a list of keypoint results and validate every record.

    Each returned record is a fresh dict with ``image_id``, ``category_id``, ``keypoints`` (flat list of
    3K floats), ``score`` (float) and ``bbox`` when given; other keys are dropped. numpy arrays and
    (K, 3) keypoints are accepted. An empty list is valid.

    Raises:
        FileNotFoundError: the results file does not exist.
        ValueError: malformed JSON, not a list, or a bad record (unknown image/category, wrong keypoint
            count, NaN/inf, missing or non-numeric score, bad bbox); the message names the file, the
            record index and its image_id.
    """
    if isinstance(results, (str, Path)):
        name = str(results)
        data = _read_json(Path(results), "results")
    else:
        name, data = _IN_MEMORY_RESULTS, results
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"{name}: results must be a list, not {type(data).__name__}")  # noqa: TRY004
    out = [_validate_result(rec, i, name, gt, meta.num_keypoints) for i, rec in enumerate(data)]
    # loadRes takes every area from bbox when the first record has one: then all records need one.
    if out and out[0].get("bbox"):
        for i, rec in enumerate(out):
            if not rec.get("bbox"):
                raise ValueError(
                    f"{name}: result #{i} (image_id {rec['image_id']!r}) has no bbox but result #0 has one; "
                    "give a bbox for every result or for none"
                )
    return out


def _results_coco(gt: COCO, results: list[dict]) -> COCO:
    """pycocotools result object; ``loadRes`` fails on an empty list, so build that one by hand."""
    if results:
        return gt.loadRes(results)
    dt = COCO()
    dt.dataset = {
        "images": list(gt.dataset["images"]),
        "categories": copy.deepcopy(gt.dataset["categories"]),
        "annotations": [],
    }
    dt.createIndex()
    return dt


def _evaluate_coco(gt: COCO, results: list[dict], meta: DatasetMeta, verbose: bool,
                   image_ids: Sequence[int] | None = None) -> dict[str, float]:
    with _quiet(verbose):
        dt = _results_coco(gt, results)
        ev = COCOeval(gt, dt, "keypoints")
        ev.params.kpt_oks_sigmas = meta.sigmas_array
        if image_ids is not None:
            ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(COCO_STAT_NAMES, ev.stats)}


def evaluate_keypoints(
    gt: str | Path | COCO, results: str | Path | Sequence[dict], meta: DatasetMeta, *, verbose: bool = False,
    image_ids: Sequence[int] | None = None,
) -> dict[str, float]:
    """AP/AR of keypoint results against a GT file.

    Args:
        gt: GT JSON path or a loaded ``COCO`` (for AI Challenger also its native annotation file).
        results: results JSON path or list of result dicts (see :func:`load_results`).
        meta: dataset metainfo: K, OKS sigmas, and the protocol (CrowdPose when ``meta.name == "crowdpose"``).
        verbose: let pycocotools print its progress and summary (CrowdPose: print :func:`format_summary`).
        image_ids: evaluate these images only (default: every image of the GT); each must be in the GT.

    Returns:
        COCO: AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl (pycocotools ``stats``, -1 where a range
        has no GT). CrowdPose: AP, AP50, AP75, AR, AR50, AR75, AP_easy, AP_medium, AP_hard. Empty results
        give 0 wherever there is GT.
    """
    gt_coco = gt if isinstance(gt, COCO) else load_gt(gt, meta)
    if image_ids is not None:
        unknown = sorted(set(image_ids) - set(gt_coco.getImgIds()))
        if unknown:
            raise ValueError(f"{gt_source(gt_coco)}: image ids {unknown[:5]} to evaluate are not in the ground truth")
    dets = load_results(results, gt_coco, meta)
    if is_crowdpose(meta):
        _check_gt_annotations(gt_coco, meta, ("keypoints", "bbox", "num_keypoints"))
        stats = evaluate_crowdpose(gt_coco, dets, meta.sigmas_array, gt_source(gt_coco), image_ids=image_ids)
        if verbose:
            print(format_summary(stats, meta))
        return stats
    _check_gt_annotations(gt_coco, meta, ("keypoints", "bbox", "area", "iscrowd", "num_keypoints"))
    return _evaluate_coco(gt_coco, dets, meta, verbose, image_ids)


def format_summary(stats: dict[str, float], meta: DatasetMeta) -> str:
    """The pycocotools-style summary lines (``Average Precision (AP) @[ IoU=0.50:0.95 | area= all |
    maxDets= 20 ] = 0.xxx``), one per stat of :func:`stat_names`; CrowdPose's split uses ``type=``."""
    lines = []
    for key in stat_names(meta):
        if key not in stats:
            raise KeyError(f"stats have no '{key}' (expected keys {list(stat_names(meta))})")
        title, kind, iou, field, label = _SUMMARY_ROWS[key]
        lines.append(
            f" {title:<18} {kind} @[ IoU={iou:<9} | {field}={label:>6s} | maxDets={_MAX_DETS:>3d} ] = {stats[key]:0.3f}"
        )
    return "\n".join(lines)
