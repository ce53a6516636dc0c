"""Ray Train overhead benchmark: step time of the Ray Train loop against the plain-PyTorch loop.

Both loops train the same experiment config (default: preset ``synth-r18-128x96``, supervised, on
the CPU) with the same batch size and torch thread count, alternately in one run (plain, ray, plain,
ray, ...: ``--repeats`` pairs, so drift of a shared machine hits both sides alike):

* **plain**: :class:`pose.engine.trainer.Trainer` in this process (``train.threads`` threads);
* **ray**: ``orchestrator.train.run_training`` -> ``TorchTrainer`` with ``--workers`` gloo workers, each
  with ``--threads`` torch threads (a :class:`orchestrator.resources.ResourcePlan` built for it), rank 0
  logging to an MLflow SQLite store in a temporary directory. Ray is started once (before the first
  pass) and shut down at the end.

What is timed, identically on both sides: the training steps only, on the clock of the step code
both loops share, :func:`pose.engine.loop.train_epoch`. Every ``train.log_interval`` steps it hands
``images_per_s = images so far / seconds since the epoch's loop started`` to its ``on_step`` callback:
the plain Trainer passes it to its ``log_metrics`` callback (here: recorded in memory), the Ray worker
logs it to MLflow as ``train/images_per_s`` at that step (read back with ``get_metric_history``). So
``elapsed(k) = k * batch / images_per_s(k)`` is the time from the start of the epoch to the end of step
``k``, and the step time is ``(elapsed(warmup + steps) - elapsed(warmup)) / steps``:

* the warmup steps (DataLoader worker start, first batches, allocator growth) are excluded, and so
  is everything outside the epoch: Ray start, worker actors, process group, dataset and model
  building, evaluation, checkpoints, MLflow artifacts;
* what each loop does per step is included: data waits, the optimiser step, and the step logging of
  every ``log_interval`` steps (the plain side's callback appends to a list; the Ray side writes one
  MLflow batch to SQLite, and the Ray worker shares the cores with the Ray daemons and the driver's
  Train controller): that is the overhead the target is about.

The run is one epoch of exactly ``warmup + steps`` full batches per rank plus one batch of a single
instance (the label budget ``data.num_labeled`` is set to ``workers * (batch * (warmup + steps) + 1)``
for Ray, without the ``workers *`` for plain), so the per-step entries at ``warmup`` and
``warmup + steps`` are never the epoch-end entry that Ray logs under the same metric name. The
log interval must divide ``warmup`` and ``steps`` (default: the preset's, else their gcd). Too small
a training set (coco-mini) is repeated in a temporary annotation file; validation uses the first
image(s) of the validation set only, one instance per Ray worker at least (evaluated once, after the
timed epoch, untimed).

With ``--workers`` > 1 every rank trains ``batch`` images per step (DDP, weak scaling): ms/step is
still the figure compared, and it needs ``workers * threads`` cores to mean anything. Also reported,
as information: per-pass start-up (call to the first timed step, minus that step's in-epoch time),
whole-epoch ms/step including warmup (``epoch_time_s`` of both loops), and ``ray.init`` time.

On a shared machine the ratio is only as good as the quiet of the passes: a background thread
samples ``/proc`` every second, and each pass reports the cores its own process tree (this process,
Ray's daemons and workers, DataLoader workers) and *other* programs used during its timed steps
(``ours`` / ``others``). Two torch threads on two cores slow down many-fold as soon as another program
takes a core (the threads wait for each other at every parallel region), so compare passes whose
``others`` are alike (and near 0); ``ratio_of_fastest`` (fastest pass of each side) is the figure
least affected by interference that comes and goes.

    python bench/bench_ray_train.py                                   # data/synthpose, 60 steps
    python bench/bench_ray_train.py --data tests/fixtures/coco-mini --steps 6 --warmup 2 --batch-size 4

The last line printed is a JSON object: ``plain_ms_per_step``, ``ray_ms_per_step`` and ``ratio`` first.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import shlex
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

# Before Ray is imported: workers run this interpreter (not `uv run` per worker, which also ships the
# working directory), at this process's priority (Ray's default worker niceness of 15 would slow the
# Ray side on any busy machine and measure the scheduler, not Ray Train).
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.setdefault("RAY_worker_niceness", "0")

REPO = Path(__file__).resolve().parents[1]

from pose.config import apply_overrides  # noqa: E402
from pose.engine.components import load_train_instances  # noqa: E402
from pose.experiment import ExperimentConfig  # noqa: E402
from pose.presets import get_preset  # noqa: E402

TARGET_MAX_RATIO = 1.10
COCO_MINI = REPO / "tests" / "fixtures" / "coco-mini"  # the test suite's four COCO val2017 images
COCO_MINI_LAYOUT = [  # the orchestrator tests' overrides: val2017 for training and validation
    "data.train_ann=annotations/person_keypoints_val2017.json", "data.train_images=images/val2017",
    "data.val_ann=annotations/person_keypoints_val2017.json", "data.val_images=images/val2017",
]

log = logging.getLogger("bench_ray_train")
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------- CPU load
def _busy_s() -> float:
    """CPU seconds the whole machine has been busy (user, nice, system, irq, softirq, steal), all cores."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / TICK


