"""Per-worker training and validation batches from Parquet shards through Ray Data.

With ``data.shards`` set (a directory holding ``train/``, ``val/`` and, for the "detections" and "aic"
unlabeled sources, ``unlabeled/`` shard directories written by ``poselab shards``), each Ray Train
worker builds its epoch's lazy Ray datasets (:mod:`orchestrator.data`) and iterates its part:

* training rows are split into contiguous rank ranges, one per worker (the label budget is applied
  inside each range); the unlabeled stream of semi-supervised methods likewise, while every worker
  cycles the whole (small) labeled set, shuffled by its own seed; unlabeled batches carry the keys of
  the file loader's (``image``, ``index`` and, with ground truth, the ``gt_`` keys of
  :func:`pose.engine.components.unlabeled_ground_truth`, renamed by :func:`pose.data.semi.unlabeled_item`);
* every worker yields exactly ``floor(floor(rows / workers) / batch)`` full batches per epoch (DDP needs
  equal step counts; partial last batches are dropped, :mod:`pose.data.batching`; a share smaller than
  one batch is one short batch), cycling its part if it runs short; every pass over the cycled labeled
  set is augmented afresh;
* validation rows are split into rank ranges that cover each row exactly once.

The MPII + AI Challenger setting (``data.dataset=mpii``, ``semi.unlabeled=aic``) streams MPII shards
(``poselab shards --dataset mpii``) as ``train/`` and ``val/`` and AI Challenger shards of every person box
in MPII's layout (``--dataset aic --layout mpii --every-person``) as ``unlabeled/``, the rows of the file
loader's :func:`pose.engine.components.load_aic_unlabeled` (checked: :func:`check_aic_unlabeled`).

Bottom-up experiments (``task: bottomup``; ``train/`` and ``val/`` written with ``poselab shards
--mode bottomup``) get :class:`BottomUpShardStreams` from the same constructor: the training images
(those with an annotation, as the file loader keeps) are split into contiguous index ranges, every
worker yields exactly ``floor(floor(images / workers) / batch)`` full
:class:`~pose.bottomup.data.BottomUpDataset` batches, and validation yields :class:`~pose.bottomup.data.ValImageDataset` items, one image per step,
each image (the first ``data.max_val_images`` when set) on exactly one worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

from orchestrator.bottomup_data import (
    build_bottomup_dataset,
    build_bottomup_val_for_worker,
    iter_bottomup_batches,
    iter_bottomup_val_items,
)
from orchestrator.data import (
    SkipReport,
    build_topdown_dataset,
    build_val_dataset_for_worker,
    iter_semi_batches,
    iter_topdown_batches,
)
from pose.bottomup.config import BottomUpExperimentConfig
from pose.bottomup.shards import training_ranks
from pose.data.batching import drops_partial_batch, train_steps_per_epoch
from pose.data.semi import unlabeled_item, unlabeled_source_keys
from pose.data.shards.format import ShardSet, open_shards, read_column, split_range
from pose.engine.components import UNLABELED_SEED_OFFSET, unlabeled_ground_truth
from pose.experiment import ExperimentConfig
from pose.metainfo import DatasetMeta

SHUFFLE_BATCHES = 4  # local shuffle buffer, in batches
UNLABELED_DIR_SOURCES = ("detections", "aic")
"""``semi.unlabeled`` sources streamed from ``data.shards/unlabeled`` (``train_gt`` reuses ``train/``)."""


def _bottomup(cfg: Any) -> bool:
    return getattr(cfg, "task", "topdown") == "bottomup"


def shard_dirs(cfg: ExperimentConfig | BottomUpExperimentConfig) -> dict[str, Path]:
    """``{"train", "val"[, "unlabeled"]}`` shard directories under ``data.shards`` (checked to exist)."""
    root = Path(cfg.data.shards)
    names = ["train", "val"]
    if not _bottomup(cfg) and cfg.method.semi_supervised and cfg.semi.unlabeled in UNLABELED_DIR_SOURCES:
        names.append("unlabeled")
    dirs = {n: root / n for n in names}
    missing = [str(d) for d in dirs.values() if not d.is_dir()]
    if missing:
        raise FileNotFoundError(f"data.shards={root}: missing shard directories {', '.join(missing)} "
                                f"(write them with `poselab shards --split NAME --out {root}/NAME`)")
    return dirs


def check_aic_unlabeled(shards: ShardSet, meta: DatasetMeta) -> None:
    """``semi.unlabeled=aic`` crops every AI Challenger person box, people without a labeled joint included,
    with the joints in ``meta``'s layout (:func:`pose.engine.components.load_aic_unlabeled`); shards written
    otherwise would train on another set, so they are refused, naming the command that writes the right ones."""
    people = shards.options.people
    if shards.dataset != "aic" or shards.layout != meta.name or people != "all":
        held = "every person box" if people == "all" else "people with a labeled joint"
        raise ValueError(f"semi.unlabeled=aic: {shards.root} holds {held} of {shards.dataset} in the {shards.layout} "
                         f"keypoint layout; the unlabeled set is every AI Challenger person box in {meta.name}'s: "
                         f"poselab shards --dataset aic --layout {meta.name} --every-person --aspect-ratio "
                         f"{shards.options.aspect_ratio:g} --root AIC --split train --out {shards.root}")


def exactly(steps: int, make: Callable[[], Iterator]) -> Iterator:
    """``steps`` items from ``make()``, restarting it when exhausted (an empty source is an error)."""
    produced = 0
    while produced < steps:
        got = 0
        for item in make():
            yield item
            got += 1
            produced += 1
            if produced == steps:
                return
        if got == 0:
            raise ValueError("a worker's data stream is empty")


class ShardStreams:
    """The batches one worker (``rank`` of ``world``) trains and evaluates on, for one experiment.

    ``ShardStreams(cfg, ...)`` of a bottom-up config (``cfg.task == "bottomup"``) is a
    :class:`BottomUpShardStreams`, with the same methods."""

    def __new__(cls, cfg: Any, *args: Any, **kwargs: Any) -> Self:
        return super().__new__(BottomUpShardStreams if cls is ShardStreams and _bottomup(cfg) else cls)

    def __init__(self, cfg: ExperimentConfig, meta: DatasetMeta, rank: int, world: int) -> None:
        self.cfg, self.meta, self.rank, self.world = cfg, meta, rank, world
        self.dirs = shard_dirs(cfg)
        d = cfg.data
        train = open_shards(self.dirs["train"])
        self.train_rows = train.num_rows
        self.labeled_rows = d.num_labeled or train.num_rows
        if d.num_labeled > train.num_rows:
            raise ValueError(f"data.num_labeled={d.num_labeled} is larger than the {train.num_rows} rows of "
                             f"{self.dirs['train']}")
        if cfg.method.semi_supervised:
            unl = open_shards(self.dirs.get("unlabeled", self.dirs["train"]))
            if cfg.semi.unlabeled == "aic":
                check_aic_unlabeled(unl, meta)
            total = unl.num_rows
            self.unlabeled_rows = min(cfg.semi.num_unlabeled, total) if cfg.semi.num_unlabeled else total
        self.val_rows = open_shards(self.dirs["val"]).num_rows

    # ------------------------------------------------------------------ training
    def _share(self) -> int:
        """Training rows of the smallest worker share (the unlabeled ones for semi-supervised methods)."""
        rows = self.unlabeled_rows if self.cfg.method.semi_supervised else self.labeled_rows
        return rows // self.world

    def steps_per_epoch(self) -> int:
        """Full batches of the smallest share (:mod:`pose.data.batching`): every worker has them."""
        return train_steps_per_epoch(self._share(), self.cfg.train.batch_size)

    def _drop_last(self) -> bool:
        return drops_partial_batch(self._share(), self.cfg.train.batch_size)

    def _common(self, epoch: int) -> dict:
        return dict(seed=self.cfg.train.seed, epoch=epoch, shuffle_files=True)

    def _iter_kwargs(self, epoch: int, salt: int = 0) -> dict:
        b = self.cfg.train.batch_size
        return dict(local_shuffle_buffer_size=SHUFFLE_BATCHES * b,
                    local_shuffle_seed=(self.cfg.train.seed * 1_000_003 + epoch * 7919 + self.rank * 104_729 + salt)
                    % 2**31)

    def train_batches(self, epoch: int) -> Iterator:
        """This worker's batches of one epoch: dicts (supervised) or (labeled, unlabeled) pairs."""
        cfg, d = self.cfg, self.cfg.data
        b = cfg.train.batch_size
        report = SkipReport(stream="train", epoch=epoch)
        if not cfg.method.semi_supervised:
            span = split_range(d.num_labeled if d.budget_mode == "first" and d.num_labeled else self.train_rows,
                               self.world, self.rank)
            ds = build_topdown_dataset(self.dirs["train"], self.meta, cfg.codec, cfg.augment, budget=d.num_labeled,
                                       budget_mode=d.budget_mode, budget_seed=d.budget_seed, rank_range=span,
                                       reduced_decode=d.shards_reduced_decode, **self._common(epoch))
            return exactly(self.steps_per_epoch(), lambda: iter_topdown_batches(
                ds, b, report=report, drop_last=self._drop_last(), **self._iter_kwargs(epoch)))

        def labeled(draw: int) -> Any:  # pass `draw` over the (cycled) labeled set, augmented afresh
            return build_topdown_dataset(self.dirs["train"], self.meta, cfg.codec, cfg.augment, budget=d.num_labeled,
                                         budget_mode=d.budget_mode, budget_seed=d.budget_seed,
                                         reduced_decode=d.shards_reduced_decode, draw=draw, **self._common(epoch))
        span = split_range(self.unlabeled_rows, self.world, self.rank)
        gt = unlabeled_ground_truth(cfg)  # decoded under their top-down names, renamed gt_* per batch
        unlabeled = build_topdown_dataset(self.dirs.get("unlabeled", self.dirs["train"]), self.meta, cfg.codec,
                                          cfg.augment, keys=unlabeled_source_keys(gt), rank_range=span,
                                          seed=cfg.train.seed + UNLABELED_SEED_OFFSET, epoch=epoch, shuffle_files=True,
                                          reduced_decode=d.shards_reduced_decode)

        def pairs() -> Iterator:
            batches = iter_semi_batches(labeled, unlabeled, b, report=report, drop_last=self._drop_last(),
                                        **self._iter_kwargs(epoch))
            return ((lab, unlabeled_item(unl, gt)) for lab, unl in batches)

        return exactly(self.steps_per_epoch(), pairs)

    # ------------------------------------------------------------------ validation
    def val_batches(self) -> Iterator:
        """This worker's contiguous part of the validation rows (all parts cover every row once)."""
        ds = build_val_dataset_for_worker(self.dirs["val"], self.rank, self.world, self.meta, self.cfg.codec)
        return iter_topdown_batches(ds, self.cfg.test.batch_size, report=SkipReport(stream="val"))

    def val_count(self) -> int:
        return self.val_rows

    def check_val_records(self, instance_ids: list[int], source: str) -> None:
        """The validation rows must be the file loader's validation people, in its order (``instance_ids``:
        theirs, read from ``source``): predictions are matched to records by row (MPII's PCKh)."""
        held = read_column(open_shards(self.dirs["val"]), "instance_id").tolist()
        if held != list(instance_ids):
            raise ValueError(f"{self.dirs['val']}: its {len(held)} rows are not the {len(instance_ids)} validation "
                             f"people of {source} in order; write them from that file (poselab shards --split ...)")


