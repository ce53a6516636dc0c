"""Whether a Ctrl+C (SIGINT) stopped a Ray Tune ``fit()``.

Tune ends an interrupted ``fit()`` normally: it saves its state and returns a ``ResultGrid`` whose
running trials Ray 2.60 marks TERMINATED in memory (only the saved state says RUNNING), so the result
cannot tell an interrupted grid from a finished one. What does tell is Tune's signal handling
(``ray.tune.tune._setup_signal_catching``): ``fit()`` replaces the SIGINT handler with its own, and that
handler, on the first SIGINT, puts back the handler it found and sets the run's stop event. It never
restores the handler after a run that ends normally.

:class:`TuneInterruptWatch` installs a handler of its own before ``fit()`` (it raises
``KeyboardInterrupt``, as Python's default does) and looks afterwards: when its handler is current
again, Tune's handler ran, i.e. SIGINT (Ctrl+C) stopped the run. It then restores the handler found
before, so a Ctrl+C after ``fit()`` (while the table is collected) interrupts the driver again, instead
of reaching the finished run's stale handler, which only logs a warning.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class TuneInterruptWatch:
    """Context manager around one Tune ``fit()``: ``interrupted`` is True after the block when Ctrl+C
    (SIGINT) stopped it.

    Inert (``interrupted`` stays False) off the main thread and with ``TUNE_DISABLE_SIGINT_HANDLER=1``:
    Tune catches no SIGINT there, so a Ctrl+C raises ``KeyboardInterrupt`` out of ``fit()`` instead.
    """

    def __init__(self) -> None:
        self.interrupted = False
        self._armed = False
        self._previous: Any = None

    def __enter__(self) -> TuneInterruptWatch:
        self.interrupted = False
        self._armed = (threading.current_thread() is threading.main_thread()
                       and not int(os.getenv("TUNE_DISABLE_SIGINT_HANDLER", "0")))
        if self._armed:
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, _raise_interrupt)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._armed:
            return
        self.interrupted = exc_type is None and signal.getsignal(signal.SIGINT) is _raise_interrupt
        previous = self._previous  # None: a handler not installed from Python; Python's own then
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
