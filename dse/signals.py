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

EXIT_INTERRUPTED = 130  # the shell's 128 + SIGINT, for either signal


class Terminated(KeyboardInterrupt):
    """SIGTERM received: stop as after Ctrl-C."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signal.Signals(signum).name)


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


def sigint_ignored() -> bool:
    """Whether this process inherited SIGINT as ignored (a background job of a script)."""
    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN
