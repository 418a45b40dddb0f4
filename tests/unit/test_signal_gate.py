"""procs.SignalGate: for a run's length Ctrl-C and SIGTERM stop it, except inside signals_held blocks,
which the gate holds by counting; real signals sent to this process."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from plx import procs


def _signal_lands(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.01)  # the handler runs at the next bytecode after the signal arrives


@pytest.fixture
def recorded_sigint() -> Iterator[list[int]]:
    """A program's own Ctrl-C handler that records and does not raise (plx.run called from it)."""
    got: list[int] = []

    def mine(signum: int, *_: Any) -> None:
        got.append(signum)

    previous = signal.signal(signal.SIGINT, mine)
    try:
        yield got
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_signal_stops_the_run_at_once_outside_a_held_block() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with procs.SignalGate(), pytest.raises(KeyboardInterrupt):
        _signal_lands(signal.SIGTERM)  # without the gate: SIGTERM's default action would end the test process
    with procs.SignalGate(), pytest.raises(KeyboardInterrupt):
        _signal_lands(signal.SIGINT)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before  # put back


def test_a_held_block_finishes_then_the_first_signal_is_delivered(recorded_sigint: list[int]) -> None:
    steps = []
    with procs.SignalGate():
        with procs.signals_held():
            _signal_lands(signal.SIGINT)
            steps.append("after the first")
            with procs.signals_held():  # nested: still held until the outer block ends
                _signal_lands(signal.SIGINT)
                steps.append("inner")
            assert recorded_sigint == []
            steps.append("outer end")
        assert recorded_sigint == [signal.SIGINT]  # delivered once, when the outer block ended
        with procs.signals_held():  # the second one was not kept for a later block
            steps.append("next block")
        assert recorded_sigint == [signal.SIGINT]
    assert steps == ["after the first", "inner", "outer end", "next block"]
    assert signal.getsignal(signal.SIGINT).__name__ == "mine"  # type: ignore[union-attr]


def test_a_sigterm_is_not_lost_behind_a_ctrl_c_that_does_not_stop(recorded_sigint: list[int]) -> None:
    """A supervisor's SIGTERM during a held step, after a Ctrl-C a program's handler took: the run stops."""
    with procs.SignalGate(), pytest.raises(KeyboardInterrupt):
        with procs.signals_held():
            _signal_lands(signal.SIGINT)
            _signal_lands(signal.SIGTERM)
    assert recorded_sigint == []  # the SIGTERM was the one kept


def test_a_block_that_raises_still_delivers_its_signal_at_once() -> None:
    """A held step that fails (an executor's submit raising) must not leave the Ctrl-C for a later block."""
    with procs.SignalGate():
        with pytest.raises(KeyboardInterrupt) as caught:
            with procs.signals_held():
                _signal_lands(signal.SIGTERM)
                raise OSError("the scheduler is gone")
        assert isinstance(caught.value.__context__, OSError)
        with procs.signals_held():  # nothing left pending
            pass


def test_the_gate_calls_a_programs_own_sigint_handler(recorded_sigint: list[int]) -> None:
    with procs.SignalGate():
        with procs.signals_held():
            _signal_lands(signal.SIGINT)
            assert recorded_sigint == []
        assert recorded_sigint == [signal.SIGINT]
        _signal_lands(signal.SIGINT)  # outside a held block: at once
        assert recorded_sigint == [signal.SIGINT, signal.SIGINT]
    assert signal.getsignal(signal.SIGINT).__name__ == "mine"  # type: ignore[union-attr]


def test_a_second_gate_leaves_the_first_in_place() -> None:
    outer = procs.SignalGate()
    with outer:
        handler = signal.getsignal(signal.SIGTERM)
        with procs.SignalGate():  # a run inside a run (the same process): the outer gate serves
            assert signal.getsignal(signal.SIGTERM) == handler
        assert signal.getsignal(signal.SIGTERM) == handler  # not taken down by the inner one
        with pytest.raises(KeyboardInterrupt):
            _signal_lands(signal.SIGTERM)


def test_outside_the_main_thread_the_gate_and_holding_do_nothing() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def work() -> None:
        with procs.SignalGate():
            seen.append(signal.getsignal(signal.SIGTERM))
            with procs.signals_held():
                seen.append("held")

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == [before, "held"] and procs._gate is None


def test_without_a_gate_signals_held_still_holds() -> None:
    held = False
    with pytest.raises(KeyboardInterrupt):
        with procs.signals_held():
            _signal_lands(signal.SIGINT)
            held = True
    assert held


def test_a_default_action_is_taken_after_the_block() -> None:
    """Outside a run a held SIGTERM reaches its default action once the block ends: the process ends by it
    (the gate once called the signal module with the enum, a TypeError instead)."""
    import subprocess
    import sys

    code = (
        "import os, signal, time\nfrom plx import procs\nwith procs.signals_held():\n"
        "    os.kill(os.getpid(), signal.SIGTERM); time.sleep(0.01); print('in the block', flush=True)\nprint('after')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == -signal.SIGTERM and r.stdout == "in the block\n" and "Traceback" not in r.stderr, r
