"""Ctrl+C (SIGINT) around a Ray Tune ``fit()``: stop it gracefully once, and know that it happened.

Tune ends an interrupted ``fit()`` normally: it saves its state and returns a ``ResultGrid`` whose
running trials Ray 2.60 marks TERMINATED in memory (only the saved state says RUNNING), so the result
cannot tell an interrupted grid from a finished one. And under ``uv run`` one Ctrl+C reaches the
driver twice: from the terminal (SIGINT goes to the whole foreground process group) and from ``uv``,
which forwards the SIGINT it got to its child. Tune's own handler takes the second one as "press
again to skip the last save" and the driver dies in Tune's clean-up with a ``KeyboardInterrupt``.

:class:`TuneInterruptWatch` therefore takes SIGINT over for the duration of ``fit()``: it turns Tune's
SIGINT handling off (``TUNE_DISABLE_SIGINT_HANDLER=1``, read when ``fit()`` starts) and, on the first
SIGINT, records it and calls the handler Tune installs for SIGUSR1 in every run, the same graceful stop
(``ray.tune.tune._setup_signal_catching``). A SIGINT within :data:`DUPLICATE_S` of the first is the
same keypress delivered twice and is ignored; a later one raises ``KeyboardInterrupt`` (a second
Ctrl+C aborts, as Python's default does), and so does one before Tune's run has started. Afterwards
the handlers and the environment are as they were, except that after an interrupted run a SIGINT within
the window is still ignored (the forwarded copy can land after ``fit()`` returned).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType, TracebackType
from typing import Any

DUPLICATE_S = 5.0
"""SIGINTs this close to the first are one Ctrl+C delivered twice (terminal + ``uv run``). The two
arrive ~0.2 s apart, but Python runs a handler only when the main thread gets back to bytecode: on a
busy 2-core machine the handlers ran 1.03 s apart (measured 2026-12-07), so the window is wide."""

_ENV = "TUNE_DISABLE_SIGINT_HANDLER"


class TuneInterruptWatch:
    """Context manager around one Tune ``fit()``: the first Ctrl+C (SIGINT) stops the run gracefully
    (Tune saves its state; ``fit()`` returns), and ``interrupted`` is True afterwards.

    Inert (``interrupted`` stays False, SIGINT untouched) off the main thread, where no signal handler
    can be installed: a Ctrl+C then reaches Tune as it would without the watch.
    """

    def __init__(self) -> None:
        self.interrupted = False
        self.interrupted_at: float | None = None
        """Wall-clock time (``time.time()``) of the first SIGINT, when one stopped the run."""
        self._first: float | None = None
        self._armed = False
        self._previous: dict[int, Any] = {}
        self._env: str | None = None

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self._first is not None:
            if now - self._first < DUPLICATE_S:
                return  # the same Ctrl+C, forwarded by `uv run`
            raise KeyboardInterrupt  # a second Ctrl+C: abort
        tune_stop = signal.getsignal(signal.SIGUSR1)
        if tune_stop is self._previous[signal.SIGUSR1] or not callable(tune_stop):
            raise KeyboardInterrupt  # Tune's run has not started (or has ended): nothing to stop gracefully
        self.interrupted, self._first, self.interrupted_at = True, now, time.time()
        tune_stop(signal.SIGUSR1, frame)  # Tune's graceful stop: the run ends after saving its state

    def __enter__(self) -> TuneInterruptWatch:
        self.interrupted, self._first, self.interrupted_at = False, None, None
        self._armed = threading.current_thread() is threading.main_thread()
        if self._armed:
            self._previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGUSR1)}
            self._env = os.environ.get(_ENV)
            os.environ[_ENV] = "1"
            signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._armed:
            return
        if self._env is None:
            os.environ.pop(_ENV, None)
        else:
            os.environ[_ENV] = self._env
        for signum, handler in self._previous.items():  # None: installed outside Python; the default then
            signal.signal(signum, handler if handler is not None else
                          (signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL))
        if self.interrupted:  # the forwarded duplicate may land after fit() returned: still the same Ctrl+C
            signal.signal(signal.SIGINT, _LateDuplicate(self._first, signal.getsignal(signal.SIGINT)))


class _LateDuplicate:
    """SIGINT handler left after an interrupted ``fit()``: ignores SIGINTs within :data:`DUPLICATE_S`
    of the first (``uv run``'s forwarded copy), then hands SIGINT back to the handler it replaced."""

    def __init__(self, first: float, previous: Any) -> None:
        self.first, self.previous = first, previous

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if time.monotonic() - self.first < DUPLICATE_S:
            return
        signal.signal(signal.SIGINT, self.previous)
        if callable(self.previous):
            self.previous(signum, frame)
        elif self.previous == signal.SIG_DFL:
            raise KeyboardInterrupt
