"""Stop signals: SIGTERM (what ``kill``, ``scancel`` and a Slurm time limit send) behaves like Ctrl-C.

Python turns SIGINT into :class:`KeyboardInterrupt`, so ``finally`` blocks and the sweeper's
"tell the running trials" handler run; SIGTERM's default action kills the process on the spot and
leaves trials RUNNING and points unrecorded. Inside :func:`stop_signals` SIGTERM raises
:class:`Terminated`, a ``KeyboardInterrupt``, so every place that handles Ctrl-C handles it too.

SIGINT is left as the process found it. A shell starts background jobs of a script (``cmd &``
without job control) with SIGINT *ignored*, and Python keeps that disposition, so ``kill -INT``
does nothing to such a process; that is the shell's rule, which dse respects rather than
overrides. Stop such a sweep with ``kill`` (SIGTERM) instead.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

EXIT_INTERRUPTED = 130  # the shell's 128 + SIGINT, for either signal
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM received: stop as after Ctrl-C."""


def _stop(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signal.Signals(signum).name)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _stop(signum)


@contextmanager
def stop_signals() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class SignalGate:
    """Holds SIGINT/SIGTERM during critical sections and delivers them where it is safe.

    A KeyboardInterrupt raised inside a storage call (Optuna's ``ask``/``tell`` committing through
    SQLAlchemy) can leave a trial created but never returned, so nobody tells it and it holds the
    budget RUNNING forever, or an SQLite connection mid-transaction whose write lock the handler's
    own ``tell`` then waits 120 s for. Inside :meth:`held` a stop signal is only noted; it is
    raised when the block ends or when the code enters :meth:`open` (where the long, safely
    interruptible work runs: the launched jobs), so it acts at once there and a few milliseconds
    late elsewhere. A signal the process ignores stays ignored.
    """

    def __init__(self) -> None:
        self.pending: int | None = None  # noted while held
        self.received: int | None = None  # raised inside open()
        self._saved: dict[int, Any] = {}

    @contextmanager
    def held(self) -> Iterator[SignalGate]:
        self._saved = {s: signal.getsignal(s) for s in STOP_SIGNALS}
        self._hold_all()
        try:
            yield self
            self.deliver()
        finally:
            for s, handler in self._saved.items():
                signal.signal(s, handler)

    @contextmanager
    def open(self) -> Iterator[None]:
        """Within :meth:`held`: signals act at once again (one noted meanwhile is raised first).

        A stop raised into the work can be lost there (a ``finally`` that then fails replaces it,
        a job that records any error as a failure), so one received inside is raised again when
        the block ends normally: the caller stops either way.
        """
        self.deliver()
        self.received = None
        for s, handler in self._saved.items():
            if handler is not signal.SIG_IGN:
                signal.signal(s, self._stop_now)
        try:
            yield
        finally:
            self._hold_all()
        if self.received is not None:
            self.pending, self.received = self.received, None
            self.deliver()

    def deliver(self) -> None:
        """Raise the stop noted while held, if any."""
        if self.pending is not None:
            signum, self.pending = self.pending, None
            raise _stop(signum)

    def _stop_now(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        raise _stop(signum)

    def _hold_all(self) -> None:
        for s, handler in self._saved.items():
            if handler is not signal.SIG_IGN:
                signal.signal(s, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.pending = self.pending if self.pending is not None else signum

