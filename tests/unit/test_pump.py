"""The local executor's output pump with real processes, with and without a pidfd to watch the leader."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from plx.executors import local


def _run(tmp_path: Path, script: str, timeout: float | None) -> tuple[bool, float, int | None, Path, Path]:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    proc = subprocess.Popen(["bash", "-c", script], stdout=out_w, stderr=err_w, start_new_session=True)
    os.close(out_w)
    os.close(err_w)
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    t0 = time.monotonic()
    timed_out = local._pump(proc, {out_r: local._LazyFile(out), err_r: local._LazyFile(err)}, timeout)
    return timed_out, time.monotonic() - t0, proc.returncode, out, err


@pytest.fixture(params=["pidfd", "polling"])
def watch(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "polling":  # what happens where os.pidfd_open does not exist (macOS, old kernels)
        monkeypatch.setattr(local, "_pidfd", lambda pid: None)
    monkeypatch.setattr(local, "GRACE_SECONDS", 0.5)
    return str(request.param)


def test_both_streams_are_copied_and_a_silent_one_gets_no_file(tmp_path: Path, watch: str) -> None:
    timed_out, _, code, out, err = _run(tmp_path, "seq 200000; exit 3", None)
    assert not timed_out and code == 3
    assert out.read_text().split() == [str(i) for i in range(1, 200001)]
    assert not err.exists()


def test_the_node_ends_with_its_leader_and_its_group_goes_too(tmp_path: Path, watch: str) -> None:
    pid_file = tmp_path / "child"
    timed_out, took, code, out, _ = _run(tmp_path, f"sleep 30 & echo $! > {pid_file}; echo bye", None)
    assert not timed_out and code == 0 and took < 5 and out.read_text() == "bye\n"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                break  # a zombie has ended: only init's reaping is left
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the background child outlived its node")


def test_timeout_terms_then_kills(tmp_path: Path, watch: str) -> None:
    timed_out, took, code, _, _ = _run(tmp_path, "exec >&- 2>&-; sleep 30", 0.3)
    assert timed_out and code == -15 and took < 3
    timed_out, took, code, _, _ = _run(tmp_path, "trap '' TERM; sleep 30 & wait", 0.3)
    assert timed_out and code == -9 and 0.7 < took < 5  # TERM ignored: KILL after the grace period


def test_the_node_threads_run_every_call_on_at_most_their_limit_of_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    shown: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: shown.append(args.exc_value))
    pool = local._Threads(2, "t")
    gate = threading.Event()
    done: list[int] = []
    names: set[str] = set()

    def call(i: int) -> None:
        names.add(threading.current_thread().name)
        if i == 0:
            raise RuntimeError("a bug in a call")  # shown, and the pool goes on
        gate.wait(10)
        done.append(i)

    for i in range(8):
        pool.submit(call, i)
    time.sleep(0.1)
    assert done == [] and len(names) == 2  # two threads, each busy: the other calls wait their turn
    gate.set()
    deadline = time.monotonic() + 10
    while len(done) < 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(done) == list(range(1, 8)) and names == {"t-0", "t-1"}
    assert [str(e) for e in shown] == ["a bug in a call"]
    threads = [t for t in threading.enumerate() if t.name in names]
    pool.shutdown()
    for t in threads:
        t.join(5)
        assert not t.is_alive() and t.daemon
