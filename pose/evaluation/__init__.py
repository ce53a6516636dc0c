"""Keypoint evaluation: COCO AP/AR via pycocotools (also AI Challenger, with its sigmas), the CrowdPose
protocol (xtcocotools parity, no xtcocotools dependency), MPII PCKh, and OKS-NMS."""

from pose.evaluation.crowdpose_eval import STAT_NAMES as CROWDPOSE_STAT_NAMES
from pose.evaluation.crowdpose_eval import evaluate_crowdpose
from pose.evaluation.keypoint_eval import (
    COCO_STAT_NAMES,
    evaluate_keypoints,
    format_summary,
    load_gt,
    load_results,
    stat_names,
)
from pose.evaluation.nms import oks_iou, oks_nms
from pose.evaluation.pckh import PCKH_STAT_NAMES, evaluate_pckh, format_pckh_table, load_pckh_predictions

__all__ = [
    "COCO_STAT_NAMES",
    "CROWDPOSE_STAT_NAMES",
    "PCKH_STAT_NAMES",
    "evaluate_crowdpose",
    "evaluate_keypoints",
    "evaluate_pckh",
    "format_pckh_table",
    "format_summary",
    "load_gt",
    "load_pckh_predictions",
    "load_results",
    "oks_iou",
    "oks_nms",
    "stat_names",
]
