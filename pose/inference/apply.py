"""Apply a trained model to images or a video: COCO keypoint results and rendered frames.

:func:`apply_model` reads the input (:mod:`pose.inference.media`), gives each frame its image id and
(top-down) its person boxes (:mod:`pose.inference.boxes`), predicts in batches with the evaluation's
code (:mod:`pose.inference.topdown`, :mod:`pose.inference.bottomup`) and writes to the output folder

* ``results.json``: COCO keypoint results (``image_id``, ``category_id`` 1, ``keypoints``, ``score``;
  bottom-up results also a ``bbox``), each with the ``file_name`` of its image (a video's name for its
  frames, whose ``image_id`` is the frame number);
* the rendered input: ``images/<file name>`` per image, or ``<video name>.mp4`` for a video.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

from pose.inference.bottomup import BottomUpPredictor
from pose.inference.boxes import (
    BoxSource,
    ImageIds,
    WholeImageBoxes,
    detection_boxes,
    ground_truth_boxes,
    is_detections_file,
)
from pose.inference.media import Frame, ImageFiles, VideoFrames, VideoWriter, open_input
from pose.inference.model import PoseModel
from pose.inference.render import draw_results
from pose.inference.topdown import TopDownPredictor
from pose.synth.progress import ProgressBar

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
IMAGES_DIR = "images"


class PredictOptions:
    """How :func:`apply_model` runs.

    Args:
        boxes: top-down person boxes: a COCO ground-truth file or a detection results file; None: the whole
            image as one box. Bottom-up models take none.
        ann: a COCO annotation or ``image_info`` file naming the input images (matched by ``file_name``):
            the results carry its image ids, and a detections file refers to them; None: a ground-truth
            ``boxes`` file does that, else the ids are the inputs' running index (0-based, in input order).
        det_score_threshold: detections scoring below it are dropped (None: the model config's
            ``data.det_score_threshold``); only with a detections ``boxes`` file.
        batch_size: top-down crops, or bottom-up images, per forward pass.
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        render: write the rendered images / video.
        progress: a progress bar on stderr.
    """

    def __init__(self, boxes: str | Path | None = None, ann: str | Path | None = None,
                 det_score_threshold: float | None = None, batch_size: int = 16, device: str = "cpu",
                 render: bool = True, progress: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
        self.boxes = boxes
        self.ann = ann
        self.det_score_threshold = det_score_threshold
        self.batch_size = batch_size
        self.device = device
        self.render = render
        self.progress = progress


class PredictSummary:
    """What :func:`apply_model` wrote.

    Args:
        frames: images / video frames predicted on.
        people: results written.
        results_file: the COCO results JSON.
        rendered: the rendered images' folder or the MP4 (None without rendering).
        boxes: where the person boxes came from (None for bottom-up models).
    """

    def __init__(self, frames: int, people: int, results_file: Path, rendered: Path | None,
                 boxes: str | None) -> None:
        self.frames = frames
        self.people = people
        self.results_file = results_file
        self.rendered = rendered
        self.boxes = boxes


def inference_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``, checked.

    Raises:
        ValueError: an unknown device, or CUDA that this machine or this torch build does not have.
    """
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r}: not a device (cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: only cpu and cuda are supported")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "without CUDA" if torch.version.cuda is None else f"with CUDA {torch.version.cuda}"
            raise ValueError(f"--device {name}: CUDA is not available (torch {torch.__version__} built "
                             f"{build}, no usable GPU found); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def image_ids(inputs: ImageFiles | VideoFrames, options: PredictOptions, gt_boxes: bool) -> ImageIds:
    """The ids of the input frames: ``options.ann``'s, a ground-truth ``boxes`` file's, or running indices."""
    source = options.ann if options.ann is not None else (options.boxes if gt_boxes else None)
    if source is None:
        return ImageIds()
    if inputs.is_video:
        raise ValueError(f"{source}: an annotation file names image files, and the frames of a video have "
                         "none (their image ids are the frame numbers; a detections --boxes file refers to "
                         "those)")
    ids = ImageIds.from_file(source)
    ids.check(inputs.file_names())
    return ids


def box_source(model: PoseModel, inputs: ImageFiles | VideoFrames, ids: ImageIds, options: PredictOptions,
               detections: bool) -> BoxSource:
    """The person boxes of a top-down model's frames (see :class:`PredictOptions`)."""
    cfg = model.cfg
    w, h = cfg.codec.input_size
    aspect = w / h
    if options.boxes is None:
        return WholeImageBoxes(aspect)
    if not detections:
        return ground_truth_boxes(options.boxes, model.meta, aspect, cfg.data.box_padding)
    threshold = (cfg.data.det_score_threshold if options.det_score_threshold is None
                 else options.det_score_threshold)
    if ids.by_file_name is not None:
        images = {image_id: name for name, image_id in ids.by_file_name.items()}
        where = ids.source
    elif inputs.is_video:
        if len(inputs) == 0:
            raise ValueError(f"{inputs.path}: the video reports no frame count, so a detections file's "
                             "image ids (frame numbers) cannot be checked")
        images = {i: f"{inputs.path.name} frame {i}" for i in range(len(inputs))}
        where = f"the {len(inputs)} frames of {inputs.path}"
    else:
        images = dict(enumerate(inputs.file_names()))
        where = (f"the {len(inputs)} input images (ids 0..{len(inputs) - 1}; --ann maps file names to other "
                 "ids)")
    return detection_boxes(options.boxes, images, where, model.meta, aspect, threshold, cfg.data.box_padding)


class Renderer:
    """Writes rendered frames: ``<out>/images/<file name>`` per image, or ``<out>/<video name>.mp4``."""

    def __init__(self, out_dir: Path, inputs: ImageFiles | VideoFrames) -> None:
        self.video = VideoWriter(out_dir / f"{inputs.path.stem}.mp4", inputs.fps) if inputs.is_video else None
        self.images = out_dir / IMAGES_DIR
        self.target = self.video.path if self.video is not None else self.images

    def write(self, frame: Frame, image: np.ndarray) -> None:
        if self.video is not None:
            self.video.write(image)
            return
        path = self.images / frame.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise ValueError(f"cannot write the rendered image {path}")

    def close(self) -> None:
        if self.video is not None:
            self.video.close()


def _with_ids(inputs: ImageFiles | VideoFrames, ids: ImageIds) -> Iterator[Frame]:
    for frame in inputs:
        frame.image_id = ids.id_of(frame)
        yield frame


def apply_model(model: PoseModel, input_path: str | Path, out_dir: str | Path,
                options: PredictOptions | None = None) -> PredictSummary:
    """Apply ``model`` to an image, a folder of images or a video; write ``results.json`` and the rendered
    frames to ``out_dir`` (see the module docstring).

    Raises:
        FileNotFoundError: a missing input, boxes or annotation file.
        ValueError: an unknown input extension, an image or video that does not decode, inconsistent
            options (boxes for a bottom-up model, a score threshold without detections, an annotation file
            that does not list an input image), an unavailable device.
    """
    options = options or PredictOptions()
    inputs = open_input(input_path)
    device = inference_device(options.device)
    if model.bottomup and options.boxes is not None:
        raise ValueError(f"--boxes {options.boxes}: {model.source} is a bottom-up model; it finds the people "
                         "in the whole image and takes no boxes")
    detections = options.boxes is not None and is_detections_file(options.boxes)
    if options.det_score_threshold is not None and not detections:
        given = "none given" if options.boxes is None else f"{options.boxes} is an annotation file"
        raise ValueError(f"--det-score-threshold applies to a detections --boxes file only ({given})")
    ids = image_ids(inputs, options, gt_boxes=options.boxes is not None and not detections)
    model.to(device)
    frames = _with_ids(inputs, ids)
    boxes: BoxSource | None = None
    if model.bottomup:
        predictor: TopDownPredictor | BottomUpPredictor = BottomUpPredictor(model, device, options.batch_size)
        stream = predictor.predict(frames)
    else:
        boxes = box_source(model, inputs, ids, options, detections)
        predictor = TopDownPredictor(model, device, options.batch_size)
        stream = predictor.predict((frame, boxes.for_frame(frame)) for frame in frames)
    log.info("predicting with %s%s", model.describe(), f"; boxes: {boxes.describe()}" if boxes else "")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    renderer = Renderer(out, inputs) if options.render else None
    bar = ProgressBar(len(inputs), "frames" if inputs.is_video else "images", enabled=options.progress,
                      prefix="predict", unit="frame" if inputs.is_video else "img")
    results: list[dict] = []
    count = 0
    try:
        for frame, frame_results in stream:
            for r in frame_results:
                r["file_name"] = frame.file_name
            results.extend(frame_results)
            if renderer is not None:
                drawn = draw_results(frame.image, frame_results, model.meta, predictor.threshold)
                renderer.write(frame, drawn)
            count += 1
            bar.update()
    finally:
        bar.close()
        if renderer is not None:
            renderer.close()
    results_file = out / RESULTS_FILE
    results_file.write_text(json.dumps(results))
    return PredictSummary(count, len(results), results_file, renderer.target if renderer else None,
                          boxes.describe() if boxes else None)
