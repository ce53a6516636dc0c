"""``poselab synth``: the command line of the SynthPose generator.

:func:`add_synth_subcommand` registers ``synth`` on the main ``poselab`` parser; every
:class:`~pose.synth.config.SynthConfig` field becomes an option (``val_images`` -> ``--val-images``;
tuple fields take two values) whose help text is the field's documentation. ``python -m pose.synth``
runs the same command on its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from pose.synth.config import FORMATS, PROFILES, SynthConfig, field_help, profile_config


_DESCRIPTION = (
    "Generate SynthPose, a procedurally generated multi-person 2D pose dataset (COCO or CrowdPose "
    "keypoints): DIR/images/{train,val,unlabeled}/*.jpg, DIR/annotations/person_keypoints_{train,val}.json, "
    "DIR/annotations/image_info_unlabeled.json, DIR/person_detection_results/{val,unlabeled}_detections.json "
    "and DIR/synthpose.json; --format mpii writes MPII's layout instead (DIR/annot/{train,valid}.json, "
    "DIR/annot/gt_valid.mat, DIR/images/), --format aic AI Challenger's (DIR/{train,validation}/"
    "keypoint_*_annotation.json and images/). The same seed gives byte-identical annotations, whatever "
    "--workers, and the same images in every format. See docs/synthpose.md."
)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _show(value: object) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def configure_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the synth options to ``parser`` and set ``func`` to :func:`run_synth`."""
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output directory (created; must be empty unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the SynthPose outputs in a non-empty --out directory")
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar on stderr")
    parser.add_argument("--profile", choices=list(PROFILES), default="default",
                        help="the settings the other options start from: "
                             + "; ".join(f"{k}: {v}" for k, v in PROFILES.items())
                             + " (default: %(default)s; docs/synthpose.md)")
    for f in dataclasses.fields(SynthConfig):
        default = f.default
        help_text = f"{field_help(f.name)} (default: {_show(default)})".replace("%", "%%")
        kwargs: dict = {"dest": f"cfg_{f.name}", "default": None, "help": help_text}
        if isinstance(default, tuple):
            kwargs.update(nargs=2, type=type(default[0]), metavar=("MIN", "MAX"))
        elif f.name == "format":
            kwargs.update(choices=FORMATS, metavar="{" + "|".join(FORMATS) + "}")
        else:
            metavar = {"images": "N", "seed": "S"}.get(f.name, type(default).__name__.upper())
            kwargs.update(type=type(default), metavar=metavar)
        parser.add_argument(_flag(f.name), **kwargs)
    parser.set_defaults(func=run_synth)
    return parser


def add_synth_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``synth`` on an argparse subparsers object; the handler is ``args.func(args) -> int``."""
    parser = subparsers.add_parser(
        "synth", help="generate a SynthPose dataset (procedural multi-person poses; COCO, CrowdPose, MPII or AIC)",
        description=_DESCRIPTION)
    return configure_parser(parser)


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    """SynthConfig from parsed arguments: the ``--profile``'s settings, then every option given."""
    values = {}
    for f in dataclasses.fields(SynthConfig):
        v = getattr(args, f"cfg_{f.name}", None)
        if v is not None:
            values[f.name] = tuple(v) if isinstance(v, list) else v
    try:
        base = profile_config(getattr(args, "profile", "default"), values.get("images"),
                              values.get("seed", 0), values.get("format", "coco"))
        return dataclasses.replace(base, **values)
    except ValueError as e:
        msg = str(e)
        name = msg.split(" ", 1)[0]
        if name in SynthConfig.__dataclass_fields__:
            msg = _flag(name) + msg[len(name):]
        raise ValueError(msg) from None


def run_synth(args: argparse.Namespace) -> int:
    """Handler of ``poselab synth``: generate, print a short summary; 2 with a one-line error on bad input."""
    from pose.synth.generate import generate_dataset

    try:
        cfg = config_from_args(args)
        out = Path(args.out)
        summary = generate_dataset(cfg, out, progress=not args.no_progress, overwrite=args.overwrite)
    except ValueError as e:
        print(f"poselab synth: error: {e}", file=sys.stderr)
        return 2
    sp = summary["splits"]
    print(f"SynthPose ({cfg.format}, seed {cfg.seed}) written to {out}: "
          f"train {sp['train']['images']} images / {sp['train']['instances']} instances, "
          f"val {sp['val']['images']} / {sp['val']['instances']}, "
          f"unlabeled {sp['unlabeled']['images']} images; "
          f"{summary['images_per_second']:.1f} images/s on {summary['workers']} processes")
    print(json.dumps(summary["splits"], separators=(",", ":")))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m pose.synth [options]``: the synth command without the ``poselab`` front end."""
    parser = configure_parser(argparse.ArgumentParser(prog="python -m pose.synth", description=_DESCRIPTION))
    args = parser.parse_args(argv)
    return int(args.func(args))
