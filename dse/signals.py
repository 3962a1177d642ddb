"""Stop signals: SIGTERM (``kill``, ``scancel``, a Slurm time limit) and SIGUSR1 (Slurm's warning)
behave like Ctrl-C, so ``finally`` blocks and the sweeper's handlers run instead of the process
dying with trials RUNNING. SIGINT is left as the process found it (a shell's background jobs ignore
it).
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
    """Within the block, SIGTERM and SIGUSR1 raise :class:`Terminated` (main thread only)."""
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
    """Stop signals noted while :attr:`armed` and handled by their own handler at the next safe point
    (:meth:`deliver`, after a step's checkpoint). Only Python handlers are held; unarmed, or a
    second signal while one is pending, acts at once."""

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
    """Holds SIGINT/SIGTERM inside :meth:`held`, raising them at its end or in :meth:`open` (the
    launched jobs): one raised inside Optuna's ``ask``/``tell`` could leave a trial RUNNING forever."""

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
        """Signals act at once (one noted meanwhile first); one received inside is raised again when
        the block ends normally, as the work may have swallowed it."""
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

