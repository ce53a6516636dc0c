"""Bottom-up Parquet shard rows (``poselab shards --mode bottomup``) -> the items of
:class:`~pose.bottomup.data.BottomUpDataset` and :class:`~pose.bottomup.data.ValImageDataset` (no Ray
here; ``orchestrator/data.py`` maps these decoders over Ray Data batches).

A row holds the image file's bytes, the people the file loader keeps and their ignore mask, all chosen
by :func:`pose.bottomup.data.image_record` when the shards were written, so a row decodes into the
loader's :class:`~pose.bottomup.data.BottomUpImage` (without ``mask_anns``: the mask comes precomputed)
and :class:`~pose.bottomup.data.BottomUpSampler` makes the same item:

* the image is decoded by the loader's own decoder (``decode_rgb``): identical pixels;
* augmentation is drawn from ``default_rng([seed, epoch, index])`` where ``index`` is the row's
  position among the *training* rows (images with at least one annotation, the loader's
  ``train=True`` rule): the :class:`BottomUpDataset` index. :func:`training_ranks` lists them.

So for one seed and epoch, a row's item equals ``BottomUpDataset[index]`` key for key (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pose.bottomup.codec import BottomUpCodec
from pose.bottomup.data import AffineParams, BottomUpAugment, BottomUpImage, BottomUpSampler, val_item
from pose.data.image_io import decode_rgb
from pose.data.shards.decode import (
    ERROR_KEY,
    OK_KEY,
    OnBadRow,
    bottomup_row_name,
    check_on_bad_row,
    decode_bottomup_row,
    set_up_decode_worker,
)
from pose.data.shards.format import ShardSet, open_shards
from pose.metainfo import DatasetMeta

TRAIN_COLUMNS = ["rank", "image_id", "file_name", "width", "height", "image", "num_people", "keypoints", "boxes",
                 "ignore_rle"]
"""Columns the training decoder reads (plus ``path`` for messages, when present)."""
VAL_COLUMNS = ["rank", "image_id", "file_name", "width", "height", "image"]
"""Columns the validation decoder reads."""


def bottomup_keys(codec: BottomUpCodec) -> tuple[str, ...]:
    """The keys of a :class:`~pose.bottomup.data.BottomUpDataset` item, in its order."""
    per_resolution = (f"{key}_{i}" for i in range(len(codec.heatmap_sizes)) for key in ("heatmaps", "mask"))
    return ("image", *per_resolution, "joints", "box_scales", "num_people", "num_dropped", "image_id")


def sample_bytes(meta: DatasetMeta, codec: BottomUpCodec) -> int:
    """Bytes of one decoded training item (image uint8, heatmaps and masks float32, joint slots int64)."""
    s, k, p = codec.input_size, meta.num_keypoints, codec.max_people
    return 3 * s * s + sum(4 * (k + 1) * h * h for h in codec.heatmap_sizes) + p * (16 * k + 4) + 24


def training_ranks(shards: str | Path | ShardSet) -> np.ndarray:
    """Ascending ranks of the rows :class:`BottomUpDataset` trains on: images with at least one
    annotation (a person or an ignored region). Position ``i`` holds the rank of dataset index ``i``.
    Reads two small columns of every file."""
    ss = open_shards(shards)
    parts = []
    for path in ss.paths():
        t = pq.read_table(path, columns=["rank", "num_people", "num_ignored"])
        rank = t.column("rank").to_numpy()
        annotated = (t.column("num_people").to_numpy() + t.column("num_ignored").to_numpy()) > 0
        parts.append(rank[annotated])
    ranks = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
    return np.sort(ranks)


def _rows(batch: pa.Table | dict[str, Any]) -> list[dict]:
    table = batch if isinstance(batch, pa.Table) else pa.table(batch)
    return table.to_pylist()


class BottomUpShardDecoder:
    """Batch of bottom-up rows -> the arrays of a collated :class:`BottomUpDataset` batch (same keys,
    dtypes and values for one seed and epoch).

    Args:
        augment: None for no augmentation.
        seed, epoch: augmentation of dataset index ``i`` drawn from ``default_rng([seed, epoch, i])``.
        train_ranks: :func:`training_ranks` of the shards (index of a row = its position there); None:
            index = rank (the same when every image has an annotation). Rows must be training rows.
        on_bad_row: "error": a row that does not decode raises ``ValueError`` naming the shard, row and
            image id; "skip": it is returned zeroed with ``_ok`` False and ``_error`` set, for the
            consumer to drop and count (:func:`pose.data.shards.decode.collate_batch`).
        cv2_threads: if set, ``cv2.setNumThreads`` on first use (1 in Ray Data workers).
        retain_memory: on first use, keep freed buffers in the process heap
            (:func:`pose.data.heap.retain_freed_memory`; set in Ray Data workers).
    """

    def __init__(self, meta: DatasetMeta, codec: BottomUpCodec, augment: BottomUpAugment | None = None,
                 seed: int = 0, epoch: int = 0, train_ranks: np.ndarray | None = None,
                 on_bad_row: OnBadRow = "error", cv2_threads: int | None = None, retain_memory: bool = False
                 ) -> None:
        check_on_bad_row(on_bad_row)
        self.sampler = BottomUpSampler(meta, codec)
        self.augment = augment
        self.seed, self.epoch = seed, epoch
        self.train_ranks = None if train_ranks is None else np.asarray(train_ranks, np.int64)
        self.on_bad_row = on_bad_row
        self.cv2_threads = cv2_threads
        self.retain_memory = retain_memory
        self.keys = bottomup_keys(codec)

    def index_of(self, rank: int) -> int:
        """The :class:`BottomUpDataset` index of the row with this rank."""
        if self.train_ranks is None:
            return int(rank)
        i = int(np.searchsorted(self.train_ranks, rank))
        if i == len(self.train_ranks) or self.train_ranks[i] != rank:
            raise ValueError(f"row {rank} is not a training row (an image without annotations)")
        return i

    def params_for(self, rank: int) -> AffineParams:
        if self.augment is None:
            return AffineParams()
        return self.augment.sample(np.random.default_rng([self.seed, self.epoch, self.index_of(rank)]))

    def _allocate(self, n: int) -> dict[str, np.ndarray]:
        codec, k = self.sampler.codec, self.sampler.meta.num_keypoints
        s, p = codec.input_size, codec.max_people
        out = {"image": np.zeros((n, 3, s, s), np.uint8)}
        for i, h in enumerate(codec.heatmap_sizes):
            out[f"heatmaps_{i}"] = np.zeros((n, k, h, h), np.float32)
            out[f"mask_{i}"] = np.zeros((n, h, h), np.float32)
        out["joints"] = np.zeros((n, p, k, 2), np.int64)
        out["box_scales"] = np.zeros((n, p), np.float32)
        for key in ("num_people", "num_dropped", "image_id"):
            out[key] = np.zeros(n, np.int64)
        return out

    def __call__(self, batch: pa.Table | dict[str, Any]) -> dict[str, np.ndarray]:
        self.cv2_threads, self.retain_memory = set_up_decode_worker(self.cv2_threads, self.retain_memory)
        rows = _rows(batch)
        k = self.sampler.meta.num_keypoints
        out = self._allocate(len(rows))
        ok = np.ones(len(rows), dtype=bool)
        errors = [""] * len(rows)
        for i, row in enumerate(rows):
            try:
                dec = decode_bottomup_row(row, k)
                img = BottomUpImage(image_id=int(row["image_id"]), image_path=Path(row.get("file_name") or ""),
                                    width=int(row["width"]), height=int(row["height"]), joints=dec["keypoints"],
                                    boxes=dec["boxes"])
                use = 1.0 - dec["ignore_mask"].astype(np.float32)
                item = self.sampler.sample(dec["image"], img, self.params_for(int(row["rank"])), mask=use)
            except (ValueError, cv2.error) as e:
                what = bottomup_row_name(row)
                msg = str(e) if str(e).startswith(what) else f"{what}: {e}"
                if self.on_bad_row == "error":
                    raise ValueError(msg) from None
                ok[i], errors[i] = False, msg
                continue
            for key, value in item.items():
                out[key][i] = value
            out["image_id"][i] = img.image_id
        if self.on_bad_row == "skip":
            out[OK_KEY] = ok
            out[ERROR_KEY] = np.array(errors, dtype=object)
        return out


class BottomUpValShardDecoder:
    """Batch of bottom-up rows -> :class:`~pose.bottomup.data.ValImageDataset` items, one per row
    (:func:`~pose.bottomup.data.val_item`): ``image`` (3, h, w) uint8 with its ``matrix`` (2, 3)
    float64 at scale factor 1, ``image_{j}`` / ``matrix_{j}`` for each further factor, ``image_id`` and
    ``orig_size`` (W, H) int64.

    Image sizes differ between rows, so the images are returned as object arrays of arrays (Ray Data
    stores them as variable-shaped tensors); the rest is stacked. ``on_bad_row`` as for
    :class:`BottomUpShardDecoder` (a skipped row's images are (3, 0, 0), its matrices zero)."""

    def __init__(self, input_size: int, size_divisor: int = 64, scale_factors: Sequence[float] = (1.0,),
                 on_bad_row: OnBadRow = "error", cv2_threads: int | None = None) -> None:
        check_on_bad_row(on_bad_row)
        if not scale_factors or scale_factors[0] != 1.0 or min(scale_factors) <= 0:
            raise ValueError(f"scale_factors must start with 1.0 and be > 0, got {list(scale_factors)}")
        self.input_size, self.size_divisor = input_size, size_divisor
        self.scale_factors = tuple(scale_factors)
        self.on_bad_row = on_bad_row
        self.cv2_threads = cv2_threads

    def __call__(self, batch: pa.Table | dict[str, Any]) -> dict[str, np.ndarray]:
        if self.cv2_threads is not None:
            cv2.setNumThreads(self.cv2_threads)
            self.cv2_threads = None
        rows = _rows(batch)
        n = len(rows)
        suffixes = ["" if j == 0 else f"_{j}" for j in range(len(self.scale_factors))]
        out: dict[str, np.ndarray] = {}
        for suffix in suffixes:
            out[f"image{suffix}"] = np.empty(n, dtype=object)
            out[f"matrix{suffix}"] = np.zeros((n, 2, 3), np.float64)
        out["image_id"] = np.array([int(r["image_id"]) for r in rows], np.int64)
        out["orig_size"] = np.array([[int(r["width"]), int(r["height"])] for r in rows], np.int64).reshape(n, 2)
        ok = np.ones(n, dtype=bool)
        errors = [""] * n
        for i, row in enumerate(rows):
            what = bottomup_row_name(row)
            try:
                try:
                    image = decode_rgb(row["image"] or b"", what)
                except ValueError:
                    raise ValueError(f"{what}: image bytes do not decode") from None
                img = BottomUpImage(image_id=int(row["image_id"]), image_path=Path(row.get("file_name") or ""),
                                    width=int(row["width"]), height=int(row["height"]), joints=_NO_JOINTS,
                                    boxes=_NO_BOXES)
                item = val_item(image, img, self.input_size, self.size_divisor, self.scale_factors)
            except (ValueError, cv2.error) as e:
                msg = str(e) if str(e).startswith(what) else f"{what}: {e}"
                if self.on_bad_row == "error":
                    raise ValueError(msg) from None
                ok[i], errors[i] = False, msg
                for suffix in suffixes:
                    out[f"image{suffix}"][i] = np.zeros((3, 0, 0), np.uint8)
                continue
            for suffix in suffixes:
                out[f"image{suffix}"][i] = item[f"image{suffix}"]
                out[f"matrix{suffix}"][i] = item[f"matrix{suffix}"]
        if self.on_bad_row == "skip":
            out[OK_KEY] = ok
            out[ERROR_KEY] = np.array(errors, dtype=object)
        return out


_NO_JOINTS = np.zeros((0, 0, 3), np.float32)
_NO_BOXES = np.zeros((0, 4), np.float32)
