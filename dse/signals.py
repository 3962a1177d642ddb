"""Stop signals: SIGTERM (what ``kill``, ``scancel`` and a Slurm time limit send) and SIGUSR1 (what
Slurm sends ``--signal`` seconds before the limit, or on preemption) behave like Ctrl-C.

Python turns SIGINT into :class:`KeyboardInterrupt`, so ``finally`` blocks and the sweeper's
"tell the running trials" handler run; SIGTERM's and SIGUSR1's default action kills the process on
the spot and leaves trials RUNNING and points unrecorded. Inside :func:`stop_signals` both raise
:class:`Terminated`, a ``KeyboardInterrupt``, so every place that handles Ctrl-C handles them too.
:class:`HeldStops` lets training finish its step and write a resume checkpoint first.

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
# what stop_signals() turns into Terminated; SIGUSR1 is Slurm's warning before a time limit
TERMINATING = (signal.SIGTERM, *((signal.SIGUSR1,) if hasattr(signal, "SIGUSR1") else ()))


class Terminated(KeyboardInterrupt):
    """SIGTERM received: stop as after Ctrl-C."""


def _stop(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signal.Signals(signum).name)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _stop(signum)


@contextmanager
def stop_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGUSR1 raise :class:`Terminated` (main thread only; a no-op
    elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise_terminated) for s in TERMINATING}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class HeldStops:
    """Stop signals held while armed and handled at the holder's next safe point, as they would be.

    Training is entered in this context and arms it while it trains: a SIGINT, SIGTERM or SIGUSR1
    that arrives then is only noted (:attr:`pending`), and the training loop calls :meth:`deliver`
    at a point where its state is whole (a finished step), after writing its checkpoint. Delivering
    calls the handler the signal had when the block was entered: Python's Ctrl-C, dse's
    :class:`Terminated` (dse-train) or submitit's requeue-and-exit (a Slurm job), so the process
    stops exactly as it would have, one step later; a handler that returns lets training go on.

    Only signals with a Python handler are held: an ignored one stays ignored, and one with the
    default action keeps it. Unarmed (setup, evaluation after training) a signal acts at once, and
    so does a second one while one is pending, so a holder that never reaches a safe point can
    still be stopped. Main thread only; a no-op elsewhere.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT, *TERMINATING)) -> None:
        self.signals = signals
        self.armed = False
        self.pending: int | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> HeldStops:
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                handler = signal.getsignal(s)
                if callable(handler):
                    self._saved[s] = handler
                    signal.signal(s, self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        self.armed = False
        for s, handler in self._saved.items():
            signal.signal(s, handler)
        self.deliver()  # noted but never reached a safe point: handled now

    def deliver(self) -> None:
        """Handle the signal noted while armed, if any, with the handler it had."""
        if self.pending is not None:
            signum, self.pending = self.pending, None
            self._saved[signum](signum, None)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.armed and self.pending is None:
            self.pending = signum
            return
        self.pending = None  # handled now, not again on the way out
        self._saved[signum](signum, frame)


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

