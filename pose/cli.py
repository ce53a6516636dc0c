"""The ``poselab`` command line: ``poselab SUBCOMMAND --help`` documents each subcommand."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pose.config import ConfigError, apply_overrides, to_dict
from pose.tasks import AnyExperimentConfig, load_experiment_file

log = logging.getLogger("poselab")


# ---------------------------------------------------------------------------------------------- evaluate
def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="AP/AR of keypoint results (COCO, CrowdPose, AI Challenger) or MPII PCKh",
                       description="Evaluate keypoint results with the COCO protocol (pycocotools; also AI "
                                   "Challenger with its OKS sigmas), the CrowdPose protocol (keypoints_crowd, "
                                   "easy/medium/hard by crowdIndex) or MPII's PCKh@0.5 and PCKh@0.1 (head boxes "
                                   "of gt_valid.mat). See docs/data.md.")
    p.add_argument("--gt", required=True,
                   help="ground truth: a COCO-format JSON; for aic also the native keypoint_*_annotation.json; "
                        "for mpii the annot/gt_valid.mat head-box file")
    p.add_argument("--results", required=True,
                   help="keypoint results: a JSON list of image_id/keypoints/score; for mpii a JSON list of "
                        "index/keypoints (0-based) or a SimpleBaseline pred.mat (1-based)")
    p.add_argument("--dataset", default="coco",
                   help="coco, crowdpose, mpii, aic, or a metainfo .json for a custom keypoint layout "
                        "(default: coco)")
    p.add_argument("--json", action="store_true", help="print the stats as one JSON object on the last line")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from pose.evaluation.keypoint_eval import evaluate_keypoints, format_summary
    from pose.metainfo import get_metainfo

    meta = get_metainfo(args.dataset)
    if meta.name == "mpii":
        from pose.evaluation.pckh import evaluate_pckh_files, format_pckh_table

        if Path(args.gt).suffix != ".mat":
            raise ValueError(f"--dataset mpii scores against the head boxes of annot/gt_valid.mat, not {args.gt}")
        stats = evaluate_pckh_files(args.gt, args.results)
        print(format_pckh_table(stats))
        if args.json:
            print(json.dumps(stats))
        return 0
    stats = evaluate_keypoints(args.gt, args.results, meta)
    print(format_summary(stats, meta))
    if args.json:
        print(json.dumps(stats))
    return 0


# ---------------------------------------------------------------------------------------------- train
def load_experiment(spec: str, overrides: list[str]) -> AnyExperimentConfig:
    """A preset name or a JSON/YAML config file (top-down, or bottom-up with ``task: bottomup``), then
    ``key=value`` overrides."""
    from pose.presets import PRESETS, get_preset

    if spec in PRESETS:
        cfg = get_preset(spec).config
    elif Path(spec).suffix in (".json", ".yaml", ".yml"):
        cfg = load_experiment_file(spec)
    else:
        get_preset(spec)  # raises: unknown preset, suggesting the closest names
        raise AssertionError("unreachable")
    return apply_overrides(cfg, overrides)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one top-down experiment (plain PyTorch, this machine)",
                       description="Train one experiment from a preset name (see `poselab presets`) or a "
                                   "JSON/YAML config file. key=value arguments override any config field; "
                                   "nested fields use dots, e.g. train.epochs=2 data.root=data/synthpose.")
    p.add_argument("config", help="preset name or config file (.json/.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=0.002")
    p.add_argument("--no-resume", action="store_true", help="start over even if the run directory has last.pth")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    cfg = load_experiment(args.config, args.overrides)
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    from pose.engine.trainer import Trainer

    final = Trainer(cfg, resume=not args.no_resume).fit()
    print(json.dumps({k: round(v, 4) for k, v in final.items()}))
    return 0


# ---------------------------------------------------------------------------------------------- presets
def _add_presets(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list the named experiment configs",
                       description="List the presets that `poselab train PRESET` accepts.")
    p.add_argument("--json", action="store_true",
                   help="print every preset's description, paper row and full config as JSON")
    p.set_defaults(func=_run_presets)


def _run_presets(args: argparse.Namespace) -> int:
    from pose.presets import PRESETS

    if args.json:
        print(json.dumps({n: {"description": p.description, "paper_row": p.paper_row, "config": to_dict(p.config)}
                          for n, p in PRESETS.items()}, indent=2))
        return 0
    width = max(len(n) for n in PRESETS)
    for name, p in PRESETS.items():
        print(f"{name:<{width}}  {p.description}")
        if p.paper_row:
            print(f"{'':<{width}}  paper row: {p.paper_row}")
    return 0


# ---------------------------------------------------------------------------------------------- demo
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the embedded default: SynthPose -> train a small model -> AP",
                       description="Generate a small SynthPose dataset (unless it exists), train the CPU "
                                   "preset on it, evaluate on its validation split and print AP.")
    p.add_argument("--data", default="data/synthpose-demo", help="dataset directory (default: %(default)s)")
    p.add_argument("--images", type=int, default=300, help="SynthPose train images (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="dataset and training seed (default: %(default)s)")
    p.add_argument("--output-dir", default="runs", help="run directory root (default: %(default)s)")
    p.set_defaults(func=_run_demo)


def final_steps(run_dir: Path) -> int:
    """The optimiser step count stored in a run's ``last.pth``."""
    import torch

    return int(torch.load(run_dir / "last.pth", map_location="cpu", weights_only=False)["step"])


