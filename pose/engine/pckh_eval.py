"""The evaluation pass of MPII: top-down predictions of the validation records scored by PCKh.

:class:`PCKhEvaluator` predicts exactly as :class:`pose.engine.loop.TopDownEvaluator` (the same crops,
flip test and decoding); it scores differently: every validation instance is one record of
``annot/valid.json`` (its ``instance_id``), its 16 predicted joints go to that record's row, and
:func:`pose.evaluation.pckh.evaluate_pckh` scores the rows against the head boxes of ``gt_valid.mat``.
Results files are what ``poselab evaluate --dataset mpii`` reads: a JSON list of
``{"index": record, "keypoints": 16 x (x, y, score)}`` in 0-based image coordinates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pose.codecs.heatmap import HeatmapCodec
from pose.data.coco import PersonInstance
from pose.data.mpii import MPIIGroundTruth, load_mpii_gt
from pose.engine.loop import TopDownEvaluator
from pose.engine.predict import InstancePredictions
from pose.evaluation.pckh import evaluate_pckh
from pose.experiment import TestConfig
from pose.metainfo import DatasetMeta


class PCKhEvaluator(TopDownEvaluator):
    """Predicts every validation record, writes PCKh results files and computes PCKh.

    Args:
        meta: MPII's metainfo (flip indices).
        codec: the heatmap codec that decodes predictions.
        test: flip test settings (rescoring and OKS-NMS do not apply: one prediction per record).
        head_box_file: ``annot/gt_valid.mat``, the records' joints and head boxes.
        instances: the validation instances in dataset order (``instance_id`` = the record's index).
        ann_file: the records' file (``annot/valid.json``; named in errors).
    """

    def __init__(self, meta: DatasetMeta, codec: HeatmapCodec, test: TestConfig, head_box_file: str | Path,
                 instances: Sequence[PersonInstance], ann_file: str | Path) -> None:
        super().__init__(meta, codec, test, head_box_file)
        self.records = np.array([inst.instance_id for inst in instances], dtype=np.int64)
        self.visible = np.stack([inst.visible > 0 for inst in instances]) if instances else np.zeros((0, 0), bool)
        self.ann_file = Path(ann_file)
        self._mpii_gt: MPIIGroundTruth | None = None

    @property
    def mpii_gt(self) -> MPIIGroundTruth:
        """``gt_valid.mat``, checked against the validation records on first use."""
        if self._mpii_gt is None:
            gt = load_mpii_gt(self.gt_file)
            for row, record in enumerate(self.records):
                if record >= len(gt) or not np.array_equal(gt.visible[record], self.visible[row]):
                    raise ValueError(f"{self.ann_file} and {self.gt_file} describe different people: record "
                                     f"{record}'s annotated joints differ (or {self.gt_file} has only {len(gt)} "
                                     "records); write both from the same split")
            self._mpii_gt = gt
        return self._mpii_gt

    def rows(self, preds: InstancePredictions) -> np.ndarray:
        """(N records, 16, 2) predictions of ``gt_valid.mat``'s records, NaN for records without one.

        Raises:
            ValueError: a record with annotated joints has no prediction.
        """
        gt = self.mpii_gt
        out = np.full((len(gt), self.meta.num_keypoints, 2), np.nan)
        out[self.records[preds.index]] = preds.keypoints[:, :, :2]
        missing = gt.visible.any(axis=1) & np.isnan(out).any(axis=(1, 2))
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise ValueError(f"{self.gt_file}: record {i} has annotated joints but no prediction; is it in "
                             f"{self.ann_file}? ({int(missing.sum())} such record(s))")
        return out

    def score(self, preds: dict[str, InstancePredictions], out_dir: str | Path | None = None
              ) -> dict[str, dict[str, float]]:
        """PCKh statistics per network (:data:`pose.evaluation.pckh.PCKH_STAT_NAMES`); with ``out_dir``,
        also writes ``results_<name>.json`` there."""
        stats = {}
        for name, p in preds.items():
            if out_dir is not None:
                results = [{"index": int(r), "keypoints": [round(float(v), 3) for v in k.reshape(-1)]}
                           for r, k in zip(self.records[p.index], p.keypoints)]
                Path(out_dir).mkdir(parents=True, exist_ok=True)
                with open(Path(out_dir) / f"results_{name}.json", "w") as f:
                    json.dump(results, f)
            stats[name] = evaluate_pckh(self.rows(p), self.mpii_gt)
        return stats
