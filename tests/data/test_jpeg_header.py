"""JPEG header parsing: quality, block size and chroma subsampling; block-grid alignment."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pose.data.jpeg_header import JpegHeader, align_to_blocks, nearest_ijg_quality, read_jpeg_header

IMAGE = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
SAMPLINGS = {420: (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420, (16, 16)), 422: (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422, (16, 8)),
             444: (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444, (8, 8)), 440: (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440, (8, 16))}


def _jpeg(quality: int, sampling: int = 420, image: np.ndarray = IMAGE) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, SAMPLINGS[sampling][0]]
    return cv2.imencode(".jpg", image, params)[1].tobytes()


@pytest.mark.parametrize("sampling", sorted(SAMPLINGS))
@pytest.mark.parametrize("quality", [1, 25, 49, 50, 51, 75, 88, 95, 100])
def test_reads_back_what_opencv_wrote(quality, sampling):
    assert read_jpeg_header(_jpeg(quality, sampling)) == JpegHeader(quality, SAMPLINGS[sampling][1], sampling)


def test_grayscale_has_no_sampling():
    header = read_jpeg_header(cv2.imencode(".jpg", IMAGE[:, :, 0], [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    assert header == JpegHeader(80, (8, 8), None)


def test_progressive_jpeg():
    data = cv2.imencode(".jpg", IMAGE, [cv2.IMWRITE_JPEG_QUALITY, 70, cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert read_jpeg_header(data).quality == 70


def test_camera_table_gets_the_nearest_quality():
    from pose.data.jpeg_header import _IJG_TABLES

    table = _IJG_TABLES[89].copy()  # quality 90
    table[[5, 17, 40]] += 1  # a table no IJG quality writes
    assert nearest_ijg_quality(table) == 90


@pytest.mark.parametrize("data", [
    b"", b"\xff\xd8", cv2.imencode(".png", IMAGE)[1].tobytes(), b"\xff\xd8\xff\xdb\x00\x43\x00garbage",
    _jpeg(90)[:30], b"GIF89a" + bytes(100)])
def test_not_a_readable_jpeg_header(data):
    assert read_jpeg_header(data) is None


def test_align_to_blocks_grows_outwards_and_stops_at_the_image_edge():
    assert align_to_blocks((17, 3, 40, 33), (16, 16), 100, 60) == (16, 0, 48, 48)
    assert align_to_blocks((0, 16, 97, 59), (16, 8), 100, 60) == (0, 16, 100, 60)
    assert align_to_blocks((32, 8, 48, 16), (16, 8), 100, 60) == (32, 8, 48, 16)
