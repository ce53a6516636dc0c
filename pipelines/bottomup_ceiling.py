"""The round-trip ceiling of a bottom-up preset: its training targets, decoded by its own inference.

Encodes the ground truth of the validation images with the preset's codec (the object the data
pipeline uses), decodes it through the evaluator's path (ResizeAlign, flip, NMS / top-k, grouping with
ground-truth tags, offsets, refinement, back-projection; pose.bottomup.ceiling) and prints what a
network that fits its targets perfectly would score: AP, AP50, AR, the median joint error and the
signed mean error per axis, in image pixels and in heatmap pixels (of the finest heatmap). No network,
no image file is read; no Ray. The last line is a JSON object with the figures.

    uv run python pipelines/bottomup_ceiling.py synthcrowd-ce-higherhrnet-w8h32-160 --root /tmp/synthpose-crowd
    uv run python pipelines/bottomup_ceiling.py synthcrowd-ce-hrnet-w8h32-128 --root /tmp/synthpose-crowd \\
        codec.input_size=256 codec.heatmap_sizes=[64]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from pose.bottomup.ceiling import round_trip
from pose.bottomup.config import BottomUpExperimentConfig
from pose.bottomup.data import load_bottomup_images
from pose.bottomup.inference import BottomUpEvaluator
from pose.config import ConfigError, apply_overrides
from pose.presets import get_preset
from pose.tasks import load_experiment_file


def load_config(preset: str, root: str | None, overrides: list[str]) -> BottomUpExperimentConfig:
    """The bottom-up config of ``preset`` (a preset name or a config file), with ``data.root`` set to
    ``root`` when given and ``overrides`` applied; a top-down or unknown preset is a ``ValueError``."""
    if Path(preset).suffix in (".json", ".yaml", ".yml"):
        if not Path(preset).is_file():
            raise FileNotFoundError(f"{preset}: config file not found")
        cfg = load_experiment_file(preset)
    else:
        cfg = get_preset(preset).config
    if not isinstance(cfg, BottomUpExperimentConfig):
        raise ValueError(f"{preset}: a top-down experiment; the round-trip ceiling is for bottom-up presets "
                         "(poselab presets | grep -E '^(ce|ae|synthcrowd)')")
    extra = [f"data.root={root}"] if root is not None else []
    return apply_overrides(cfg, extra + list(overrides))


def ceiling(cfg: BottomUpExperimentConfig, max_images: int | None = None) -> dict[str, float]:
    """The round-trip figures of ``cfg`` on its validation set (the first ``max_images``; default
    ``data.max_val_images``, 0 = all)."""
    gt_file = cfg.data.path(cfg.data.val_ann)
    if not gt_file.is_file():
        raise FileNotFoundError(f"{gt_file}: validation annotations not found (data.root={cfg.data.root!r}; "
                                f"make a crowd dataset with `poselab synth --profile crowd --out DIR`)")
    meta = cfg.data.metainfo()
    records, _ = load_bottomup_images(gt_file, cfg.data.path(cfg.data.val_images), meta, train=False)
    limit = cfg.data.max_val_images if max_images is None else max_images
    if limit:
        records = records[:limit]
    evaluator = BottomUpEvaluator(meta, cfg.codec, cfg.test, gt_file, image_ids=[r.image_id for r in records])
    return dataclasses.asdict(round_trip(evaluator, records))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Units: heatmap px = pixels of the finest heatmap (input_size / its side).")
    p.add_argument("preset", help="a bottom-up preset name (synthcrowd-*, ce-*, ae-*) or a config file")
    p.add_argument("--root", default=None, help="dataset root (overrides the preset's data.root)")
    p.add_argument("--max-images", type=int, default=None,
                   help="score the first N validation images (default: the config's data.max_val_images; 0 = all)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides (e.g. codec.input_size=256 "
                   "codec.heatmap_sizes=[64])")
    args = p.parse_intermixed_args(argv)  # overrides may follow the options
    if args.max_images is not None and args.max_images < 0:
        p.error("--max-images must be >= 0")
    try:
        cfg = load_config(args.preset, args.root, args.overrides)
        figures = ceiling(cfg, args.max_images)
    except (FileNotFoundError, ValueError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    c = cfg.codec
    print(f"{args.preset} (input {c.input_size}, heatmaps {list(c.heatmap_sizes)}, sigma {c.sigma:g}, "
          f"flip {cfg.test.flip_test}) on {cfg.data.root}: {figures['images']} images, "
          f"{figures['people']} people, {figures['joints']} matched joints, {figures['unmatched']} people unmatched\n")
    print("| AP | AP50 | AR | median err (img px) | median err (hm px) | mean dx, dy (img px) | mean dx, dy (hm px) |")
    print("|---|---|---|---|---|---|---|")
    f = figures
    print(f"| {f['ap']:.3f} | {f['ap50']:.3f} | {f['ar']:.3f} | {f['median_px']:.2f} | {f['median_hm']:.3f} | "
          f"{f['mean_dx_px']:+.3f}, {f['mean_dy_px']:+.3f} | {f['mean_dx_hm']:+.3f}, {f['mean_dy_hm']:+.3f} |")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
