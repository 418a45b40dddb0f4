"""plx.procs reads /proc directly (three system calls a file): whole files, however long."""

from __future__ import annotations

import os
import subprocess

import pytest

from plx import procs

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")


@pytest.fixture
def sleeper():
    # An environment far longer than one read (4 KiB), with plx's marks at its very end.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **{f"FILLER_{i:03d}": "x" * 200 for i in range(100)}}
    env["PLX_RUN_ID"] = "20261127-000000-000-abcd"
    env["PLX_NODE"] = "train/fold_3"
    proc = subprocess.Popen(["sleep", "30"], env=env)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_the_marks_at_the_end_of_a_long_environment_are_found(sleeper):
    with open(f"/proc/{sleeper.pid}/environ", "rb") as f:
        assert len(f.read()) > 3 * 4096
    assert procs.environ_marks(sleeper.pid) == {"PLX_RUN_ID": "20261127-000000-000-abcd", "PLX_NODE": "train/fold_3"}


def test_a_processes_stat_fields_and_its_place_below_its_parent(sleeper):
    state, ppid, pgid, sid, start = procs.proc_stat(sleeper.pid)
    assert ppid == os.getpid()
    assert (pgid, sid) == (os.getpgid(sleeper.pid), os.getsid(sleeper.pid))
    assert state in "RSD" and start > 0
    assert sleeper.pid in procs.descendants(os.getpid())
    assert sleeper.pid in procs.all_pids()


def test_a_process_that_is_not_there_has_no_stat_and_no_marks():
    with open("/proc/sys/kernel/pid_max") as f:
        pid = int(f.read()) + 1  # above any pid the kernel gives
    assert procs.proc_stat(pid) is None
    assert procs.environ_marks(pid) == {}



def test_prctl_without_the_ctypes_package_answers_as_ctypes_does():
    """procs calls prctl(2) through `_ctypes` (the ctypes package's import was 1-2 ms of a run's start):
    on this Python that path is taken, and it answers and acts as the public ctypes does."""
    import ctypes

    procs._prctl.cache_clear()
    fast = procs._prctl()
    assert type(fast).__name__ == "Function"  # the path through _ctypes, not the package's
    libc = ctypes.CDLL(None, use_errno=True)
    read = (procs.PR_CAPBSET_READ, procs.CAP_DAC_OVERRIDE, 0, 0, 0)
    assert fast(*read) == libc.prctl(*read) in (0, 1)  # type: ignore[operator]
    assert fast(99999, 0, 0, 0, 0) == libc.prctl(99999, 0, 0, 0, 0) == -1  # type: ignore[operator]  # no such option

    def subreaper() -> int:
        flag = ctypes.c_int(-1)
        assert libc.prctl(37, ctypes.byref(flag), 0, 0, 0) == 0  # PR_GET_CHILD_SUBREAPER
        return flag.value

    before = subreaper()
    try:
        assert procs.set_child_subreaper(True) and subreaper() == 1
        assert procs.set_child_subreaper(False) and subreaper() == 0
    finally:
        libc.prctl(procs.PR_SET_CHILD_SUBREAPER, before, 0, 0, 0)
