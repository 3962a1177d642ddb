"""dse.signals: SIGTERM as Ctrl-C, and stop signals held over critical sections."""

from __future__ import annotations

import os
import signal
import time

import pytest

from dse.signals import RESEND_S, SignalGate, Terminated, stop_signals


@pytest.fixture
def terminal_sigint():
    """Python's own SIGINT handler, as under a terminal: a shell starts a script's background jobs
    (and so this test's worker) with SIGINT ignored, which dse rightly keeps ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _send(sig: signal.Signals) -> None:
    os.kill(os.getpid(), sig)  # delivered to the main thread before os.kill returns


def test_sigterm_raises_terminated_inside_and_only_inside():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated, match="SIGTERM"), stop_signals():
        _send(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("sig, exc", [(signal.SIGINT, KeyboardInterrupt),
                                      (signal.SIGTERM, Terminated)])
def test_a_held_signal_waits_for_the_end_of_the_critical_section(sig, exc, terminal_sigint):
    gate, reached = SignalGate(), []
    with pytest.raises(exc), stop_signals(), gate.held():
        _send(sig)
        reached.append("after the signal")  # the section ran to its end
    assert reached == ["after the signal"]


def test_open_delivers_a_noted_signal_at_once_and_acts_immediately_inside(terminal_sigint):
    gate, reached = SignalGate(), []
    with pytest.raises(KeyboardInterrupt), gate.held():
        _send(signal.SIGINT)
        with gate.open():
            reached.append("inside open")  # never: the noted signal is raised on entry
    assert reached == []
    with pytest.raises(KeyboardInterrupt), gate.held(), gate.open():
        _send(signal.SIGINT)
        reached.append("after the signal")  # never: open() restores Python's handler
    assert reached == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        gate = SignalGate()
        with gate.held():
            _send(signal.SIGINT)
            with gate.open():
                _send(signal.SIGINT)
        assert gate.pending is None and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_stop_the_work_swallows_is_raised_when_open_ends():
    gate, reached = SignalGate(), []
    with pytest.raises(Terminated), stop_signals(), gate.held():
        with gate.open():
            try:
                _send(signal.SIGTERM)
            except Terminated:  # a job that turns every error into a 'failed' result
                reached.append("swallowed")
        reached.append("after open")  # never: the stop is raised again on the way out
    assert reached == ["swallowed"]


def test_a_stop_the_work_swallows_inside_open_is_sent_again(terminal_sigint):
    """A KeyboardInterrupt raised in a weakref callback or ``__del__`` is only printed: the gate
    sends the signal again until the open block ends (a sweep's Ctrl-C once waited out a trial)."""
    gate, swallowed = SignalGate(), []
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), gate.held(), gate.open():
        try:
            _send(signal.SIGINT)
        except KeyboardInterrupt:
            swallowed.append("first")
        time.sleep(30 * RESEND_S)  # interrupted by the signal sent again
    assert swallowed == ["first"] and time.monotonic() - started < 30 * RESEND_S
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
