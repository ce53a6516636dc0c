"""Parquet shards of a COCO-format split: writing, validating, reading and decoding (no Ray here).

Two layouts (``mode``):

* **topdown**: one row per person instance. The image pixels kept per row are a *region*: the
  padded box plus the margin that the standard augmentation (scale up to ``1 + scale_factor``,
  rotation up to ``2 * rot_factor`` degrees) can ever sample, clipped to the image, at native
  resolution (downscaled only when its long side exceeds ``max_side``, or, with ``input_size``, to
  the resolution that model input needs), grown to the source JPEG's
  block grid and re-encoded at the source's quality by default (``quality="source"``).
  ``region_to_image`` maps region pixels to image pixels; without downscaling it is an integer
  translation.
* **bottomup**: one row per image: the original file bytes, every person's keypoints and box, and
  the ignore mask (crowd regions + people without keypoints) as a COCO RLE.

A shard directory holds ``part-NNNNN-of-MMMMM.parquet`` files and ``_manifest.json``; each file also
carries the schema version, the producing command and the manifest header in its Parquet metadata.
The layout is documented in ``docs/data.md``.

:class:`TopDownShardDecoder` turns a batch of top-down rows into the arrays of
:class:`pose.data.topdown.TopDownDataset` (same keys and dtypes) with
:class:`~pose.data.topdown.TopDownSampler`; the Ray Data pipeline (``orchestrator/data.py``) maps it
over batches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pose.codecs.heatmap import HeatmapCodec
from pose.data.coco import (
    LoadReport,
    PersonInstance,
    load_detection_instances,
    load_gt_instances,
    read_json,
)
from pose.data.heap import retain_freed_memory
from pose.data.jpeg_header import JpegHeader, align_to_blocks, read_jpeg_header
from pose.data.semi import select_budget
from pose.data.topdown import TopDownSampler, augmentation_rng
from pose.data.transforms import AugmentParams, TopDownAugment, compose_affine, warp_crop
from pose.metainfo import DatasetMeta, get_metainfo

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
"""Bumped whenever the columns or their meaning change; readers refuse other versions."""
BOTTOMUP_SELECTION = 2
"""Which people and masks bottom-up rows hold; in the fingerprint, so a re-run rewrites older shards.
1: the writer's own rules; 2: :func:`pose.bottomup.data.image_record`, the file loader's."""
FORMAT = "poselab-shards"
MANIFEST = "_manifest.json"
META_VERSION = b"poselab.schema_version"
META_COMMAND = b"poselab.command"
META_HEADER = b"poselab.header"

Mode = Literal["topdown", "bottomup"]
Boxes = Literal["gt", "detections"]
OnBadRow = Literal["error", "skip"]

TOPDOWN_KEYS = ("image", "heatmaps", "weights", "keypoints", "visible", "matrix", "image_id", "score", "area",
                "center", "scale", "index")
"""The keys of a :class:`~pose.data.topdown.TopDownDataset` item, in its order."""
HEATMAP_FACTOR_KEYS = ("heatmaps_y", "heatmaps_x")
"""What :class:`TopDownShardDecoder` with ``separable_heatmaps`` returns in place of ``heatmaps``: the
Gaussian's factors (B, K, h) and (B, K, w), expanded by :func:`collate_batch`."""
OK_KEY, ERROR_KEY = "_ok", "_error"
"""Extra per-row columns of :class:`TopDownShardDecoder` batches with ``on_bad_row="skip"``."""


class ShardError(ValueError):
    """A shard directory or file that cannot be used (the message names it)."""


