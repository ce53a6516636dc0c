"""A dependency-free text progress bar on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``[synth] train [########------------]  400/1000  40%  52.1 img/s  eta 11s``.

    On a terminal the line is redrawn in place (at most 5 times a second); otherwise a line is printed
    at every 10%. Disabled bars print nothing.
    """

    def __init__(self, total: int, label: str, enabled: bool = True, stream: TextIO | None = None,
                 width: int = 24, prefix: str = "synth", unit: str = "img") -> None:
        self.total = max(0, total)
        self.label = label
        self.enabled = enabled and total > 0
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.prefix = prefix
        self.unit = unit
        self.done = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_decile = -1
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._tty:
            if now - self._last_draw >= 0.2 or self.done == self.total:
                self._last_draw = now
                self.stream.write("\r" + self.line(now))
                self.stream.flush()
        else:
            decile = (10 * self.done) // self.total
            if decile != self._last_decile and (decile > 0 or self.done == self.total):
                self._last_decile = decile
                self.stream.write(self.line(now) + "\n")
                self.stream.flush()

    def line(self, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        frac = self.done / self.total if self.total else 1.0
        fill = round(frac * self.width)
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        bar = "#" * fill + "-" * (self.width - fill)
        return (f"[{self.prefix}] {self.label:<9} [{bar}] {self.done:>6}/{self.total} "
                f"{100 * frac:3.0f}% {rate:6.1f} {self.unit}/s eta {eta:4.0f}s")

    def close(self) -> None:
        if self.enabled and self._tty:
            self.stream.write("\r" + self.line() + "\n")
            self.stream.flush()