def _run_demo(args: argparse.Namespace) -> int:
    from pose.engine.trainer import Trainer
    from pose.synth.config import SynthConfig
    from pose.synth.generate import generate_dataset

    if args.images < 1 or args.epochs < 1:
        raise ValueError("--images and --epochs must be >= 1")
    data = Path(args.data)
    if not (data / "annotations" / "person_keypoints_train.json").exists():
        log.info("generating SynthPose (%d train images) in %s", args.images, data)
        generate_dataset(SynthConfig(images=args.images, seed=args.seed), data)
    else:
        log.info("using the existing SynthPose dataset in %s", data)
    cfg = load_experiment("synth-r18-128x96", [
        f"name=demo-seed{args.seed}", f"output_dir={args.output_dir}", f"data.root={data}",
        f"train.epochs={args.epochs}", f"train.lr_steps=[{max(1, int(args.epochs * 0.75))}]",
        f"train.seed={args.seed}",
    ])
    final = Trainer(cfg, resume=False).fit()
    print(f"\nSynthPose val AP of {cfg.model.arch}-{cfg.model.depth} after {args.epochs} epochs "
          f"({final_steps(cfg.run_dir)} steps from scratch): {final['AP']:.3f} (AP50 {final['AP50']:.3f}, "
          f"AR {final['AR']:.3f}); run directory {cfg.run_dir}")
    print("The demo checks the whole pipeline in a few minutes; a model trained from scratch needs thousands "
          "of steps to reach a useful AP (docs/synthpose.md, Calibration). For a longer run: "
          f"poselab demo --epochs 30, or poselab train synth-r18-128x96 data.root={data}")
    print(json.dumps({k: round(v, 4) for k, v in final.items()}))
    return 0


