"""Allocator settings for processes that decode many large batches (Ray Data workers).

A decoder call returns tens of MB of fresh arrays (crops and heatmaps). glibc serves allocations over
its mmap threshold with new mappings and gives freed heap tops back to the kernel, so every call
page-faults its output in again: measured in a Ray Data decode task on 640 px SynthPose, 0.1-0.4 ms
of system time per row, a fifth of the task (docs/data.md, "Region encoding and the heap").
:func:`retain_freed_memory` raises both thresholds so freed buffers stay in the heap and the next
call reuses them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's upper limit for the dynamic threshold on 64-bit
TRIM_THRESHOLD = 1 << 30


def retain_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Keep allocations below ``mmap_threshold`` bytes in the heap and freed memory up to
    ``trim_threshold`` bytes in the process (glibc ``mallopt``). Process-wide; meant for worker
    processes. Returns False, and changes nothing, where the C library has no ``mallopt`` (musl,
    macOS) or refuses the values."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)))
    ok = bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))) and ok
    if not ok:
        log.debug("mallopt refused mmap threshold %d / trim threshold %d", mmap_threshold, trim_threshold)
    return ok
