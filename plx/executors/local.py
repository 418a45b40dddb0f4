"""The local executor: each node a subprocess in its own process group, with timeouts and kills."""

from __future__ import annotations

import functools
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GRACE_SECONDS = float(os.environ.get("PLX_KILL_GRACE", "2"))
NOT_STARTED = "canceled before it started"


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
    error: str | None = None  # the process could not be started (or was not, being canceled first)


@functools.lru_cache(maxsize=64)
def _resolve(program: str, path: str | None) -> str:
    """The program's full path, found once per run: Popen would try every PATH entry per node."""
    if os.sep in program:
        return program
    found = shutil.which(program, path=path)
    # Not found, or found through a relative PATH entry (which depends on the node's cwd): leave it to Popen.
    return found if found and os.path.isabs(found) else program


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
    """Runs jobs as subprocesses. A pool of -j threads starts each job's process, waits for it and
    reports back on a queue: starting a process costs ~0.3 ms, and doing it here, where the GIL is
    released, keeps the engine's loop free to schedule the next node meanwhile."""

    def __init__(self, results: queue.Queue[Any], jobs: int = 1) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.results = results
        self._waiters = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="plx-node")
        self._null: int | None = None
        # Every accepted job until its Finished is queued; None while its process is not started yet.
        self.running: dict[str, subprocess.Popen[bytes] | None] = {}
        self._lock = threading.Lock()
        self._canceled = False

    def _devnull(self) -> int:
        # One descriptor for every node's stdin, instead of opening /dev/null per node.
        if self._null is None:
            self._null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return self._null

    def submit(self, job: Job) -> None:
        self._devnull()
        with self._lock:
            self.running[job.id] = None
        self._waiters.submit(self._run, job)

    def _spawn(self, job: Job) -> subprocess.Popen[bytes]:
        with open(job.stdout, "wb") as out, open(job.stderr, "wb") as err:
            env = {**os.environ, **job.env}
            argv = [_resolve(job.argv[0], env.get("PATH")), *job.argv[1:]]
            # A new session makes the node a process-group leader: killing the group reaches
            # every grandchild it spawns, and a Ctrl-C on plx's terminal does not reach it directly.
            return subprocess.Popen(argv, cwd=job.cwd, env=env, stdout=out, stderr=err, stdin=self._null, start_new_session=True)

    def _report(self, ev: Finished) -> None:
        with self._lock:
            self.running.pop(ev.id, None)
        self.results.put(ev)

    def _run(self, job: Job) -> None:
        started = time.time()
        if self._canceled:
            self._report(Finished(job.id, None, False, started, started, error=NOT_STARTED))
            return
        try:
            proc = self._spawn(job)
        except Exception as exc:  # reported, never lost: the engine waits for every job's Finished
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self._report(Finished(job.id, None, False, started, time.time(), error=f"cannot start {job.argv[0]}: {why}"))
            return
        with self._lock:
            self.running[job.id] = proc
            canceled = self._canceled
        if canceled:  # cancel_all ran while this process was starting: it did not see it
            stop_group(proc.pid)
        timed_out = False
        try:
            proc.wait(timeout=job.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_group(proc.pid)
            proc.wait()
        # The leader is gone; make sure nothing it left behind in its group outlives the node.
        _kill_group(proc.pid, signal.SIGKILL)
        self._report(Finished(job.id, proc.returncode, timed_out, started, time.time()))

    def close(self) -> None:
        self._waiters.shutdown(wait=False)
        if self._null is not None:
            os.close(self._null)
            self._null = None

    def cancel_all(self, hard: bool = False) -> None:
        """Stop every running job's whole process group (TERM, then KILL; KILL at once if hard).
        Jobs not started yet are not started."""
        with self._lock:
            self._canceled = True
            procs = [p for p in self.running.values() if p is not None]
        if hard:
            for p in procs:
                _kill_group(p.pid, signal.SIGKILL)
            return
        threads = [threading.Thread(target=stop_group, args=(p.pid,)) for p in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
