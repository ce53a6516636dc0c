"""PCKh on MPII: the standard MPII evaluation (as the SimpleBaseline / HRNet ``mpii.py evaluate`` runs it).

A joint is correct when ``|prediction - ground truth| <= threshold x 0.6 x head-box diagonal`` (the
head box of ``gt_valid.mat``); only annotated joints count (``jnt_missing == 0``). Per joint j,
``PCKh_j = correct_j / annotated_j``. The table averages left and right (Shoulder, Elbow, Wrist, Hip,
Knee, Ankle; Head is the head top) and ``Mean`` weights every joint by its annotated count, pelvis and
thorax excluded (so Mean = correct / annotated over the other 14 joints, upper neck included).

Statistics are fractions in [0, 1] like COCO AP (the table and ``poselab table`` show them x100):
``PCKh`` (Mean at 0.5), ``PCKh_0.1`` (Mean at 0.1), ``PCKh_<Group>`` and ``PCKh_0.1_<Group>`` (MLflow
metric names cannot hold ``@``). A group or mean without an annotated joint is -1, as COCO's statistics
are where a range has no ground truth. Differences from the original script, on purpose: its
``Mean@0.1`` reads row 11 of ``arange(0, 0.51, 0.01)``, i.e. a threshold of 0.11; here 0.1 is 0.1. A
joint nobody annotated makes the original's numbers NaN; here it drops out of the mean.

Predictions come as a (N, 16, 2) array, 0-based, row i for record i of ``annot/valid.json`` (= column i of
``gt_valid.mat``), or as a file (:func:`load_pckh_predictions`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pose.data.mpii import NUM_JOINTS, MPIIGroundTruth, load_mpii_gt
from pose.metainfo import MPII

SC_BIAS = 0.6
"""PCKh's reference length is 0.6 x the head-box diagonal (the MPII toolkit's ``SC_BIAS``)."""
THRESHOLDS: tuple[float, ...] = (0.5, 0.1)
GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("Head", (MPII.index("head_top"),)),
    ("Shoulder", (MPII.index("left_shoulder"), MPII.index("right_shoulder"))),
    ("Elbow", (MPII.index("left_elbow"), MPII.index("right_elbow"))),
    ("Wrist", (MPII.index("left_wrist"), MPII.index("right_wrist"))),
    ("Hip", (MPII.index("left_hip"), MPII.index("right_hip"))),
    ("Knee", (MPII.index("left_knee"), MPII.index("right_knee"))),
    ("Ankle", (MPII.index("left_ankle"), MPII.index("right_ankle"))),
)
EXCLUDED_FROM_MEAN: tuple[int, ...] = (MPII.index("pelvis"), MPII.index("thorax"))


def _prefix(threshold: float) -> str:
    return "PCKh" if threshold == 0.5 else f"PCKh_{threshold:g}"


PCKH_STAT_NAMES: tuple[str, ...] = tuple(
    name for t in THRESHOLDS for name in (_prefix(t), *(f"{_prefix(t)}_{g}" for g, _ in GROUPS)))
"""Keys of :func:`evaluate_pckh`'s result, in order: ``PCKh``, ``PCKh_Head`` ... ``PCKh_Ankle``, then the same
at 0.1 (``PCKh_0.1``, ``PCKh_0.1_Head``, ...)."""


def joint_hits(predictions: np.ndarray, gt: MPIIGroundTruth, threshold: float) -> np.ndarray:
    """(N, 16) bool: annotated joints whose error is at most ``threshold x 0.6 x`` the head diagonal.

    Args:
        predictions: (N, 16, 2) 0-based image coordinates, row i for ground-truth record i.
        gt: the ground truth (:func:`pose.data.mpii.load_mpii_gt`).
        threshold: the fraction of the reference length (0.5 for PCKh@0.5).
    """
    err = np.linalg.norm(np.asarray(predictions, dtype=np.float64) - gt.joints, axis=2)
    ref = SC_BIAS * gt.head_sizes
    with np.errstate(invalid="ignore", divide="ignore"):
        hit = err / ref[:, None] <= threshold  # divided first, as the original: the same rounding at the boundary
    return hit & gt.visible


def _rate(hits: np.ndarray, counts: np.ndarray) -> float:
    total = counts.sum()
    return float(hits.sum() / total) if total > 0 else -1.0


def evaluate_pckh(predictions: np.ndarray, gt: MPIIGroundTruth,
                  thresholds: tuple[float, ...] = THRESHOLDS) -> dict[str, float]:
    """PCKh statistics (fractions in [0, 1], -1 without annotated joints), keys :data:`PCKH_STAT_NAMES`.

    Args:
        predictions: (N, 16, 2) 0-based image coordinates, one row per ground-truth record; rows of records
            without annotated joints are not read (they may be NaN).
        gt: the ground truth of the same N records.
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.shape != (len(gt), NUM_JOINTS, 2):
        raise ValueError(f"predictions have shape {predictions.shape}, expected ({len(gt)}, {NUM_JOINTS}, 2) "
                         f"for the {len(gt)} records of {gt.source}")
    counts = gt.visible.sum(axis=0)
    mean_joints = [j for j in range(NUM_JOINTS) if j not in EXCLUDED_FROM_MEAN]
    stats: dict[str, float] = {}
    for t in thresholds:
        hits = joint_hits(predictions, gt, t).sum(axis=0)
        prefix = _prefix(t)
        stats[prefix] = _rate(hits[mean_joints], counts[mean_joints])
        for group, joints in GROUPS:
            rates = [hits[j] / counts[j] for j in joints if counts[j] > 0]
            stats[f"{prefix}_{group}"] = float(np.mean(rates)) if rates else -1.0
    return stats


