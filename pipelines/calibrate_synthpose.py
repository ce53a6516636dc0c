"""SynthPose difficulty calibration: supervised AP with all labels against small label budgets.

Trains the CPU preset (``synth-r18-128x96``) once per label budget for the same number of optimiser
steps, evaluates on SynthPose val and prints a Markdown table; the last line is a JSON object with
the figures. Runs on the plain-PyTorch engine (no Ray needed). The defaults are the calibrated CPU
benchmark (docs/synthpose.md, Calibration): the quick profile at 2,000 images (generated into
``--data`` when it is missing), 64x96 crops, batch 16, Adam 3e-3, 4,000 steps, all labels against 100:

    uv run python pipelines/calibrate_synthpose.py                       # ~38 min on 2 idle cores
    uv run python pipelines/calibrate_synthpose.py --data data/synthpose --budgets 0 250 --steps 1500 \
        --no-recipe                                                      # the preset as it is
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

from pose.cli import load_experiment
from pose.engine.components import load_train_instances
from pose.engine.trainer import Trainer

RECIPE = ["codec.input_size=[64,96]", "codec.heatmap_size=[16,24]", "train.lr=0.003", "augment.rot_prob=0",
          "augment.scale_factor=0.15"]
"""The calibrated CPU recipe's overrides of the preset (docs/synthpose.md, Calibration)."""
BENCH_IMAGES = 2000
"""Train images of the calibrated benchmark data (quick profile)."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/synthpose-bench",
                   help=f"SynthPose root; generated with the quick profile ({BENCH_IMAGES} images) when missing "
                        "(default: %(default)s)")
    p.add_argument("--preset", default="synth-r18-128x96", help="experiment preset (default: %(default)s)")
    p.add_argument("--budgets", type=int, nargs="+", default=[0, 100],
                   help="label budgets in person instances, 0 = all labels (default: %(default)s)")
    p.add_argument("--steps", type=int, default=4000, help="optimiser steps per run (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="labeled batch size (default: %(default)s)")
    p.add_argument("--no-recipe", action="store_true",
                   help=f"train the preset as it is, without the calibrated recipe's overrides ({' '.join(RECIPE)})")
    p.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    p.add_argument("--output-dir", default="runs/calibration", help="run directory root (default: %(default)s)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides applied to every run (e.g. codec.input_size=[64,96])")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    overrides = ([] if args.no_recipe else RECIPE) + args.overrides
    if not (Path(args.data) / "annotations" / "person_keypoints_train.json").exists():
        from pose.synth import generate_dataset
        from pose.synth.config import profile_config

        print(f"generating SynthPose (quick profile, {BENCH_IMAGES} images) in {args.data}", file=sys.stderr)
        generate_dataset(profile_config("quick", BENCH_IMAGES), args.data)

    rows = []
    for budget in args.budgets:
        base = load_experiment(args.preset, [*overrides, f"data.root={args.data}", f"data.num_labeled={budget}"])
        meta = base.data.metainfo()
        n = len(load_train_instances(base, meta))
        steps_per_epoch = math.ceil(n / args.batch_size)
        epochs = max(1, round(args.steps / steps_per_epoch))
        cfg = load_experiment(args.preset, [
            *overrides, f"data.root={args.data}", f"data.num_labeled={budget}", f"train.batch_size={args.batch_size}",
            f"train.epochs={epochs}", f"train.lr_steps=[{max(1, int(epochs * 0.75))}]",
            f"train.val_interval={epochs}", f"train.seed={args.seed}", f"output_dir={args.output_dir}",
            f"name=budget-{budget or 'all'}-seed{args.seed}", "train.log_interval=50",
        ])
        t0 = time.perf_counter()
        final = Trainer(cfg, resume=False).fit()
        rows.append({"budget": budget or n, "all_labels": budget == 0, "instances": n, "epochs": epochs,
                     "steps": epochs * steps_per_epoch, "AP": final["AP"], "AP50": final["AP50"],
                     "AR": final["AR"], "minutes": (time.perf_counter() - t0) / 60})

    print("\n| labels | epochs | steps | AP | AP50 | AR | minutes |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        label = f"all ({r['instances']})" if r["all_labels"] else str(r["budget"])
        print(f"| {label} | {r['epochs']} | {r['steps']} | {r['AP']:.3f} | {r['AP50']:.3f} | {r['AR']:.3f} "
              f"| {r['minutes']:.1f} |")
    print(json.dumps({"data": str(Path(args.data)), "preset": args.preset, "runs": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
