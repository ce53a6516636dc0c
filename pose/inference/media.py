"""What a model is applied to: an image file, a folder of images or a video file, read frame by frame;
and the MP4 writer of a rendered video.

Every input yields :class:`Frame` s in a fixed order (a folder's images sorted by name; a video's
frames in time order). Errors name the file: a missing input, an extension that is neither an image
nor a video, an image that does not decode, a video that OpenCV cannot open.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from pose.data.image_io import read_rgb

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
VIDEO_FOURCC = "mp4v"
DEFAULT_FPS = 25.0  # a video whose container reports no frame rate is written at this rate


class Frame:
    """One image to predict on.

    Args:
        index: position in its input (0-based: the image's rank in the folder, the video frame number).
        image: (H, W, 3) uint8 RGB.
        file_name: the image's file name (a folder's images: relative to the folder; a video's frames:
            the video's file name).
        image_id: the id its results carry (the caller sets it: from an annotation file or ``index``).
    """

    def __init__(self, index: int, image: np.ndarray, file_name: str, image_id: int | None = None) -> None:
        self.index = index
        self.image = image
        self.file_name = file_name
        self.image_id = index if image_id is None else image_id

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])


class ImageFiles:
    """Image files (one, or a folder's), read in order.

    Args:
        paths: the image files.
        root: the folder they are in (file names are relative to it); None for a single file (its name).
    """

    is_video = False

    def __init__(self, paths: list[Path], root: Path | None = None) -> None:
        self.paths = paths
        self.root = root

    def __len__(self) -> int:
        return len(self.paths)

    def file_names(self) -> list[str]:
        return [self.file_name(p) for p in self.paths]

    def file_name(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() if self.root is not None else path.name

    def __iter__(self) -> Iterator[Frame]:
        for i, path in enumerate(self.paths):
            yield Frame(i, read_rgb(path), self.file_name(path))


class VideoFrames:
    """The frames of a video file (OpenCV's ``VideoCapture``).

    Raises:
        ValueError: OpenCV cannot open the file as a video.
    """

    is_video = True

    def __init__(self, path: Path) -> None:
        self.path = path
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise ValueError(f"cannot open video: {path} (OpenCV found no decodable stream)")
            self.fps = float(capture.get(cv2.CAP_PROP_FPS)) or DEFAULT_FPS
            self.frame_count = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        finally:
            capture.release()

    def __len__(self) -> int:
        """The frame count the container reports (0 when it reports none)."""
        return self.frame_count

    def __iter__(self) -> Iterator[Frame]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield Frame(index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.path.name)
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise ValueError(f"cannot read video: {self.path} (no frame decoded)")


def open_input(path: str | Path) -> ImageFiles | VideoFrames:
    """An image file, a folder of images (its files with an image extension, sorted by name; not
    recursive) or a video file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: an extension that is neither an image's nor a video's; a folder without images; a
            video OpenCV cannot open.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise ValueError(f"{path}: no images in this folder (extensions {', '.join(IMAGE_EXTENSIONS)})")
        return ImageFiles(images, root=path)
    if not path.is_file():
        raise FileNotFoundError(f"input not found: {path}")
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return ImageFiles([path])
    if suffix in VIDEO_EXTENSIONS:
        return VideoFrames(path)
    raise ValueError(f"{path}: unknown extension {path.suffix!r} (images: {', '.join(IMAGE_EXTENSIONS)}; "
                     f"videos: {', '.join(VIDEO_EXTENSIONS)})")


class VideoWriter:
    """Writes RGB frames to an MP4 file (``mp4v``) at ``fps``; the frame size is the first frame's.

    Raises:
        ValueError: OpenCV cannot open the output (no MP4 encoder in this build), or a frame of another size.
    """

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.fps = fps
        self.size: tuple[int, int] | None = None
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None

    def write(self, image: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame."""
        size = (int(image.shape[1]), int(image.shape[0]))
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC)
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, size)
            if not self._writer.isOpened():
                raise ValueError(f"cannot write video {self.path}: OpenCV has no {VIDEO_FOURCC} encoder here")
            self.size = size
        elif size != self.size:
            raise ValueError(f"{self.path}: frame {self.frames} is {size[0]}x{size[1]}, the video "
                             f"{self.size[0]}x{self.size[1]}")
        self._writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
