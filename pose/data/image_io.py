"""Image decoding with errors that name the file and the image id."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_rgb(path: str | Path, image_id: int | None = None) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB.

    Raises:
        FileNotFoundError: the file does not exist (message names file and image id).
        ValueError: the file exists but does not decode as an image.
    """
    path = Path(path)
    what = f"{path}" + (f" (image id {image_id})" if image_id is not None else "")
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {what}") from None
    return decode_rgb(buf, what)


def decode_rgb(buf: bytes | np.ndarray, what: str = "image") -> np.ndarray:
    """Decode encoded image bytes (JPEG/PNG) to (H, W, 3) uint8 RGB.

    EXIF orientation is ignored: COCO annotations refer to the stored pixel grid.
    """
    arr = np.frombuffer(buf, dtype=np.uint8) if isinstance(buf, (bytes, bytearray, memoryview)) else buf
    img = cv2.imdecode(arr, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if arr.size else None
    if img is None:
        raise ValueError(f"cannot decode image: {what}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
