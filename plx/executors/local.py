"""The local executor: each node a subprocess in its own process group, with timeouts and kills."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GRACE_SECONDS = float(os.environ.get("PLX_KILL_GRACE", "2"))


@dataclass
class Job:
    id: str
    argv: list[str]
    env: dict[str, str]  # added to the environment of the process that runs the node
    cwd: Path
    stdout: Path
    stderr: Path
    timeout: float | None  # seconds


@dataclass
class Finished:
    id: str
    exit_code: int | None
    timed_out: bool
    started: float
    ended: float


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_group(pgid: int, grace: float = GRACE_SECONDS) -> None:
    """TERM the whole group, then KILL whatever is left after the grace period."""
    _kill_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.02)
    _kill_group(pgid, signal.SIGKILL)


class LocalExecutor:
    """Runs jobs as subprocesses; a waiter thread per running job (from a pool of -j) reports back on a queue."""

    def __init__(self, results: queue.Queue[Any], jobs: int = 1) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.results = results
        # Waiter threads are reused: starting a thread per node costs more than the rest of a launch.
        self._waiters = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="plx-wait")
        self._null: int | None = None
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def _devnull(self) -> int:
        # One descriptor for every node's stdin, instead of opening /dev/null per node.
        if self._null is None:
            self._null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return self._null

    def submit(self, job: Job) -> None:
        with open(job.stdout, "wb") as out, open(job.stderr, "wb") as err:
            started = time.time()
            # A new session makes the node a process-group leader: killing the group reaches
            # every grandchild it spawns, and a Ctrl-C on plx's terminal does not reach it directly.
            proc = subprocess.Popen(job.argv, cwd=job.cwd, env={**os.environ, **job.env}, stdout=out, stderr=err, stdin=self._devnull(), start_new_session=True)
        with self._lock:
            self.running[job.id] = proc
        self._waiters.submit(self._wait, job, proc, started)

    def _wait(self, job: Job, proc: subprocess.Popen[bytes], started: float) -> None:
        timed_out = False
        try:
            proc.wait(timeout=job.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_group(proc.pid)
            proc.wait()
        # The leader is gone; make sure nothing it left behind in its group outlives the node.
        _kill_group(proc.pid, signal.SIGKILL)
        with self._lock:
            self.running.pop(job.id, None)
        self.results.put(Finished(job.id, proc.returncode, timed_out, started, time.time()))

    def close(self) -> None:
        self._waiters.shutdown(wait=False)
        if self._null is not None:
            os.close(self._null)
            self._null = None

    def cancel_all(self, hard: bool = False) -> None:
        """Stop every running job's whole process group (TERM, then KILL; KILL at once if hard)."""
        with self._lock:
            procs = list(self.running.values())
        if hard:
            for p in procs:
                _kill_group(p.pid, signal.SIGKILL)
            return
        threads = [threading.Thread(target=stop_group, args=(p.pid,)) for p in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