def _tree_cpu() -> dict[int, float]:
    """{pid: user + system CPU seconds} of this process and its descendants (Ray's daemons and workers,
    DataLoader workers)."""
    stats: dict[int, tuple[int, float]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, [os.getpid()]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out[pid] = stats[pid][1]
        todo.extend(children.get(pid, []))
    return out


class LoadSampler:
    """Samples, every ``interval`` seconds, the machine's busy CPU seconds and those of this process tree
    (exited processes keep their last reading), so the load of *other* programs during any wall-clock
    window can be told afterwards: on a shared machine it decides whether a pass means anything."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float, float]] = []  # (time.time(), machine busy s, our s)
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _poll(self, initial: bool = False) -> None:
        for pid, cpu in _tree_cpu().items():
            self._first.setdefault(pid, cpu if initial else 0.0)
            self._last[pid] = cpu
        ours = sum(last - self._first[pid] for pid, last in self._last.items())
        self.samples.append((time.time(), _busy_s(), ours))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll()

    def start(self) -> LoadSampler:
        self._poll(initial=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def window(self, t0: float, t1: float) -> tuple[float, float]:
        """(cores used by other programs, cores used by this process tree) between the last sample at
        or before ``t0`` and the first at or after ``t1``."""
        before = [s for s in self.samples if s[0] <= t0] or self.samples[:1]
        after = [s for s in self.samples if s[0] >= t1] or self.samples[-1:]
        (a_t, a_busy, a_ours), (b_t, b_busy, b_ours) = before[-1], after[0]
        wall = max(b_t - a_t, 1e-9)
        return max(0.0, (b_busy - a_busy) - (b_ours - a_ours)) / wall, (b_ours - a_ours) / wall


# ---------------------------------------------------------------------------------------------- config
def default_data() -> Path:
    synth = REPO / "data" / "synthpose"
    return synth if synth.exists() else COCO_MINI


def _first_images(ann: Path, instances: int, out: Path) -> Path:
    """``ann`` cut to its first images holding at least ``instances`` non-crowd, labeled annotations
    (the untimed evaluation; Ray's evaluation needs one per worker)."""
    full = json.loads(ann.read_text())
    labeled: dict[int, int] = {}
    for a in full["annotations"]:
        if not a.get("iscrowd", 0) and any(v >= 1 for v in a["keypoints"][2::3]):
            labeled[a["image_id"]] = labeled.get(a["image_id"], 0) + 1
    keep, count = set(), 0
    for image in full["images"]:
        if count >= instances:
            break
        if image["id"] in labeled:
            keep.add(image["id"])
            count += labeled[image["id"]]
    out.write_text(json.dumps({**full, "images": [i for i in full["images"] if i["id"] in keep],
                               "annotations": [a for a in full["annotations"] if a["image_id"] in keep]}))
    return out


def _repeated(ann: Path, keep_ids: list[int], needed: int, out: Path) -> Path:
    """``ann``'s annotations ``keep_ids`` repeated (fresh ids) to ``needed`` annotations."""
    full = json.loads(ann.read_text())
    by_id = {a["id"]: a for a in full["annotations"]}
    anns = [{**by_id[keep_ids[i % len(keep_ids)]], "id": i + 1} for i in range(needed)]
    used = {a["image_id"] for a in anns}
    out.write_text(json.dumps({**full, "images": [i for i in full["images"] if i["id"] in used],
                               "annotations": anns}))
    return out


def build_config(args: argparse.Namespace, work: Path, needed: int) -> ExperimentConfig:
    """The shared experiment config: preset + data layout + sizes + ``--set`` overrides, with a
    training set of at least ``needed`` instances and a validation set of the first image(s)."""
    data = Path(args.data).resolve()
    layout = [] if (data / "annotations" / "person_keypoints_train.json").exists() else COCO_MINI_LAYOUT
    cfg = apply_overrides(get_preset(args.preset).config, [
        f"data.root={data}", *layout, "method.kind=supervised", "train.device=cpu",
        f"train.batch_size={args.batch_size}", f"train.threads={args.threads}", "train.epochs=1",
        "train.val_interval=1000000",
        *([f"data.num_workers={args.loader_workers}"] if args.loader_workers is not None else []), *args.set])
    if cfg.method.kind != "supervised" or cfg.train.batch_size != args.batch_size:
        raise SystemExit("the step accounting needs method.kind=supervised and train.batch_size = "
                         "--batch-size")
    d = cfg.data
    val = _first_images(d.path(d.val_ann), args.workers, work / "val_first_images.json")
    cfg = apply_overrides(cfg, [f"data.val_ann={val}", "data.num_labeled=0"])
    available = load_train_instances(cfg, cfg.data.metainfo())
    if len(available) < needed:
        train = _repeated(d.path(d.train_ann), [i.instance_id for i in available], needed,
                          work / "train_repeated.json")
        log.warning("%s has %d training instances < %d needed: repeating them (%s)", d.path(d.train_ann),
                    len(available), needed, train)
        cfg = apply_overrides(cfg, [f"data.train_ann={train}", "data.budget_mode=first"])
    return cfg


def log_interval(args: argparse.Namespace, preset_interval: int) -> int:
    if args.log_interval:
        every = args.log_interval
    elif args.warmup % preset_interval == 0 and args.steps % preset_interval == 0:
        every = preset_interval
    else:
        every = math.gcd(args.warmup, args.steps)
    if args.warmup % every or args.steps % every:
        raise SystemExit(f"--log-interval {every} must divide --warmup {args.warmup} and --steps "
                         f"{args.steps}")
    return every


# ---------------------------------------------------------------------------------------------- passes
def _timed(elapsed: dict[int, float], wall: dict[int, float], t_call: float, warmup: int, steps: int,
           sampler: LoadSampler) -> dict[str, float]:
    """Seconds per step between the end of step ``warmup`` and the end of step ``warmup + steps``
    (``elapsed``: in-epoch seconds at each logged step; ``wall``: ``time.time()`` when it was logged),
    start-up (call to the start of the epoch's loop) and the load during the timed steps."""
    missing = [k for k in (warmup, warmup + steps) if k not in elapsed]
    if missing:
        raise RuntimeError(f"no step timing logged at steps {missing} (got {sorted(elapsed)})")
    first = min(elapsed)
    other, ours = sampler.window(wall[warmup], wall[warmup + steps])
    return {"s_per_step": (elapsed[warmup + steps] - elapsed[warmup]) / steps,
            "startup_s": wall[first] - t_call - elapsed[first], "other_cores": other, "our_cores": ours}


def run_plain(cfg: ExperimentConfig, args: argparse.Namespace, sampler: LoadSampler) -> dict:
    from pose.engine.trainer import Trainer

    elapsed: dict[int, float] = {}
    wall: dict[int, float] = {}
    epoch: dict[str, float] = {}

    def record(metrics: dict[str, float], step: int) -> None:  # Trainer's log_metrics callback
        if "epoch_time_s" in metrics:
            epoch.update(metrics)
            return
        wall[step] = time.time()
        elapsed[step] = step * cfg.train.batch_size / metrics["images_per_s"]

    t_call, w0 = time.time(), time.perf_counter()
    Trainer(cfg, log_metrics=record, resume=False).fit()
    total = time.perf_counter() - w0
    return {**_timed(elapsed, wall, t_call, args.warmup, args.steps, sampler),
            "epoch_time_s": epoch["epoch_time_s"], "total_s": total}


def run_ray(cfg: ExperimentConfig, args: argparse.Namespace, plan, uri: str, sampler: LoadSampler) -> dict:
    from mlflow.tracking import MlflowClient

    from orchestrator.train import RunOptions, run_training

    opts = RunOptions(num_workers=args.workers, tracking_uri=uri, experiment="bench", log_checkpoints=False,
                      resume=False, max_failures=0)
    t_call, w0 = time.time(), time.perf_counter()
    result = run_training(cfg, opts, plan=plan)
    total = time.perf_counter() - w0
    client = MlflowClient(uri)
    history = client.get_metric_history(result.run_id, "train/images_per_s")
    last = args.warmup + args.steps  # the epoch-end entry is at last + 1 (the one-instance batch)
    elapsed: dict[int, float] = {}
    wall: dict[int, float] = {}
    for m in history:
        if m.step <= last:
            if m.step in elapsed:
                raise RuntimeError(f"two train/images_per_s entries at step {m.step}")
            elapsed[m.step] = m.step * cfg.train.batch_size / m.value  # rank 0's images and clock
            wall[m.step] = m.timestamp / 1000.0  # RunLogger stamps time.time() as it logs
    epoch_time = [m.value for m in client.get_metric_history(result.run_id, "epoch_time_s")]
    if len(epoch_time) != 1:
        raise RuntimeError(f"expected one epoch, got epoch_time_s {epoch_time}")
    return {**_timed(elapsed, wall, t_call, args.warmup, args.steps, sampler), "epoch_time_s": epoch_time[0],
            "total_s": total}


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(default_data()),
                   help="COCO-format root: SynthPose layout, or coco-mini's val2017-only one "
                        "(default: %(default)s)")
    p.add_argument("--preset", default="synth-r18-128x96", help="experiment preset (default: %(default)s)")
    p.add_argument("--steps", type=int, default=60,
                   help="training steps timed per pass (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=5,
                   help="steps at the start of the epoch excluded from timing (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=None, help="per-rank batch size (default: the preset's)")
    p.add_argument("--threads", type=int, default=2, help="torch threads, plain and per Ray worker "
                                                          "(default: %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="Ray Train workers (default: %(default)s)")
    p.add_argument("--loader-workers", type=int, default=None,
                   help="DataLoader worker processes, both sides (default: the preset's data.num_workers)")
    p.add_argument("--repeats", type=int, default=2,
                   help="plain/ray pass pairs, alternated A-B-A-B; the median of each side counts "
                        "(default: %(default)s)")
    p.add_argument("--log-interval", type=int, default=0,
                   help="train.log_interval; must divide --warmup and --steps (default: the preset's if it "
                        "does, else their gcd)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config override for both sides (repeatable), e.g. codec.input_size=[64,96]; "
                        "not for the sizes set by the options above")
    args = p.parse_args(argv)
    if min(args.steps, args.warmup, args.threads, args.workers, args.repeats) < 1:
        raise SystemExit("--steps, --warmup, --threads, --workers and --repeats must be >= 1")
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    preset = get_preset(args.preset).config
    args.batch_size = args.batch_size or preset.train.batch_size
    every = log_interval(args, preset.train.log_interval)
    per_rank = args.batch_size * (args.warmup + args.steps) + 1  # + a one-instance batch: see the docstring
    n_plain, n_ray = per_rank, per_rank * args.workers

    import ray
    from mlflow.tracking import MlflowClient

    from orchestrator.resources import plan_resources
    from orchestrator.tracking import get_or_create_experiment

    with tempfile.TemporaryDirectory(prefix="bench-ray-train-") as tmp:
        work = Path(tmp)
        base = apply_overrides(build_config(args, work, max(n_plain, n_ray)), [f"train.log_interval={every}"])
        uri = f"sqlite:///{work}/mlflow.db"
        get_or_create_experiment(MlflowClient(uri), "bench", uri)  # creates the database outside the timing
        cores = os.cpu_count() or 1
        plan = plan_resources(cores, args.workers, starting_local=True)
        plan = dataclasses.replace(plan, torch_threads=args.threads)
        num_cpus = max(plan.num_cpus or cores, args.workers + 1)
        t0 = time.perf_counter()
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level="WARNING",
                 object_store_memory=256 * 1024**2)
        ray_init_s = time.perf_counter() - t0
        passes: dict[str, list[dict]] = {"plain": [], "ray": []}
        sampler = LoadSampler().start()
        try:
            for i in range(args.repeats):
                for side in ("plain", "ray"):
                    n = n_plain if side == "plain" else n_ray
                    out = work / f"{side}{i}"
                    cfg = apply_overrides(base, [f"data.num_labeled={n}", f"output_dir={out}"])
                    if side == "plain":
                        r = run_plain(cfg, args, sampler)
                    else:
                        r = run_ray(cfg, args, plan, uri, sampler)
                    passes[side].append(r)
                    print(f"pass {i + 1}/{args.repeats} {side:<5}: {r['s_per_step'] * 1e3:.1f} ms/step, "
                          f"other programs using {r['other_cores']:.2f} cores", file=sys.stderr, flush=True)
        finally:
            sampler.stop()
            ray.shutdown()

    steps_total = args.warmup + args.steps + 1
    images = {"plain": args.batch_size, "ray": args.batch_size * args.workers}  # per step, all ranks
    med = {side: statistics.median(r["s_per_step"] for r in rs) for side, rs in passes.items()}
    ratio = med["ray"] / med["plain"]
    pair_ratios = [r["s_per_step"] / q["s_per_step"] for q, r in zip(passes["plain"], passes["ray"])]
    best = {side: min(r["s_per_step"] for r in rs) for side, rs in passes.items()}  # least disturbed pass

    print(f"\n{args.preset} on {args.data}: batch {args.batch_size}/rank, {args.threads} torch threads, "
          f"{base.data.num_workers} loader workers, log every {every} steps; {args.steps} steps timed after "
          f"{args.warmup} warmup; Ray: {args.workers} worker(s), ray.init(num_cpus={num_cpus:g}) "
          f"{ray_init_s:.1f} s on {os.cpu_count()} cores")
    print(f"{'side':<7}{'pass':>5}{'ms/step':>10}{'images/s':>10}{'epoch ms/step':>15}{'startup s':>11}"
          f"{'total s':>9}{'ours':>7}{'others':>8}")
    for i in range(args.repeats):
        for side in ("plain", "ray"):
            r = passes[side][i]
            print(f"{side:<7}{i + 1:>5}{r['s_per_step'] * 1e3:>10.1f}{images[side] / r['s_per_step']:>10.1f}"
                  f"{r['epoch_time_s'] / steps_total * 1e3:>15.1f}{r['startup_s']:>11.2f}{r['total_s']:>9.1f}"
                  f"{r['our_cores']:>7.2f}{r['other_cores']:>8.2f}")
    for side in ("plain", "ray"):
        print(f"{side + ' median':<12}{med[side] * 1e3:>10.1f}{images[side] / med[side]:>10.1f}")
    print(f"ms/step and images/s: timed steps only; epoch ms/step: the whole epoch ({steps_total} steps, "
          f"warmup included); ours / others: cores used by this process tree / by other programs during the "
          f"timed steps")
    verdict = "within" if ratio <= TARGET_MAX_RATIO else "ABOVE"
    print(f"ray/plain step time: {ratio:.3f} ({verdict} the target of {TARGET_MAX_RATIO:.2f}); per pair: "
          f"{', '.join(f'{r:.3f}' for r in pair_ratios)}; fastest passes: {best['ray'] / best['plain']:.3f}")
    busiest = max(r["other_cores"] for rs in passes.values() for r in rs)
    if busiest > 0.25:
        print(f"WARNING: other programs used up to {busiest:.2f} of {os.cpu_count()} cores during the timed "
              f"steps: "
              f"the figures measure that contention as much as Ray Train", file=sys.stderr)
    result = {
        "plain_ms_per_step": round(med["plain"] * 1e3, 2),
        "ray_ms_per_step": round(med["ray"] * 1e3, 2),
        "ratio": round(ratio, 4),
        "target_max_ratio": TARGET_MAX_RATIO,
        "within_target": ratio <= TARGET_MAX_RATIO,
        "pair_ratios": [round(r, 4) for r in pair_ratios],
        "ratio_of_fastest": round(best["ray"] / best["plain"], 4),
        "plain_images_per_s": round(images["plain"] / med["plain"], 2),
        "ray_images_per_s": round(images["ray"] / med["ray"], 2),
        "plain_startup_s": round(statistics.median(r["startup_s"] for r in passes["plain"]), 2),
        "ray_startup_s": round(statistics.median(r["startup_s"] for r in passes["ray"]), 2),
        "ray_init_s": round(ray_init_s, 2),
        "other_load_cores": {side: [round(r["other_cores"], 2) for r in rs] for side, rs in passes.items()},
        "steps": args.steps,
        "warmup": args.warmup,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "workers": args.workers,
        "loader_workers": base.data.num_workers,
        "log_interval": every,
        "repeats": args.repeats,
        "preset": args.preset,
        "device": "cpu",
        "command": "python " + shlex.join(["bench/bench_ray_train.py",
                                           *(sys.argv[1:] if argv is None else argv)]),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
