"""Decode-worker heap benchmark: CPU per row of the top-down decoder inside Ray Data tasks, with and
without :func:`pose.data.heap.retain_freed_memory`.

The decoder is timed inside each Ray Data decode task (``resource.getrusage`` around every call,
user and system time apart). The setting is process-wide and sticks to a worker, so each mode runs
in its own Ray session; the sessions alternate (default, retained, default, ...), ``--rounds`` each,
and the first epoch of every session (worker start-up, first touch of the heap) is not counted.

    uv run python bench/bench_ingest.py --data data/synthpose-640 --instances 1400 --workdir runs/bench_ingest_640
    uv run python bench/bench_decode_heap.py --shards runs/bench_ingest_640/shards-qsource

The last line printed is a JSON object; ``cpu_retained_vs_default`` (decoder CPU per row) first.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import sys
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("RAY_worker_niceness", "0")

import numpy as np  # noqa: E402

import orchestrator.data as ingest  # noqa: E402
from pose.codecs.heatmap import HeatmapCodec  # noqa: E402
from pose.data.shards.decode import TopDownShardDecoder  # noqa: E402
from pose.data.shards.format import open_shards  # noqa: E402
from pose.data.transforms import TopDownAugment  # noqa: E402
from pose.metainfo import get_metainfo  # noqa: E402

TIMING_KEYS = ("_user_ms", "_sys_ms")


def timed_decoder(retain: bool) -> type:
    """A :class:`TopDownShardDecoder` that sets ``retain_memory`` as asked and adds each call's user
    and system milliseconds per row to its rows (defined here, so Ray ships it by value)."""

    class TimedDecoder(TopDownShardDecoder):
        def __init__(self, *args, **kwargs) -> None:
            kwargs["retain_memory"] = retain
            super().__init__(*args, **kwargs)

        def __call__(self, batch):
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            out = super().__call__(batch)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            n = max(len(out["index"]), 1)
            out["_user_ms"] = np.full(n, (r1.ru_utime - r0.ru_utime) / n * 1e3, np.float64)
            out["_sys_ms"] = np.full(n, (r1.ru_stime - r0.ru_stime) / n * 1e3, np.float64)
            return out

    return TimedDecoder


def run_session(shards: Path, retain: bool, epochs: int, cpus: int, reduced: bool, input_size: tuple[int, int]
                ) -> list[tuple[float, float]]:
    """(user, system) ms per row of the decoder, per epoch after the first, in a fresh Ray session."""
    import ray

    meta = get_metainfo("coco")
    w, h = input_size
    codec = HeatmapCodec(input_size=(w, h), heatmap_size=(w // 4, h // 4))
    ingest.TopDownShardDecoder = timed_decoder(retain)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        per_epoch = []
        for epoch in range(epochs + 1):
            ds = ingest.build_topdown_dataset(shards, meta, codec, TopDownAugment(), seed=0, epoch=epoch,
                                              reduced_decode=reduced)
            user = system = 0.0
            rows = 0
            for batch in ingest.iter_topdown_batches(ds, 32):  # the Train worker's iterator
                user += float(batch["_user_ms"].sum())
                system += float(batch["_sys_ms"].sum())
                rows += len(batch["_user_ms"])
            if epoch:
                per_epoch.append((user / rows, system / rows))
    finally:
        ray.shutdown()
        ingest.TopDownShardDecoder = TopDownShardDecoder
    return per_epoch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", required=True, help="a top-down shard directory (e.g. bench_ingest.py's)")
    p.add_argument("--rounds", type=int, default=2, help="Ray sessions per mode, alternating (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=4, help="counted epochs per session (default: %(default)s)")
    p.add_argument("--ray-cpus", type=int, default=2, help="ray.init(num_cpus=...) (default: %(default)s)")
    p.add_argument("--input-size", type=int, nargs=2, default=[96, 128], metavar=("W", "H"),
                   help="model input (default: %(default)s)")
    p.add_argument("--reduced-decode", action="store_true", help="decode JPEG regions at reduced size where possible")
    args = p.parse_args(argv)
    try:
        rows = open_shards(args.shards).num_rows
    except (OSError, ValueError) as e:
        p.error(str(e))
    results: dict[str, list[tuple[float, float]]] = {"default": [], "retained": []}
    for _ in range(args.rounds):
        for mode in results:
            results[mode] += run_session(Path(args.shards), mode == "retained", args.epochs, args.ray_cpus,
                                         args.reduced_decode, tuple(args.input_size))
    print(f"\n{rows} rows of {args.shards}; decoder CPU per row inside Ray Data tasks, ms "
          f"({args.rounds} sessions x {args.epochs} epochs per mode, medians over epochs)")
    print(f"{'heap':<12}{'user':>8}{'system':>8}{'total':>8}   system per epoch")
    med = {}
    for mode, runs in results.items():
        user, system = (float(np.median([r[i] for r in runs])) for i in (0, 1))
        total = float(np.median([u + s for u, s in runs]))
        med[mode] = {"user_ms": round(user, 3), "sys_ms": round(system, 3), "total_ms": round(total, 3)}
        print(f"{mode:<12}{user:>8.3f}{system:>8.3f}{total:>8.3f}   " + " ".join(f"{s:.3f}" for _, s in runs))
    result = {"cpu_retained_vs_default": round(med["retained"]["total_ms"] / med["default"]["total_ms"], 3),
              "per_row_ms": med, "rows": rows, "reduced_decode": args.reduced_decode,
              "command": "python " + shlex.join(["bench/bench_decode_heap.py", *(sys.argv[1:] if argv is None else argv)])}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
