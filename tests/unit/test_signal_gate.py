"""procs.SignalGate: for a run's length Ctrl-C and SIGTERM stop it, except inside signals_held blocks,
which the gate holds by counting; real signals sent to this process."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from plx import procs


def _signal_lands(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.01)  # the handler runs at the next bytecode after the signal arrives


def test_a_signal_stops_the_run_at_once_outside_a_held_block() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with procs.SignalGate(), pytest.raises(KeyboardInterrupt):
        _signal_lands(signal.SIGTERM)
    with procs.SignalGate(), pytest.raises(KeyboardInterrupt):
        _signal_lands(signal.SIGINT)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before  # put back


def test_a_held_block_finishes_then_the_first_signal_is_delivered() -> None:
    steps = []
    with procs.SignalGate():
        with pytest.raises(KeyboardInterrupt):
            with procs.signals_held():
                _signal_lands(signal.SIGTERM)
                steps.append("after the first")
                with procs.signals_held():  # nested: still held until the outer block ends
                    _signal_lands(signal.SIGINT)
                    steps.append("inner")
                steps.append("outer end")
        assert steps == ["after the first", "inner", "outer end"]
        with procs.signals_held():  # the second signal was not kept for later
            steps.append("next block")
    assert steps[-1] == "next block"


def test_the_gate_calls_a_programs_own_sigint_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    got: list[int] = []

    def mine(signum: int, frame: Any) -> None:
        got.append(signum)

    previous = signal.signal(signal.SIGINT, mine)  # plx.run called from a program with its own handler
    try:
        with procs.SignalGate():
            with procs.signals_held():
                _signal_lands(signal.SIGINT)
                assert got == []
            assert got == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, previous)


def test_without_a_gate_signals_held_still_holds() -> None:
    with pytest.raises(KeyboardInterrupt):
        with procs.signals_held():
            _signal_lands(signal.SIGINT)
            held = True
    assert held
