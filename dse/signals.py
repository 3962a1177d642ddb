"""Stop signals: SIGTERM (``kill``, ``scancel``, a Slurm time limit) and SIGUSR1 (Slurm's warning)
behave like Ctrl-C, so ``finally`` blocks and the sweeper's handlers run instead of the process dying
with trials RUNNING. SIGINT is left as the process found it (a shell's background jobs ignore it)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

RESEND_S = 1.0  # a stop that the running work swallowed is sent again after this long
EXIT_INTERRUPTED = 130  # the shell's 128 + SIGINT, for either signal
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# what stop_signals() turns into Terminated; SIGUSR1 is Slurm's warning before a time limit
TERMINATING = (signal.SIGTERM, *((signal.SIGUSR1,) if hasattr(signal, "SIGUSR1") else ()))


class Terminated(KeyboardInterrupt):
    """SIGTERM received: stop as after Ctrl-C."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signal.Signals(signum).name)


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
    """Stop signals noted while :attr:`armed`, handled by their own (Python) handler at the next safe
    point (:meth:`deliver`); unarmed, or a second while one is pending (unless ``second_waits``): at once."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT, *TERMINATING),
                 second_waits: bool = False) -> None:
        self.signals, self.second_waits = signals, second_waits
        self.armed = False
        self.pending: int | None = None
        self.received: int | None = None  # the last one acted on at once

    def __enter__(self) -> HeldStops:
        self._saved: dict[int, Any] = {}
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
        if self.armed and (self.pending is None or self.second_waits):
            self.pending = signum if self.pending is None else self.pending
            return
        self.pending, self.received = None, signum  # handled now, not again on the way out
        self._saved[signum](signum, frame)


class SignalGate(HeldStops):
    """SIGINT/SIGTERM held inside :meth:`held` but for :meth:`open` (the launched jobs): one raised
    inside Optuna's ``ask``/``tell`` could leave a trial RUNNING forever."""

    def __init__(self) -> None:
        super().__init__(STOP_SIGNALS, second_waits=True)

    @contextmanager
    def held(self) -> Iterator[SignalGate]:
        with self:
            self.armed = True
            yield self

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if not self.armed:  # acting at once, inside open(): resent until the work stops
            self._resend = threading.Timer(RESEND_S, os.kill, (os.getpid(), signum))
            self._resend.daemon = True
            self._resend.start()
        super()._note(signum, frame)

    @contextmanager
    def open(self) -> Iterator[None]:
        """Signals act at once (one noted meanwhile first), sent again every :data:`RESEND_S` until the
        block ends (Python only prints one raised in a weakref callback or ``__del__``)."""
        self.deliver()
        self.armed, self.received, self._resend = False, None, None
        try:
            yield
        finally:
            if self._resend is not None:
                self._resend.cancel()
            self.armed = True
        if self.received is not None:
            self.pending, self.received = self.received, None
            self.deliver()
