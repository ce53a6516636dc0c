"""The Ray Data pipeline over shards (one shared Ray instance: ``ray_session``; few, small datasets)."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from pose.codecs.heatmap import HeatmapCodec
from pose.data.coco import load_gt_instances
from pose.data.semi import UNLABELED_KEYS
from pose.data.shards.decode import TOPDOWN_KEYS
from pose.data.shards.format import budget_ranks, open_shards
from pose.data.topdown import TopDownDataset
from pose.data.transforms import TopDownAugment
from pose.metainfo import get_metainfo

pytest.importorskip("ray")

from orchestrator.data import (  # noqa: E402
    SkipReport,
    _Rebatcher,
    build_semi_datasets,
    build_topdown_dataset,
    build_val_dataset_for_worker,
    iter_semi_batches,
    iter_topdown_batches,
)

META = get_metainfo("coco")
CODEC = HeatmapCodec(input_size=(96, 128), heatmap_size=(24, 32))
AUG = TopDownAugment()


def _rows(ds, batch_size=4, **kw) -> list[dict[str, torch.Tensor]]:
    return list(iter_topdown_batches(ds, batch_size, **kw))


@pytest.mark.parametrize("sizes", [[10, 3, 7, 1], [4, 4], [1, 1, 1, 1, 1], [0, 9]])
def test_rebatcher_cuts_views_and_joins_straddling_rows(sizes):
    """Whole blocks in, batches of 4 out, in order: a batch inside one block is a view of it, one
    across blocks a concatenation; the tail comes with flush()."""
    start, blocks = 0, []
    for n in sizes:
        blocks.append({"index": torch.arange(start, start + n), "x": torch.arange(start, start + n) * 2.0})
        start += n
    rebatch = _Rebatcher(4)
    out = [b for block in blocks for b in rebatch.push(block)] + list(rebatch.flush())
    assert torch.cat([b["index"] for b in out]).tolist() == list(range(start))
    assert [len(b["index"]) for b in out] == [4] * (start // 4) + ([start % 4] if start % 4 else [])
    assert all(torch.equal(b["x"], b["index"] * 2.0) for b in out)
    owners = [blk["index"].untyped_storage().data_ptr() for blk in blocks if len(blk["index"])]
    first = out[0]["index"].untyped_storage().data_ptr()
    assert (first in owners) == (sizes[0] >= 4 or sizes[0] == 0 and sizes[1] >= 4)


@pytest.mark.parametrize("fuse_read", [True, False], ids=["read+decode fused", "unfused"])
def test_pipeline_equals_file_loader_and_is_reproducible(ray_session, synth_data, shard_dirs, fuse_read):
    insts = load_gt_instances(synth_data / "annotations/person_keypoints_train.json", synth_data / "images/train",
                              META, 0.75)
    ref = TopDownDataset(insts, META, CODEC, AUG, seed=3)
    ref.set_epoch(1)
    ds = build_topdown_dataset(shard_dirs["train"], META, CODEC, AUG, seed=3, epoch=1, preserve_order=True,
                               batch_size=3, fuse_read=fuse_read)
    batches = _rows(ds, batch_size=4)
    assert [len(b["index"]) for b in batches] == [4] * (len(insts) // 4) + ([len(insts) % 4] if len(insts) % 4 else [])
    # Same keys, dtypes and shapes as the DataLoader's collated batches.
    loader_batch = next(iter(DataLoader(ref, batch_size=4)))
    assert {k: (v.dtype, v.shape) for k, v in batches[0].items()} == \
        {k: (v.dtype, v.shape) for k, v in loader_batch.items()}
    # Bit-exact crops and targets (lossless shards), in the preserved order.
    got = {k: torch.cat([b[k] for b in batches]) for k in TOPDOWN_KEYS}
    assert got["index"].tolist() == list(range(len(insts)))
    for i in range(len(insts)):
        item = ref[i]
        for k in TOPDOWN_KEYS:
            assert torch.equal(item[k], got[k][i]), (k, i)
    # Reproducible: the same epoch again gives the same batches; another epoch other crops.
    again = _rows(ds, batch_size=4)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(batches, again) for k in TOPDOWN_KEYS)
    other = torch.cat([b["image"] for b in _rows(build_topdown_dataset(
        shard_dirs["train"], META, CODEC, AUG, seed=3, epoch=2, preserve_order=True, fuse_read=fuse_read),
        batch_size=4)])
    assert not torch.equal(other, got["image"])
    operators = [line for line in ds.stats().splitlines() if line.startswith("Operator")]
    assert any("ReadParquet->MapBatches(_Chunked)" in line for line in operators) == fuse_read, operators


def test_budget_and_split_filters(ray_session, shard_dirs):
    ss = open_shards(shard_dirs["train"])
    for budget, mode in ((3, "first"), (5, "nested")):
        ds = build_topdown_dataset(ss, META, CODEC, None, budget=budget, budget_mode=mode, budget_seed=1,
                                   keys=("index",))
        idx = sorted(int(i) for b in _rows(ds) for i in b["index"])
        assert idx == budget_ranks(ss.num_rows, budget, mode, 1).tolist()
        # A DataIterator (what ray.train.get_dataset_shard returns) works the same way.
        assert sorted(int(i) for b in _rows(ds.iterator()) for i in b["index"]) == idx
    ds = build_topdown_dataset([shard_dirs["train"], shard_dirs["val"]], META, CODEC, None, split="val",
                               keys=("index",))
    assert sum(len(b["index"]) for b in _rows(ds)) == open_shards(shard_dirs["val"]).num_rows
    # Bad requests fail on the driver, before any data moves.
    with pytest.raises(ValueError, match=f"label budget {ss.num_rows + 1} is larger than the {ss.num_rows}"):
        build_topdown_dataset(ss, META, CODEC, None, budget=ss.num_rows + 1)
    with pytest.raises(ValueError, match="no shards of split 'test'"):
        build_topdown_dataset(ss, META, CODEC, None, split="test")
    with pytest.raises(ValueError, match="exceeds what shards"):
        build_topdown_dataset(ss, META, CODEC, TopDownAugment(rot_factor=45.0))
    with pytest.raises(ValueError, match="aspect ratio"):
        build_topdown_dataset(ss, META, HeatmapCodec(input_size=(128, 128), heatmap_size=(32, 32)), None)


def test_sized_regions_serve_their_input_size_only(ray_session, synth_data, tmp_path):
    from pose.data.shards.options import ShardOptions
    from pose.data.shards.writer import write_shards

    out = tmp_path / "sized"
    write_shards(synth_data, "val", out, ShardOptions(input_size=(48, 64), rows_per_shard=4), workers=1,
                 progress=False)
    small = HeatmapCodec(input_size=(48, 64), heatmap_size=(12, 16))
    ds = build_topdown_dataset(out, META, small, AUG, keys=("index", "image"))
    rows = _rows(ds)
    assert sum(len(b["index"]) for b in rows) == open_shards(out).num_rows
    assert rows[0]["image"].shape[1:] == (3, 64, 48)
    with pytest.raises(ValueError, match=r"regions for a 48x64 input; the codec's 96x128 would be upsampled"):
        build_topdown_dataset(out, META, CODEC, AUG)


def test_validation_exactly_once_across_two_workers(ray_session, shard_dirs):
    import ray

    plan = ray_session  # 2 workers on 2 cores: 1 logical CPU each, Ray Data keeps the other 2

    @ray.remote(num_cpus=plan.cpus_per_worker)
    class Worker:
        def evaluate(self, rank: int, world: int, shards: str) -> list[int]:
            from orchestrator.data import build_val_dataset_for_worker, iter_topdown_batches

            ds = build_val_dataset_for_worker(shards, rank, world, META, CODEC, batch_size=2)
            return [int(i) for b in iter_topdown_batches(ds, 3) for i in b["index"]]

    n = open_shards(shard_dirs["val"]).num_rows
    assert n % 2 == 1  # an odd count: equal splitting would have dropped a row
    workers = [Worker.remote() for _ in range(2)]
    parts = ray.get([w.evaluate.remote(r, 2, str(shard_dirs["val"])) for r, w in enumerate(workers)], timeout=300)
    for w in workers:
        ray.kill(w)
    assert sorted(parts[0] + parts[1]) == list(range(n))
    assert abs(len(parts[0]) - len(parts[1])) <= 1
    # More workers than rows: the extra workers get nothing, nobody fails.
    empty = build_val_dataset_for_worker(shard_dirs["val"], 0, n + 1, META, CODEC)
    assert _rows(empty) == []


def _corrupt(dst, rank: int):
    ss = open_shards(dst)
    f = next(f for f in ss.files if f.first_rank <= rank < f.first_rank + f.rows)
    t = pq.read_table(f.path)
    regions = t.column("region").to_pylist()
    regions[rank - f.first_rank] = b"\xff\xd8 broken"
    pq.write_table(t.set_column(t.schema.get_field_index("region"), "region", pa.array(regions, pa.binary())), f.path)
    return f.path


def test_undecodable_row_errors_or_is_counted_once(ray_session, shard_dirs, tmp_path, caplog):
    bad = tmp_path / "bad"
    shutil.copytree(shard_dirs["train"], bad)
    path = _corrupt(bad, 5)
    n = open_shards(bad).num_rows
    with pytest.raises(Exception, match=rf"(?s)shard {path} row 5 "):
        _rows(build_topdown_dataset(bad, META, CODEC, AUG))
    report = SkipReport(stream="train", epoch=0)
    with caplog.at_level(logging.WARNING, logger="orchestrator.data"):
        batches = _rows(build_topdown_dataset(bad, META, CODEC, AUG, on_bad_row="skip", preserve_order=True),
                        batch_size=4, report=report)
    idx = [int(i) for b in batches for i in b["index"]]
    assert sorted(idx) == [i for i in range(n) if i != 5]
    assert [len(b["index"]) for b in batches[:-1]] == [4] * (len(batches) - 1)  # re-cut to full batches
    assert set(batches[0]) == set(TOPDOWN_KEYS)
    assert report.skipped == 1 and report.rows == n - 1
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1 and "epoch 0: train: skipped 1 rows that do not decode" in warnings[0] and f"{path} row 5" in warnings[0]


def test_semi_supervised_streams(ray_session, shard_dirs):
    lab, unl = build_semi_datasets(shard_dirs["train"], shard_dirs["unlabeled"], META, CODEC, AUG, seed=0, epoch=0,
                                   budget=3, preserve_order=True)
    n_unl = open_shards(shard_dirs["unlabeled"]).num_rows
    pairs = list(iter_semi_batches(lab, unl, 4))
    # every pass over the cycled labeled set is augmented afresh: an instance is a new crop each time
    matrices: dict[int, list[torch.Tensor]] = {}
    for lb, _ in pairs:
        for i, m in zip(lb["index"].tolist(), lb["matrix"]):
            matrices.setdefault(i, []).append(m)
    repeated = [ms for ms in matrices.values() if len(ms) > 1]
    assert repeated and all(not torch.equal(a, b) for ms in repeated for j, a in enumerate(ms) for b in ms[j + 1:])
    assert np.array_equal(lab(1).take_batch(3)["image"], lab(1).take_batch(3)["image"])  # a pass is reproducible
    unl_idx = [int(i) for _, u in pairs for i in u["index"]]
    assert unl_idx == list(range(n_unl))  # one pass over the unlabeled set drives the epoch
    for lb, ub in pairs:
        assert set(ub) == set(UNLABELED_KEYS) and set(lb) == set(TOPDOWN_KEYS)
        assert len(lb["index"]) == len(ub["index"]) and set(lb["index"].tolist()) <= {0, 1, 2}
    if n_unl > 3:  # the 3-instance labeled stream was cycled
        assert sum(len(lb["index"]) for lb, _ in pairs) == n_unl
    assert np.all([lb["weights"].sum() > 0 for lb, _ in pairs])
