"""The training step and the evaluation pass: the code every training entry point calls.

The plain-PyTorch :class:`pose.engine.trainer.Trainer` and the Ray Train worker loop both iterate
batches and call :func:`run_train_step` and :class:`TopDownEvaluator`; neither copies them.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from pose.codecs.heatmap import HeatmapCodec
from pose.engine.predict import (
    InstancePredictions,
    heatmaps_to_instances,
    predict_heatmaps_with_flip,
    to_coco_results,
)
from pose.evaluation.keypoint_eval import evaluate_keypoints, load_gt
from pose.experiment import TestConfig, TrainConfig
from pose.metainfo import DatasetMeta
from pose.methods import Method, StepOutput

Batch = dict[str, torch.Tensor]


def to_device(batch: Batch, device: torch.device, channels_last: bool = False) -> Batch:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if channels_last and v.dim() == 4 and k == "image":
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


def autocast_context(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def run_train_step(
    method: Method,
    optimizer: torch.optim.Optimizer,
    labeled: Batch,
    unlabeled: Batch | None,
    cfg: TrainConfig,
    device: torch.device,
    scaler: torch.amp.GradScaler | None = None,
) -> StepOutput:
    """One optimisation step on already-collated batches (moved to ``device`` here)."""
    method.train()
    labeled = to_device(labeled, device, cfg.channels_last)
    unlabeled = to_device(unlabeled, device, cfg.channels_last) if unlabeled is not None else None
    with autocast_context(device, cfg.amp):
        out = method.training_step(labeled, unlabeled)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(out.loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        out.loss.backward()
        optimizer.step()
    if not torch.isfinite(out.loss.detach()):
        raise FloatingPointError(f"non-finite training loss: {out.logs}")
    return out


def split_batch(batch: Batch | tuple[Batch, Batch] | list[Batch]) -> tuple[Batch, Batch | None]:
    """A loader item -> (labeled batch, unlabeled batch or None).

    Supervised loaders yield one dict; the mixed semi-supervised stream yields (labeled, unlabeled).
    """
    if isinstance(batch, dict):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise TypeError(f"expected a batch dict or a (labeled, unlabeled) pair, got {type(batch).__name__}")


def train_epoch(
    method: Method,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Batch | tuple[Batch, Batch]],
    cfg: TrainConfig,
    device: torch.device,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    start_step: int = 0,
    each_step: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[dict[str, float], int]:
    """Train over ``batches`` (labeled dicts, or (labeled, unlabeled) pairs from the mixed stream);
    returns (mean of each logged value, global step after the epoch).

    The mean of a value is over the steps where it was finite (a diagnostic that is undefined on some
    batch logs NaN there, e.g. a PCK without a countable joint); NaN if it never was. Every logged key
    is in the means either way, so all ranks return the same keys.

    ``on_step`` gets the logs every ``cfg.log_interval`` steps, ``each_step`` every step (e.g. the
    collapse monitor).
    """
    scaler = torch.amp.GradScaler(device.type) if cfg.amp == "fp16" else None
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    n = 0
    step = start_step
    t0 = time.perf_counter()
    images = 0
    for batch in batches:
        labeled, unlabeled = split_batch(batch)
        out = run_train_step(method, optimizer, labeled, unlabeled, cfg, device, scaler)
        step += 1
        n += 1
        images += int(labeled["image"].shape[0])
        if unlabeled is not None:
            images += int(unlabeled["image"].shape[0])
        for k, v in out.logs.items():
            finite = math.isfinite(v)
            sums[k] = sums.get(k, 0.0) + (v if finite else 0.0)
            counts[k] = counts.get(k, 0) + finite
        if each_step is not None:
            each_step(step, out.logs)
        if on_step is not None and step % cfg.log_interval == 0:
            elapsed = time.perf_counter() - t0
            on_step(step, {**out.logs, "images_per_s": images / max(elapsed, 1e-9),
                           "lr": optimizer.param_groups[0]["lr"]})
    if n == 0:
        raise RuntimeError("the training epoch produced no batches (empty training set?)")
    means = {k: v / counts[k] if counts[k] else math.nan for k, v in sums.items()}
    means["images_per_s"] = images / max(time.perf_counter() - t0, 1e-9)
    return means, step


class TopDownEvaluator:
    """Predicts every validation instance, writes results JSON files and computes AP/AR.

    Args:
        meta: dataset metainfo (flip indices, OKS sigmas).
        codec: the heatmap codec that decodes predictions.
        test: flip test, rescoring and OKS-NMS settings.
        gt_file: the COCO-format ground truth of the validation images (AI Challenger: native or converted).
    """

    def __init__(self, meta: DatasetMeta, codec: HeatmapCodec, test: TestConfig, gt_file: str | Path) -> None:
        self.meta = meta
        self.codec = codec
        self.test = test
        self.gt_file = Path(gt_file)
        self._gt = None

    @property
    def gt(self):
        if self._gt is None:
            self._gt = load_gt(self.gt_file, self.meta)
        return self._gt

    @torch.no_grad()
    def predict(self, method: Method, batches: Iterable[Batch], device: torch.device,
                channels_last: bool = False) -> dict[str, InstancePredictions]:
        """Instance predictions for every evaluated network (``method.predict`` keys)."""
        method.eval()
        parts: dict[str, list[InstancePredictions]] = {}
        for batch in batches:
            images = to_device({"image": batch["image"]}, device, channels_last)["image"]
            normed = method.normalizer(images)
            heatmaps = predict_heatmaps_with_flip(method.predict, normed, self.meta.flip_indices,
                                                  self.test.flip_test, self.test.shift_heatmap)
            for name, hm in heatmaps.items():
                parts.setdefault(name, []).append(heatmaps_to_instances(hm.float(), batch, self.codec))
        return {name: InstancePredictions.concat(p) for name, p in parts.items()}

    def score(self, preds: dict[str, InstancePredictions], out_dir: str | Path | None = None
              ) -> dict[str, dict[str, float]]:
        """AP/AR per network; with ``out_dir``, also writes ``results_<name>.json`` there."""
        stats = {}
        for name, p in preds.items():
            results = to_coco_results(p, self.meta, self.test.in_vis_threshold, self.test.oks_nms_threshold)
            if out_dir is not None:
                Path(out_dir).mkdir(parents=True, exist_ok=True)
                with open(Path(out_dir) / f"results_{name}.json", "w") as f:
                    json.dump(results, f)
            stats[name] = evaluate_keypoints(self.gt, results, self.meta)
        return stats

