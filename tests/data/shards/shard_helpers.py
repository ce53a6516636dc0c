"""Shared constants and helpers of the shard tests (fixtures: ``conftest.py`` here)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pose.codecs.heatmap import HeatmapCodec
from pose.data.coco import PersonInstance, load_gt_instances
from pose.data.shards.format import open_shards, read_table
from pose.data.shards.options import ShardOptions
from pose.data.shards.writer import write_shards
from pose.data.transforms import TopDownAugment
from pose.metainfo import get_metainfo

META = get_metainfo("coco")
CODEC = HeatmapCodec(input_size=(96, 128), heatmap_size=(24, 32))
AUG = TopDownAugment()
SMALL = HeatmapCodec(input_size=(24, 32), heatmap_size=(6, 8))  # small enough that sized regions shrink


def write_split(synth: Path, out: Path, split: str = "train", **opts) -> dict:
    """Shards of ``split`` of the SynthPose dataset ``synth`` in ``out`` (4 rows a file, 2 a group by default)."""
    opts.setdefault("rows_per_shard", 4)
    opts.setdefault("row_group_size", 2)
    return write_shards(synth, split, out, ShardOptions(**opts), command="pytest", workers=1, progress=False)


def read_rows(out: Path) -> pa.Table:
    """Every row of a shard directory, as one table (with the ``path`` column)."""
    return pa.concat_tables([read_table(p) for p in open_shards(out).paths()])


def gt_instances(synth: Path, split: str = "train") -> list[PersonInstance]:
    """The file loader's ground-truth instances of ``split``."""
    return load_gt_instances(synth / f"annotations/person_keypoints_{split}.json", synth / "images" / split, META,
                             0.75)


def corrupt_row(shard_dir: Path, rank: int) -> Path:
    """Replace one row's region bytes, keeping the file's metadata."""
    ss = open_shards(shard_dir)
    f = next(f for f in ss.files if f.first_rank <= rank < f.first_rank + f.rows)
    t = pq.read_table(f.path)
    regions = t.column("region").to_pylist()
    regions[rank - f.first_rank] = b"not an image"
    t = t.set_column(t.schema.get_field_index("region"), "region", pa.array(regions, pa.binary()))
    pq.write_table(t, f.path)
    return f.path
