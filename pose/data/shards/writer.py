"""Writing Parquet shards of one split (no Ray here): ``poselab shards``.

Two layouts (``mode``):

* **topdown**: one row per person instance, with the encoded image region its augmented crops can reach
  (:mod:`pose.data.shards.regions`); the people are the file loader's (:mod:`pose.data.shards.sources`:
  COCO-format files, MPII, AI Challenger, optionally carried into another keypoint layout).
* **bottomup**: one row per image: the original file bytes, every person's keypoints and box, and
  the ignore mask (crowd regions + people without keypoints) as a COCO RLE.

The format (manifest, metadata, schemas) is :mod:`pose.data.shards.format`'s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pose.data.coco import LoadReport, PersonInstance, read_json
from pose.data.jpeg_header import align_to_blocks, read_jpeg_header
from pose.data.shards.format import (
    BOTTOMUP_SELECTION,
    FORMAT,
    MANIFEST,
    META_COMMAND,
    META_HEADER,
    META_VERSION,
    SCHEMA_VERSION,
    bottomup_schema,
    shard_name,
    topdown_schema,
)
from pose.data.shards.options import ShardOptions
from pose.data.shards.regions import encode_region, extract_region, margin_region, read_bgr, region_density
from pose.data.shards.sources import ShardSource, load_instances, resolve_source, row_layout
from pose.metainfo import DatasetMeta, get_metainfo

log = logging.getLogger(__name__)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
            image, raw = read_bgr(Path(inst.image_path), inst.image_id)
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
            "region": encode_region(region, opts, header), "region_box": list(box),
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


def _write_bottomup_shard(task: _BottomUpTask) -> tuple[int, int, int]:
    cols: dict[str, list] = {name: [] for name in bottomup_schema().names}
    for rec in task.records:
        img, record, people = rec["image"], rec["record"], rec["people"]
        path = Path(record.image_path)
        pixels, raw = read_bgr(path, record.image_id)
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
    if options["people"] == "labeled":  # added with the MPII and AIC readers, likewise
        del options["people"]
    if not options["layout"]:  # likewise
        del options["layout"]
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
    """Convert one split (COCO-format, MPII or AI Challenger: ``opts.dataset``) to Parquet shards in ``out``
    (see the module docstring; the default files of ``split`` under ``root``: :mod:`pose.data.shards.sources`).

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
    meta, layout = get_metainfo(opts.dataset), row_layout(opts)
    src = resolve_source(root, split, opts.boxes, ann, images, detections, dataset=meta.name)
    _check_out_dir(out)
    k = layout.num_keypoints
    skipped: dict[str, int] = {}
    if opts.mode == "topdown":
        items: list[Any] = load_instances(opts, src)
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
        "boxes": opts.boxes, "dataset": meta.name, "layout": layout.name,
        "num_keypoints": k, "image_format": opts.image_format,
        "options": asdict(opts), "source": {"root": str(root), "ann": str(src.ann), "images": str(src.images),
                                            "detections": None if src.detections is None else str(src.detections)},
        "command": command, "fingerprint": fingerprint, "rows": n_rows, "num_shards": n_shards,
    }
    metadata = {META_VERSION: str(SCHEMA_VERSION).encode(), META_COMMAND: command.encode(),
                META_HEADER: json.dumps(header, sort_keys=True).encode()}
    tasks: list[Any] = []
    for i in range(n_shards):
        chunk = items[i * opts.rows_per_shard:(i + 1) * opts.rows_per_shard]
        path = str(out / shard_name(i, n_shards))
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

    files = [{"name": shard_name(i, n_shards), "rows": results[i][0], "first_rank": i * opts.rows_per_shard,
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
