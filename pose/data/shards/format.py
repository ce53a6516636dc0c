"""The shard directory format: schema versions, manifest and per-file metadata, the row schemas, and
opening / validating / reading shard directories (no decoding here: :mod:`pose.data.shards.decode`).

A shard directory holds ``part-NNNNN-of-MMMMM.parquet`` files and ``_manifest.json``; each file also
carries the schema version, the producing command and the manifest header in its Parquet metadata.
The layout is documented in ``docs/data.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pose.data.semi import select_budget
from pose.data.shards.options import ShardOptions

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


class ShardError(ValueError):
    """A shard directory or file that cannot be used (the message names it)."""


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
    def dataset(self) -> str:
        """The dataset whose reader wrote the rows (its metainfo name)."""
        return self.header["dataset"]

    @property
    def layout(self) -> str:
        """The keypoint layout of the rows: ``dataset``'s own unless written with ``layout``."""
        return self.header.get("layout") or self.header["dataset"]

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


def read_column(shards: ShardSet, name: str) -> np.ndarray:
    """One column of every row of ``shards`` in rank order, (rows,) (e.g. ``instance_id``)."""
    tables = [pq.read_table(p, columns=[name]) for p in shards.paths()]  # files are in rank order
    return pa.concat_tables(tables).column(name).to_numpy() if tables else np.zeros(0)


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


def shard_name(i: int, n: int) -> str:
    """The file name of shard ``i`` of ``n``: ``part-NNNNN-of-MMMMM.parquet``."""
    return f"part-{i:05d}-of-{n:05d}.parquet"
