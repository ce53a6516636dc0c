"""Ray Data ingest of poselab Parquet shards (``poselab shards``) for Ray Train workers.

Pipeline (driver side, lazy)::

    read_parquet(shard files)                      # validated first: manifest, files, schema version
      .filter(split, label budget, rank range)      # Arrow expressions on small columns, before decoding
      .map_batches(TopDownShardDecoder)             # decode region + augment + encode heatmaps (tasks)

Worker side: :func:`iter_topdown_batches` (one stream) and :func:`iter_semi_batches` (labeled +
unlabeled) turn a dataset shard into batches with the keys and dtypes of a collated
:class:`~pose.data.topdown.TopDownDataset` batch.

Epochs and reproducibility: augmentation for a row is drawn from ``default_rng([seed, epoch, rank])``
inside the map task, so the *epoch is part of the dataset*: build the epoch's dataset with
:func:`build_topdown_dataset` (cheap and lazy) at the start of every epoch. With ``preserve_order=True``
the row order is deterministic too, so two runs with one seed see identical batches.

Validation is never split by Ray Train (``streaming_split(equal=True)`` drops tail rows): every worker
builds its own part with :func:`build_val_dataset_for_worker` (contiguous rank ranges that cover every
row exactly once) and the predictions are gathered (``InstancePredictions.concat``).

Bottom-up shards (one row per image) go through the same pipeline (``_pipeline``) with the decoders
of :mod:`pose.bottomup.shards`: :mod:`orchestrator.bottomup_data`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import ray
import torch
from ray.data import DataContext, FileShuffleConfig
from ray.data.block import BlockAccessor
from ray.data.collate_fn import NumpyBatchCollateFn
from ray.data.expressions import col, lit

from pose.codecs.heatmap import HeatmapCodec
from pose.data.semi import UNLABELED_KEYS
from pose.data.shards.decode import (
    TOPDOWN_KEYS,
    OnBadRow,
    TopDownShardDecoder,
    collate_batch,
)
from pose.data.shards.format import ShardSet, open_shards, split_range
from pose.data.transforms import TopDownAugment
from pose.engine.components import UNLABELED_SEED_OFFSET
from pose.metainfo import DatasetMeta

log = logging.getLogger(__name__)

ShardsArg = str | Path | ShardSet | Sequence[str | Path | ShardSet]

# Columns the decoder reads (``path`` comes from ``include_paths``).
_DECODE_COLUMNS = ["rank", "image_id", "center", "scale", "keypoints", "visible", "score", "area", "region",
                   "region_to_image", "image_width", "image_height"]


def _as_sets(shards: ShardsArg) -> list[ShardSet]:
    items = [shards] if isinstance(shards, (str, Path, ShardSet)) else list(shards)
    if not items:
        raise ValueError("no shard directories given")
    return [open_shards(s) for s in items]


def _check_compatible(sets: list[ShardSet], meta: DatasetMeta, codec: HeatmapCodec,
                      augment: TopDownAugment | None) -> None:
    w, h = codec.input_size
    _check_mode(sets, "topdown", meta)
    for ss in sets:
        opts = ss.options
        if abs(opts.aspect_ratio - w / h) > 1e-6:
            raise ValueError(f"shards {ss.root} were written for aspect ratio {opts.aspect_ratio:g}, the codec's "
                             f"input {w}x{h} has {w / h:g}: re-create them with --aspect-ratio {w / h:g}")
        if opts.input_size is not None and (w > opts.input_size[0] or h > opts.input_size[1]):
            raise ValueError(f"shards {ss.root} store regions for a {opts.input_size[0]}x{opts.input_size[1]} input; "
                             f"the codec's {w}x{h} would be upsampled from them: re-create them with "
                             f"--input-size {w} {h} (or without --input-size)")
        if augment is not None and (augment.scale_factor > opts.scale_factor + 1e-9
                                    or augment.rot_factor > opts.rot_factor + 1e-9):
            raise ValueError(
                f"augmentation (scale_factor {augment.scale_factor:g}, rot_factor {augment.rot_factor:g}) exceeds "
                f"what shards {ss.root} cover (scale_factor {opts.scale_factor:g}, rot_factor {opts.rot_factor:g}): "
                f"re-create them with larger --scale-factor/--rot-factor")


def _read_parquet(paths: list[str], shuffle: FileShuffleConfig | None, num_blocks: int | None) -> ray.data.Dataset:
    """``read_parquet`` through Ray Data's V1 Parquet datasource: the V2 one (the default since Ray
    2.5x) starts fresh footer-reader actors (new worker processes) on every execution, several CPU
    seconds per epoch on a small machine, where our file list and row counts are already known."""
    ctx = DataContext.get_current()
    saved = getattr(ctx, "use_datasource_v2", None)
    if saved is not None:
        ctx.use_datasource_v2 = False
    try:
        return ray.data.read_parquet(paths, include_paths=True, shuffle=shuffle, override_num_blocks=num_blocks)
    finally:
        if saved is not None:
            ctx.use_datasource_v2 = saved


def sample_bytes(meta: DatasetMeta, codec: HeatmapCodec) -> int:
    """Bytes of one decoded top-down sample as the pipeline moves it (the uint8 image dominates; the
    heatmaps travel as their factors, (h + w) K float32)."""
    (w, h), (hw, hh), k = codec.input_size, codec.heatmap_size, meta.num_keypoints
    return 3 * w * h + 4 * k * (hh + hw) + 4 * (5 * k + 16)


def default_sizes(rows: int, row_bytes: int, files: int, cpus: float | None = None,
                  batch_bytes: int = 32 << 20, max_block_rows: int = 2048) -> tuple[int, int]:
    """(rows per decoder call, read blocks) for ``rows`` selected rows.

    Few large calls keep Ray Data's per-batch and per-block overhead small next to the decoding
    (measured on SynthPose: 32-row calls on Ray's default ~50-row blocks cost 0.1-0.3 ms/row more,
    up to as much as decoding a region). A call holds about ``batch_bytes`` of output; blocks hold a few
    calls, at most ``max_block_rows`` rows, and there are at least two per CPU for parallelism.
    """
    batch = int(min(max(batch_bytes // max(row_bytes, 1), 16), 1024))
    if cpus is None:
        cpus = ray.cluster_resources().get("CPU", 1.0) if ray.is_initialized() else 1.0
    blocks = max(math.ceil(rows / max_block_rows), min(math.ceil(rows / batch), math.ceil(2 * cpus)), files, 1)
    return batch, blocks


def _seed32(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def build_topdown_dataset(
    shards: ShardsArg,
    meta: DatasetMeta,
    codec: HeatmapCodec,
    augment: TopDownAugment | None = None,
    *,
    seed: int = 0,
    epoch: int = 0,
    split: str | None = None,
    budget: int = 0,
    budget_mode: str = "first",
    budget_seed: int = 0,
    rank_range: tuple[int, int] | None = None,
    keys: Sequence[str] = TOPDOWN_KEYS,
    on_bad_row: OnBadRow = "error",
    batch_size: int | None = None,
    num_cpus: float = 1.0,
    concurrency: int | tuple[int, int] | None = None,
    shuffle_files: bool = False,
    preserve_order: bool = False,
    num_blocks: int | None = None,
    fuse_read: bool | None = None,
    reduced_decode: bool = False,
    draw: int | None = None,
) -> ray.data.Dataset:
    """The lazy Ray dataset of one epoch's decoded, augmented, encoded top-down samples.

    Args:
        shards: shard directories (or opened :class:`ShardSet` s); validated on the driver first
            (missing files, schema version, keypoint count, aspect ratio, augmentation margin).
        augment: None for test-time crops.
        seed, epoch, draw: augmentation of row ``rank`` drawn from ``default_rng([seed, epoch, rank])``,
            or ``default_rng([seed, epoch, rank, draw])`` for pass ``draw`` of a stream cycled within an
            epoch (:func:`pose.data.topdown.augmentation_rng`).
        split: keep rows of this split only (shard directories of other splits are not read).
        budget, budget_mode, budget_seed: label budget (0: all), as ``data.num_labeled`` /
            ``data.budget_mode`` / ``data.budget_seed`` (:func:`pose.data.shards.format.budget_ranks`); needs a
            single shard directory after the split selection.
        rank_range: keep ranks in ``[start, stop)`` (only the files holding them are read).
        keys: output keys (``("image", "index")`` for unlabeled streams).
        on_bad_row: "error" or "skip" (skips are counted and reported by the iterators, once per epoch).
        batch_size: rows per decoder call (default: about 32 MB of decoded samples, see
            :func:`default_sizes`).
        num_cpus, concurrency: resources of the decode tasks.
        shuffle_files: shuffle the file order, seeded by (seed, epoch).
        preserve_order: deterministic row order (file order unless ``shuffle_files``).
        num_blocks: read blocks (default: :func:`default_sizes`).
        fuse_read: read and decode in one task (default: :func:`fuses_read`).
        reduced_decode: JPEG regions decoded at a reduced size where the crop allows it
            (:class:`~pose.data.shards.decode.TopDownShardDecoder`).
    """
    sets = _select_split(_as_sets(shards), split)
    _check_compatible(sets, meta, codec, augment)
    predicate = None if split is None else col("split") == lit(split)
    if budget:
        if len(sets) != 1:
            raise ValueError(f"a label budget needs one shard directory, got {len(sets)} "
                             f"({', '.join(str(s.root) for s in sets)}); pass split=")
        ranks = sets[0].budget_ranks(budget, budget_mode, budget_seed)
        if ranks is not None:
            is_prefix = budget_mode == "first"
            cond = col("rank") < lit(budget) if is_prefix else col("rank").is_in([int(r) for r in ranks])
            predicate = _and(predicate, cond)
    predicate = _and(predicate, _rank_predicate(rank_range))
    if rank_range is not None:
        selected = max(0, min(rank_range[1], sum(s.num_rows for s in sets)) - rank_range[0])
    else:
        selected = budget or sum(s.num_rows for s in sets)
    decoder = TopDownShardDecoder(meta, codec, augment, seed=seed, epoch=epoch, keys=keys, on_bad_row=on_bad_row,
                                  cv2_threads=1, reduced_decode=reduced_decode, retain_memory=True,
                                  separable_heatmaps=True, draw=draw)
    return _pipeline(_paths(sets, rank_range), _DECODE_COLUMNS + ["split"], predicate, decoder,
                     rows=selected, row_bytes=sample_bytes(meta, codec), seed=seed, epoch=epoch,
                     batch_size=batch_size, num_blocks=num_blocks, num_cpus=num_cpus, concurrency=concurrency,
                     shuffle_files=shuffle_files, preserve_order=preserve_order, fuse=fuse_read)


def _select_split(sets: list[ShardSet], split: str | None) -> list[ShardSet]:
    if split is None:
        return sets
    kept = [s for s in sets if s.split == split]
    if not kept:
        raise ValueError(f"no shards of split '{split}' among {', '.join(str(s.root) for s in sets)}")
    return kept


def _check_mode(sets: list[ShardSet], mode: str, meta: DatasetMeta) -> None:
    for ss in sets:
        if ss.mode != mode:
            raise ValueError(f"shards {ss.root} are {ss.mode} shards; this pipeline needs {mode} shards")
        if ss.num_keypoints != meta.num_keypoints:
            raise ValueError(f"shards {ss.root} have {ss.num_keypoints} keypoints, dataset '{meta.name}' has "
                             f"{meta.num_keypoints}")


def _and(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else a & b


def _rank_predicate(rank_range: tuple[int, int] | None) -> Any:
    if rank_range is None:
        return None
    return (col("rank") >= lit(int(rank_range[0]))) & (col("rank") < lit(int(rank_range[1])))


def _paths(sets: list[ShardSet], rank_range: tuple[int, int] | None) -> list[str]:
    """The files holding ``rank_range`` (all files without one; one file for an empty range)."""
    if rank_range is None:
        return [p for s in sets for p in s.paths()]
    return [p for s in sets for p in s.paths(rank_range)] or sets[0].paths()[:1]


class _Chunked:
    """A decoder called on whole read blocks, yielding its output ``rows`` rows at a time.

    Ray Data fuses ``read_parquet`` with the ``map_batches`` after it only when the map takes whole
    blocks (no ``batch_size``) and every read task reads whole files: then one task reads, filters and
    decodes, and the encoded region bytes never go through the object store. This wrapper keeps the
    decoder's calls (and so the output blocks) at the size :func:`default_sizes` chose.
    """

    def __init__(self, decoder: Any, rows: int) -> None:
        self.decoder, self.rows = decoder, max(1, int(rows))

    def __call__(self, table: Any) -> Iterator[dict[str, np.ndarray]]:
        # Equal calls: a block of 1,401 rows in calls of 374 is four calls of ~350, not a 3-row tail.
        calls = math.ceil(table.num_rows / self.rows)
        size = math.ceil(table.num_rows / max(calls, 1))
        for start in range(0, table.num_rows, size):
            yield self.decoder(table.slice(start, size))


def fuses_read(files: int, cpus: float | None = None, num_blocks: int | None = None,
               batch_size: int | None = None) -> bool:
    """Whether the pipeline reads and decodes in one task (see :class:`_Chunked`): by default when
    there are at least as many files as CPUs, so one read task per file keeps every CPU busy (fewer,
    larger files are split into more read blocks instead, which Ray cannot fuse with the decoder).
    An explicit ``num_blocks`` or ``batch_size`` keeps the unfused pipeline."""
    if num_blocks is not None or batch_size is not None:
        return False
    if cpus is None:
        cpus = ray.cluster_resources().get("CPU", 1.0) if ray.is_initialized() else 1.0
    return files >= cpus


def _pipeline(paths: list[str], columns: list[str], predicate: Any, decoder: Any, *, rows: int, row_bytes: int,
              seed: int, epoch: int, batch_size: int | None, num_blocks: int | None, num_cpus: float,
              concurrency: int | tuple[int, int] | None, shuffle_files: bool, preserve_order: bool,
              fuse: bool | None = None) -> ray.data.Dataset:
    """``read_parquet -> select_columns -> filter -> map_batches(decoder)``, shared by every stream:
    the projection and the filter are pushed into the scan (they run on small columns before
    decoding); with ``fuse`` (default: :func:`fuses_read`) the read and the decoder run in one task."""
    auto_batch, auto_blocks = default_sizes(rows, row_bytes, len(paths))
    if fuse is None:
        fuse = fuses_read(len(paths), num_blocks=num_blocks, batch_size=batch_size)
    shuffle = FileShuffleConfig(seed=_seed32(seed, epoch), reseed_after_execution=False) if shuffle_files else None
    ds = _read_parquet(paths, shuffle, len(paths) if fuse else (num_blocks or auto_blocks))
    ds = ds.select_columns(list(dict.fromkeys([*columns, "path"])))
    if predicate is not None:
        ds = ds.filter(expr=predicate)
    if fuse:
        ds = ds.map_batches(_Chunked(decoder, batch_size or auto_batch), batch_size=None, batch_format="pyarrow",
                            num_cpus=num_cpus, concurrency=concurrency)
    else:
        ds = ds.map_batches(decoder, batch_size=batch_size or auto_batch, batch_format="pyarrow", num_cpus=num_cpus,
                            concurrency=concurrency)
    if preserve_order:
        ds.context.execution_options.preserve_order = True
    return ds


def build_val_dataset_for_worker(shards: str | Path | ShardSet, worker_rank: int, num_workers: int,
                                 meta: DatasetMeta, codec: HeatmapCodec, **kwargs: Any) -> ray.data.Dataset:
    """Validation rows of one of ``num_workers`` workers: the contiguous rank range
    :func:`~pose.data.shards.format.split_range` gives it. The ranges cover every row exactly once (none dropped,
    sizes differ by at most one); gather the predictions and ``InstancePredictions.concat`` them.
    Keyword arguments go to :func:`build_topdown_dataset` (no augmentation)."""
    ss = open_shards(shards)
    start, stop = split_range(ss.num_rows, num_workers, worker_rank)
    kwargs.setdefault("preserve_order", True)
    return build_topdown_dataset(ss, meta, codec, None, rank_range=(start, stop), **kwargs)


def build_semi_datasets(labeled: ShardsArg, unlabeled: ShardsArg, meta: DatasetMeta, codec: HeatmapCodec,
                        augment: TopDownAugment | None, *, seed: int = 0, epoch: int = 0, budget: int = 0,
                        budget_mode: str = "first", budget_seed: int = 0, num_unlabeled: int = 0,
                        **kwargs: Any) -> tuple[Callable[[int], ray.data.Dataset], ray.data.Dataset]:
    """The labeled stream (label budget applied) and the unlabeled stream (``image`` and ``index`` only,
    augmentation seeded with ``seed + UNLABELED_SEED_OFFSET`` as in the plain-PyTorch trainer;
    ``num_unlabeled`` > 0 keeps the first N) of one epoch. Iterate them with :func:`iter_semi_batches`.

    The labeled stream is cycled several times per epoch (one epoch = one unlabeled pass), so it is
    returned as a function of the pass: pass ``n`` is augmented with ``draw=n``
    (``rng([seed, epoch, rank, n])``), every pass afresh, as :class:`~pose.data.semi.MixedDataset`
    augments every draw of a labeled instance afresh.
    """
    def build(draw: int) -> ray.data.Dataset:
        return build_topdown_dataset(labeled, meta, codec, augment, seed=seed, epoch=epoch, budget=budget,
                                     budget_mode=budget_mode, budget_seed=budget_seed, draw=draw, **kwargs)

    first = build(0)  # validated here, on the driver

    def labeled_pass(draw: int) -> ray.data.Dataset:
        return first if draw == 0 else build(draw)

    unl = build_topdown_dataset(unlabeled, meta, codec, augment, seed=seed + UNLABELED_SEED_OFFSET, epoch=epoch,
                                keys=UNLABELED_KEYS, rank_range=(0, num_unlabeled) if num_unlabeled else None,
                                **kwargs)
    return labeled_pass, unl


# ---------------------------------------------------------------------------------------------- worker side
@dataclass
class SkipReport:
    """Rows dropped because they did not decode (``on_bad_row="skip"``); logged once per epoch.

    ``skipped`` counts distinct rows (a labeled row seen again when the labeled stream is cycled
    counts once); ``rows`` counts the samples delivered.
    """

    stream: str = "data"
    epoch: int | None = None
    rows: int = 0
    examples: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set, repr=False)

    @property
    def skipped(self) -> int:
        return len(self._seen)

    def add(self, errors: list[str]) -> None:
        for e in errors:
            if e not in self._seen:
                self._seen.add(e)
                if len(self.examples) < 3:
                    self.examples.append(e)

    def log(self) -> None:
        if self.skipped:
            when = f"epoch {self.epoch}: " if self.epoch is not None else ""
            log.warning("%s%s: skipped %d rows that do not decode, delivered %d (%s%s)", when, self.stream,
                        self.skipped, self.rows, "; ".join(self.examples),
                        " ..." if self.skipped > len(self.examples) else "")


class _Collate(NumpyBatchCollateFn):
    """numpy decoder output -> (torch batch without bad rows, their error messages)."""

    def __call__(self, batch: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], list[str]]:
        return collate_batch(batch)


def _numpy_pieces(block: pa.Table) -> Iterator[dict[str, np.ndarray]]:
    """A block as numpy batches, one per record batch (chunk): zero-copy views of the object store."""
    for piece in block.to_batches():
        yield BlockAccessor.for_block(pa.Table.from_batches([piece])).to_batch_format("numpy")


def _cat(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return parts[0] if len(parts) == 1 else {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _size(batch: dict[str, torch.Tensor]) -> int:
    return len(next(iter(batch.values()))) if batch else 0


def _rows(batch: dict[str, torch.Tensor], start: int, stop: int) -> dict[str, torch.Tensor]:
    return {k: v[start:stop] for k, v in batch.items()}


class _Rebatcher:
    """Cuts batches of any size (whole Ray blocks, batches that lost skipped rows) into batches of
    ``batch_size`` rows: views of one input where a batch lies within it, one concatenation where it
    straddles two."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.parts: list[dict[str, torch.Tensor]] = []  # the pending rows, fewer than batch_size
        self.count = 0

    def push(self, batch: dict[str, torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
        n, start = _size(batch), 0
        if n and self.parts:  # complete the pending batch from the head of this one
            start = min(self.batch_size - self.count, n)
            self.parts.append(_rows(batch, 0, start))
            self.count += start
            if self.count < self.batch_size:
                return
            yield _cat(self.parts)
            self.parts, self.count = [], 0
        while n - start >= self.batch_size:
            yield _rows(batch, start, start + self.batch_size)
            start += self.batch_size
        if start < n:
            self.parts, self.count = [_rows(batch, start, n)], n - start

    def flush(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.count:
            yield _cat(self.parts)
        self.parts, self.count = [], 0


def iter_topdown_batches(shard: Any, batch_size: int, *, drop_last: bool = False, prefetch_batches: int = 1,
                         local_shuffle_buffer_size: int | None = None, local_shuffle_seed: int | None = None,
                         report: SkipReport | None = None, log_skips: bool = True
                         ) -> Iterator[dict[str, torch.Tensor]]:
    """One pass over a dataset shard (``ray.train.get_dataset_shard(...)``, a ``DataIterator``, or a
    ``ray.data.Dataset``) as batches of CPU tensors with the keys and dtypes of a collated
    :class:`~pose.data.topdown.TopDownDataset` batch (``image`` uint8 (B, 3, H, W), ``heatmaps``,
    ``weights``, ``keypoints``, ``visible``, ``matrix``, ``score``, ``area``, ``center``, ``scale``
    float32; ``image_id``, ``index`` int64).

    Skipped rows (``on_bad_row="skip"``) are dropped, the batches re-cut to ``batch_size``, and the
    count is added to ``report`` and logged once at the end of the pass (unless ``log_skips`` is False).
    """
    return _iter_batches(shard, batch_size, drop_last=drop_last, prefetch_batches=prefetch_batches,
                         local_shuffle_buffer_size=local_shuffle_buffer_size, local_shuffle_seed=local_shuffle_seed,
                         report=report, log_skips=log_skips)


def _iter_batches(shard: Any, batch_size: int, *, drop_last: bool = False, prefetch_batches: int = 1,
                  local_shuffle_buffer_size: int | None = None, local_shuffle_seed: int | None = None,
                  report: SkipReport | None = None, log_skips: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    report = report if report is not None else SkipReport()
    rebatch = _Rebatcher(batch_size)
    if local_shuffle_buffer_size is None:
        # Whole blocks, converted chunk by chunk, cut into batches here (views): Ray's batcher and its
        # numpy conversion would first concatenate the chunks of every column (one per decoder call),
        # a copy of all the data, before ``collate_batch`` copies it out of the object store.
        blocks = shard.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=prefetch_batches)
        batches: Iterator[tuple[dict[str, torch.Tensor], list[str]]] = (
            collate_batch(piece) for block in blocks for piece in _numpy_pieces(block))
    else:
        batches = shard.iter_torch_batches(batch_size=batch_size, collate_fn=_Collate(),
                                           prefetch_batches=prefetch_batches,
                                           local_shuffle_buffer_size=local_shuffle_buffer_size,
                                           local_shuffle_seed=local_shuffle_seed)
    for batch, errors in batches:
        report.rows += _size(batch)
        if errors:
            report.add(errors)
        yield from rebatch.push(batch)
    if not drop_last:
        yield from rebatch.flush()
    if log_skips:
        report.log()


def iter_semi_batches(labeled: Any | Callable[[int], Any], unlabeled: Any, batch_size: int, *,
                      report: SkipReport | None = None, drop_last: bool = False,
                      local_shuffle_seed: int | None = None, **kwargs: Any
                      ) -> Iterator[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    """One epoch of (labeled batch, unlabeled batch) pairs, as :class:`~pose.data.semi.MixedDataset`'s
    collated items: the unlabeled stream drives the epoch (one pass); the labeled stream is cycled
    (restarted when exhausted) and cut to the unlabeled batch's size. Unlabeled batches hold
    ``image`` and ``index`` only.

    ``labeled``: a function of the pass number (0, 1, ...) giving that pass's dataset, so every pass
    over the small labeled set is augmented afresh (``build_topdown_dataset(..., draw=pass)``) and
    shuffled with its own seed; or one dataset, read again on every pass (the same crops each time).
    ``drop_last`` drops the unlabeled stream's partial last batch (:mod:`pose.data.batching`).
    ``kwargs`` go to :func:`iter_topdown_batches`.
    """
    lab_report = SkipReport(stream="labeled", epoch=None if report is None else report.epoch)
    unl_report = report if report is not None else SkipReport(stream="unlabeled")
    labeled_pass = labeled if callable(labeled) else (lambda _: labeled)

    def pass_seed(n: int) -> int | None:
        return None if local_shuffle_seed is None else (local_shuffle_seed + 7_919 * n) % 2**31

    def labeled_cycle() -> Iterator[dict[str, torch.Tensor]]:
        n = 0
        while True:
            seen = 0
            for b in iter_topdown_batches(labeled_pass(n), batch_size, report=lab_report, log_skips=False,
                                          local_shuffle_seed=pass_seed(n), **kwargs):
                seen += _size(b)
                yield b
            if seen == 0:
                raise ValueError("the labeled stream has no rows")
            n += 1

    cycle = labeled_cycle()
    pending: list[dict[str, torch.Tensor]] = []
    have = 0
    for unl in iter_topdown_batches(unlabeled, batch_size, report=unl_report, drop_last=drop_last,
                                    local_shuffle_seed=local_shuffle_seed, **kwargs):
        n = _size(unl)
        while have < n:
            b = next(cycle)
            pending.append(b)
            have += _size(b)
        merged = _cat(pending)
        lab = {k: v[:n] for k, v in merged.items()}
        have -= n
        pending = [{k: v[n:] for k, v in merged.items()}] if have else []
        yield lab, unl
    lab_report.log()  # once per epoch, however many labeled passes it took
