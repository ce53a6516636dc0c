"""Bottom-up diagnosis of a trained run: how much of the AP is lost to localisation, how much to grouping.

Loads a run directory of ``poselab train`` / the ablation (``config.json`` and a checkpoint), and scores
its validation images three ways (pose.bottomup.oracle): the network as it is; its heatmaps with the
ground truth's identities as tags (what its localisation allows); the ground-truth joints as heatmaps
with its tags (how well its embedding groups people). Also prints the signed mean offset (dx, dy) from
each ground-truth joint to the nearest peak of its type, with its spread, in heatmap pixels (a
constant vector is a coordinate bug, zero-mean scatter a poor fit), and, for R > 1 tag dimensions,
the mean |off-diagonal| correlation of the tag dimensions at the ground-truth joints
(pose.bottomup.diagnostics). Prints Markdown tables; the last line is a JSON object with the
figures. No Ray needed. For the ceiling of a setting before any training, see
pipelines/bottomup_ceiling.py.

    uv run python pipelines/diagnose_bottomup.py runs/synthcrowd-ce-hrnet-w8h32-128 [--checkpoint best.pth]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from pose.bottomup.config import BottomUpExperimentConfig
from pose.bottomup.parts import BottomUpParts
from pose.config import apply_overrides
from pose.tasks import load_experiment_file

ROWS = (("network", "AP", "AR50"),
        ("oracle tags (network heatmaps)", "AP_oracle_tags", "AR50_oracle_tags"),
        ("oracle heatmaps (network tags)", "AP_oracle_heatmaps", "AR50_oracle_heatmaps"))


DIAGNOSTICS = ("peak_dx", "peak_dy", "peak_dx_std", "peak_dy_std", "peak_found", "tag_corr_offdiag")


def diagnose(run_dir: Path, checkpoint: str = "last.pth", overrides: list[str] | None = None,
             threads: int | None = None) -> dict[str, float]:
    """The three scores (AP, AR50 of each source) of ``run_dir``'s ``checkpoint`` on its validation set."""
    config_file = run_dir / "config.json"
    ckpt = run_dir / checkpoint
    for path in (config_file, ckpt):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (a run directory holds config.json and last.pth)")
    cfg = load_experiment_file(config_file)
    if not isinstance(cfg, BottomUpExperimentConfig):
        raise ValueError(f"{config_file}: a top-down experiment; this diagnosis is for bottom-up runs")
    cfg = apply_overrides(cfg, ["test.oracle_diagnosis=true", *(overrides or [])])
    if threads:
        torch.set_num_threads(threads)
    parts = BottomUpParts(cfg)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    parts.method.load_state_dict(state["method"])
    preds = parts.predict(parts.val_set, torch.device("cpu"), channels_last=False)
    stats = parts.score(preds, None)["net"]
    return {"step": int(state.get("step", 0)), "images": len(parts.val_set),
            **{key: float(stats[key]) for _, ap, ar in ROWS for key in (ap, ar)},
            **{key: float(stats[key]) for key in DIAGNOSTICS if key in stats}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a bottom-up run directory (config.json + checkpoint)")
    p.add_argument("--checkpoint", default="last.pth", help="checkpoint file in the run directory (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides (e.g. data.max_val_images=20)")
    args = p.parse_args(argv)
    try:
        figures = diagnose(args.run_dir, args.checkpoint, args.overrides, args.threads)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.run_dir} ({args.checkpoint}, step {figures['step']}, {figures['images']} validation images)\n")
    print("| scored with | AP x100 | AR50 x100 |\n|---|---|---|")
    for label, ap, ar in ROWS:
        print(f"| {label} | {100 * figures[ap]:.1f} | {100 * figures[ar]:.1f} |")
    if "peak_dx" in figures:
        print("\n| nearest peak - joint (heatmap px) | mean | spread (std) |\n|---|---|---|")
        for axis in ("dx", "dy"):
            print(f"| {axis} | {figures[f'peak_{axis}']:+.3f} | {figures[f'peak_{axis}_std']:.3f} |")
    if "peak_found" in figures:
        print(f"\n{100 * figures['peak_found']:.1f} % of the labelled joints have a peak of their type "
              "(above codec.grouping.val_threshold)")
    if "tag_corr_offdiag" in figures:
        print(f"tag dimensions at the ground-truth joints: mean |off-diagonal correlation| "
              f"{figures['tag_corr_offdiag']:.3f}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
