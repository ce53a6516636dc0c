"""MPII PCKh: numbers computed by hand on tests/fixtures/mpii-mini, the standard formula, the results files and
``poselab evaluate --dataset mpii``.

The fixture (annot/valid.json + annot/gt_valid.mat, see make_gt_valid.py there) has three people:

* A: all 16 joints annotated, head box 30 x 40 px -> diagonal 50 -> reference 0.6 x 50 = 30 px:
  PCKh@0.5 accepts errors <= 15 px, PCKh@0.1 errors <= 3 px;
* B: l-ankle and r-wrist not annotated, head box 60 x 80 -> diagonal 100 -> reference 60 px: <= 30 px / <= 6 px;
* C: nothing annotated (needs no prediction).

The predictions below are the ground truth moved right by ERRORS px (so the error is exactly that number).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.io import loadmat, savemat

from pose.cli import main
from pose.data.mpii import load_mpii_gt
from pose.evaluation.pckh import PCKH_STAT_NAMES, evaluate_pckh, format_pckh_table, load_pckh_predictions

MINI = Path(__file__).resolve().parents[1] / "fixtures" / "mpii-mini" / "annot"
GT = MINI / "gt_valid.mat"
NA = 999.0  # a joint that is not annotated: its prediction is never read
#            rank rkne rhip lhip lkne lank pelv thor neck head rwri relb rsho lsho lelb lwri
ERRORS_A = [0.0, 15, 16, 2, 20, 10, 100, 0, 5, 1, 30, 14, 0, 25, 4, 2.5]
ERRORS_B = [40.0, 29, 5, 31, 0, NA, 0, 0, 50, 6.5, NA, 10, 5.5, 7, 30.5, 20]
# @0.5, A (<= 15): hits rank rkne(15, the boundary counts) lhip lank neck head relb rsho lelb lwri; misses rhip
#                   lkne rwri lsho (pelvis and thorax never count)
#       B (<= 30): hits rkne rhip lkne head relb rsho lsho lwri; misses rank lhip neck lelb
# per joint hits / annotated: rank 1/2 rkne 2/2 rhip 1/2 lhip 1/2 lkne 1/2 lank 1/1 neck 1/2 head 2/2 rwri 0/1
#                             relb 2/2 rsho 2/2 lsho 1/2 lelb 1/2 lwri 2/2
# groups average left and right: Head 1, Shoulder (1/2 + 1)/2, Elbow (1/2 + 1)/2, Wrist (1 + 0)/2,
#                                Hip (1/2 + 1/2)/2, Knee (1/2 + 1)/2, Ankle (1 + 1/2)/2
# Mean pools the 14 joints other than pelvis and thorax (upper neck included): 18 hits / 26 annotated
EXPECTED_05 = {"PCKh_Head": 1.0, "PCKh_Shoulder": 0.75, "PCKh_Elbow": 0.75, "PCKh_Wrist": 0.5, "PCKh_Hip": 0.5,
               "PCKh_Knee": 0.75, "PCKh_Ankle": 0.75, "PCKh": 18 / 26}
# @0.1, A (<= 3): hits rank lhip head rsho lwri(2.5); B (<= 6): hits rhip lkne rsho(5.5); head 6.5 and lsho 7 miss
# per joint: rank 1/2 rkne 0/2 rhip 1/2 lhip 1/2 lkne 1/2 lank 0/1 neck 0/2 head 1/2 rwri 0/1 relb 0/2 rsho 2/2
#            lsho 0/2 lelb 0/2 lwri 1/2 -> 8 hits / 26
EXPECTED_01 = {"PCKh_0.1_Head": 0.5, "PCKh_0.1_Shoulder": 0.5, "PCKh_0.1_Elbow": 0.0, "PCKh_0.1_Wrist": 0.25,
               "PCKh_0.1_Hip": 0.5, "PCKh_0.1_Knee": 0.25, "PCKh_0.1_Ankle": 0.25, "PCKh_0.1": 8 / 26}


@pytest.fixture(scope="module")
def gt():
    return load_mpii_gt(GT)


def _predictions(gt) -> np.ndarray:
    """(3, 16, 2) 0-based: A and B moved right by their errors, C all NaN (no prediction)."""
    preds = gt.joints.copy()
    preds[0, :, 0] += ERRORS_A
    preds[1, :, 0] += ERRORS_B
    preds[2] = np.nan
    return preds


def _reference_pckh(preds_1based: np.ndarray, mat: dict, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The standard MPII evaluation as the SimpleBaseline / HRNet mpii.py runs it (its array layout: joints x
    xy x people), restated here: per-joint PCKh in percent and the joint counts."""
    jnt_visible = 1 - mat["jnt_missing"]
    uv_err = np.linalg.norm(np.transpose(preds_1based, [1, 2, 0]) - mat["pos_gt_src"], axis=1)
    headsizes = np.linalg.norm(mat["headboxes_src"][1] - mat["headboxes_src"][0], axis=0) * 0.6
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.divide(uv_err, headsizes * np.ones((len(uv_err), 1))) * jnt_visible
    jnt_count = jnt_visible.sum(axis=1)
    hits = ((scaled <= threshold) * jnt_visible).sum(axis=1)
    return 100.0 * hits / jnt_count, jnt_count


def test_hand_computed_pckh(gt):
    stats = evaluate_pckh(_predictions(gt), gt)
    assert list(stats) == list(PCKH_STAT_NAMES)
    for key, value in {**EXPECTED_05, **EXPECTED_01}.items():
        assert stats[key] == pytest.approx(value), key


