"""What a JPEG file's header says about how it was encoded: quality and chroma subsampling.

Top-down shards re-encode a region of each source image. Re-encoding at the source's quality, with
its chroma subsampling and on its block grid (:func:`align_to_blocks`), keeps almost every DCT block
as it was: the re-encoding error drops to a fraction of a fixed high quality's, and the region takes
fewer bytes (docs/data.md, "Region encoding", measures both). Only the header is parsed; nothing
is decoded.

The quality is estimated the way ImageMagick and libjpeg's ``jpeg_quality_scaling`` see it: the IJG
quality whose scaled standard luminance table is nearest to the file's (exact for files written by
libjpeg/OpenCV/PIL with standard tables; the nearest such quality for camera tables).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ITU-T T.81 Annex K.1, the luminance table libjpeg scales by quality (natural row-major order).
_STD_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64)
# Position in row-major order of the i-th coefficient of a DQT segment (zig-zag order).
_ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61,
    54, 47, 55, 62, 63])


def _ijg_tables() -> np.ndarray:
    """(100, 64) libjpeg's baseline luminance table for quality 1..100 (``jpeg_quality_scaling``)."""
    q = np.arange(1, 101)
    scale = np.where(q < 50, 5000 // q, 200 - 2 * q)
    return np.clip((_STD_LUMINANCE[None, :] * scale[:, None] + 50) // 100, 1, 255)


_IJG_TABLES = _ijg_tables()
# Markers without a length field: TEM, RST0-7, SOI, EOI.
_STANDALONE = {0x01, *range(0xD0, 0xDA)}
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class JpegHeader:
    """From a JPEG header: ``quality`` (1..100, nearest IJG quality of the luminance table; None when
    there is no 8-bit table 0), ``block`` the (width, height) of one MCU in pixels (16x16 for 4:2:0),
    ``sampling`` the chroma subsampling as OpenCV names it (420, 422, 444, 440, 411; None for
    grayscale or a layout OpenCV cannot write)."""

    quality: int | None
    block: tuple[int, int]
    sampling: int | None


def nearest_ijg_quality(table: np.ndarray) -> int:
    """The IJG quality (1..100) whose luminance table is nearest (L1) to ``table`` (64 values,
    row-major); ties go to the higher quality."""
    err = np.abs(_IJG_TABLES - np.asarray(table, dtype=np.int64).reshape(1, 64)).sum(axis=1)
    return int(100 - np.argmin(err[::-1]))


def read_jpeg_header(data: bytes) -> JpegHeader | None:
    """Parse the markers of JPEG ``data`` up to the start of scan. None if it is not a JPEG or the
    header is cut short (callers then fall back to their defaults)."""
    if data[:2] != b"\xff\xd8":
        return None
    quality, block, sampling, seen_sof = None, (8, 8), None, False
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        seg = data[i + 4:i + 2 + length]
        if length < 2 or len(seg) != length - 2:
            return None
        if marker == 0xDB:
            quality = _quality_from_dqt(seg, quality)
        elif marker in _SOF:
            block, sampling = _layout_from_sof(seg)
            seen_sof = True
        elif marker == 0xDA:
            break
        i += 2 + length
    return JpegHeader(quality, block, sampling) if seen_sof else None


def _quality_from_dqt(seg: bytes, found: int | None) -> int | None:
    j = 0
    while j < len(seg):
        precision, table_id = seg[j] >> 4, seg[j] & 0x0F
        size = 128 if precision else 64
        values = seg[j + 1:j + 1 + size]
        if len(values) != size:
            return found
        if table_id == 0 and precision == 0:
            table = np.zeros(64, dtype=np.int64)
            table[_ZIGZAG] = np.frombuffer(values, np.uint8)
            found = nearest_ijg_quality(table)
        j += 1 + size
    return found


def _layout_from_sof(seg: bytes) -> tuple[tuple[int, int], int | None]:
    components = seg[5] if len(seg) > 5 else 0
    factors = [(seg[7 + 3 * c] >> 4, seg[7 + 3 * c] & 0x0F) for c in range(components) if 7 + 3 * c < len(seg)]
    if not factors:
        return (8, 8), None
    hmax, vmax = max(h for h, _ in factors), max(v for _, v in factors)
    block = (8 * hmax, 8 * vmax)
    if len(factors) != 3 or any(f != (1, 1) for f in factors[1:]):
        return block, None
    return block, _SAMPLING.get(factors[0])


_SAMPLING = {(2, 2): 420, (2, 1): 422, (1, 1): 444, (1, 2): 440, (4, 1): 411}


def align_to_blocks(box: tuple[int, int, int, int], block: tuple[int, int], width: int, height: int
                    ) -> tuple[int, int, int, int]:
    """Grow an ``(x0, y0, x1, y1)`` box (exclusive ends) outwards to the block grid of a
    ``width`` x ``height`` image: starts down to a multiple of the block, ends up to one or to the
    image edge (where the source's last blocks end too)."""
    bw, bh = block
    x0, y0, x1, y1 = box
    return (x0 // bw * bw, y0 // bh * bh, min(-(-x1 // bw) * bw, width), min(-(-y1 // bh) * bh, height))
