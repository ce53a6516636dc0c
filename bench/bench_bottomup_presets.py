"""Per-step CPU cost of bottom-up network candidates, side by side: the former W8-128 against wider ones.

Every candidate is a bottom-up preset with dotted overrides. For each, on the same crowded SynthPose
images (``--root``, the crowd profile), interleaved round by round so that machine load hits all
candidates alike:

* ``data``: building one training batch (``--batch-size`` images read, augmented and encoded by the
  candidate's codec: what a trial with ``data.num_workers=0`` pays on its own core);
* ``step``: one optimiser step on that batch (forward, the candidate's loss, backward, Adam);
* ``val``: one validation image through the evaluator (flip test as configured, grouping included).

What it answers: how much longer a trial of each candidate takes than one of the former
``synthcrowd-ce-hrnet-w8-128`` (W8, no head conv, input 128) with the same number of steps (issue 23
item 3: at least 32 channels into the final 1x1 layers, and people large enough in heatmap pixels, at a
cost the CE-vs-AE ablation can pay). Untrained networks: the validation figure is mostly the network
(few peaks pass the threshold, so grouping is cheap).

    uv run python bench/bench_bottomup_presets.py --root /tmp/bu-crowd            # all, 1 thread (~6 min)
    uv run python bench/bench_bottomup_presets.py --root /tmp/bu-crowd --only w8-128 higher-w8h32-160

The last line printed is a JSON object: seconds per step / batch / image of each candidate, the ratios
of their sum (data + step) to the first candidate's, parameters and the final 1x1 layers' input channels.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pose.bottomup.components import (  # noqa: E402
    build_method, build_optimizer, build_train_dataset, load_val_images,
)
from pose.bottomup.config import BottomUpExperimentConfig  # noqa: E402
from pose.bottomup.inference import BottomUpEvaluator  # noqa: E402
from pose.config import apply_overrides  # noqa: E402
from pose.data.image_io import read_rgb  # noqa: E402
from pose.presets import get_preset  # noqa: E402

HRNET, HIGHER, CHOSEN = ("synthcrowd-ce-hrnet-w8h32-128", "synthcrowd-ce-higherhrnet-w8h32-128",
                         "synthcrowd-ce-higherhrnet-w8h32-160")
NO_HEAD = ["model.head_channels=0"]  # the 1x1 layers read the backbone's features (the former presets)


def size(input_size: int, higher: bool = False) -> list[str]:
    """Overrides for an input size (heatmaps at 1/4, and 1/2 for the HigherHRNet head)."""
    sizes = [input_size // 4, input_size // 2] if higher else [input_size // 4]
    return [f"codec.input_size={input_size}", f"codec.heatmap_sizes=[{','.join(map(str, sizes))}]"]


CANDIDATES: dict[str, tuple[str, list[str]]] = {
    "w8-128": (HRNET, NO_HEAD),                             # the former synthcrowd-ce-hrnet-w8-128 (baseline)
    "w8h32-128": (HRNET, []),                               # + a 3x3 conv to 32 channels before the 1x1s
    "w16h32-128": (HRNET, ["model.width=16"]),
    "w32-128": (HRNET, ["model.width=32", *NO_HEAD]),       # 32 backbone channels into the 1x1s
    "w8h32-160": (HRNET, size(160)),
    "w8h32-192": (HRNET, size(192)),
    "w8h32-256": (HRNET, size(256)),
    "w16h32-256": (HRNET, ["model.width=16", *size(256)]),
    "w32-256": (HRNET, ["model.width=32", *NO_HEAD, *size(256)]),
    "higher-w8-128": (HIGHER, NO_HEAD),                     # the former synthcrowd-ce-higherhrnet-w8-128
    "higher-w8h32-128": (HIGHER, []),
    "higher-w8h32-160": (CHOSEN, []),                       # the CE-vs-AE presets
    "higher-w8h32-192": (HIGHER, size(192, True)),
    "higher-w8h32-256": (HIGHER, size(256, True)),
}
"""label -> (preset, overrides). The first is the baseline of the ratios."""


def final_channels(method: torch.nn.Module) -> int:
    """Input channels of the network's final 1x1 layers (the heatmap layer's)."""
    return method.network.head.heatmap_layer.in_channels


class Candidate:
    """One candidate's method, optimiser, training items and validation images."""

    def __init__(self, cfg: BottomUpExperimentConfig, batch_size: int, val_images: int) -> None:
        self.cfg = cfg
        meta = cfg.data.metainfo()
        self.dataset = build_train_dataset(cfg, meta)
        self.batch_size = batch_size
        self.method = build_method(cfg, meta)
        self.optimizer = build_optimizer(cfg, self.method)
        records = load_val_images(cfg, meta)[:val_images]
        self.evaluator = BottomUpEvaluator(meta, cfg.codec, cfg.test, cfg.data.path(cfg.data.val_ann),
                                           image_ids=[r.image_id for r in records])
        self.val = [read_rgb(r.image_path, r.image_id) for r in records]
        self.calls = 0

    def batch(self) -> dict[str, torch.Tensor]:
        """A fresh batch (a new augmentation epoch each call, as training draws them)."""
        self.dataset.set_epoch(self.calls)
        self.calls += 1
        n = len(self.dataset)
        return default_collate([self.dataset[i % n] for i in range(self.batch_size)])

    def step(self, batch: dict[str, torch.Tensor]) -> None:
        self.method.train()
        out = self.method.training_step(batch)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.optimizer.step()

    def validate(self, index: int) -> None:
        self.method.eval()
        self.evaluator.predict_image(self.method, self.val[index % len(self.val)], torch.device("cpu"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="/tmp/bu-crowd", help="crowd-profile SynthPose root, COCO format (default %(default)s)")
    p.add_argument("--only", nargs="*", default=None, help=f"candidates to run (default all: {', '.join(CANDIDATES)})")
    p.add_argument("--batch-size", type=int, default=16, help="images per training step (the presets': 16)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one Tune trial's share)")
    p.add_argument("--reps", type=int, default=3, help="timed rounds; the median counts")
    p.add_argument("--steps", type=int, default=2, help="training steps per candidate per round")
    p.add_argument("--val-images", type=int, default=2, help="validation images per candidate per round")
    args = p.parse_args(argv)
    names = args.only or list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        p.error(f"unknown candidates {unknown}; known: {', '.join(CANDIDATES)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    runs = {}
    for name in names:
        preset, overrides = CANDIDATES[name]
        cfg = apply_overrides(get_preset(preset).config, [f"data.root={args.root}", "data.num_workers=0", *overrides])
        runs[name] = Candidate(cfg, args.batch_size, args.val_images)
        runs[name].step(runs[name].batch())  # warm-up (allocator, first-call overheads)
        runs[name].validate(0)
    times: dict[str, dict[str, list[float]]] = {n: {"data": [], "step": [], "val": []} for n in names}
    for rep in range(args.reps):
        for name, run in runs.items():
            for _ in range(args.steps):
                t0 = time.perf_counter()
                batch = run.batch()
                t1 = time.perf_counter()
                run.step(batch)
                times[name]["data"].append(t1 - t0)
                times[name]["step"].append(time.perf_counter() - t1)
            for i in range(args.val_images):
                t0 = time.perf_counter()
                run.validate(rep * args.val_images + i)
                times[name]["val"].append(time.perf_counter() - t0)
        print(f"round {rep + 1}/{args.reps}: " + ", ".join(
            f"{n} {np.mean(times[n]['step'][-args.steps:]):.2f}+{np.mean(times[n]['data'][-args.steps:]):.2f} s"
            for n in names), flush=True)
    med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    base = med[names[0]]["data"] + med[names[0]]["step"]
    print(f"\n| candidate | final 1x1 in-channels | params (M) | step s | data s/batch | step+data s | x {names[0]} | val s/image |")
    print("|---|---|---|---|---|---|---|---|")
    for n in names:
        m = med[n]
        params = sum(q.numel() for q in runs[n].method.parameters()) / 1e6
        print(f"| {n} | {final_channels(runs[n].method)} | {params:.2f} | {m['step']:.2f} | {m['data']:.2f} | "
              f"{m['step'] + m['data']:.2f} | {(m['step'] + m['data']) / base:.2f} | {m['val']:.2f} |")
    result = {"s_per_step": {n: round(med[n]["step"], 3) for n in names},
              "s_per_batch_data": {n: round(med[n]["data"], 3) for n in names},
              "s_per_val_image": {n: round(med[n]["val"], 3) for n in names},
              "ratio_to_first": {n: round((med[n]["step"] + med[n]["data"]) / base, 2) for n in names},
              "final_channels": {n: final_channels(runs[n].method) for n in names},
              "params_m": {n: round(sum(q.numel() for q in runs[n].method.parameters()) / 1e6, 3) for n in names},
              "candidates": {n: CANDIDATES[n] for n in names},
              "batch_size": args.batch_size, "threads": args.threads, "reps": args.reps, "steps": args.steps}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