# ---------------------------------------------------------------------------------------------- options
@dataclass(frozen=True)
class ShardOptions:
    """Everything that decides the content of the shards (the re-run fingerprint covers it).

    Attributes:
        mode: "topdown" (one row per instance) or "bottomup" (one row per image).
        boxes: top-down person boxes: "gt" (annotated people with labeled keypoints) or
            "detections" (a detection results file; keypoints are zeros).
        dataset: keypoint layout (``coco``, ``crowdpose`` or a metainfo JSON path).
        aspect_ratio: crop width / height of the model input (192 / 256); sets ``center``/``scale``.
        padding: box padding (SimpleBaseline's 1.25).
        scale_factor, rot_factor: the largest :class:`~pose.data.transforms.TopDownAugment` the
            regions must support (scale up to 1 + scale_factor, rotation up to 2 * rot_factor).
        max_side: regions whose long side exceeds it are downscaled to it (no longer bit-exact).
        input_size: the model input (W, H) the shards serve, or None (native resolution, the default).
            When set, a region is downscaled to :func:`region_density`: one region pixel per crop pixel
            of the most zoomed-in augmentation (window scale ``1 - scale_factor``), so no crop the
            augmentation can draw is upsampled from it. Smaller regions decode faster; the crops are
            then resamplings of the file loader's, and the pipeline refuses larger model inputs.
        region_density: with ``input_size``, region pixels per crop pixel of that most zoomed-in crop
            (>= 1; default 1). Denser regions keep the crops closer to the file loader's (less blur from
            the two resamplings) for a decode that grows with the square.
        lossless: store regions as PNG (bit-exact crops) instead of JPEG.
        quality: JPEG quality of the regions: 1..100, or "source" (the default): the source image's
            quality and chroma subsampling, read from its header (:mod:`pose.data.jpeg_header`;
            :data:`FALLBACK_QUALITY` for sources that are not JPEG). JPEG regions of JPEG sources start
            and end on the source's block grid either way, so re-encoding keeps the blocks it can.
        det_score_threshold: detections scoring below it are not written (counted).
        rows_per_shard: rows per Parquet file.
        row_group_size: rows per Parquet row group (the unit of parallel/streaming reads).
    """

    mode: Mode = "topdown"
    boxes: Boxes = "gt"
    dataset: str = "coco"
    aspect_ratio: float = 0.75
    padding: float = 1.25
    scale_factor: float = 0.25
    rot_factor: float = 30.0
    max_side: int = 1024
    input_size: tuple[int, int] | None = None
    region_density: float = 1.0
    lossless: bool = False
    quality: int | Literal["source"] = "source"
    det_score_threshold: float = 0.0
    rows_per_shard: int = 1024
    row_group_size: int = 128

    def __post_init__(self) -> None:
        if self.mode not in ("topdown", "bottomup"):
            raise ValueError(f"mode must be 'topdown' or 'bottomup', got {self.mode!r}")
        if self.boxes not in ("gt", "detections"):
            raise ValueError(f"boxes must be 'gt' or 'detections', got {self.boxes!r}")
        if self.mode == "bottomup" and self.boxes != "gt":
            raise ValueError("bottom-up shards hold whole images: --boxes detections applies to top-down only")
        if self.rows_per_shard < 1 or self.row_group_size < 1:
            raise ValueError("rows_per_shard and row_group_size must be >= 1")
        if self.max_side < 16:
            raise ValueError(f"max_side must be >= 16, got {self.max_side}")
        if self.input_size is not None:
            size = tuple(self.input_size)
            if len(size) != 2 or not all(isinstance(v, int) and v >= 1 for v in size):
                raise ValueError(f"input_size must be two positive integers (W, H), got {self.input_size!r}")
            if self.mode != "topdown":
                raise ValueError("input_size applies to top-down regions; bottom-up rows keep the original file")
            object.__setattr__(self, "input_size", size)  # JSON manifests give a list
        if not (isinstance(self.region_density, (int, float)) and 1.0 <= self.region_density <= 16.0):
            raise ValueError(f"region_density must be a number in 1..16 (region pixels per crop pixel), "
                             f"got {self.region_density!r}")
        if self.region_density != 1.0 and self.input_size is None:
            raise ValueError("region_density applies to regions sized for a model input: give input_size too")
        if self.quality != "source" and not (isinstance(self.quality, int) and 1 <= self.quality <= 100):
            raise ValueError(f"JPEG quality must be 'source' or an integer in 1..100, got {self.quality!r}")
        if self.aspect_ratio <= 0 or self.padding <= 0 or self.scale_factor < 0 or self.rot_factor < 0:
            raise ValueError("aspect_ratio and padding must be > 0, scale_factor and rot_factor >= 0")

    @property
    def image_format(self) -> str:
        return "png" if self.lossless else "jpeg"


@dataclass(frozen=True)
class ShardSource:
    """The input files of one split."""

    ann: Path
    images: Path
    detections: Path | None = None