class BottomUpShardStreams(ShardStreams):
    """:class:`ShardStreams` of a bottom-up experiment (whole images, one row per image)."""

    def __init__(self, cfg: BottomUpExperimentConfig, meta: DatasetMeta, rank: int, world: int) -> None:
        self.cfg, self.meta, self.rank, self.world = cfg, meta, rank, world
        self.dirs = shard_dirs(cfg)
        self.train_ranks = training_ranks(self.dirs["train"])  # position = BottomUpDataset index
        if not len(self.train_ranks):
            raise ValueError(f"{self.dirs['train']}: no training image with an annotation")
        val = open_shards(self.dirs["val"]).num_rows
        self.val_rows = min(cfg.data.max_val_images, val) if cfg.data.max_val_images else val

    def _share(self) -> int:
        return len(self.train_ranks) // self.world

    def train_batches(self, epoch: int) -> Iterator:
        cfg = self.cfg
        span = split_range(len(self.train_ranks), self.world, self.rank)
        ds = build_bottomup_dataset(self.dirs["train"], self.meta, cfg.codec, cfg.augment, index_range=span,
                                    train_ranks=self.train_ranks, **self._common(epoch))
        report = SkipReport(stream="train", epoch=epoch)
        return exactly(self.steps_per_epoch(), lambda: iter_bottomup_batches(
            ds, cfg.train.batch_size, report=report, drop_last=self._drop_last(), **self._iter_kwargs(epoch)))

    def val_batches(self) -> Iterator:
        """This worker's validation images, one un-collated item each (all workers: every image once)."""
        ds = build_bottomup_val_for_worker(self.dirs["val"], self.rank, self.world, self.meta, self.cfg.codec,
                                           self.cfg.test, max_images=self.cfg.data.max_val_images)
        return iter_bottomup_val_items(ds, report=SkipReport(stream="val"))

    def val_count(self) -> int:
        """Validation images (distinct image ids the gathered predictions must cover)."""
        return self.val_rows
