"""AI Challenger OKS AP (pycocotools with AIC's sigmas) on tests/fixtures/aic-mini, in both layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pose.cli import main
from pose.evaluation.keypoint_eval import evaluate_keypoints, load_gt
from pose.metainfo import AIC, COCO, DatasetMeta

MINI = Path(__file__).resolve().parents[1] / "fixtures" / "aic-mini"
NATIVE = MINI / "keypoint_validation_annotation.json"
CONVERTED = MINI / "aic_val.json"


def _gt_as_results(shift: float = 0.0) -> list[dict]:
    """Every labeled person of the fixture as a result (score 1), keypoints moved right by ``shift`` px."""
    data = json.loads(CONVERTED.read_text())
    out = []
    for ann in data["annotations"]:
        if ann["num_keypoints"] == 0:
            continue
        kps = list(ann["keypoints"])
        for j in range(14):
            kps[3 * j] += shift
            kps[3 * j + 2] = 1.0
        out.append({"image_id": ann["image_id"], "category_id": 1, "keypoints": kps, "score": 1.0})
    return out


@pytest.mark.parametrize("gt", [NATIVE, CONVERTED], ids=["native", "converted"])
def test_ground_truth_as_results_gives_ap_1(gt):
    stats = evaluate_keypoints(gt, _gt_as_results(), AIC)
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)


def test_the_native_layout_is_converted_only_for_aic():
    assert len(load_gt(NATIVE, AIC).dataset["annotations"]) == 3
    with pytest.raises(ValueError, match="expected a COCO JSON object, got list"):
        load_gt(NATIVE, COCO)


def test_aic_sigmas_are_the_ones_used():
    """A 4 px shift on people ~200-400 px tall: AIC's sigmas (about 1/5 of COCO's) cost far more AP than the
    same keypoints with COCO-like sigmas would."""
    shifted = _gt_as_results(shift=4.0)
    aic = evaluate_keypoints(CONVERTED, shifted, AIC)["AP"]
    loose = DatasetMeta.from_dict({**AIC.to_dict(), "name": "aic-loose", "sigmas": [0.079] * 14})
    assert evaluate_keypoints(CONVERTED, shifted, loose)["AP"] == pytest.approx(1.0)
    assert aic < 0.9


def test_evaluate_command_aic_json_last_line(tmp_path, capsys):
    results = tmp_path / "res.json"
    results.write_text(json.dumps(_gt_as_results()))
    assert main(["evaluate", "--dataset", "aic", "--gt", str(NATIVE), "--results", str(results), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1])["AP"] == pytest.approx(1.0)
    assert any("Average Precision" in line for line in lines[:-1])
