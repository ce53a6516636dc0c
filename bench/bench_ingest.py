"""Ingest benchmark: decoded + augmented + encoded top-down crops per second per CPU core.

Three ways to produce the same training samples from one SynthPose subset, in one run:

* **file loader**: :class:`pose.data.topdown.TopDownDataset` in a ``DataLoader`` (in process): reads
  and decodes the full image file for every instance, as the original code does;
* **shards via Ray Data**: ``orchestrator.data.build_topdown_dataset`` (read_parquet -> filter ->
  map_batches decode/augment/encode, read and decode fused in one task) iterated with
  ``iter_topdown_batches``; and the same unfused (read blocks through the object store), for comparison;
* **decode-only bound**: ``cv2.imdecode`` of the stored region bytes alone (in process).

With ``--reduced-decode`` the two shard paths decode JPEG regions at 1/2, 1/4 or 1/8 size where the
crop allows it (``data.shards_reduced_decode``); the file loader and the bound are unchanged, so the
bound is then no longer an upper limit of the shard paths.

Per-core rates divide samples by the CPU seconds the work used (user + system, all threads), so a
busy machine slows the wall clock but not the figures. For Ray that is the driver (the consumer,
as a Train worker would be) plus every ``ray::`` worker process (read and map tasks, Ray Data's
actors); the Ray daemons (raylet, GCS, agents) are reported separately. An unmeasured first Ray
epoch starts and warms the workers. Every path runs once per epoch, in turn (``--repeats`` epochs):
on a shared host whose speed drifts, the passes of one epoch see the same machine, and the ratios
are the medians of the per-epoch ratios.

With ``--sized-regions`` the shards store regions at the resolution ``--input-size`` needs
(``poselab shards --input-size``) instead of native resolution; the bound then decodes those smaller
regions (``--region-density D``: D region pixels per crop pixel, ``poselab shards --region-density``). The
run ends with the mean absolute difference between the shard decoder's crops and the
file loader's under the same augmentation (JPEG re-encoding, plus resampling for sized regions or
reduced decode).

The shards are written with ``--quality`` (default ``source``: each region at its source image's
JPEG quality and subsampling, on its block grid, as ``poselab shards`` does by default).

    uv run python bench/bench_ingest.py --data data/synthpose --instances 2000

The last line printed is a JSON object: ``ray_vs_file_loader`` and ``ray_vs_decode_only`` first.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any

# Before Ray is imported: workers run this interpreter (not `uv run` per worker, which also ships the
# working directory), at the priority of the in-process loaders (Ray's default worker niceness is 15).
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("RAY_worker_niceness", "0")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from pose.codecs.heatmap import HeatmapCodec  # noqa: E402
from pose.data.coco import load_gt_instances  # noqa: E402
from pose.data.shards.decode import TopDownShardDecoder  # noqa: E402
from pose.data.shards.format import open_shards, read_table  # noqa: E402
from pose.data.shards.options import ShardOptions, parse_quality  # noqa: E402
from pose.data.shards.writer import write_shards  # noqa: E402
from pose.data.topdown import TopDownDataset  # noqa: E402
from pose.data.transforms import TopDownAugment  # noqa: E402
from pose.metainfo import get_metainfo  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------- CPU accounting
def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def _descendants(root: int) -> dict[int, float]:
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _proc_stat(int(name))) is not None:
            stats[int(name)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out[pid] = stats[pid][1]
        todo.extend(children.get(pid, []))
    return out


def _is_daemon(cmdline: str) -> bool:
    """Ray's infrastructure processes (raylet, GCS, dashboard/runtime-env agents, log monitor).
    Python workers (``ray::...`` titles, or ``default_worker.py`` before the title is set) and
    processes that exited before they were seen are counted as pipeline work."""
    if cmdline.startswith("ray::"):
        return cmdline.startswith("ray::DashboardAgent")
    words = cmdline.split()
    if not words:
        return False
    if words[0].endswith(("raylet", "gcs_server")):
        return True
    return not (len(words) > 1 and words[1].endswith("default_worker.py"))


class ChildCPU:
    """CPU seconds used by this process's descendants between start() and stop(), split into Ray
    workers (``ray::...`` process titles) and everything else; polled so short-lived ones count."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.kind: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _poll(self, initial: bool = False) -> None:
        for pid, cpu in _descendants(os.getpid()).items():
            if pid not in self.first:
                self.first[pid] = cpu if initial else 0.0
                self.kind[pid] = "daemon" if _is_daemon(_cmdline(pid)) else "worker"
            self.last[pid] = cpu

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll()

    def start(self) -> ChildCPU:
        self._poll(initial=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._poll()
        for pid in self.last:  # titles change after start-up: classify the live ones again
            if (cmd := _cmdline(pid)):
                self.kind[pid] = "daemon" if _is_daemon(cmd) else "worker"
        self._stop.set()
        self._thread.join()
        used = {"worker": 0.0, "daemon": 0.0}
        for pid, last in self.last.items():
            used[self.kind[pid]] += max(0.0, last - self.first[pid])
        return used


# ---------------------------------------------------------------------------------------------- data
def make_subset(data: Path, split: str, instances: int, work: Path, meta) -> Path:
    """A COCO root with the first images of ``split`` holding at least ``instances`` instances."""
    ann = data / "annotations" / f"person_keypoints_{split}.json"
    insts = load_gt_instances(ann, data / "images" / split, meta, 0.75)
    keep_ids = set()
    for inst in insts[:instances]:
        keep_ids.add(inst.image_id)
    full = json.loads(ann.read_text())
    subset = {**full, "images": [i for i in full["images"] if i["id"] in keep_ids],
              "annotations": [a for a in full["annotations"] if a["image_id"] in keep_ids]}
    root = work / "subset"
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    target = root / "annotations" / "person_keypoints_bench.json"
    text = json.dumps(subset)
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    link = root / "images" / "bench"
    if not link.exists():
        link.symlink_to((data / "images" / split).resolve())
    return root


Pass = tuple[int, float, float]  # (samples, CPU seconds, wall seconds)


class FileLoaderPass:
    """One epoch of :class:`TopDownDataset` in a ``DataLoader`` (in process)."""

    def __init__(self, instances, meta, codec, augment, batch_size: int) -> None:
        self.ds = TopDownDataset(instances, meta, codec, augment, seed=0)
        self.batch_size = batch_size
        next(iter(DataLoader(torch.utils.data.Subset(self.ds, range(min(batch_size, len(self.ds)))),
                             batch_size=batch_size)))

    def __call__(self, epoch: int) -> Pass:
        self.ds.set_epoch(epoch)
        c0, w0 = time.process_time(), time.perf_counter()
        n = sum(len(b["index"]) for b in DataLoader(self.ds, batch_size=self.batch_size, num_workers=0))
        return n, time.process_time() - c0, time.perf_counter() - w0


class DecodeOnlyPass:
    """``cv2.imdecode`` of every stored region, with the decoder's flags (in process)."""

    def __init__(self, shards: Path) -> None:
        self.regions = [r for p in open_shards(shards).paths() for r in pq.read_table(p, columns=["region"])
                        .column("region").to_pylist()]

    def __call__(self, epoch: int) -> Pass:
        flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
        c0, w0 = time.process_time(), time.perf_counter()
        for r in self.regions:
            cv2.imdecode(np.frombuffer(r, np.uint8), flags)
        return len(self.regions), time.process_time() - c0, time.perf_counter() - w0


class DecoderPass:
    """:class:`TopDownShardDecoder` over the whole table in Ray Data's call sizes (in process)."""

    def __init__(self, shards: Path, meta, codec, augment, reduced: bool) -> None:
        import pyarrow as pa

        from orchestrator.data import default_sizes, sample_bytes

        self.table = pa.concat_tables([read_table(p) for p in open_shards(shards).paths()])
        self.batch, _ = default_sizes(self.table.num_rows, sample_bytes(meta, codec), 1, cpus=1)
        self.args = meta, codec, augment, reduced

    def __call__(self, epoch: int) -> Pass:
        meta, codec, augment, reduced = self.args
        dec = TopDownShardDecoder(meta, codec, augment, seed=0, epoch=epoch, reduced_decode=reduced)
        c0, w0 = time.process_time(), time.perf_counter()
        n = sum(len(dec(self.table.slice(s, self.batch))["index"]) for s in range(0, self.table.num_rows, self.batch))
        return n, time.process_time() - c0, time.perf_counter() - w0


class RayPass:
    """One epoch of the Ray Data pipeline (``build_topdown_dataset`` + ``iter_topdown_batches``), CPU
    counted over the driver (the consumer) and every ``ray::`` worker; Ray's daemons apart."""

    def __init__(self, shards: Path, meta, codec, augment, batch_size: int, reduced: bool, fuse: bool) -> None:
        self.args = shards, meta, codec, augment
        self.batch_size, self.reduced, self.fuse = batch_size, reduced, fuse
        self(0)  # the first pass starts and warms the workers

    def __call__(self, epoch: int) -> dict:
        from orchestrator.data import build_topdown_dataset, iter_topdown_batches

        shards, meta, codec, augment = self.args
        ds = build_topdown_dataset(shards, meta, codec, augment, seed=0, epoch=epoch, fuse_read=self.fuse,
                                   reduced_decode=self.reduced)
        children = ChildCPU().start()
        c0, w0 = time.process_time(), time.perf_counter()
        n = sum(len(b["index"]) for b in iter_topdown_batches(ds, self.batch_size))
        driver, wall = time.process_time() - c0, time.perf_counter() - w0
        used = children.stop()
        return {"n": n, "driver_cpu": driver, "worker_cpu": used["worker"], "daemon_cpu": used["daemon"], "wall": wall}


def crop_difference(instances, shards: Path, meta, codec, augment, reduced: bool, epoch: int = 1) -> float:
    """Mean absolute difference (grey levels, 0..255) between the shard decoder's crops and the file
    loader's under the same augmentation: JPEG re-encoding, and resampling for sized regions or
    reduced decode."""
    import pyarrow as pa

    ds = TopDownDataset(instances, meta, codec, augment, seed=0)
    ds.set_epoch(epoch)
    table = pa.concat_tables([read_table(p) for p in open_shards(shards).paths()])
    dec = TopDownShardDecoder(meta, codec, augment, seed=0, epoch=epoch, reduced_decode=reduced, keys=("index", "image"))
    total, count = 0.0, 0
    for start in range(0, table.num_rows, 256):
        out = dec(table.slice(start, 256))
        for rank, image in zip(out["index"], out["image"]):
            total += float(np.abs(ds[int(rank)]["image"].numpy().astype(np.float32) - image).mean())
            count += 1
    return total / count


def measure_interleaved(paths: dict[str, Any], epochs: list[int]) -> dict[str, list]:
    """Every path once per epoch, in turn: a machine whose speed drifts (a shared host) shifts all
    paths of an epoch alike, so the per-epoch ratios stay comparable."""
    passes: dict[str, list] = {name: [] for name in paths}
    for epoch in epochs:
        for name, run in paths.items():
            passes[name].append(run(epoch))
    return passes


def _rate(p: Pass | dict) -> float:
    return p["n"] / (p["driver_cpu"] + p["worker_cpu"]) if isinstance(p, dict) else p[0] / p[1]


def _cpu(p: Pass | dict) -> float:
    return p["driver_cpu"] + p["worker_cpu"] if isinstance(p, dict) else p[1]


def _wall(p: Pass | dict) -> float:
    return p["wall"] if isinstance(p, dict) else p[2]


def _median(values: list[float]) -> float:
    return float(np.median(values))


def _quality(text: str) -> int | str:
    try:
        return parse_quality(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/synthpose", help="SynthPose (COCO-format) root (default: %(default)s)")
    p.add_argument("--split", default="train", help="split to sample from (default: %(default)s)")
    p.add_argument("--instances", type=int, default=2000,
                   help="instances: the first images of the split holding at least this many (default: %(default)s)")
    p.add_argument("--input-size", type=int, nargs=2, default=[96, 128], metavar=("W", "H"),
                   help="model input (heatmaps at 1/4); default: the SynthPose presets' 96 128")
    p.add_argument("--batch-size", type=int, default=32, help="batch size everywhere (default: %(default)s)")
    p.add_argument("--ray-cpus", type=int, default=2, help="ray.init(num_cpus=...) (default: %(default)s)")
    p.add_argument("--quality", default="source", type=_quality, metavar="Q|source",
                   help="JPEG quality of the shard regions, 1..100 or source (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="measured epochs; every path runs once per epoch, medians count "
                                                         "(default: %(default)s)")
    p.add_argument("--reduced-decode", action="store_true",
                   help="the shard paths decode JPEG regions at 1/2-1/8 size where the crop allows it "
                        "(data.shards_reduced_decode); the file loader and the bound stay full decodes")
    p.add_argument("--sized-regions", action="store_true",
                   help="shards store regions at the resolution --input-size needs (poselab shards --input-size), "
                        "not at native resolution; the bound then decodes those smaller regions")
    p.add_argument("--region-density", type=float, default=1.0, metavar="D",
                   help="with --sized-regions: region pixels per crop pixel (poselab shards --region-density; "
                        "default: %(default)s)")
    p.add_argument("--workdir", default="runs/bench_ingest", help="subset and shards go here (default: %(default)s)")
    args = p.parse_args(argv)
    if args.region_density != 1.0 and not args.sized_regions:
        p.error("--region-density applies with --sized-regions")
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    cv2.setNumThreads(1)  # as in the Ray decode tasks; CPU time is counted over all threads anyway
    torch.set_num_threads(1)

    meta = get_metainfo("coco")
    w, h = args.input_size
    codec = HeatmapCodec(input_size=(w, h), heatmap_size=(w // 4, h // 4))
    augment = TopDownAugment()
    work = Path(args.workdir)
    root = make_subset(Path(args.data), args.split, args.instances, work, meta)
    instances = load_gt_instances(root / "annotations/person_keypoints_bench.json", root / "images/bench", meta, 0.75)
    sized = (w, h) if args.sized_regions else None
    density = args.region_density
    shards = work / (f"shards-q{args.quality}" + (f"-{w}x{h}" if sized else "")
                     + (f"-d{density:g}" if density != 1 else ""))
    t0 = time.perf_counter()
    try:
        opts = ShardOptions(quality=args.quality, input_size=sized, region_density=density)
    except ValueError as e:
        p.error(str(e))
    manifest = write_shards(root, "bench", shards, opts, workers=0,
                            progress=True,
                            command="bench/bench_ingest.py")
    shard_s = time.perf_counter() - t0
    n_images = len({i.image_id for i in instances})
    total_bytes = sum(f["bytes"] for f in manifest["files"])
    print(f"subset: {len(instances)} instances in {n_images} images of {args.data}/{args.split}; input {w}x{h}; "
          f"shards: {manifest['num_shards']} files, {total_bytes / len(instances) / 1024:.1f} KiB/instance "
          f"({'up to date' if manifest['up_to_date'] else f'written in {shard_s:.1f} s'})")

    epochs = list(range(1, args.repeats + 1))
    import ray

    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        paths = {
            "file_loader": FileLoaderPass(instances, meta, codec, augment, args.batch_size),
            "decode_only": DecodeOnlyPass(shards),
            "decoder_in_process": DecoderPass(shards, meta, codec, augment, args.reduced_decode),
            "ray_data": RayPass(shards, meta, codec, augment, args.batch_size, args.reduced_decode, fuse=True),
            "ray_data_unfused": RayPass(shards, meta, codec, augment, args.batch_size, args.reduced_decode,
                                        fuse=False),
        }
        passes = measure_interleaved(paths, epochs)
    finally:
        ray.shutdown()
    diff = crop_difference(instances, shards, meta, codec, augment, args.reduced_decode)
    counts = {name: [p["n"] if isinstance(p, dict) else p[0] for p in runs] for name, runs in passes.items()}
    assert all(c == len(instances) for runs in counts.values() for c in runs), counts

    rates = {name: _median([_rate(p) for p in runs]) for name, runs in passes.items()}
    ray_runs = passes["ray_data"]
    rates["ray_data_incl_daemons"] = _median([r["n"] / (_cpu(r) + r["daemon_cpu"]) for r in ray_runs])
    # The ratios: medians of the per-epoch ratios (each from passes run next to each other).
    vs_file = _median([_rate(r) / _rate(f) for r, f in zip(ray_runs, passes["file_loader"])])
    vs_bound = _median([_rate(r) / _rate(d) for r, d in zip(ray_runs, passes["decode_only"])])
    mode = ("reduced" if args.reduced_decode else "full") + " JPEG decode" + (
        f" of regions sized for {w}x{h} (--sized-regions, {density:g} region px per crop px)" if sized else "")
    print(f"\nshard paths: {mode}; {args.repeats} epochs ({epochs[0]}..{epochs[-1]}), every path once "
          "per epoch in turn; medians; per core = samples / CPU seconds")
    print(f"{'path':<28}{'crops/s/core':>14}{'CPU s':>9}{'wall s':>9}")
    names = {"file_loader": "file loader (TopDownDataset)", "decode_only": "decode-only bound",
             "decoder_in_process": "shard decoder, in process", "ray_data": "shards via Ray Data",
             "ray_data_unfused": "  read, decode unfused"}
    for key, name in names.items():
        runs = passes[key]
        print(f"{name:<28}{rates[key]:>14.0f}{_median([_cpu(p) for p in runs]):>9.2f}"
              f"{_median([_wall(p) for p in runs]):>9.2f}")
    ray_r = sorted(ray_runs, key=_rate)[len(ray_runs) // 2]
    print(f"Ray (median epoch): driver {ray_r['driver_cpu']:.2f} + workers {ray_r['worker_cpu']:.2f} CPU s; daemons "
          f"{ray_r['daemon_cpu']:.2f} CPU s more ({rates['ray_data_incl_daemons']:.0f} crops/s/core with them); "
          f"{ray_r['n'] / ray_r['wall']:.0f} crops/s wall on {args.ray_cpus} logical CPUs")
    print("per epoch, Ray Data / file loader: " + ", ".join(
        f"{_rate(r) / _rate(f):.2f}" for r, f in zip(ray_runs, passes["file_loader"])))
    print(f"shard crops vs the file loader's (epoch 1, same augmentation): mean abs difference {diff:.2f} grey levels")
    result = {
        "ray_vs_file_loader": round(vs_file, 3),
        "ray_vs_decode_only": round(vs_bound, 3),
        "crops_per_core_s": {k: round(v, 1) for k, v in rates.items()},
        "instances": len(instances),
        "input_size": [w, h],
        "reduced_decode": args.reduced_decode,
        "quality": args.quality,
        "sized_regions": args.sized_regions,
        "region_density": density if sized else None,
        "crop_mean_abs_diff": round(diff, 3),
        "command": "python " + shlex.join(["bench/bench_ingest.py", *(sys.argv[1:] if argv is None else argv)]),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
