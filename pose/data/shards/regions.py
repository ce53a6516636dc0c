"""The image region a top-down row keeps: its box (every pixel an augmented crop can sample), its
resolution, and its encoding.

A row's pixels are the padded box plus the margin that the standard augmentation (scale up to
``1 + scale_factor``, rotation up to ``2 * rot_factor`` degrees) can ever sample, clipped to the image,
at native resolution (downscaled only when its long side exceeds ``max_side``, or, with ``input_size``,
to the resolution that model input needs), grown to the source JPEG's block grid and re-encoded at the
source's quality by default (``quality="source"``). ``region_to_image`` maps region pixels to image
pixels; without downscaling it is an integer translation.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from pose.data.jpeg_header import JpegHeader
from pose.data.shards.options import ShardOptions


def margin_region(center: np.ndarray, scale: np.ndarray, width: int, height: int, max_scale: float,
                  max_rotation: float, pad: int = 2) -> tuple[int, int, int, int]:
    """Integer box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) that holds every pixel a crop of
    ``crop_matrix(center, scale * s, r, ...)`` can sample for ``s <= max_scale`` and
    ``|r| <= max_rotation`` degrees (bilinear neighbours and ``pad`` pixels included), clipped to
    the image. Outside the image the crop sees the zero border, which the region reproduces."""
    w, h = float(scale[0]) * max_scale, float(scale[1]) * max_scale
    t = math.radians(min(abs(float(max_rotation)), 90.0))

    def extent(a: float, b: float) -> float:  # max over |theta| <= t of a |cos| + b |sin|
        return math.hypot(a, b) if math.atan2(b, a) <= t else a * math.cos(t) + b * math.sin(t)

    ex, ey = 0.5 * extent(w, h), 0.5 * extent(h, w)
    cx, cy = float(center[0]), float(center[1])
    x0, x1 = math.floor(cx - ex) - pad, math.ceil(cx + ex) + pad + 1
    y0, y1 = math.floor(cy - ey) - pad, math.ceil(cy + ey) + pad + 1
    # Clip; a window entirely outside the image keeps one edge pixel (its crop is the zero border).
    x0 = min(max(x0, 0), width - 1)
    y0 = min(max(y0, 0), height - 1)
    x1 = max(min(x1, width), x0 + 1)
    y1 = max(min(y1, height), y0 + 1)
    return x0, y0, x1, y1


def region_density(scale: np.ndarray, input_size: tuple[int, int] | None, scale_factor: float,
                   per_crop_pixel: float = 1.0) -> float:
    """Region pixels per image pixel that serve an ``input_size`` (W, H) model: ``per_crop_pixel`` times
    the crop pixels per image pixel of the smallest augmentation window, ``scale * (1 - scale_factor)``;
    inf (keep native resolution) without an input size or when the window can shrink to nothing."""
    smallest = 1.0 - scale_factor
    if input_size is None or smallest <= 0:
        return math.inf
    w, h = input_size
    return per_crop_pixel * max(w / (float(scale[0]) * smallest), h / (float(scale[1]) * smallest))


def extract_region(image: np.ndarray, box: tuple[int, int, int, int], max_side: int,
                   density: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``box`` out of ``image``; downscale (INTER_AREA) when its long side exceeds ``max_side``
    or to ``density`` region pixels per image pixel, whichever is smaller (never upscaled).

    Returns the region and its 2x3 region->image matrix (an integer translation unless downscaled).
    """
    x0, y0, x1, y1 = box
    region = image[y0:y1, x0:x1]
    rw, rh = x1 - x0, y1 - y0
    f = min(max_side / max(rw, rh), density)
    if f >= 1.0:
        return np.ascontiguousarray(region), np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]])
    nw, nh = max(1, round(rw * f)), max(1, round(rh * f))
    region = cv2.resize(region, (nw, nh), interpolation=cv2.INTER_AREA)
    sx, sy = rw / nw, rh / nh  # cv2.resize: dst pixel u samples src (u + 0.5) * s - 0.5
    return region, np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]])


def read_bgr(path: Path, image_id: int) -> tuple[np.ndarray, bytes]:
    """The file's bytes and its pixels decoded exactly like :func:`pose.data.image_io.read_rgb`
    (BGR order: the RGB conversion is a pure channel swap, done when the region is decoded)."""
    what = f"{path} (image id {image_id})"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {what}") from None
    arr = np.frombuffer(raw, np.uint8)
    img = cv2.imdecode(arr, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if arr.size else None
    if img is None:
        raise ValueError(f"cannot decode image: {what}")
    return img, raw


FALLBACK_QUALITY = 95  # quality="source" for sources that are not JPEG (or whose header has no 8-bit table)
_CV2_SAMPLING = {420: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420, 422: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
                 444: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444, 440: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440,
                 411: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411}


def region_jpeg_params(opts: ShardOptions, source: JpegHeader | None) -> list[int]:
    """``cv2.imencode`` parameters of a JPEG region cut from a source with header ``source``."""
    if opts.quality != "source":
        return [cv2.IMWRITE_JPEG_QUALITY, int(opts.quality)]
    if source is None or source.quality is None:
        return [cv2.IMWRITE_JPEG_QUALITY, FALLBACK_QUALITY]
    params = [cv2.IMWRITE_JPEG_QUALITY, source.quality]
    if source.sampling is not None:
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, _CV2_SAMPLING[source.sampling]]
    return params


def encode_region(region_bgr: np.ndarray, opts: ShardOptions, source: JpegHeader | None = None) -> bytes:
    """A BGR region as PNG (``opts.lossless``) or JPEG (:func:`region_jpeg_params`) bytes."""
    if opts.lossless:
        ok, buf = cv2.imencode(".png", region_bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        ok, buf = cv2.imencode(".jpg", region_bgr, region_jpeg_params(opts, source))
    if not ok:
        raise ValueError("cannot encode a region")
    return buf.tobytes()