@pytest.mark.parametrize("threshold", [0.5, 0.1])
def test_parity_with_the_standard_formula(gt, threshold):
    mat = loadmat(str(GT))
    preds = _predictions(gt)
    preds[2] = 0.0  # the original needs numbers everywhere; C has no annotated joint
    pckh, count = _reference_pckh(preds + 1.0, mat, threshold)
    keep = np.ones(16, bool)
    keep[[6, 7]] = False  # the original masks pelvis and thorax
    mean = np.sum(pckh[keep] * count[keep] / count[keep].sum()) / 100
    ours = evaluate_pckh(preds, gt, thresholds=(threshold,))
    prefix = "PCKh" if threshold == 0.5 else "PCKh_0.1"
    assert ours[prefix] == pytest.approx(mean)
    assert ours[f"{prefix}_Head"] == pytest.approx(pckh[9] / 100)
    assert ours[f"{prefix}_Wrist"] == pytest.approx((pckh[10] + pckh[15]) / 200)
    assert ours[f"{prefix}_Knee"] == pytest.approx((pckh[1] + pckh[4]) / 200)


def test_perfect_predictions_and_the_table(gt):
    stats = evaluate_pckh(np.nan_to_num(gt.joints), gt)
    assert all(v == 1.0 for v in stats.values())
    table = format_pckh_table(stats)
    assert table.splitlines()[0].split() == ["PCKh", "Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle",
                                             "Mean"]
    assert table.splitlines()[1].split() == ["@0.5"] + ["100.0"] * 8
    assert table.splitlines()[2].split()[0] == "@0.1"


def _write_json(tmp_path: Path, preds: np.ndarray, skip: tuple[int, ...] = (2,)) -> Path:
    path = tmp_path / "preds.json"
    path.write_text(json.dumps([
        {"index": i, "keypoints": np.concatenate([p, np.ones((16, 1))], axis=1).reshape(-1).tolist()}
        for i, p in enumerate(preds) if i not in skip]))
    return path


def test_results_files_json_and_pred_mat(gt, tmp_path):
    preds = _predictions(gt)
    from_json = load_pckh_predictions(_write_json(tmp_path, preds), gt)
    np.testing.assert_allclose(from_json[:2], preds[:2])
    assert np.isnan(from_json[2]).all()
    mat = tmp_path / "pred.mat"
    savemat(str(mat), {"preds": np.nan_to_num(preds) + 1.0})  # SimpleBaseline's pred.mat is 1-based
    np.testing.assert_allclose(load_pckh_predictions(mat, gt)[:2], preds[:2])


def test_bad_results_name_the_file_and_the_result(gt, tmp_path):
    preds = _predictions(gt)
    path = _write_json(tmp_path, preds, skip=(1, 2))
    with pytest.raises(ValueError, match=rf"^{path}: no prediction for record 1 of .*gt_valid.mat"):
        load_pckh_predictions(path, gt)
    path.write_text(json.dumps([{"index": 3, "keypoints": [0] * 48}]))
    with pytest.raises(ValueError, match=rf"^{path}: result #0: index 3 is not a record of .*gt_valid.mat \(0..2\)"):
        load_pckh_predictions(path, gt)
    path.write_text(json.dumps([{"index": 0, "keypoints": [0] * 48}, {"index": 0, "keypoints": [0] * 48}]))
    with pytest.raises(ValueError, match=r"result #1: record 0 has a second prediction"):
        load_pckh_predictions(path, gt)
    path.write_text(json.dumps([{"index": 0, "keypoints": [0] * 45}]))
    with pytest.raises(ValueError, match=r"result #0 \(record 0\): 45 keypoint values, expected 48"):
        load_pckh_predictions(path, gt)
    mat = tmp_path / "pred.mat"
    savemat(str(mat), {"preds": np.zeros((2, 16, 2))})
    with pytest.raises(ValueError, match=r"preds has shape \(2, 16, 2\), expected \(3, 16, 2 or 3\)"):
        load_pckh_predictions(mat, gt)


def test_evaluate_command_mpii_json_last_line(gt, tmp_path, capsys):
    results = _write_json(tmp_path, _predictions(gt))
    assert main(["evaluate", "--dataset", "mpii", "--gt", str(GT), "--results", str(results), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    stats = json.loads(lines[-1])
    assert stats["PCKh"] == pytest.approx(18 / 26) and stats["PCKh_0.1"] == pytest.approx(8 / 26)
    assert lines[0].split()[:2] == ["PCKh", "Head"]
    assert lines[1].split() == ["@0.5", "100.0", "75.0", "75.0", "50.0", "50.0", "75.0", "75.0", "69.2"]
    assert lines[2].split() == ["@0.1", "50.0", "50.0", "0.0", "25.0", "50.0", "25.0", "25.0", "30.8"]


def test_evaluate_command_mpii_errors_are_one_line(tmp_path, capsys):
    results = tmp_path / "r.json"
    results.write_text("[]")
    assert main(["evaluate", "--dataset", "mpii", "--gt", str(MINI / "valid.json"), "--results", str(results)]) == 2
    assert "gt_valid.mat" in capsys.readouterr().err
    assert main(["evaluate", "--dataset", "mpii", "--gt", str(tmp_path / "gt_x.mat"), "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert "MPII head-box file not found" in err and "Traceback" not in err
    assert main(["evaluate", "--dataset", "mpii", "--gt", str(GT), "--results", str(results)]) == 2
    assert "no prediction for record 0" in capsys.readouterr().err