def resolve_source(root: str | Path, split: str, boxes: Boxes = "gt", ann: str | Path | None = None,
                   images: str | Path | None = None, detections: str | Path | None = None) -> ShardSource:
    """Default paths under a COCO-style ``root``: ``annotations/person_keypoints_{split}.json`` (or
    ``annotations/image_info_{split}.json``), ``images/{split}``, and for detection boxes the one
    file in ``person_detection_results/`` whose name contains ``split``. Relative overrides are
    relative to ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root not found: {root}")

    def under(p: str | Path) -> Path:
        p = Path(p)
        return p if p.is_absolute() else root / p

    if ann is None:
        cands = [root / "annotations" / f"person_keypoints_{split}.json",
                 root / "annotations" / f"image_info_{split}.json"]
        found = [c for c in cands if c.exists()]
        if not found:
            raise FileNotFoundError(f"no annotation file for split '{split}' under {root} "
                                    f"(tried {', '.join(str(c) for c in cands)}; pass --ann)")
        ann_path = found[0]
    else:
        ann_path = under(ann)
    img_dir = under(images) if images is not None else root / "images" / split
    if not img_dir.is_dir():
        raise FileNotFoundError(f"image directory not found: {img_dir} (pass --images)")
    det_path = None
    if boxes == "detections":
        if detections is not None:
            det_path = under(detections)
        else:
            det_dir = root / "person_detection_results"
            cands = sorted(det_dir.glob(f"*{split}*.json")) if det_dir.is_dir() else []
            if len(cands) != 1:
                raise FileNotFoundError(
                    f"cannot pick the detection file for split '{split}': {len(cands)} candidates in "
                    f"{det_dir} ({', '.join(c.name for c in cands) or 'none'}); pass --detections")
            det_path = cands[0]
        if not det_path.exists():
            raise FileNotFoundError(f"detection file not found: {det_path}")
    return ShardSource(ann=ann_path, images=img_dir, detections=det_path)


# ---------------------------------------------------------------------------------------------- geometry
def margin_region(center: np.ndarray, scale: np.ndarray, width: int, height: int, max_scale: float,
                  max_rotation: float, pad: int = 2) -> tuple[int, int, int, int]:
    """Integer box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) that holds every pixel a crop of
    ``crop_matrix(center, scale * s, r, ...)`` can sample for ``s <= max_scale`` and
    ``|r| <= max_rotation`` degrees (bilinear neighbours and ``pad`` pixels included), clipped to
    the image. Outside the image the crop sees the zero border, which the region reproduces."""
    w, h = float(scale[0]) * max_scale, float(scale[1]) * max_scale
    t = math.radians(min(abs(float(max_rotation)), 90.0))

    def extent(a: float, b: float) -> float:  # max over |theta| <= t of a |cos| + b |sin|
        return math.hypot(a, b) if math.atan2(b, a) <= t else a * math.cos(t) + b * math.sin(t)

    ex, ey = 0.5 * extent(w, h), 0.5 * extent(h, w)
    cx, cy = float(center[0]), float(center[1])
    x0, x1 = math.floor(cx - ex) - pad, math.ceil(cx + ex) + pad + 1
    y0, y1 = math.floor(cy - ey) - pad, math.ceil(cy + ey) + pad + 1
    # Clip; a window entirely outside the image keeps one edge pixel (its crop is the zero border).
    x0 = min(max(x0, 0), width - 1)
    y0 = min(max(y0, 0), height - 1)
    x1 = max(min(x1, width), x0 + 1)
    y1 = max(min(y1, height), y0 + 1)
    return x0, y0, x1, y1


def region_density(scale: np.ndarray, input_size: tuple[int, int] | None, scale_factor: float,
                   per_crop_pixel: float = 1.0) -> float:
    """Region pixels per image pixel that serve an ``input_size`` (W, H) model: ``per_crop_pixel`` times
    the crop pixels per image pixel of the smallest augmentation window, ``scale * (1 - scale_factor)``;
    inf (keep native resolution) without an input size or when the window can shrink to nothing."""
    smallest = 1.0 - scale_factor
    if input_size is None or smallest <= 0:
        return math.inf
    w, h = input_size
    return per_crop_pixel * max(w / (float(scale[0]) * smallest), h / (float(scale[1]) * smallest))


def extract_region(image: np.ndarray, box: tuple[int, int, int, int], max_side: int,
                   density: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``box`` out of ``image``; downscale (INTER_AREA) when its long side exceeds ``max_side``
    or to ``density`` region pixels per image pixel, whichever is smaller (never upscaled).

    Returns the region and its 2x3 region->image matrix (an integer translation unless downscaled).
    """
    x0, y0, x1, y1 = box
    region = image[y0:y1, x0:x1]
    rw, rh = x1 - x0, y1 - y0
    f = min(max_side / max(rw, rh), density)
    if f >= 1.0:
        return np.ascontiguousarray(region), np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]])
    nw, nh = max(1, round(rw * f)), max(1, round(rh * f))
    region = cv2.resize(region, (nw, nh), interpolation=cv2.INTER_AREA)
    sx, sy = rw / nw, rh / nh  # cv2.resize: dst pixel u samples src (u + 0.5) * s - 0.5
    return region, np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]])


