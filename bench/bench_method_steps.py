"""Training-step cost of the semi-supervised methods, side by side: Supervised, PoseCons, PoseDual.

One optimiser step of each method on the same synthetic batch (``B`` labeled uint8 crops with random
heatmap targets, and ``B`` unlabeled crops for PoseCons / PoseDual), built from a preset with the
overrides given, interleaved repetition by repetition so that machine load hits all methods alike. Data
loading is not included (it is the same for every method per crop). What it answers: how much longer a
PoseCons or PoseDual trial takes than a Supervised one with the same number of steps, the figure the
CPU tables' budgets are planned with (docs/semi_supervised.md).

    python bench/bench_method_steps.py                       # R18, 64x96, batch 16, 1 thread (~1 min)
    python bench/bench_method_steps.py --threads 2 --reps 5
    python bench/bench_method_steps.py --against model.resnet_stages=3 model.num_deconv=2   # + ResNet to layer3

The last line printed is a JSON object: seconds per step of each method and the ratios to Supervised;
with ``--against``, the same for the variant with those extra overrides (timed in the same rounds) and
its ratio to the base per method.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pose.config import apply_overrides  # noqa: E402
from pose.engine.components import build_method, build_optimizer  # noqa: E402
from pose.presets import get_preset  # noqa: E402

METHODS = ("supervised", "posecons", "posedual")
DEFAULT_OVERRIDES = ["codec.input_size=[64,96]", "codec.heatmap_size=[16,24]", "model.deconv_channels=64"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="synth100-posedual-jc-r18-128x96", help="base config (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="labeled (and unlabeled) crops per step")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one Tune trial's share)")
    p.add_argument("--reps", type=int, default=3, help="timed rounds (each: --steps steps of every method)")
    p.add_argument("--steps", type=int, default=5, help="steps per method per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per method first")
    p.add_argument("--against", nargs="+", default=[], metavar="KEY=VALUE",
                   help="time a variant too: the base overrides plus these, interleaved with the base")
    p.add_argument("overrides", nargs="*", default=DEFAULT_OVERRIDES,
                   help="dotted config overrides (default: %(default)s)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    base = get_preset(args.preset).config
    variants = {"base": list(args.overrides)}
    if args.against:
        variants["variant"] = [*args.overrides, *args.against]
    runs = {}
    for (name, overrides), kind in ((v, k) for v in variants.items() for k in METHODS):
        cfg = apply_overrides(base, [*overrides, f"method.kind={kind}"])
        meta = cfg.data.metainfo()
        method = build_method(cfg, meta)
        method.train()
        w, h = cfg.codec.input_size
        hw, hh = cfg.codec.heatmap_size
        b, k = args.batch_size, meta.num_keypoints
        gen = torch.Generator().manual_seed(0)
        labeled = {"image": torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=gen),
                   "heatmaps": torch.rand(b, k, hh, hw, generator=gen), "weights": torch.ones(b, k)}
        unlabeled = {"image": torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=gen)}
        runs[name, kind] = (method, build_optimizer(cfg, method), labeled, None if kind == "supervised" else unlabeled)

    def step(key: tuple[str, str]) -> None:
        method, optimizer, labeled, unlabeled = runs[key]
        out = method.training_step(labeled, unlabeled)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()

    for key in runs:
        for _ in range(args.warmup):
            step(key)
    times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    for rep in range(args.reps):
        for key in runs:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(key)
            times[key].append((time.perf_counter() - t0) / args.steps)
        print(f"round {rep + 1}/{args.reps}: " + ", ".join(
            f"{kind}{'' if name == 'base' else ' (variant)'} {times[name, kind][-1]:.3f} s/step"
            for name, kind in runs), flush=True)
    med = {key: statistics.median(v) for key, v in times.items()}
    result = {"s_per_step": {k: round(med["base", k], 4) for k in METHODS},
              "ratio_to_supervised": {k: round(med["base", k] / med["base", "supervised"], 2) for k in METHODS},
              "batch_size": args.batch_size, "threads": args.threads, "preset": args.preset,
              "overrides": args.overrides}
    if args.against:
        result["variant"] = {
            "against": args.against,
            "s_per_step": {k: round(med["variant", k], 4) for k in METHODS},
            "ratio_to_base": {k: round(med["variant", k] / med["base", k], 2) for k in METHODS}}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
