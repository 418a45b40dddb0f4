"""procs.start_guardian: the shell that waits for plx's end and only then starts Python to stop the
run's processes; real processes, marked as plx marks its nodes."""

from __future__ import annotations

import os
import subprocess
import time

from plx import procs


def _marked(run_id: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "30"], env={**os.environ, procs.MARKER: run_id}, start_new_session=True)


def _guardian() -> subprocess.Popen[bytes]:
    guardian = procs.start_guardian()
    assert guardian is not None and guardian.stdin is not None
    return guardian


def test_end_of_file_stops_the_runs_it_was_told_and_nothing_else() -> None:
    since = time.time() - 1
    victim, other = _marked("run-a"), _marked("run-b")
    try:
        guardian = _guardian()
        assert guardian.stdin is not None
        # A line that is not `<run id> <time>` is ignored; a time that is not a number is too.
        guardian.stdin.write(f"garbage\nrun-c notatime\nrun-a {since:.3f}\n".encode())
        guardian.stdin.flush()
        time.sleep(0.1)
        assert guardian.poll() is None and victim.poll() is None  # told, but plx is still there
        guardian.stdin.close()  # what plx's death looks like to it
        assert victim.wait(timeout=10) == -15  # TERM, from the Python it became
        assert guardian.wait(timeout=10) == 0
        assert other.poll() is None, "a process of another run was stopped"
    finally:
        for p in (victim, other):
            p.kill()
            p.wait()


def test_done_ends_it_without_stopping_anything() -> None:
    since = time.time() - 1
    victim = _marked("run-d")
    try:
        guardian = _guardian()
        assert guardian.stdin is not None
        guardian.stdin.write(f"run-d {since:.3f}\ndone\n".encode())
        guardian.stdin.close()
        assert guardian.wait(timeout=10) == 0
        time.sleep(0.1)
        assert victim.poll() is None, "the guardian of a run that ended stopped its processes"
    finally:
        victim.kill()
        victim.wait()


def test_it_waits_as_a_shell_and_ignores_ctrl_c() -> None:
    guardian = _guardian()
    try:
        time.sleep(0.1)
        exe = os.readlink(f"/proc/{guardian.pid}/exe")
        assert "python" not in os.path.basename(exe), f"the guardian waits as {exe}"
        os.kill(guardian.pid, 2)  # SIGINT: a Ctrl-C on plx's terminal must not end it
        time.sleep(0.1)
        assert guardian.poll() is None
        assert guardian.stdin is not None
        guardian.stdin.close()  # told nothing: nothing to stop, it just ends
        assert guardian.wait(timeout=10) == 0
    finally:
        if guardian.poll() is None:
            guardian.kill()
            guardian.wait()