# ---------------------------------------------------------------------------------------------- schemas
def topdown_schema(num_keypoints: int) -> pa.Schema:
    k = num_keypoints
    return pa.schema([
        ("rank", pa.int64()),  # position in the split's deterministic instance order: 0..n-1, the row id
        ("image_id", pa.int64()),
        ("instance_id", pa.int64()),  # annotation id (gt) or detection index (detections)
        ("split", pa.string()),
        ("file_name", pa.string()),
        ("image_width", pa.int32()),
        ("image_height", pa.int32()),
        ("bbox", pa.list_(pa.float32(), 4)),  # xywh (clipped GT box / detection box)
        ("center", pa.list_(pa.float32(), 2)),
        ("scale", pa.list_(pa.float32(), 2)),  # padded crop window (w, h) in image pixels
        ("keypoints", pa.list_(pa.float32(), 2 * k)),  # (K, 2) image pixels, flattened
        ("visible", pa.list_(pa.float32(), k)),
        ("num_visible", pa.int32()),
        ("score", pa.float32()),
        ("area", pa.float32()),
        ("region", pa.binary()),  # JPEG/PNG bytes of the region (RGB)
        ("region_box", pa.list_(pa.int32(), 4)),  # x0, y0, x1, y1 in image pixels (x1, y1 exclusive)
        ("region_to_image", pa.list_(pa.float64(), 6)),  # 2x3 region pixel -> image pixel
    ])


