"""Simulated person detector: noisy boxes around the ground-truth people of an image.

Each person is missed with probability ``det_miss_rate`` plus more when it is occluded or tiny;
otherwise its box is jittered (centre and log-size noise of ``det_jitter`` times the box size) and
scored by how well the box fits and how visible the person is, plus noise. Sometimes a second, lower
scoring duplicate box is added. ``det_false_positives`` (Poisson mean) boxes per image land on
background or distractors, mostly with low scores. Output: COCO detection results
``{image_id, category_id: 1, bbox: [x, y, w, h], score}``, per image sorted by descending score.
"""

from __future__ import annotations

import math

import numpy as np

from pose.synth.config import SynthConfig


def box_iou(a: list[float], b: list[float]) -> float:
    """IoU of two xywh boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _clip(box: list[float], width: int, height: int) -> list[float] | None:
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(width), box[0] + box[2]), min(float(height), box[1] + box[3])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return [x0, y0, x1 - x0, y1 - y0]


def _jitter(rng: np.random.Generator, box: list[float], s: float) -> list[float]:
    x, y, w, h = box
    cx, cy = x + w / 2 + rng.normal(0, s) * w, y + h / 2 + rng.normal(0, s) * h
    w2, h2 = w * math.exp(rng.normal(0, s)), h * math.exp(rng.normal(0, s))
    return [cx - w2 / 2, cy - h2 / 2, w2, h2]


def simulate_detections(rng: np.random.Generator, people: list[dict], width: int, height: int,
                        image_id: int, cfg: SynthConfig) -> list[dict]:
    """Detections for one image.

    Args:
        people: person annotations (``bbox`` xywh and ``_quality``, the visible fraction of its joints).
    """
    out: list[tuple[float, list[float]]] = []
    for p in people:
        gt = p["bbox"]
        quality = float(p.get("_quality", 1.0))
        small = float(np.clip((40.0 - gt[3]) / 40.0, 0.0, 1.0))
        p_miss = cfg.det_miss_rate + 0.35 * (1.0 - quality) ** 2 + 0.25 * small
        if rng.random() < p_miss:
            continue
        box = _clip(_jitter(rng, gt, cfg.det_jitter), width, height)
        if box is None:
            continue
        iou = box_iou(box, gt)
        score = 0.2 + 0.55 * iou + 0.22 * quality - 0.15 * small + rng.normal(0, 0.07)
        out.append((float(np.clip(score, 0.02, 0.99)), box))
        if rng.random() < 0.05:  # a duplicate that survived NMS
            dup = _clip(_jitter(rng, gt, 2.0 * cfg.det_jitter + 0.05), width, height)
            if dup is not None:
                out.append((float(np.clip(score * rng.uniform(0.3, 0.7), 0.02, 0.99)), dup))
    for _ in range(int(rng.poisson(cfg.det_false_positives))):
        h = rng.uniform(0.08, 0.6) * height
        w = h * rng.uniform(0.25, 0.8)
        x, y = rng.uniform(-0.1, 1.0) * width, rng.uniform(-0.1, 1.0) * height - h / 2
        box = _clip([x, y, w, h], width, height)
        if box is None:
            continue
        score = rng.uniform(0.02, 0.35) if rng.random() < 0.85 else rng.uniform(0.35, 0.75)
        out.append((float(score), box))
    out.sort(key=lambda sb: -sb[0])
    return [{"image_id": image_id, "category_id": 1, "bbox": [round(v, 2) for v in box], "score": round(s, 3)}
            for s, box in out]
