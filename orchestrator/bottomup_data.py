"""Ray Data ingest of bottom-up Parquet shards (``poselab shards --mode bottomup``, one row per image) for
Ray Train workers: the pipeline of :mod:`orchestrator.data` with the decoders of :mod:`pose.bottomup.shards`.

:func:`build_bottomup_dataset` + :func:`iter_bottomup_batches` give :class:`~pose.bottomup.data.BottomUpDataset`
batches, :func:`build_bottomup_val_for_worker` + :func:`iter_bottomup_val_items` give
:class:`~pose.bottomup.data.ValImageDataset` items (one image each).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import ray
import torch
from ray.data.expressions import col, lit

from orchestrator.data import (
    ShardsArg,
    SkipReport,
    _and,
    _as_sets,
    _check_mode,
    _iter_batches,
    _paths,
    _pipeline,
    _rank_predicate,
    _select_split,
)
from pose.bottomup.codec import BottomUpCodec
from pose.bottomup.config import BottomUpTestConfig
from pose.bottomup.data import BottomUpAugment
from pose.bottomup.shards import TRAIN_COLUMNS as BOTTOMUP_TRAIN_COLUMNS
from pose.bottomup.shards import VAL_COLUMNS as BOTTOMUP_VAL_COLUMNS
from pose.bottomup.shards import BottomUpShardDecoder, BottomUpValShardDecoder, training_ranks
from pose.bottomup.shards import sample_bytes as bottomup_sample_bytes
from pose.data.shards.decode import ERROR_KEY, OK_KEY, OnBadRow
from pose.data.shards.format import ShardSet, split_range
from pose.metainfo import DatasetMeta


def _bottomup_set(shards: ShardsArg, meta: DatasetMeta, split: str | None) -> ShardSet:
    sets = _select_split(_as_sets(shards), split)
    _check_mode(sets, "bottomup", meta)
    if len(sets) != 1:
        raise ValueError(f"bottom-up streams read one shard directory, got {len(sets)} "
                         f"({', '.join(str(s.root) for s in sets)}); pass split=")
    return sets[0]


def build_bottomup_dataset(
    shards: ShardsArg,
    meta: DatasetMeta,
    codec: BottomUpCodec,
    augment: BottomUpAugment | None = None,
    *,
    seed: int = 0,
    epoch: int = 0,
    split: str | None = None,
    index_range: tuple[int, int] | None = None,
    train_ranks: np.ndarray | None = None,
    on_bad_row: OnBadRow = "error",
    batch_size: int | None = None,
    num_cpus: float = 1.0,
    concurrency: int | tuple[int, int] | None = None,
    shuffle_files: bool = False,
    preserve_order: bool = False,
    num_blocks: int | None = None,
) -> ray.data.Dataset:
    """The lazy Ray dataset of one epoch's bottom-up training items (the keys, dtypes and values of
    :class:`~pose.bottomup.data.BottomUpDataset` items for the same seed and epoch).

    Rows are the training images (at least one annotation, the file loader's rule); their dataset
    index is their position among them (:func:`pose.bottomup.shards.training_ranks`) and draws the
    augmentation, ``default_rng([seed, epoch, index])``.

    Args:
        shards: one bottom-up shard directory (after the ``split`` selection).
        index_range: keep dataset indices ``[start, stop)`` (a contiguous rank range: only the files
            holding it are read).
        train_ranks: :func:`~pose.bottomup.shards.training_ranks` of the shards, when the caller has it
            (it reads two small columns of every file on the driver).
        The other arguments as for :func:`build_topdown_dataset`.
    """
    ss = _bottomup_set(shards, meta, split)
    ranks = training_ranks(ss) if train_ranks is None else np.asarray(train_ranks, np.int64)
    start, stop = (0, len(ranks)) if index_range is None else index_range
    if not 0 <= start <= stop <= len(ranks):
        raise ValueError(f"index range [{start}, {stop}) is outside the {len(ranks)} training images of {ss.root}")
    rank_range = (int(ranks[start]), int(ranks[stop - 1]) + 1) if stop > start else (0, 0)
    annotated = (col("num_people") > lit(0)) | (col("num_ignored") > lit(0))
    predicate = _and(_and(None if split is None else col("split") == lit(split), _rank_predicate(rank_range)),
                     annotated)
    decoder = BottomUpShardDecoder(meta, codec, augment, seed=seed, epoch=epoch, train_ranks=ranks,
                                   on_bad_row=on_bad_row, cv2_threads=1, retain_memory=True)
    columns = [*BOTTOMUP_TRAIN_COLUMNS, "num_ignored", "split"]
    return _pipeline(_paths([ss], rank_range), columns, predicate, decoder, rows=stop - start,
                     row_bytes=bottomup_sample_bytes(meta, codec), seed=seed, epoch=epoch, batch_size=batch_size,
                     num_blocks=num_blocks, num_cpus=num_cpus, concurrency=concurrency, shuffle_files=shuffle_files,
                     preserve_order=preserve_order)


def build_bottomup_val_for_worker(shards: ShardsArg, worker_rank: int, num_workers: int, meta: DatasetMeta,
                                  codec: BottomUpCodec, test: BottomUpTestConfig, *, max_images: int = 0,
                                  split: str | None = None, on_bad_row: OnBadRow = "error",
                                  batch_size: int | None = None, num_cpus: float = 1.0) -> ray.data.Dataset:
    """Validation images of one of ``num_workers`` workers as :class:`~pose.bottomup.data.ValImageDataset`
    items (every image, the first ``max_images`` when > 0, as ``data.max_val_images``): the contiguous
    range :func:`~pose.data.shards.format.split_range` gives it, so the workers cover each image exactly once.
    Iterate with :func:`iter_bottomup_val_items`."""
    ss = _bottomup_set(shards, meta, split)
    count = min(max_images, ss.num_rows) if max_images else ss.num_rows
    rank_range = split_range(count, num_workers, worker_rank)
    predicate = _and(None if split is None else col("split") == lit(split), _rank_predicate(rank_range))
    decoder = BottomUpValShardDecoder(codec.input_size, test.size_divisor, test.scale_factors,
                                      on_bad_row=on_bad_row, cv2_threads=1)
    row_bytes = int(6 * codec.input_size**2 * sum(f * f for f in test.scale_factors)) + 128
    return _pipeline(_paths([ss], rank_range), [*BOTTOMUP_VAL_COLUMNS, "split"], predicate, decoder,
                     rows=rank_range[1] - rank_range[0], row_bytes=row_bytes, seed=0, epoch=0, batch_size=batch_size,
                     num_blocks=None, num_cpus=num_cpus, concurrency=None, shuffle_files=False, preserve_order=True)


def iter_bottomup_batches(shard: Any, batch_size: int, **kwargs: Any) -> Iterator[dict[str, torch.Tensor]]:
    """:func:`iter_topdown_batches` for :func:`build_bottomup_dataset` streams: batches with the keys
    and dtypes of a collated :class:`~pose.bottomup.data.BottomUpDataset` batch (``image`` uint8
    (B, 3, S, S), ``heatmaps_{i}``, ``mask_{i}``, ``box_scales`` float32; ``joints``, ``num_people``,
    ``num_dropped``, ``image_id`` int64); skipped rows are dropped, re-cut and counted the same way."""
    return _iter_batches(shard, batch_size, **kwargs)


def iter_bottomup_val_items(shard: Any, *, report: SkipReport | None = None, log_skips: bool = True,
                            prefetch_batches: int = 1) -> Iterator[dict[str, torch.Tensor]]:
    """One pass over :func:`build_bottomup_val_for_worker` rows as un-collated
    :class:`~pose.bottomup.data.ValImageDataset` items (one image per item, sizes differ), what
    ``BottomUpEvaluator.predict`` takes. Skipped rows are counted in ``report`` and logged once."""
    report = report if report is not None else SkipReport(stream="val")
    for batch in shard.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=prefetch_batches):
        if OK_KEY in batch and not bool(batch[OK_KEY][0]):
            report.add([str(batch[ERROR_KEY][0])])
            continue
        report.rows += 1
        yield {k: torch.from_numpy(np.array(v[0])) for k, v in batch.items() if k not in (OK_KEY, ERROR_KEY)}
    if log_skips:
        report.log()