# ---------------------------------------------------------------------------------------------- shards
def _add_shards(sub: argparse._SubParsersAction) -> None:
    from pose.data.shards.options import ShardOptions

    d = ShardOptions()
    p = sub.add_parser(
        "shards", help="convert a dataset split to Parquet shards (top-down crops or bottom-up images)",
        description="Convert one split of a COCO-format dataset (real or SynthPose), or of MPII or AI Challenger in "
                    "their own layouts (--dataset mpii|aic, top-down), to Parquet shards for Ray "
                    "Data: OUT/part-NNNNN-of-MMMMM.parquet + OUT/_manifest.json. Top-down: one row per person "
                    "with the encoded image region its augmented crops can reach; bottom-up: one row per image "
                    "with its bytes, everyone's keypoints and boxes and the ignore mask. Re-running on the same "
                    "input does nothing (use --force to rewrite). See docs/data.md.")
    p.add_argument("--root", required=True, metavar="DATASET", help="dataset root (annotations/, images/, ...)")
    p.add_argument("--split", required=True, metavar="NAME",
                   help="split name: annotations/person_keypoints_NAME.json (or image_info_NAME.json), images/NAME; "
                        "mpii: annot/NAME.json, images/; aic: NAME/keypoint_NAME_annotation.json, NAME/images/ "
                        "(val: valid / validation)")
    p.add_argument("--out", required=True, metavar="DIR", help="output shard directory (created)")
    p.add_argument("--boxes", choices=("gt", "detections"), default="gt",
                   help="top-down person boxes: annotated people, or a detection results file (default: gt)")
    p.add_argument("--mode", choices=("topdown", "bottomup"), default="topdown",
                   help="one row per person (topdown) or per image (bottomup) (default: topdown)")
    p.add_argument("--dataset", default="coco",
                   help="the dataset's reader and keypoint layout: coco, crowdpose or a metainfo .json (COCO-format "
                        "files), mpii (annot/*.json) or aic (AI Challenger, native or COCO-converted) (default: coco)")
    p.add_argument("--layout", default="", metavar="DATASET",
                   help="write the keypoints in another dataset's layout, joints carried by name (e.g. --dataset aic "
                        "--layout mpii: AIC's joints in MPII's 16 channels, the MPII + AIC setting's unlabeled set)")
    p.add_argument("--every-person", action="store_true",
                   help="keep people without a labeled joint too (mpii, aic): an unlabeled set of every person box, "
                        "as semi.unlabeled=aic reads AI Challenger")
    p.add_argument("--ann", metavar="FILE", help="annotation/image-list file (default: from --split)")
    p.add_argument("--images", metavar="DIR", help="image directory (default: images/NAME)")
    p.add_argument("--detections", metavar="FILE",
                   help="detection results for --boxes detections (default: the one "
                        "person_detection_results/*NAME*.json)")
    p.add_argument("--det-score-threshold", type=float, default=d.det_score_threshold, metavar="S",
                   help="drop detections scoring below S (default: %(default)s)")
    p.add_argument("--aspect-ratio", type=float, default=d.aspect_ratio, metavar="W/H",
                   help="model input width / height; sets the crop windows (default: %(default)s = 192/256)")
    p.add_argument("--padding", type=float, default=d.padding, help="box padding (default: %(default)s)")
    p.add_argument("--scale-factor", type=float, default=d.scale_factor,
                   help="largest augmentation scale factor the regions cover (default: %(default)s)")
    p.add_argument("--rot-factor", type=float, default=d.rot_factor,
                   help="largest augmentation rotation factor the regions cover; rotations reach twice it "
                        "(default: %(default)s)")
    p.add_argument("--max-side", type=int, default=d.max_side, metavar="PX",
                   help="downscale regions whose long side exceeds PX (default: %(default)s)")
    p.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("W", "H"),
                   help="the model input the shards serve: regions are stored at the resolution it needs (one "
                        "region pixel per crop pixel at the most zoomed-in augmentation), not at native resolution; "
                        "faster to decode, and the pipeline refuses larger inputs (default: native resolution)")
    p.add_argument("--region-density", type=float, default=d.region_density, metavar="D",
                   help="with --input-size: region pixels per crop pixel at the most zoomed-in augmentation, >= 1; "
                        "denser regions give crops closer to the native ones for a slower decode (default: %(default)s)")
    p.add_argument("--lossless", action="store_true", help="store regions as PNG (bit-exact crops) instead of JPEG")
    p.add_argument("--quality", type=_jpeg_quality, default=d.quality, metavar="Q|source",
                   help="JPEG quality of the regions, 1..100, or 'source': each source image's own quality and "
                        "chroma subsampling, read from its header (default: %(default)s)")
    p.add_argument("--rows-per-shard", type=int, default=d.rows_per_shard, metavar="N",
                   help="rows per Parquet file (default: %(default)s)")
    p.add_argument("--row-group-size", type=int, default=d.row_group_size, metavar="N",
                   help="rows per Parquet row group (default: %(default)s)")
    p.add_argument("--workers", type=int, default=0, help="parallel writer processes (0: all cores; default: 0)")
    p.add_argument("--force", action="store_true", help="rewrite even if the shards are up to date")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=_run_shards)


