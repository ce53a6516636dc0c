"""Decoding shard rows (no Ray here): top-down rows into the arrays of a collated
:class:`~pose.data.topdown.TopDownDataset` batch, bottom-up rows into images, people and ignore masks.

:class:`TopDownShardDecoder` turns a batch of top-down rows into the arrays of
:class:`pose.data.topdown.TopDownDataset` (same keys and dtypes) with
:class:`~pose.data.topdown.TopDownSampler`; the Ray Data pipeline (``orchestrator/data.py``) maps it
over batches and :func:`collate_batch` makes torch tensors of its output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import cv2
import numpy as np
import pyarrow as pa
import torch

from pose.codecs.heatmap import HeatmapCodec
from pose.data.heap import retain_freed_memory
from pose.data.topdown import TopDownSampler, augmentation_rng
from pose.data.transforms import AugmentParams, TopDownAugment, compose_affine, warp_crop
from pose.metainfo import DatasetMeta

OnBadRow = Literal["error", "skip"]

TOPDOWN_KEYS = ("image", "heatmaps", "weights", "keypoints", "visible", "matrix", "image_id", "score", "area",
                "center", "scale", "index")
"""The keys of a :class:`~pose.data.topdown.TopDownDataset` item, in its order."""
HEATMAP_FACTOR_KEYS = ("heatmaps_y", "heatmaps_x")
"""What :class:`TopDownShardDecoder` with ``separable_heatmaps`` returns in place of ``heatmaps``: the
Gaussian's factors (B, K, h) and (B, K, w), expanded by :func:`collate_batch`."""
OK_KEY, ERROR_KEY = "_ok", "_error"
"""Extra per-row columns of :class:`TopDownShardDecoder` batches with ``on_bad_row="skip"``."""


def _column(table: pa.Table, name: str, dtype: Any, width: int | None = None) -> np.ndarray:
    col = table.column(name).combine_chunks()
    if width is None:
        return col.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    return np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=dtype).reshape(len(col), width)


def check_on_bad_row(on_bad_row: str) -> None:
    if on_bad_row not in ("error", "skip"):
        raise ValueError(f"on_bad_row must be 'error' or 'skip', got {on_bad_row!r}")


def set_up_decode_worker(cv2_threads: int | None, retain_memory: bool) -> tuple[None, bool]:
    """A decoder's one-time set-up in the process that runs it (a Ray Data worker): OpenCV's thread count
    and :func:`pose.data.heap.retain_freed_memory`. Returns the decoder's new settings: nothing left to do."""
    if cv2_threads is not None:
        cv2.setNumThreads(cv2_threads)
    if retain_memory:
        retain_freed_memory()
    return None, False


