"""Single-process training in plain PyTorch (no Ray): ``poselab train``'s local engine, for top-down
and bottom-up experiments alike (the task's parts: :func:`pose.engine.parts.build_parts`)."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from pose.config import to_dict
from pose.data.batching import drops_partial_batch, train_steps_per_epoch
from pose.engine.components import (resolve_device, restore_rng_state, rng_state, seed_everything,
                                    training_state)
from pose.engine.loop import train_epoch
from pose.engine.parts import build_parts
from pose.tasks import AnyExperimentConfig

log = logging.getLogger(__name__)

MetricsFn = Callable[[dict[str, float], int], None]


def _print_metrics(metrics: dict[str, float], step: int) -> None:
    text = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
    log.info("step %d %s", step, text)


class Trainer:
    """Trains and evaluates one experiment; keeps ``last.pth`` and ``best.pth`` in the run directory.

    Rerunning with the same run directory resumes from ``last.pth`` (``resume=True``).

    Bottom-up experiments (``task: bottomup``) train on whole images with a per-iteration schedule.
    Top-down supervised methods iterate the labeled set; semi-supervised ones (``method.kind`` posecons /
    posedual) iterate the mixed stream (B labeled + B unlabeled per step, one epoch = one pass over the
    unlabeled set), and a :class:`CollapseMonitor` watches their per-step diagnostics
    (``train/collapse_collapsed``, ``_peak``, ``_current`` in the epoch metrics).
    """

    def __init__(self, cfg: AnyExperimentConfig, log_metrics: MetricsFn = _print_metrics, resume: bool = True) -> None:
        if getattr(cfg.data, "shards", ""):
            raise ValueError(f"data.shards={cfg.data.shards}: Parquet shards are streamed by Ray Data in the Ray "
                             "engine (poselab train without --engine plain); the plain engine reads image files")
        self.cfg = cfg
        self.log_metrics = log_metrics
        self.resume = resume
        self.run_dir = cfg.run_dir
        self.device = resolve_device(cfg.train.device)
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.train.seed)
        resuming = resume and (cfg.run_dir / "last.pth").exists()  # resumes; no warm start from model.init
        self.parts = build_parts(cfg, load_init=not resuming)
        self.meta = self.parts.meta
        self.train_stream, self.val_set = self.parts.train_stream, self.parts.val_set
        self.collapse = self.parts.collapse
        self.method = self.parts.method.to(self.device)
        if cfg.train.channels_last:
            self.method.to(memory_format=torch.channels_last)
        self.optimizer = self.parts.build_optimizer()
        steps = train_steps_per_epoch(len(self.train_stream), cfg.train.batch_size)
        self.scheduler = self.parts.build_scheduler(self.optimizer, steps)
        self.epoch = 0
        self.step = 0
        self.best_ap = -1.0

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return training_state(self, rng_state())

    def load_state_dict(self, state: dict) -> None:
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step, self.best_ap = state["epoch"], state["step"], state["best_ap"]
        restore_rng_state(state["rng"], self.cfg.train.seed, self.epoch)  # a Ray-engine checkpoint too
        if self.collapse is not None and state.get("collapse"):
            self.collapse.load_state_dict(state["collapse"])

    def save(self, name: str) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / name
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)
        return path

    # ------------------------------------------------------------------ loops
    def _each_step(self, step: int, logs: dict[str, float]) -> None:
        if self.parts.scheduler_per_step:
            self.scheduler.step()
        if self.collapse is not None:
            self.collapse.update(logs)

    def _loader(self, dataset, shuffle: bool, batch_size: int | None, drop_last: bool) -> DataLoader:
        workers = self.cfg.data.num_workers
        generator = torch.Generator().manual_seed(self.cfg.train.seed + self.epoch)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                          num_workers=workers, persistent_workers=False, generator=generator,
                          pin_memory=self.device.type == "cuda")

    def train_loader(self) -> DataLoader:
        """This epoch's training loader (labeled batches, or (labeled, unlabeled) pairs)."""
        self.train_stream.set_epoch(self.epoch)
        # Full batches only (pose.data.batching): the stream is reshuffled every epoch.
        b = self.cfg.train.batch_size
        return self._loader(self.train_stream, shuffle=True, batch_size=b,
                            drop_last=drops_partial_batch(len(self.train_stream), b))

    def evaluate(self, write_results: bool = True) -> dict[str, dict[str, float]]:
        loader = self._loader(self.val_set, shuffle=False, batch_size=self.parts.val_batch_size, drop_last=False)
        preds = self.parts.predict(loader, self.device, self.cfg.train.channels_last)
        got = self.parts.count(preds)
        if got != len(self.val_set):
            raise RuntimeError(f"evaluated {got} of {len(self.val_set)} validation items")
        return self.parts.score(preds, self.run_dir if write_results else None)

    def fit(self) -> dict[str, float]:
        """Train to ``train.epochs``; returns the final metrics (AP etc. of the primary network; PCKh for
        MPII) and ``best_<selection metric>``, the best value that selected ``best.pth``."""
        last = self.run_dir / "last.pth"
        if self.resume and last.exists():
            self.load_state_dict(torch.load(last, map_location=self.device, weights_only=False))
            log.info("resumed from %s at epoch %d", last, self.epoch)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(to_dict(self.cfg), indent=2))
        final: dict[str, float] = {}
        tc = self.cfg.train
        while self.epoch < tc.epochs:
            loader = self.train_loader()
            t0 = time.perf_counter()
            means, self.step = train_epoch(self.method, self.optimizer, loader, tc, self.device,
                                           on_step=lambda s, m: self.log_metrics(m, s), start_step=self.step,
                                           each_step=self._each_step)
            if not self.parts.scheduler_per_step:
                self.scheduler.step()
            self.epoch += 1
            metrics = {f"train/{k}": v for k, v in means.items()}
            metrics["epoch"] = self.epoch
            metrics["epoch_time_s"] = time.perf_counter() - t0
            if self.collapse is not None:
                status = self.collapse.status()
                metrics.update({f"train/collapse_{k}": v for k, v in status.items() if math.isfinite(v)})
                if status["collapsed"]:
                    log.warning("epoch %d: the run looks collapsed (%s moving mean %.4g < %g x peak %.4g)",
                                self.epoch, self.collapse.rule.metric, status["current"],
                                self.collapse.rule.drop, status["peak"])
            if self.epoch % tc.val_interval == 0 or self.epoch == tc.epochs:
                stats = self.evaluate()
                for net, s in stats.items():
                    metrics.update({f"val/{net}/{k}": v for k, v in s.items()})
                score = stats[self.method.primary][self.parts.selection_metric]
                final = dict(stats[self.method.primary])
                if score > self.best_ap:
                    self.best_ap = score
                    self.save("best.pth")
            if self.epoch % tc.checkpoint_interval == 0 or self.epoch == tc.epochs:
                self.save("last.pth")
            self.log_metrics(metrics, self.step)
        if not final:  # resumed a finished run: report its evaluation instead of nothing
            final = dict(self.evaluate()[self.method.primary])
        final[f"best_{self.parts.selection_metric}"] = self.best_ap
        return final
