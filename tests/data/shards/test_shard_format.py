"""The shard format (no Ray): label budgets, rank ranges, schema versions, missing files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pose.data.semi import select_budget
from pose.data.shards.format import (
    MANIFEST,
    META_VERSION,
    SCHEMA_VERSION,
    ShardError,
    budget_ranks,
    open_shards,
    split_range,
)


def test_budget_ranks_match_select_budget():
    assert budget_ranks(10, 0) is None
    np.testing.assert_array_equal(budget_ranks(10, 4), [0, 1, 2, 3])
    for seed in (0, 1):
        small, large = budget_ranks(50, 10, "nested", seed), budget_ranks(50, 25, "nested", seed)
        np.testing.assert_array_equal(small, select_budget(list(range(50)), 10, "nested", seed))
        assert set(small) <= set(large) and len(set(large)) == 25
    with pytest.raises(ValueError, match="label budget 11 is larger than the 10 labeled instances in shards x"):
        budget_ranks(10, 11, what="shards x")


def test_budget_on_a_shard_set(png_shards):
    ss = open_shards(png_shards)
    assert len(ss.budget_ranks(3)) == 3
    with pytest.raises(ValueError, match=f"larger than the {ss.num_rows} labeled instances in shards"):
        ss.budget_ranks(ss.num_rows + 1)
    start, stop = 2, 5
    assert all(Path(p).exists() for p in ss.paths((start, stop)))
    assert len(ss.paths((start, stop))) == 2 and len(ss.paths((0, 1))) == 1


def test_split_range_covers_every_row_once():
    for n in range(0, 23):
        for workers in (1, 2, 3, 4):
            ranges = [split_range(n, workers, r) for r in range(workers)]
            covered = [i for a, b in ranges for i in range(a, b)]
            assert covered == list(range(n))
            sizes = [b - a for a, b in ranges]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError):
        split_range(10, 2, 2)


def test_old_schema_version_is_refused(png_shards, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(png_shards, old)
    f = open_shards(old).files[1].path
    t = pq.read_table(f)
    md = dict(t.schema.metadata)
    md[META_VERSION] = b"0"
    pq.write_table(t.replace_schema_metadata(md), f)
    with pytest.raises(ShardError, match=rf"shard {f} has schema version 0, older than .* {SCHEMA_VERSION}"):
        open_shards(old)
    manifest = json.loads((old / MANIFEST).read_text())
    manifest["schema_version"] = 0
    (old / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=f"shard directory {old} has schema version 0"):
        open_shards(old)


def test_missing_shard_file(png_shards, tmp_path):
    gone = tmp_path / "gone"
    shutil.copytree(png_shards, gone)
    f = open_shards(gone).files[-1].path
    f.unlink()
    with pytest.raises(FileNotFoundError, match=f"shard file missing: {f}"):
        open_shards(gone)
    with pytest.raises(FileNotFoundError, match="not a shard directory"):
        open_shards(tmp_path)