def bottomup_schema() -> pa.Schema:
    return pa.schema([
        ("rank", pa.int64()),  # image position in the annotation file
        ("image_id", pa.int64()),
        ("split", pa.string()),
        ("file_name", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("image", pa.binary()),  # the original file bytes
        ("num_people", pa.int32()),
        ("annotation_ids", pa.list_(pa.int64())),
        ("keypoints", pa.list_(pa.float32())),  # (num_people, K, 3) x, y, v flattened
        ("boxes", pa.list_(pa.float32())),  # (num_people, 4) xywh flattened
        ("areas", pa.list_(pa.float32())),
        ("num_ignored", pa.int32()),  # crowd regions + people without keypoints
        ("ignore_rle", pa.binary()),  # COCO compressed RLE counts of the ignore mask (empty: none)
    ])


# ---------------------------------------------------------------------------------------------- writing
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_bgr(path: Path, image_id: int) -> tuple[np.ndarray, bytes]:
    """The file's bytes and its pixels decoded exactly like :func:`pose.data.image_io.read_rgb`
    (BGR order: the RGB conversion is a pure channel swap, done when the region is decoded)."""
    what = f"{path} (image id {image_id})"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {what}") from None
    arr = np.frombuffer(raw, np.uint8)
    img = cv2.imdecode(arr, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if arr.size else None
    if img is None:
        raise ValueError(f"cannot decode image: {what}")
    return img, raw


def parse_quality(text: str) -> int | Literal["source"]:
    """A ``--quality`` argument: ``"source"`` or an integer in 1..100 (``ValueError`` otherwise)."""
    if text == "source":
        return "source"
    if not (text.isdigit() and 1 <= int(text) <= 100):
        raise ValueError(f"expected 'source' or an integer in 1..100, got {text!r}")
    return int(text)


FALLBACK_QUALITY = 95  # quality="source" for sources that are not JPEG (or whose header has no 8-bit table)
_CV2_SAMPLING = {420: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420, 422: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
                 444: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444, 440: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440,
                 411: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411}


def region_jpeg_params(opts: ShardOptions, source: JpegHeader | None) -> list[int]:
    """``cv2.imencode`` parameters of a JPEG region cut from a source with header ``source``."""
    if opts.quality != "source":
        return [cv2.IMWRITE_JPEG_QUALITY, int(opts.quality)]
    if source is None or source.quality is None:
        return [cv2.IMWRITE_JPEG_QUALITY, FALLBACK_QUALITY]
    params = [cv2.IMWRITE_JPEG_QUALITY, source.quality]
    if source.sampling is not None:
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, _CV2_SAMPLING[source.sampling]]
    return params


def _encode_bgr(region_bgr: np.ndarray, opts: ShardOptions, source: JpegHeader | None = None) -> bytes:
    if opts.lossless:
        ok, buf = cv2.imencode(".png", region_bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        ok, buf = cv2.imencode(".jpg", region_bgr, region_jpeg_params(opts, source))
    if not ok:
        raise ValueError("cannot encode a region")
    return buf.tobytes()


@dataclass
class _TopDownTask:
    index: int
    path: str
    instances: list[PersonInstance]
    image_root: str
    split: str
    opts: ShardOptions
    num_keypoints: int
    metadata: dict[bytes, bytes]


def _write_topdown_shard(task: _TopDownTask) -> tuple[int, int, int]:
    opts, root = task.opts, Path(task.image_root)
    cols: dict[str, list] = {name: [] for name in topdown_schema(task.num_keypoints).names}
    cached_id, image, header = None, None, None
    for inst in task.instances:
        if inst.image_id != cached_id:
            image, raw = _read_bgr(Path(inst.image_path), inst.image_id)
            header = read_jpeg_header(raw)
            cached_id = inst.image_id
        h, w = image.shape[:2]
        box = margin_region(inst.center, inst.scale, w, h, 1.0 + opts.scale_factor, 2.0 * opts.rot_factor)
        if header is not None and not opts.lossless:
            box = align_to_blocks(box, header.block, w, h)
        density = region_density(inst.scale, opts.input_size, opts.scale_factor, opts.region_density)
        region, r2i = extract_region(image, box, opts.max_side, density)
        row = {
            "rank": inst.rank, "image_id": inst.image_id, "instance_id": inst.instance_id, "split": task.split,
            "file_name": Path(inst.image_path).relative_to(root).as_posix(),
            "image_width": w, "image_height": h,
            "bbox": np.asarray(inst.bbox, np.float32).tolist(),
            "center": np.asarray(inst.center, np.float32).tolist(),
            "scale": np.asarray(inst.scale, np.float32).tolist(),
            "keypoints": np.asarray(inst.keypoints, np.float32).reshape(-1).tolist(),
            "visible": np.asarray(inst.visible, np.float32).tolist(),
            "num_visible": int(np.count_nonzero(inst.visible)),
            "score": float(inst.score), "area": float(inst.area),
            "region": _encode_bgr(region, opts, header), "region_box": list(box),
            "region_to_image": r2i.reshape(-1).tolist(),
        }
        for k, v in row.items():
            cols[k].append(v)
    table = pa.table(cols, schema=topdown_schema(task.num_keypoints).with_metadata(task.metadata))
    return task.index, len(task.instances), _write_table(table, Path(task.path), opts.row_group_size, "region")


@dataclass
class _BottomUpTask:
    index: int
    path: str
    records: list[dict]
    image_root: str
    split: str
    opts: ShardOptions
    num_keypoints: int
    metadata: dict[bytes, bytes]


def ignore_rle(record: Any) -> bytes:
    """COCO compressed RLE counts of a :class:`~pose.bottomup.data.BottomUpImage`'s ignore mask
    (:func:`pose.bottomup.data.ignore_mask`: crowd regions and the polygons of people without
    keypoints; annotations without a segmentation mask nothing). Empty bytes when nothing is ignored."""
    if not record.mask_anns:
        return b""
    from pycocotools import mask as mask_utils

    from pose.bottomup.data import ignore_mask

    ignored = np.asfortranarray(ignore_mask(record) == 0, dtype=np.uint8)
    if not ignored.any():
        return b""
    counts = mask_utils.encode(ignored)["counts"]
    return counts if isinstance(counts, bytes) else counts.encode()


def decode_ignore_mask(rle: bytes, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 ignore mask (1: ignore) from a bottom-up row's ``ignore_rle``."""
    if not rle:
        return np.zeros((height, width), np.uint8)
    from pycocotools import mask as mask_utils

    return np.ascontiguousarray(mask_utils.decode({"size": [height, width], "counts": bytes(rle)}))


def _write_bottomup_shard(task: _BottomUpTask) -> tuple[int, int, int]:
    cols: dict[str, list] = {name: [] for name in bottomup_schema().names}
    for rec in task.records:
        img, record, people = rec["image"], rec["record"], rec["people"]
        path = Path(record.image_path)
        pixels, raw = _read_bgr(path, record.image_id)
        h, w = pixels.shape[:2]
        if (w, h) != (record.width, record.height):
            raise ValueError(f"{path} (image id {record.image_id}) is {w}x{h} but the annotations say "
                             f"{record.width}x{record.height}")
        row = {
            "rank": rec["rank"], "image_id": record.image_id, "split": task.split,
            "file_name": img["file_name"], "width": w, "height": h, "image": raw,
            "num_people": len(people), "annotation_ids": [int(p.get("id", -1)) for p in people],
            "keypoints": record.joints.reshape(-1).tolist(), "boxes": record.boxes.reshape(-1).tolist(),
            "areas": [float(p.get("area", p["bbox"][2] * p["bbox"][3])) for p in people],
            "num_ignored": rec["num_annotations"] - len(people), "ignore_rle": ignore_rle(record),
        }
        for key, v in row.items():
            cols[key].append(v)
    table = pa.table(cols, schema=bottomup_schema().with_metadata(task.metadata))
    return task.index, len(task.records), _write_table(table, Path(task.path), task.opts.row_group_size, "image")


def _write_table(table: pa.Table, path: Path, row_group_size: int, bytes_column: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # The image bytes are already compressed; everything else gets zstd.
    compression = {name: ("none" if name == bytes_column else "zstd") for name in table.column_names}
    pq.write_table(table, tmp, row_group_size=row_group_size, compression=compression,
                   use_dictionary=["split", "file_name"], write_statistics=True)
    os.replace(tmp, path)
    return path.stat().st_size


def _bottomup_records(ann_file: Path, image_dir: Path, meta: DatasetMeta) -> tuple[list[dict], dict[str, int]]:
    """One record per image in file order. Which people train and what the ignore mask covers are
    decided by :func:`pose.bottomup.data.image_record`, the very code of the file loader
    (:func:`~pose.bottomup.data.load_bottomup_images`), which also validates the file."""
    from pose.bottomup.data import group_annotations, image_record

    data = read_json(ann_file)
    by_image = group_annotations(data, ann_file, meta, train=False)  # type: ignore[arg-type]
    report = LoadReport(source=str(ann_file))
    counts = {"people": 0, "crowd": 0, "without_keypoints": 0}
    records = []
    for rank, img in enumerate(data["images"]):  # type: ignore[index]
        entries = by_image.get(int(img["id"]), [])
        record, people = image_record(img, entries, image_dir, meta, ann_file, report)
        kept = {id(a) for a in people}
        for ann, _ in entries:
            if id(ann) in kept:
                counts["people"] += 1
            else:
                counts["crowd" if ann.get("iscrowd", 0) else "without_keypoints"] += 1
        records.append({"rank": rank, "image": img, "record": record, "people": people,
                        "num_annotations": len(entries)})
    return records, counts


def _fingerprint(opts: ShardOptions, split: str, src: ShardSource, image_files: Iterable[Path]) -> str:
    h = hashlib.sha256()
    options = asdict(opts)
    if options["input_size"] is None:  # added 2026-12-05: shards written before it stay up to date
        del options["input_size"]
    if options["region_density"] == 1.0:  # added 2026-12-07, likewise
        del options["region_density"]
    what: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "split": split, "options": options}
    if opts.mode == "bottomup":  # 2: people and ignore mask chosen by pose.bottomup.data.image_record
        what["bottomup_selection"] = BOTTOMUP_SELECTION
    h.update(json.dumps(what, sort_keys=True).encode())
    h.update(_sha256(src.ann).encode())
    if src.detections is not None:
        h.update(_sha256(src.detections).encode())
    for p in image_files:
        try:
            st = p.stat()
        except FileNotFoundError:
            raise FileNotFoundError(f"image not found: {p}") from None
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _shard_name(i: int, n: int) -> str:
    return f"part-{i:05d}-of-{n:05d}.parquet"


def _up_to_date(out: Path, fingerprint: str) -> dict | None:
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if manifest.get("schema_version") != SCHEMA_VERSION or manifest.get("fingerprint") != fingerprint:
        return None
    for f in manifest.get("files", []):
        p = out / f["name"]
        if not p.exists() or p.stat().st_size != f["bytes"]:
            return None
    return manifest


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a directory")
    if out.is_dir():
        foreign = [p.name for p in out.iterdir()
                   if not (p.name == MANIFEST or (p.name.startswith("part-") and ".parquet" in p.name)
                           or p.name.startswith(".manifest"))]
        if foreign:
            raise ValueError(f"--out {out} is not a shard directory (it holds {', '.join(sorted(foreign)[:3])}"
                             f"{' ...' if len(foreign) > 3 else ''}); choose an empty or new directory")


def write_shards(root: str | Path, split: str, out: str | Path, opts: ShardOptions = ShardOptions(), *,
                 ann: str | Path | None = None, images: str | Path | None = None,
                 detections: str | Path | None = None, command: str = "", workers: int = 0,
                 progress: bool = True, force: bool = False) -> dict:
    """Convert one COCO-format split to Parquet shards in ``out`` (see the module docstring).

    Idempotent: when ``out`` already holds shards of the same inputs and options (the manifest's
    fingerprint: options, schema version, annotation/detection file hashes, image sizes and mtimes)
    nothing is written (``"up_to_date": True``) unless ``force``. Otherwise every shard is rewritten
    (byte-identical for identical inputs) and stale shard files are removed.

    Args:
        workers: processes writing shards in parallel (0: all CPU cores; 1: in this process).

    Returns:
        The manifest (plus ``"up_to_date"``).
    """
    out = Path(out)
    meta = get_metainfo(opts.dataset)
    src = resolve_source(root, split, opts.boxes, ann, images, detections)
    _check_out_dir(out)
    k = meta.num_keypoints
    skipped: dict[str, int] = {}
    if opts.mode == "topdown":
        if opts.boxes == "gt":
            items: list[Any] = load_gt_instances(src.ann, src.images, meta, opts.aspect_ratio, opts.padding)
        else:
            items = load_detection_instances(src.detections, src.ann, src.images, meta, opts.aspect_ratio,
                                             opts.det_score_threshold, opts.padding)
        image_files = list(dict.fromkeys(Path(i.image_path) for i in items))
    else:
        items, counts = _bottomup_records(src.ann, src.images, meta)
        skipped = {k_: v for k_, v in counts.items() if k_ != "people"}
        image_files = [Path(r["record"].image_path) for r in items]
    fingerprint = _fingerprint(opts, split, src, image_files)
    if not force and (done := _up_to_date(out, fingerprint)) is not None:
        log.info("shards in %s are up to date (%d rows); nothing to do", out, done["rows"])
        return {**done, "up_to_date": True}

    n_rows = len(items)
    n_shards = max(1, math.ceil(n_rows / opts.rows_per_shard))
    header = {
        "format": FORMAT, "schema_version": SCHEMA_VERSION, "mode": opts.mode, "split": split,
        "boxes": opts.boxes, "dataset": meta.name, "num_keypoints": k, "image_format": opts.image_format,
        "options": asdict(opts), "source": {"root": str(root), "ann": str(src.ann), "images": str(src.images),
                                            "detections": None if src.detections is None else str(src.detections)},
        "command": command, "fingerprint": fingerprint, "rows": n_rows, "num_shards": n_shards,
    }
    metadata = {META_VERSION: str(SCHEMA_VERSION).encode(), META_COMMAND: command.encode(),
                META_HEADER: json.dumps(header, sort_keys=True).encode()}
    tasks: list[Any] = []
    for i in range(n_shards):
        chunk = items[i * opts.rows_per_shard:(i + 1) * opts.rows_per_shard]
        path = str(out / _shard_name(i, n_shards))
        if opts.mode == "topdown":
            tasks.append(_TopDownTask(i, path, chunk, str(src.images), split, opts, k, metadata))
        else:
            tasks.append(_BottomUpTask(i, path, chunk, str(src.images), split, opts, k, metadata))
    fn = _write_topdown_shard if opts.mode == "topdown" else _write_bottomup_shard
    # No manifest while files change: an interrupted rewrite leaves a directory readers refuse, never
    # a manifest over a mix of old and new shards.
    (out / MANIFEST).unlink(missing_ok=True)

    from pose.synth.progress import ProgressBar

    bar = ProgressBar(n_rows, split, enabled=progress, prefix="shards", unit="rows")
    results: dict[int, tuple[int, int]] = {}
    workers = max(1, min(workers or (os.cpu_count() or 1), n_shards))
    if workers == 1:
        for t in tasks:
            i, rows, size = fn(t)
            results[i] = (rows, size)
            bar.update(rows)
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(fn, t) for t in tasks]
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    if fut.exception() is not None:
                        for other in pending:
                            other.cancel()
                        raise fut.exception()  # type: ignore[misc]
                    i, rows, size = fut.result()
                    results[i] = (rows, size)
                    bar.update(rows)
    bar.close()

    files = [{"name": _shard_name(i, n_shards), "rows": results[i][0], "first_rank": i * opts.rows_per_shard,
              "bytes": results[i][1]} for i in range(n_shards)]
    manifest = {**header, "skipped": skipped, "files": files}
    tmp = out / ".manifest.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out / MANIFEST)
    keep = {f["name"] for f in files}
    for stale in out.glob("part-*.parquet*"):
        if stale.name not in keep:
            stale.unlink()
    log.info("wrote %d %s rows of split '%s' to %d shards in %s", n_rows, opts.mode, split, n_shards, out)
    return {**manifest, "up_to_date": False}


# ---------------------------------------------------------------------------------------------- reading
def read_file_header(path: str | Path) -> dict:
    """The manifest header stored in one shard file's metadata; checks its schema version.

    Raises:
        FileNotFoundError: the file is missing.
        ShardError: not a poselab shard, or a schema version other than :data:`SCHEMA_VERSION`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"shard file missing: {path}")
    try:
        md = pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError) as e:
        raise ShardError(f"shard {path}: not a readable Parquet file ({e})") from None
    if META_VERSION not in md:
        raise ShardError(f"shard {path}: not a poselab shard (no {META_VERSION.decode()} metadata)")
    _check_version(int(md[META_VERSION]), f"shard {path}")
    return json.loads(md[META_HEADER])


def _check_version(version: int, what: str) -> None:
    if version < SCHEMA_VERSION:
        raise ShardError(f"{what} has schema version {version}, older than the supported version "
                         f"{SCHEMA_VERSION}: re-create it with `poselab shards` (see its manifest's command)")
    if version > SCHEMA_VERSION:
        raise ShardError(f"{what} has schema version {version}, newer than this poselab reads "
                         f"({SCHEMA_VERSION}): update poselab")


@dataclass(frozen=True)
class ShardFile:
    path: Path
    rows: int
    first_rank: int


@dataclass(frozen=True)
class ShardSet:
    """A validated shard directory (one split, one mode)."""

    root: Path
    header: dict = field(repr=False)
    files: tuple[ShardFile, ...] = field(repr=False)

    @property
    def mode(self) -> str:
        return self.header["mode"]

    @property
    def split(self) -> str:
        return self.header["split"]

    @property
    def num_rows(self) -> int:
        return int(self.header["rows"])

    @property
    def num_keypoints(self) -> int:
        return int(self.header["num_keypoints"])

    @property
    def options(self) -> ShardOptions:
        return ShardOptions(**self.header["options"])

    def paths(self, rank_range: tuple[int, int] | None = None) -> list[str]:
        """Shard file paths; with ``rank_range`` (start, stop) only the files holding those ranks."""
        if rank_range is None:
            return [str(f.path) for f in self.files]
        start, stop = rank_range
        return [str(f.path) for f in self.files if f.first_rank < stop and f.first_rank + f.rows > start]

    def budget_ranks(self, budget: int, mode: str = "first", seed: int = 0) -> np.ndarray | None:
        """The ranks of a label budget (None: all rows); see :func:`budget_ranks`."""
        return budget_ranks(self.num_rows, budget, mode, seed, what=f"shards {self.root} (split '{self.split}')")


def open_shards(root: str | Path | ShardSet, check_files: bool = True) -> ShardSet:
    """Validate a shard directory: its manifest, and (``check_files``) that every listed file exists and
    has the supported schema version.

    Raises:
        FileNotFoundError: no such directory, no manifest, or a listed shard file is missing.
        ShardError: an unsupported schema version (manifest or file) or a malformed manifest.
    """
    if isinstance(root, ShardSet):
        return root
    root = Path(root).absolute()  # file paths must stay valid in workers with another working directory
    mpath = root / MANIFEST
    if not root.is_dir():
        raise FileNotFoundError(f"shard directory not found: {root}")
    if not mpath.exists():
        raise FileNotFoundError(f"{root} is not a shard directory (no {MANIFEST}; create it with `poselab shards`)")
    try:
        header = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        raise ShardError(f"{mpath}: malformed JSON ({e})") from None
    if header.get("format") != FORMAT:
        raise ShardError(f"{mpath}: not a poselab shard manifest")
    _check_version(int(header.get("schema_version", 0)), f"shard directory {root}")
    files = tuple(ShardFile(root / f["name"], int(f["rows"]), int(f["first_rank"])) for f in header["files"])
    if check_files:
        for f in files:
            if not f.path.exists():
                raise FileNotFoundError(f"shard file missing: {f.path} (listed in {mpath}; re-run the "
                                        f"command in the manifest to re-create it)")
            read_file_header(f.path)
    return ShardSet(root, header, files)


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """One shard file as a table (version checked), plus a ``path`` column naming the file (as Ray
    Data's ``include_paths`` adds) for error messages."""
    read_file_header(path)
    table = pq.read_table(path, columns=columns)
    return table.append_column("path", pa.array([str(path)] * table.num_rows, pa.string()))


def budget_ranks(num_rows: int, budget: int, mode: str = "first", seed: int = 0, what: str = "shards"
                 ) -> np.ndarray | None:
    """Ranks kept by a label budget, exactly as :func:`pose.data.semi.select_budget` picks instances
    (``first``: ranks < budget; ``nested``: a seeded nested subset). None when ``budget`` is 0 (all).

    Raises:
        ValueError: a negative budget, or one larger than the ``num_rows`` labeled instances.
    """
    if budget < 0:
        raise ValueError(f"label budget must be >= 0, got {budget}")
    if budget == 0:
        return None
    if budget > num_rows:
        raise ValueError(f"label budget {budget} is larger than the {num_rows} labeled instances in {what}")
    return np.asarray(select_budget(np.arange(num_rows), budget, mode, seed), dtype=np.int64)  # type: ignore[arg-type]


def split_range(num_rows: int, num_workers: int, worker_rank: int) -> tuple[int, int]:
    """Contiguous rank range ``[start, stop)`` of one of ``num_workers`` evaluation workers: the ranges
    partition ``0..num_rows-1`` (every row exactly once, sizes differing by at most one, none dropped)."""
    if num_workers < 1 or not 0 <= worker_rank < num_workers:
        raise ValueError(f"worker rank {worker_rank} is not in 0..{num_workers - 1}")
    return worker_rank * num_rows // num_workers, (worker_rank + 1) * num_rows // num_workers


# ---------------------------------------------------------------------------------------------- decoding
def _column(table: pa.Table, name: str, dtype: Any, width: int | None = None) -> np.ndarray:
    col = table.column(name).combine_chunks()
    if width is None:
        return col.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    return np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=dtype).reshape(len(col), width)


def check_on_bad_row(on_bad_row: str) -> None:
    if on_bad_row not in ("error", "skip"):
        raise ValueError(f"on_bad_row must be 'error' or 'skip', got {on_bad_row!r}")


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
        if self.cv2_threads is not None:
            cv2.setNumThreads(self.cv2_threads)
            self.cv2_threads = None
        if self.retain_memory:
            retain_freed_memory()
            self.retain_memory = False
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


# ---------------------------------------------------------------------------------------------- bottom-up
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
