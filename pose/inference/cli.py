"""``poselab predict``: apply a trained model to an image, a folder of images or a video.

pose/ registers the subcommand with a loader of checkpoint files and run directories; the ``poselab``
entry point (``orchestrator.cli``) registers it again with a loader that also takes MLflow URIs
(``runs:/<run id>``, ``models:/...``) and adds ``--tracking-uri``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from pose.inference.apply import PredictOptions, apply_model
from pose.inference.model import PoseModel, load_checkpoint_model

ModelLoader = Callable[[argparse.Namespace], PoseModel]
"""The parsed arguments (``args.model`` and whatever the loader's own options are) -> the model."""

DESCRIPTION = """\
Apply a trained poselab model to an image, a folder of images (not recursive) or a video (.mp4, .avi,
.mov, ...). Writes OUT/results.json (COCO keypoint results, each with the file_name of its image) and the
rendered input with the predicted skeletons: OUT/images/<file name> per image, or OUT/<video name>.mp4.

Top-down models crop each person from a box: by default the whole image is one box; --boxes takes a COCO
ground-truth file (its people, as the evaluation reads them) or a detection results file (category 1,
score >= --det-score-threshold). Crops, flip test, decoding, rescoring and OKS-NMS are those of the
evaluation (the config's test section). Bottom-up models find everyone in the whole image and take no boxes.

Image ids: those of --ann (or of a ground-truth --boxes file), matched by file_name; otherwise the running
index of the inputs in name order (a video: the frame number), which a detections file then refers to."""


def add_predict_subcommand(sub: argparse._SubParsersAction, loader: ModelLoader | None = None,
                           model_help: str | None = None) -> argparse.ArgumentParser:
    """Register ``predict`` with ``loader`` (default: checkpoint files and run directories); returns the
    parser, to which a caller may add its loader's options."""
    p = sub.add_parser("predict", help="apply a trained model to images or a video (COCO results, rendering)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, metavar="SOURCE",
                   help=model_help or "a checkpoint (best.pth / last.pth of a poselab run) or a run "
                                      "directory (its best.pth, else last.pth)")
    p.add_argument("--input", required=True, metavar="PATH",
                   help="an image file, a folder of images or a video file")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (created; files in it are replaced)")
    p.add_argument("--boxes", metavar="FILE",
                   help="top-down person boxes: a COCO ground-truth file or a detection results file "
                        "(default: the whole image as one box)")
    p.add_argument("--ann", metavar="FILE",
                   help="a COCO annotation or image_info file naming the input images: results carry its "
                        "image ids (default: a ground-truth --boxes file; else running indices)")
    p.add_argument("--det-score-threshold", type=float, default=None, metavar="S",
                   help="with a detections --boxes file: drop boxes scoring below S (default: the model "
                        "config's data.det_score_threshold)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N",
                   help="top-down person crops, or bottom-up images of one size, per forward pass "
                        "(default: %(default)s)")
    p.add_argument("--device", default="cpu",
                   help="cpu (default), cuda or cuda:N (an error when CUDA is not available)")
    p.add_argument("--no-render", action="store_true",
                   help="write results.json only, no rendered images or video")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=lambda args: run_predict(args, loader or _load_checkpoint))
    return p


def _load_checkpoint(args: argparse.Namespace) -> PoseModel:
    return load_checkpoint_model(args.model)


def run_predict(args: argparse.Namespace, loader: ModelLoader) -> int:
    options = PredictOptions(boxes=args.boxes, ann=args.ann, det_score_threshold=args.det_score_threshold,
                             batch_size=args.batch_size, device=args.device, render=not args.no_render,
                             progress=not args.no_progress)
    model = loader(args)
    summary = apply_model(model, args.input, args.out, options)
    rendered = f"; rendered: {summary.rendered}" if summary.rendered is not None else ""
    print(f"{summary.people} people in {summary.frames} {'frames' if summary.frames != 1 else 'frame'} "
          f"({model.describe()}): {summary.results_file}{rendered}")
    return 0
