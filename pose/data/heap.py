"""Allocator settings for processes that decode many large batches (Ray Data workers).

A decoder call returns tens of MB of fresh arrays (crops and heatmaps), and Ray holds several calls'
outputs at once. glibc serves allocations over its mmap threshold with new mappings and gives freed
heap tops back to the kernel, so later calls page-fault their output in again. Measured inside Ray
Data decode tasks on 640 px SynthPose (``bench/bench_decode_heap.py``): 0.006-0.14 ms of system time
per row, varying by epoch, against ~0.002 with :func:`retain_freed_memory`, which raises both
thresholds so freed buffers stay in the heap; 2-4 % of the decoder's CPU (docs/data.md, "Current
figures").
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