class TopDownShardDecoder:
    """Batch of top-down shard rows -> the arrays of a collated :class:`TopDownDataset` batch.

    Each row's augmentation is drawn from :func:`~pose.data.topdown.augmentation_rng` ``(seed, epoch,
    rank[, draw])`` (``rank`` is the row id; it equals the :class:`TopDownDataset` index for a whole
    split or a "first" budget, so the crops are the file loader's; ``draw`` numbers the passes of a
    labeled stream cycled within an epoch, so each pass is augmented afresh). The geometry and targets come from
    :meth:`TopDownSampler.geometry` and the codec; the crop is :func:`~pose.data.transforms.warp_crop`
    of the standard image->crop matrix:

    * integer-translation regions are decoded into a zero canvas in image coordinates, so the warp
      is the very call of the file loader (bit-exact for lossless shards: with OpenCV's float bilinear
      path even a pure translation of the matrix changes rounding, so the matrix is not composed);
    * downscaled regions are warped with the composed matrix ``image->crop o region->image``.

    The canvas has 4 channels (RGB + unused): OpenCV's 4-channel bilinear warp gives the same RGB
    values as the 3-channel one and is several times faster.

    Args:
        augment: None for test-time crops (no augmentation).
        keys: the output keys (default: :data:`TOPDOWN_KEYS`; unlabeled streams use
            :func:`pose.data.semi.unlabeled_source_keys`: ``("image", "index")`` and any ground truth).
            Without ``image`` the regions are not decoded.
        on_bad_row: "error": a row that does not decode raises ``ValueError`` naming the shard and row;
            "skip": the row is returned zeroed with ``_ok`` False and ``_error`` set, for the consumer to
            drop and count (:func:`collate_batch`).
        cv2_threads: if set, ``cv2.setNumThreads`` on first use (1 in Ray Data workers).
        separable_heatmaps: return ``heatmaps`` as its factors (:data:`HEATMAP_FACTOR_KEYS`,
            :meth:`~pose.codecs.heatmap.HeatmapCodec.encode_factors`), 1/14 of the bytes at 24x32;
            :func:`collate_batch` expands them to the same numbers. The Ray Data pipeline moves them.
        retain_memory: on first use, keep freed buffers in the process heap
            (:func:`pose.data.heap.retain_freed_memory`; set in Ray Data workers, where each call's
            output would otherwise be page-faulted in afresh).
        reduced_decode: decode a JPEG region at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling,
            ``cv2.IMREAD_REDUCED_COLOR_*``) when the crop still gets at least one decoded pixel per crop
            pixel, and warp from there. Several times faster on regions much larger than the crop; the
            crop is then a resampling of the file loader's, no longer equal to it within JPEG error
            (docs/data.md measures the difference). Off by default.
        draw: the pass of a cycled stream (None: a stream read once per epoch); see above.
    """

    def __init__(self, meta: DatasetMeta, codec: HeatmapCodec, augment: TopDownAugment | None = None,
                 seed: int = 0, epoch: int = 0, keys: Sequence[str] = TOPDOWN_KEYS, on_bad_row: OnBadRow = "error",
                 cv2_threads: int | None = None, reduced_decode: bool = False, retain_memory: bool = False,
                 separable_heatmaps: bool = False, draw: int | None = None) -> None:
        check_on_bad_row(on_bad_row)
        unknown = set(keys) - set(TOPDOWN_KEYS)
        if unknown:
            raise ValueError(f"unknown output keys {sorted(unknown)} (choose from {list(TOPDOWN_KEYS)})")
        self.sampler = TopDownSampler(meta, codec)
        self.augment = augment
        self.seed = seed
        self.epoch = epoch
        self.draw = draw
        self.keys = tuple(keys)
        self.on_bad_row = on_bad_row
        self.cv2_threads = cv2_threads
        self.retain_memory = retain_memory
        self.reduced_decode = reduced_decode
        self.separable_heatmaps = separable_heatmaps
        self._canvas: np.ndarray | None = None
        self._dirty: tuple[int, int, int, int] | None = None
        self._rgba: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_canvas": None, "_dirty": None, "_rgba": None}

    def params_for(self, rank: int) -> AugmentParams:
        if self.augment is None:
            return AugmentParams()
        return self.augment.sample(augmentation_rng(self.seed, self.epoch, int(rank), self.draw))

    def _canvas_view(self, x0: int, y0: int, rw: int, rh: int, width: int, height: int
                     ) -> tuple[np.ndarray, np.ndarray]:
        """(the image-sized zero canvas, the region's window in it) from a reused 4-channel buffer."""
        if x0 < 0 or y0 < 0 or x0 + rw > width or y0 + rh > height:
            raise ValueError(f"region {rw}x{rh} at ({x0}, {y0}) does not fit the {width}x{height} image")
        c = self._canvas
        if c is None or c.shape[0] < height or c.shape[1] < width:
            hh = max(height, 0 if c is None else c.shape[0])
            ww = max(width, 0 if c is None else c.shape[1])
            self._canvas = c = np.zeros((hh, ww, 4), np.uint8)
        elif self._dirty is not None:
            dx0, dy0, dx1, dy1 = self._dirty
            c[dy0:dy1, dx0:dx1] = 0
        self._dirty = (x0, y0, x0 + rw, y0 + rh)
        return c[:height, :width], c[y0:y0 + rh, x0:x0 + rw]

    def _crop(self, buf: bytes, r2i: np.ndarray, width: int, height: int, m: np.ndarray,
              to_crop: np.ndarray | None = None) -> np.ndarray:
        """Decode one region and warp it to the (h, w, 4) crop (``m``: image -> crop; ``to_crop``: region
        -> crop, ``m o r2i``, computed here when not given)."""
        arr = np.frombuffer(buf, np.uint8)
        factor = self._reduction(buf, r2i, m) if self.reduced_decode else 1
        if factor > 1:
            bgr = cv2.imdecode(arr, _REDUCED_FLAGS[factor] | cv2.IMREAD_IGNORE_ORIENTATION)
            if bgr is None:
                raise ValueError("region bytes do not decode as an image")
            # decoded pixel i averages region pixels [f i, f i + f): its centre is f i + (f - 1) / 2
            shift = (factor - 1) / 2
            to_region = np.array([[factor, 0.0, shift], [0.0, factor, shift]])
            to_image = compose_affine(r2i.reshape(2, 3), to_region)
            rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA)
            return warp_crop(rgba, compose_affine(m, to_image), self.sampler.codec.input_size)
        bgr = cv2.imdecode(arr, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if arr.size else None
        if bgr is None:
            raise ValueError("region bytes do not decode as an image")
        a, b, tx, c, d, ty = (float(v) for v in r2i)
        if a == 1.0 and b == 0.0 and c == 0.0 and d == 1.0 and tx.is_integer() and ty.is_integer():
            canvas, window = self._canvas_view(int(tx), int(ty), bgr.shape[1], bgr.shape[0], width, height)
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA, dst=window)
            return warp_crop(canvas, m, self.sampler.codec.input_size)
        rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA, dst=self._buffer(bgr.shape[0], bgr.shape[1]))
        if to_crop is None:
            to_crop = compose_affine(m, r2i.reshape(2, 3))
        return warp_crop(rgba, to_crop, self.sampler.codec.input_size)

    def _buffer(self, height: int, width: int) -> np.ndarray:
        """A reused (height, width, 4) uint8 buffer for the RGBA region (its contents are overwritten)."""
        size = height * width * 4
        if self._rgba is None or self._rgba.size < size:
            self._rgba = np.empty(max(size, 1 << 18), np.uint8)
        return self._rgba[:size].reshape(height, width, 4)

    @staticmethod
    def _reduction(buf: bytes, r2i: np.ndarray, m: np.ndarray) -> int:
        """The largest JPEG scale-down 1, 2, 4 or 8 that keeps >= 1 decoded pixel per crop pixel."""
        if buf[:2] != _JPEG_MAGIC:
            return 1
        region_px = math.sqrt(abs(float(r2i[0] * r2i[4] - r2i[1] * r2i[3])))  # image px per region px
        crop_px = math.sqrt(abs(float(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0])))  # crop px per image px
        per_crop_px = 1.0 / max(region_px * crop_px, 1e-12)  # region px per crop px
        factor = 1
        while factor < 8 and 2 * factor <= per_crop_px:
            factor *= 2
        return factor

    def __call__(self, batch: pa.Table | dict[str, Any]) -> dict[str, np.ndarray]:
        self.cv2_threads, self.retain_memory = set_up_decode_worker(self.cv2_threads, self.retain_memory)
        table = batch if isinstance(batch, pa.Table) else pa.table(batch)
        n = table.num_rows
        sampler, keys = self.sampler, self.keys
        k = sampler.meta.num_keypoints
        ranks = _column(table, "rank", np.int64)
        centers = _column(table, "center", np.float32, 2)
        scales = _column(table, "scale", np.float32, 2)
        keypoints = _column(table, "keypoints", np.float32, 2 * k).reshape(n, k, 2)
        visible = _column(table, "visible", np.float32, k)
        image_ids = _column(table, "image_id", np.int64)
        scores = _column(table, "score", np.float32)
        areas = _column(table, "area", np.float32)
        out = self._allocate(n)
        want_image, want_targets = "image" in keys, "heatmaps" in keys or "weights" in keys
        if want_image:
            r2i = _column(table, "region_to_image", np.float64, 6)
            widths = _column(table, "image_width", np.int64)
            heights = _column(table, "image_height", np.int64)
            regions = table.column("region").to_pylist()
            paths = table.column("path").to_pylist() if "path" in table.column_names else [None] * n
        ok = np.ones(n, dtype=bool)
        errors = [""] * n
        matrices, crop_kps, crop_vis = sampler.geometry_batch(centers, scales, keypoints, visible,
                                                              [self.params_for(r) for r in ranks])
        if want_image:
            image = out["image"]
            to_crop = compose_affine(matrices, r2i.reshape(n, 2, 3))  # region pixel -> crop pixel
            for i in range(n):
                try:
                    crop = self._crop(regions[i] or b"", r2i[i], int(widths[i]), int(heights[i]), matrices[i],
                                      to_crop[i])
                except (ValueError, cv2.error) as e:
                    msg = f"shard {paths[i] or '<table>'} row {int(ranks[i])} (image id {int(image_ids[i])}): {e}"
                    if self.on_bad_row == "error":
                        raise ValueError(msg) from None
                    ok[i], errors[i] = False, msg
                    image[i] = 0
                    continue
                image[i] = crop[:, :, :3].transpose(2, 0, 1)
        if want_targets:  # one vectorised call: the same numbers as encoding row by row
            gy, gx, weights = sampler.codec.encode_factors(crop_kps, crop_vis)
            gy[~ok] = 0.0
            weights[~ok] = 0.0
            out["weights"] = weights
            if self.separable_heatmaps:
                out[HEATMAP_FACTOR_KEYS[0]], out[HEATMAP_FACTOR_KEYS[1]] = gy, gx
            else:
                out["heatmaps"] = sampler.codec.expand_factors(gy, gx)
        crop_kps[~ok] = 0.0
        crop_vis[~ok] = 0.0
        matrices[~ok] = 0.0
        extra = {"image_id": image_ids, "score": scores, "area": areas, "center": centers, "scale": scales,
                 "index": ranks, "keypoints": crop_kps, "visible": crop_vis, "matrix": matrices.astype(np.float32)}
        names = [f for key in keys for f in (HEATMAP_FACTOR_KEYS if key == "heatmaps" and self.separable_heatmaps
                                             else (key,))]
        result = {key: (out[key] if key in out else extra[key]) for key in names}
        if self.on_bad_row == "skip":
            result[OK_KEY] = ok
            result[ERROR_KEY] = np.array(errors, dtype=object)
        return result

    def _allocate(self, n: int) -> dict[str, np.ndarray]:
        w, h = self.sampler.codec.input_size
        # empty, not zeros: every row is written (a bad one with zeros), so zeroing first would only
        # cost a pass over memory that :func:`~pose.data.heap.retain_freed_memory` hands back unzeroed
        return {"image": np.empty((n, 3, h, w), np.uint8)} if "image" in self.keys else {}


