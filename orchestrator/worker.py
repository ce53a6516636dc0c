"""The Ray Train worker loop: one experiment (top-down or bottom-up) on every worker, DDP across them.

The loop builds the same datasets, method, optimiser and schedule as the plain-PyTorch trainers
(through the task's parts, :func:`pose.engine.parts.build_parts`) and calls the same step and
evaluation code (:func:`pose.engine.loop.train_epoch`, the task's evaluator); what it adds is
distribution:

* every network of the method is wrapped in ``DistributedDataParallel`` (gloo on CPU, NCCL on GPU;
  SyncBatchNorm optional on GPUs); the training set is split by a ``DistributedSampler`` (equal step
  counts on every rank, as DDP needs);
* validation is split into contiguous ranges that cover every instance exactly once; predictions are
  gathered and AP is computed once, on rank 0;
* every epoch ends with ``ray.train.report`` and a checkpoint holding the method, optimiser,
  scheduler, epoch, step, best AP, collapse monitor and the RNG state of every rank; a replaced worker
  group (``FailureConfig``) or a rerun of the same command resumes from the latest one;
* rank 0 logs to the run's MLflow run (metrics per step and per epoch, checkpoints, predictions,
  config, skeleton images) and, at the end, the best network as an MLflow model (``mlflow.pytorch``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from orchestrator.mlflow_model import log_pose_model
from orchestrator.table import TAG_COLLAPSED
from orchestrator.run_logger import RunLogger
from orchestrator.tracking_outage import OutagePolicy, is_unreachable
from orchestrator.tracking_spool import SPOOL_DIR
from pose.bottomup.inference import TAG_CORRELATION_IMAGE
from pose.config import to_dict
from pose.data.batching import drops_partial_batch, train_steps_per_epoch
from pose.data.shards.format import split_range
from pose.engine.components import restore_rng_state, rng_state, seed_everything, training_state
from pose.engine.loop import train_epoch
from pose.engine.parts import TopDownParts, build_parts
from pose.engine.predict import InstancePredictions
from pose.synth.progress import ProgressBar
from pose.tasks import AnyExperimentConfig, config_from_dict

log = logging.getLogger(__name__)

STATE_FILE = "state.pth"
PROGRESS_MIN_STEPS = 100  # epochs at least this long show a progress bar (rank 0)


@dataclass(frozen=True)
class WorkerSettings:
    """What the driver tells every worker besides the experiment config.

    Attributes:
        tracking_uri, run_id: the MLflow run rank 0 logs to (run_id "" and no spool_dir: no MLflow
            logging; "" with a spool_dir: the run's opening waits in the spool, the server being down).
        spool_dir: the run's spool (records kept while the tracking server is unreachable).
        outage: the :class:`orchestrator.tracking_outage.OutagePolicy` fields (a plain dict).
        use_gpu: one GPU per worker (NCCL); otherwise CPU (gloo).
        torch_threads: intra-op threads per worker (0: leave torch's default).
        sync_bn: convert batch norm to SyncBatchNorm (GPU only).
        log_checkpoints: log best.pth / last.pth as MLflow artifacts.
        log_model: at the end, log the best network as the run's MLflow model ``model`` (``mlflow.pytorch``
            flavour, with the config: :func:`orchestrator.mlflow_model.log_pose_model`).
        images_to_draw: validation crops drawn with their predicted skeletons (0: none).
        resume: without a Ray Train checkpoint (local mode keeps them in memory only), continue from
            ``<run dir>/last.pth`` when it exists.
        stop_on_collapse: end training after the epoch in which the collapse monitor flags the run
            (semi-supervised methods); the MLflow tag ``poselab.collapsed`` records the flag either way.
        fault_step, fault_marker: test hook: the last rank kills itself (SIGKILL) at global step
            ``fault_step`` unless ``fault_marker`` exists, which it creates first (so it happens once).
    """

    tracking_uri: str = ""
    run_id: str = ""
    spool_dir: str = ""
    outage: dict[str, float] | None = None
    use_gpu: bool = False
    torch_threads: int = 0
    sync_bn: bool = False
    log_checkpoints: bool = True
    log_model: bool = True
    images_to_draw: int = 8
    resume: bool = True
    stop_on_collapse: bool = False
    fault_step: int = 0
    fault_marker: str = ""


def loop_config(cfg: AnyExperimentConfig, settings: WorkerSettings) -> dict[str, Any]:
    """The ``train_loop_config`` for :func:`train_loop_per_worker` (plain, picklable dicts)."""
    return {"experiment": to_dict(cfg), "settings": asdict(settings)}


class TrainSession:
    """Checkpoints and reports through Ray Train (``TorchTrainer`` workers, and its local mode)."""

    def rank_and_world(self) -> tuple[int, int]:
        ctx = ray.train.get_context()
        return ctx.get_world_rank(), ctx.get_world_size()

    def latest_checkpoint(self):
        return ray.train.get_checkpoint()

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)


class TuneSession:
    """Checkpoints and reports through Ray Tune, for a trial that trains in its own process (one
    worker, no ``TorchTrainer``: Ray Train's API is not available inside a Tune function)."""

    def rank_and_world(self) -> tuple[int, int]:
        return 0, 1

    def latest_checkpoint(self):
        import ray.tune

        return ray.tune.get_checkpoint()

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        import ray.tune

        checkpoint = ray.tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.tune.report(metrics, checkpoint=checkpoint)


def train_loop_per_worker(config: dict[str, Any], session: TrainSession | TuneSession | None = None) -> None:
    """Ray Train entry point (``TorchTrainer(train_loop_per_worker, train_loop_config=...)``); with a
    :class:`TuneSession`, the body of a single-process Tune trial."""
    cfg = config_from_dict(config["experiment"], "train_loop_config")
    settings = WorkerSettings(**config["settings"])
    session = session or TrainSession()
    rank, world = session.rank_and_world()
    WorkerRun(cfg, settings, rank, world, session).fit()


def merge_predictions(parts: list[dict[str, InstancePredictions]]) -> dict[str, InstancePredictions]:
    """Every rank's {network: predictions} -> one set per network (a rank with no validation rows
    contributes nothing)."""
    return TopDownParts.merge(parts)


class WorkerRun:
    """The state and loops of one worker (rank ``rank`` of ``world``)."""

    def __init__(self, cfg: AnyExperimentConfig, settings: WorkerSettings, rank: int, world: int,
                 session: TrainSession | TuneSession | None = None) -> None:
        self.cfg, self.settings, self.rank, self.world = cfg, settings, rank, world
        self.session = session or TrainSession()
        self.distributed = world > 1 and dist.is_available() and dist.is_initialized()
        if not settings.use_gpu:
            self.device = torch.device("cpu")
        else:  # Ray Train assigns each worker its GPU; a Tune trial process sees the one it holds
            self.device = ray.train.torch.get_device() if isinstance(self.session, TrainSession) else torch.device("cuda")
        if settings.torch_threads > 0:
            torch.set_num_threads(settings.torch_threads)
        seed_everything(cfg.train.seed)  # identical initialisation on every rank
        # a run that resumes (from Ray's checkpoint or its own last.pth) is not warm-started from model.init
        resuming = self.session.latest_checkpoint() is not None or (
            settings.resume and (cfg.run_dir / "last.pth").exists())
        self.parts = build_parts(cfg, load_init=not resuming)
        self.meta = self.parts.meta
        self.train_stream, self.val_set = self.parts.train_stream, self.parts.val_set
        self.shards = None
        if getattr(cfg.data, "shards", ""):
            from orchestrator.streams import ShardStreams

            self.shards = ShardStreams(cfg, self.meta, rank, world)
            if cfg.data.dataset == "mpii":  # PCKh matches predictions to records by row
                self.shards.check_val_records([inst.instance_id for inst in self.val_set.instances],
                                              str(cfg.data.path(cfg.data.val_ann)))
        self.collapse = self.parts.collapse
        self.method = self.parts.method.to(self.device)
        self.epoch, self.step, self.best_ap = 0, 0, -1.0
        restored = self._restore()
        if settings.sync_bn:
            if self.device.type != "cuda":
                raise ValueError("sync_bn needs GPU workers (torch's SyncBatchNorm runs on CUDA only)")
            for name in list(self.method.networks):
                self.method.networks[name] = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.method.networks[name])
            self.method.to(self.device)
        if cfg.train.channels_last:
            self.method.to(memory_format=torch.channels_last)
        self.optimizer = self.parts.build_optimizer()
        self.scheduler = self.parts.build_scheduler(self.optimizer, self.steps_per_epoch())
        if restored is not None:
            self.optimizer.load_state_dict(restored["optimizer"])
            self.scheduler.load_state_dict(restored["scheduler"])
        # DDP wrappers are swapped in for training steps only (:meth:`ddp_networks`): evaluation and
        # drawing call the plain networks, whose forward is no collective (DDP's forward broadcasts
        # buffers, and ranks evaluate different numbers of batches).
        self._ddp: dict[str, DistributedDataParallel] = {}
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self._ddp = {name: DistributedDataParallel(net, device_ids=ids) for name, net in self.method.networks.items()}
        self.logger: RunLogger | None = None
        if rank == 0 and settings.tracking_uri and (settings.run_id or settings.spool_dir):
            policy = OutagePolicy(**settings.outage) if settings.outage else None
            self.logger = RunLogger(settings.tracking_uri, settings.spool_dir or cfg.run_dir / SPOOL_DIR,
                                    run_id=settings.run_id, policy=policy, label=cfg.name)
        self.run_dir = cfg.run_dir
        self._progress: ProgressBar | None = None

    # ------------------------------------------------------------------ checkpoints
    def _restore(self) -> dict | None:
        """Load the latest Ray Train/Tune checkpoint (if any) into the method and counters; set this rank's RNG."""
        checkpoint = self.session.latest_checkpoint()
        state = None
        last = self.cfg.run_dir / "last.pth"
        if checkpoint is not None:
            with checkpoint.as_directory() as d:
                state = torch.load(Path(d) / STATE_FILE, map_location=self.device, weights_only=False)
        elif self.settings.resume and last.exists():
            state = torch.load(last, map_location=self.device, weights_only=False)
        if state is not None:
            self.method.load_state_dict(state["method"])
            self.epoch, self.step, self.best_ap = state["epoch"], state["step"], state["best_ap"]
            if self.collapse is not None and state.get("collapse"):
                self.collapse.load_state_dict(state["collapse"])
            log.info("rank %d: resumed from epoch %d, step %d", self.rank, self.epoch, self.step)
        # a fresh run, or another world size: per-rank streams from (seed, rank, epoch)
        restore_rng_state(state.get("rng") if state else None, self.cfg.train.seed, self.epoch, self.rank, self.world)
        return state

    def state_dict(self, rngs: list[dict]) -> dict:
        run_id = self.logger.run_id if self.logger is not None else self.settings.run_id
        return {**training_state(self, rngs), "mlflow_run_id": run_id}

    def _gather(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def _broadcast(self, obj: Any) -> Any:
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @contextlib.contextmanager
    def ddp_networks(self) -> Iterator[None]:
        """Within the block, ``method.networks`` holds the DDP wrappers (no-op when not distributed)."""
        plain = dict(self.method.networks)
        for name, wrapper in self._ddp.items():
            self.method.networks[name] = wrapper
        try:
            yield
        finally:
            for name, net in plain.items():
                self.method.networks[name] = net

    # ------------------------------------------------------------------ data
    def train_batches(self) -> Iterable:
        """This rank's batches of the current epoch: from shards (Ray Data) or image files."""
        return self.shards.train_batches(self.epoch) if self.shards is not None else self.train_loader()

    def val_batches(self) -> Iterable:
        return self.shards.val_batches() if self.shards is not None else self.val_loader()

    def train_loader(self) -> DataLoader:
        self.train_stream.set_epoch(self.epoch)
        sampler = DistributedSampler(self.train_stream, num_replicas=self.world, rank=self.rank, shuffle=True,
                                     seed=self.cfg.train.seed, drop_last=False)  # pads: equal steps per rank
        sampler.set_epoch(self.epoch)
        b = self.cfg.train.batch_size  # full batches only (pose.data.batching)
        return DataLoader(self.train_stream, batch_size=b, sampler=sampler,
                          drop_last=drops_partial_batch(len(sampler), b), num_workers=self.cfg.data.num_workers,
                          pin_memory=self.device.type == "cuda")

    def steps_per_epoch(self) -> int:
        """Optimiser steps per epoch on every rank (the DistributedSampler pads to equal shares; full
        batches only, :mod:`pose.data.batching`)."""
        if self.shards is not None:
            return self.shards.steps_per_epoch()
        share = math.ceil(len(self.train_stream) / self.world)
        return train_steps_per_epoch(share, self.cfg.train.batch_size)

    def val_loader(self) -> DataLoader:
        start, stop = split_range(len(self.val_set), self.world, self.rank)
        part = Subset(self.val_set, range(start, stop))
        return DataLoader(part, batch_size=self.parts.val_batch_size, shuffle=False,
                          num_workers=self.cfg.data.num_workers, pin_memory=self.device.type == "cuda")

    # ------------------------------------------------------------------ loops
    def _on_step(self, step: int, logs: dict[str, float]) -> None:
        self._maybe_fail(step)
        if self.logger is not None:
            self.logger.log_metrics({f"train/{k}": v for k, v in logs.items()}, step)

    def _each_step(self, step: int, logs: dict[str, float]) -> None:
        if self._progress is not None:
            self._progress.update()
        if self.parts.scheduler_per_step:
            self.scheduler.step()
        if self.collapse is not None:
            self.collapse.update(logs)
        self._maybe_fail(step)

    def _epoch_progress(self) -> ProgressBar | None:
        """Rank 0's progress bar of a long epoch (at least ``PROGRESS_MIN_STEPS`` steps; a line per
        10 % when the output is not a terminal, as in a Ray worker): ``[<run>] epoch 3 [####---] ...``."""
        steps = self.steps_per_epoch()
        if self.rank != 0 or steps < PROGRESS_MIN_STEPS:
            return None
        return ProgressBar(steps, f"epoch {self.epoch + 1}", prefix=self.cfg.name, unit="step", stream=sys.stdout)

    def _maybe_fail(self, step: int) -> None:
        s = self.settings
        if s.fault_step and step == s.fault_step and self.rank == self.world - 1 and not os.path.exists(s.fault_marker):
            Path(s.fault_marker).write_text(f"rank {self.rank} killed at step {step}\n")
            log.warning("fault injection: rank %d kills itself at step %d", self.rank, step)
            os.kill(os.getpid(), signal.SIGKILL)

    def _mean_across_ranks(self, values: dict[str, float]) -> dict[str, float]:
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist())}

    def evaluate(self, out_dir: Path | None) -> dict[str, dict[str, float]]:
        """AP/AR of every evaluated network: each rank predicts its range, rank 0 scores the gathered set."""
        preds = self.parts.predict(self.val_batches(), self.device, self.cfg.train.channels_last)
        gathered = self._gather(preds)
        stats = None
        if self.rank == 0:
            merged = self.parts.merge(gathered)
            got = self.parts.count(merged)
            expected = self.shards.val_count() if self.shards is not None else len(self.val_set)
            if got != expected:
                raise RuntimeError(f"evaluated {got} of {expected} validation items")
            stats = self.parts.score(merged, out_dir)
        return self._broadcast(stats)

    def fit(self) -> None:
        tc = self.cfg.train
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(to_dict(self.cfg), indent=2))
            if self.logger is not None and self.epoch == 0:
                self.logger.log_dict(to_dict(self.cfg), "config.json")
        final: dict[str, float] = {}
        while self.epoch < tc.epochs:
            t0 = time.perf_counter()
            self._progress = self._epoch_progress()
            with self.ddp_networks():
                means, self.step = train_epoch(self.method, self.optimizer, self.train_batches(), tc, self.device,
                                               on_step=self._on_step, start_step=self.step,
                                               each_step=self._each_step)
            if self._progress is not None:
                self._progress.close()
                self._progress = None
            if not self.parts.scheduler_per_step:
                self.scheduler.step()
            self.epoch += 1
            rate = means.pop("images_per_s")
            metrics = {f"train/{k}": v for k, v in self._mean_across_ranks(means).items()}
            metrics["train/images_per_s"] = rate * self.world
            metrics["train/lr"] = self.optimizer.param_groups[0]["lr"]
            metrics["epoch"] = self.epoch
            metrics["epoch_time_s"] = time.perf_counter() - t0
            if self.collapse is not None:
                status = self.collapse.status()
                metrics.update({f"train/collapse_{k}": v for k, v in status.items() if math.isfinite(v)})
            improved = False
            if self.epoch % tc.val_interval == 0 or self.epoch == tc.epochs:
                stats = self.evaluate(self.run_dir if self.rank == 0 else None)
                for net, s in stats.items():
                    metrics.update({f"val/{net}/{k}": v for k, v in s.items()})
                final = dict(stats[self.method.primary])
                score = final[self.parts.selection_metric]  # AP; PCKh for MPII
                if score > self.best_ap:
                    self.best_ap, improved = score, True
            metrics[f"val/best_{self.parts.selection_metric}"] = self.best_ap
            self._report(metrics, improved)
            if self.settings.stop_on_collapse and self.collapsed:
                log.warning("epoch %d: the run collapsed; stopping it (stop_on_collapse)", self.epoch)
                if not final:
                    final = dict(self.evaluate(self.run_dir if self.rank == 0 else None)[self.method.primary])
                break
        if not final:  # a rerun of a finished run: evaluate its weights instead of reporting nothing
            final = dict(self.evaluate(self.run_dir if self.rank == 0 else None)[self.method.primary])
        if self.rank == 0:
            self._finish(final)

    @property
    def collapsed(self) -> bool:
        return self.collapse is not None and bool(self.collapse.status()["collapsed"])

    def _report(self, metrics: dict[str, float], improved: bool) -> None:
        """Checkpoint (rank 0 writes, every rank reports: ``ray.train.report`` is a barrier) and log.
        Checkpoints every ``train.checkpoint_interval`` epochs, after the last and when AP improved."""
        rngs = self._gather(rng_state())  # a collective: every rank, every epoch
        if self.rank != 0:
            self.session.report(metrics, None)
            return
        tc = self.cfg.train
        if not (improved or self.epoch % tc.checkpoint_interval == 0 or self.epoch == tc.epochs):
            if self.logger is not None:
                self.logger.log_metrics(metrics, self.step)
            self.session.report(metrics, None)
            return
        state = self.state_dict(rngs)
        with tempfile.TemporaryDirectory(prefix="poselab-ckpt-") as tmp:
            torch.save(state, Path(tmp) / STATE_FILE)
            last = self.run_dir / "last.pth"
            torch.save(state, last.with_suffix(".tmp"))
            last.with_suffix(".tmp").replace(last)
            if improved:
                best = self.run_dir / "best.pth"
                torch.save(state, best.with_suffix(".tmp"))
                best.with_suffix(".tmp").replace(best)
            if self.logger is not None:
                self.logger.log_metrics(metrics, self.step)
                if improved and self.settings.log_checkpoints:
                    self.logger.log_artifact(self.run_dir / "best.pth", "checkpoints")
            self.session.report(metrics, tmp)

    def _finish(self, final: dict[str, float]) -> None:
        """Rank 0: final metrics, last checkpoint, predictions, skeleton images (and a bottom-up run's tag
        correlation matrix, R > 1) and the model to MLflow."""
        final = {**final, f"best_{self.parts.selection_metric}": self.best_ap}
        (self.run_dir / "final_metrics.json").write_text(json.dumps(final, indent=2))
        if self.logger is None:
            return
        self.logger.log_metrics({f"final/{k}": v for k, v in final.items()}, self.step)
        self.logger.set_tags({TAG_COLLAPSED: "true" if self.collapsed else "false"})
        if self.settings.log_checkpoints and (self.run_dir / "last.pth").exists():
            self.logger.log_artifact(self.run_dir / "last.pth", "checkpoints")
        for path in sorted(self.run_dir.glob("results_*.json")):
            self.logger.log_artifact(path, "predictions")
        if (self.run_dir / TAG_CORRELATION_IMAGE).is_file():  # bottom-up, R > 1: the last evaluation's
            self.logger.log_artifact(self.run_dir / TAG_CORRELATION_IMAGE, "images")
        if self.settings.images_to_draw > 0:
            path = self.draw_predictions(self.settings.images_to_draw)
            self.logger.log_artifact(path, "images")
        if self.settings.log_model and not self.settings.run_id:
            log.warning("%s: no MLflow model logged: the tracking server was unreachable when the run started, "
                        "so its MLflow run is created later from the spool (the checkpoints in %s hold the "
                        "model; `poselab predict` reads them)", self.cfg.name, self.run_dir)
        elif self.settings.log_model:
            t0 = time.perf_counter()
            try:
                if log_pose_model(self.settings.tracking_uri, self.settings.run_id, self.run_dir, self.step):
                    log.info("%s: MLflow model logged in %.2f s", self.cfg.name, time.perf_counter() - t0)
            except Exception as e:  # an unreachable server must not fail a finished training
                if not is_unreachable(e):
                    raise
                log.warning("%s: the tracking server is unreachable: no MLflow model logged (the checkpoints "
                            "in %s hold it; `poselab predict` reads them)", self.cfg.name, self.run_dir)
        self.logger.flush()  # what an outage kept waits for the driver, which closes the run

    def draw_predictions(self, count: int) -> Path:
        """The first ``count`` validation items with the primary network's skeletons -> a PNG in the run dir."""
        grid = self.parts.draw(self.device, count)
        path = self.run_dir / f"predictions_{self.method.primary}.png"
        cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        return path
