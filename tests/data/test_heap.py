"""The allocator setting of decode workers, checked in a child process (it is process-wide)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = """
import resource, sys
import numpy as np
from pose.data.heap import retain_freed_memory

def rounds(n):
    for _ in range(n):  # three 20 MB outputs alive at once, then all freed (a pipeline's queue)
        held = [np.ones(5 << 20, np.float32) for _ in range(3)]
        del held

if sys.argv[1] == "retain":
    assert retain_freed_memory()
rounds(2)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(5)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_retained_memory_is_reused_without_page_faults():
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    default, retained = faults("default"), faults("retain")
    assert default > 2_000  # glibc gave the freed heap top back and faults it in again
    assert retained * 10 < default