def _from_records(data: list, n: int, name: str, gt: MPIIGroundTruth) -> np.ndarray:
    """poselab's JSON results: a list of {"index": record, "keypoints": 16 x (x, y[, score])}, 0-based."""
    preds = np.full((n, NUM_JOINTS, 2), np.nan)
    for k, rec in enumerate(data):
        if not isinstance(rec, dict) or "index" not in rec or "keypoints" not in rec:
            raise ValueError(f"{name}: result #{k} needs 'index' (the record of {gt.source}) and 'keypoints'")
        i = rec["index"]
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < n:
            raise ValueError(f"{name}: result #{k}: index {i!r} is not a record of {gt.source} (0..{n - 1})")
        if not np.isnan(preds[i]).all():
            raise ValueError(f"{name}: result #{k}: record {i} has a second prediction")
        try:
            kps = np.asarray(rec["keypoints"], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: result #{k} (record {i}): keypoints are not numbers") from None
        if kps.size in (2 * NUM_JOINTS, 3 * NUM_JOINTS):
            kps = kps.reshape(NUM_JOINTS, -1)
        else:
            raise ValueError(f"{name}: result #{k} (record {i}): {kps.size} keypoint values, expected "
                             f"{3 * NUM_JOINTS} (16 x (x, y, score)) or {2 * NUM_JOINTS}")
        if not np.isfinite(kps).all():
            raise ValueError(f"{name}: result #{k} (record {i}): keypoints contain NaN or inf")
        preds[i] = kps[:, :2]
    return preds


def load_pckh_predictions(path: str | Path, gt: MPIIGroundTruth) -> np.ndarray:
    """(N, 16, 2) 0-based predictions for ``gt``'s records from a results file.

    * ``.json``: poselab's layout, a list of ``{"index": i, "keypoints": [x, y, score] x 16}`` in 0-based image
      coordinates, ``index`` = the record's position in ``annot/valid.json`` (= ``gt_valid.mat``'s column);
    * ``.mat``: the SimpleBaseline / HRNet ``pred.mat``, ``preds`` (N, 16, 2 or 3), 1-based.

    Every record with an annotated joint needs a prediction. Errors name the file and the result.
    """
    path, n = Path(path), len(gt)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    if path.suffix == ".mat":
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError

        try:
            mat = loadmat(str(path))
        except (MatReadError, ValueError, TypeError, OSError) as e:
            raise ValueError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {e})") from None
        if "preds" not in mat:
            raise ValueError(f"{path}: no 'preds' array (a SimpleBaseline / HRNet pred.mat has one)")
        preds = np.asarray(mat["preds"], dtype=np.float64)
        if preds.ndim != 3 or preds.shape[:2] != (n, NUM_JOINTS) or preds.shape[2] not in (2, 3):
            raise ValueError(f"{path}: preds has shape {preds.shape}, expected ({n}, {NUM_JOINTS}, 2 or 3) for the "
                             f"{n} records of {gt.source}")
        preds = preds[:, :, :2] - 1.0
    else:
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: malformed JSON ({e})") from None
        if not isinstance(data, list):
            raise ValueError(f"{path}: results must be a list, not {type(data).__name__}")  # noqa: TRY004
        preds = _from_records(data, n, str(path), gt)
    need = gt.visible.any(axis=1) & np.isnan(preds).any(axis=(1, 2))
    if need.any():
        i = int(np.flatnonzero(need)[0])
        raise ValueError(f"{path}: no prediction for record {i} of {gt.source} (it has annotated joints); "
                         f"{int(need.sum())} such record(s)")
    finite = np.isfinite(preds[gt.visible.any(axis=1)]).all()
    if not finite:
        raise ValueError(f"{path}: predictions contain NaN or inf")
    return preds


def evaluate_pckh_files(gt_file: str | Path, results_file: str | Path) -> dict[str, float]:
    """:func:`evaluate_pckh` of a results file against ``gt_valid.mat``."""
    gt = load_mpii_gt(gt_file)
    return evaluate_pckh(load_pckh_predictions(results_file, gt), gt)


def format_pckh_table(stats: dict[str, float], thresholds: tuple[float, ...] = THRESHOLDS) -> str:
    """The usual MPII table, one row per threshold, in percent (``n/a`` where there was no annotated joint)::

        PCKh    Head  Shoulder  Elbow  Wrist   Hip  Knee  Ankle  Mean
        @0.5    98.7      97.3   93.7   90.2  92.0  90.3   86.5  93.0
    """
    columns = [g for g, _ in GROUPS] + ["Mean"]
    widths = [max(len(c), 5) for c in columns]
    lines = ["PCKh  " + "  ".join(f"{c:>{w}}" for c, w in zip(columns, widths))]
    for t in thresholds:
        prefix = _prefix(t)
        values = [stats[f"{prefix}_{g}"] for g, _ in GROUPS] + [stats[prefix]]
        cells = ["n/a" if v < 0 else f"{100 * v:.1f}" for v in values]
        lines.append(f"@{t:<4g}" + " " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    return "\n".join(lines)