_JPEG_MAGIC = b"\xff\xd8"
_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def collate_batch(batch: dict[str, np.ndarray], keys: Sequence[str] | None = None
                  ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Decoder output (numpy) -> torch tensors like a collated :class:`TopDownDataset` batch.

    Rows flagged bad (``_ok`` False) are dropped; their messages are returned for counting. Heatmap
    factors (:data:`HEATMAP_FACTOR_KEYS`) are expanded to ``heatmaps``, in their place.
    """
    errors: list[str] = []
    keep = None
    if OK_KEY in batch:
        ok = np.asarray(batch[OK_KEY], dtype=bool)
        if not ok.all():
            errors = [str(e) for e, good in zip(batch[ERROR_KEY], ok) if not good]
            keep = np.flatnonzero(ok)
    names = [k for k in (keys or batch.keys()) if k not in (OK_KEY, ERROR_KEY, HEATMAP_FACTOR_KEYS[1])]
    out = {}
    for name in names:
        arr = np.asarray(batch[name])
        if keep is not None:
            arr = arr[keep]
        if name == HEATMAP_FACTOR_KEYS[0]:  # a new array: the outer product with the x factors
            gx = np.asarray(batch[HEATMAP_FACTOR_KEYS[1]])
            name, arr = "heatmaps", HeatmapCodec.expand_factors(arr, gx if keep is None else gx[keep])
        elif not arr.flags.writeable or not arr.flags.c_contiguous:  # e.g. a view of Ray's object store
            arr = np.array(arr, order="C")
        out[name] = torch.from_numpy(arr)
    return out, errors


def bottomup_row_name(row: dict) -> str:
    """``shard PATH row RANK (image id ID)``: how errors name a bottom-up row."""
    return f"shard {row.get('path') or '<table>'} row {row.get('rank')} (image id {row.get('image_id')})"


def decode_bottomup_row(row: dict, num_keypoints: int) -> dict[str, np.ndarray]:
    """One bottom-up row -> image (H, W, 3) uint8 RGB, keypoints (N, K, 3), boxes (N, 4) xywh,
    ignore_mask (H, W) uint8 (1: ignore).

    The image is decoded by :func:`pose.data.image_io.decode_rgb`, the file loader's decoder, so its
    pixels are those of ``read_rgb`` on the original file (the row holds the file's bytes)."""
    from pose.data.image_io import decode_rgb

    what = bottomup_row_name(row)
    try:
        img = decode_rgb(row["image"] or b"", what)
    except ValueError:
        raise ValueError(f"{what}: image bytes do not decode") from None
    n = int(row["num_people"])
    return {
        "image": img,
        "keypoints": np.asarray(row["keypoints"], np.float32).reshape(n, num_keypoints, 3),
        "boxes": np.asarray(row["boxes"], np.float32).reshape(n, 4),
        "ignore_mask": decode_ignore_mask(row["ignore_rle"], int(row["height"]), int(row["width"])),
    }


def decode_ignore_mask(rle: bytes, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 ignore mask (1: ignore) from a bottom-up row's ``ignore_rle``."""
    if not rle:
        return np.zeros((height, width), np.uint8)
    from pycocotools import mask as mask_utils

    return np.ascontiguousarray(mask_utils.decode({"size": [height, width], "counts": bytes(rle)}))