def _jpeg_quality(text: str) -> int | str:
    from pose.data.shards.options import parse_quality

    try:
        return parse_quality(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _run_shards(args: argparse.Namespace) -> int:
    import shlex

    from pose.data.shards.options import ShardOptions
    from pose.data.shards.writer import write_shards

    opts = ShardOptions(mode=args.mode, boxes=args.boxes, dataset=args.dataset, layout=args.layout,
                        people="all" if args.every_person else "labeled", aspect_ratio=args.aspect_ratio,
                        padding=args.padding, scale_factor=args.scale_factor, rot_factor=args.rot_factor,
                        max_side=args.max_side, input_size=tuple(args.input_size) if args.input_size else None,
                        region_density=args.region_density, lossless=args.lossless, quality=args.quality,
                        det_score_threshold=args.det_score_threshold, rows_per_shard=args.rows_per_shard,
                        row_group_size=args.row_group_size)
    if args.workers < 0:
        raise ValueError("--workers must be >= 0")
    command = "poselab " + shlex.join(sys.argv[1:] if args.argv is None else args.argv)
    manifest = write_shards(args.root, args.split, args.out, opts, ann=args.ann, images=args.images,
                            detections=args.detections, command=command, workers=args.workers,
                            progress=not args.no_progress, force=args.force)
    state = "up to date" if manifest["up_to_date"] else "written"
    print(f"{manifest['rows']} {manifest['mode']} rows of split '{manifest['split']}' in "
          f"{manifest['num_shards']} shards: {args.out} ({state})")
    return 0


# ---------------------------------------------------------------------------------------------- main
SubcommandAdder = Callable[[argparse._SubParsersAction], None]


def _add_synth(sub: argparse._SubParsersAction) -> None:
    from pose.synth.cli import add_synth_subcommand

    add_synth_subcommand(sub)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    from pose.inference.cli import add_predict_subcommand

    add_predict_subcommand(sub)


BUILTIN_COMMANDS: tuple[tuple[str, SubcommandAdder], ...] = (
    ("demo", _add_demo), ("train", _add_train), ("evaluate", _add_evaluate), ("presets", _add_presets),
    ("shards", _add_shards), ("synth", _add_synth), ("predict", _add_predict),
)


def build_parser(extensions: Sequence[SubcommandAdder] = ()) -> argparse.ArgumentParser:
    """The ``poselab`` parser; ``extensions`` add sub-commands and replace built-ins of the same name
    (the orchestrator's ``train`` runs through Ray Train; this module's runs plain PyTorch)."""
    parser = argparse.ArgumentParser(prog="poselab", description="2D human pose estimation experiments.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in extensions:
        add(sub)
    for name, add in BUILTIN_COMMANDS:
        if name not in sub.choices:
            add(sub)
    return parser


def main(argv: list[str] | None = None, extensions: Sequence[SubcommandAdder] = (),
         errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``poselab``; ``errors`` are further exception types reported as one-line errors (exit 2)."""
    parser = build_parser(extensions)
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also follow the options (`train PRESET --engine plain train.epochs=2`):
    # argparse only collects a positional list before them
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    unknown = [a for a in extra if a not in overrides]
    if unknown or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    args.argv = argv
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, ValueError, FileNotFoundError, *errors) as e:
        print(f"poselab {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
