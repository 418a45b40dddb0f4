"""The local executor: each node a subprocess in its own process group, with timeouts and kills."""

from __future__ import annotations

import functools
import os
import queue
import select
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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
    before: Callable[[], None] | None = None  # run first, where the job runs (placing the inputs)
    resources: dict[str, float] | None = None  # what the node declared, as Dask worker resources


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
    """Whether any process of the group is still running (zombies do not count: an orphan's zombie
    can linger until init reaps it, and waiting for it would only delay the kill)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        pids = os.listdir("/proc")
    except OSError:
        return True  # no /proc: trust the kill test
    for pid in pids:
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def stop_group(pgid: int, grace: float = GRACE_SECONDS) -> None:
    """TERM the whole group, then KILL whatever is left after the grace period."""
    _kill_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.02)
    _kill_group(pgid, signal.SIGKILL)


class _LazyFile:
    """A log file created on the first byte: most nodes write nothing to one of their streams, and
    creating a file is, on some filesystems, the dearest part of a short node."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def write(self, data: bytes) -> None:
        if self.fd is None:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


_DRAIN_SECONDS = 1.0  # after the group is gone: how long a process that escaped it may hold the pipes open


def _pump(proc: subprocess.Popen[bytes], sinks: dict[int, _LazyFile], timeout: float | None) -> bool:
    """Copy the node's output to its log files as it comes, until the node is over; True if it timed out.

    The node is over when its group leader has exited: the rest of its process group is then
    killed, so nothing it started outlives it, and the pipes are read to their end. On a timeout
    the group gets TERM, and KILL once the grace period is over if anything is left of it."""
    deadline = time.monotonic() + timeout if timeout else None
    kill_at: float | None = None  # set on a timeout: when TERM's grace period ends
    reaped = False
    drain_until: float | None = None  # set once the whole group is gone
    poller = select.poll()
    for fd in sinks:
        poller.register(fd, select.POLLIN)
    pidfd = _pidfd(proc.pid)  # readable once the leader exits; without one, the leader is polled
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    try:
        while True:
            now = time.monotonic()
            if not reaped and pidfd is None and proc.poll() is not None:
                reaped = True
            if reaped and drain_until is None and (kill_at is None or now >= kill_at or not _group_alive(proc.pid)):
                _kill_group(proc.pid, signal.SIGKILL)
                drain_until = now + _DRAIN_SECONDS
            if drain_until is not None and (not sinks or now >= drain_until):
                break
            if deadline is not None and kill_at is None and not reaped and now >= deadline:
                _kill_group(proc.pid, signal.SIGTERM)
                kill_at = now + GRACE_SECONDS
            if kill_at is not None and not reaped and now >= kill_at:
                _kill_group(proc.pid, signal.SIGKILL)
            ends = [t for t in (drain_until, kill_at, deadline if kill_at is None else None) if t is not None and t > now]
            wait = min(ends) - now if ends else None
            if (pidfd is None and not reaped) or (reaped and drain_until is None):
                wait = 0.02 if wait is None else min(wait, 0.02)  # polling the leader, or the rest of its group
            for fd, _ in poller.poll(None if wait is None else int(wait * 1000) + 1):
                if fd == pidfd:
                    poller.unregister(pidfd)
                    proc.wait()
                    reaped = True
                    continue
                data = os.read(fd, 1 << 16)
                if data:
                    sinks[fd].write(data)
                else:  # every writer has closed it
                    poller.unregister(fd)
                    os.close(fd)
                    sinks.pop(fd).close()
    finally:
        for fd, sink in sinks.items():
            os.close(fd)
            sink.close()
        if pidfd is not None:
            os.close(pidfd)
    return kill_at is not None


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)  # type: ignore[attr-defined,unused-ignore]
    except (AttributeError, OSError):
        return None


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

    def _spawn(self, job: Job) -> tuple[subprocess.Popen[bytes], int, int]:
        """Start the job's process; returns it and the read ends of its stdout and stderr pipes."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            env = {**os.environ, **job.env}
            argv = [_resolve(job.argv[0], env.get("PATH")), *job.argv[1:]]
            # A new session makes the node a process-group leader: killing the group reaches
            # every grandchild it spawns, and a Ctrl-C on plx's terminal does not reach it directly.
            proc = subprocess.Popen(argv, cwd=job.cwd, env=env, stdout=out_w, stderr=err_w, stdin=self._null, start_new_session=True)
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        return proc, out_r, err_r

    def _report(self, ev: Finished) -> None:
        with self._lock:
            self.running.pop(ev.id, None)
        self.results.put(ev)

    def _run(self, job: Job) -> None:
        started = time.time()

        def not_run(error: str) -> None:  # reported, never lost: the engine waits for every job's Finished
            self._report(Finished(job.id, None, False, started, time.time(), error=error))

        if self._canceled:
            return not_run(NOT_STARTED)
        try:
            if job.before is not None:
                job.before()
        except Exception as exc:  # e.g. the disk is full
            return not_run(f"cannot place the inputs: {exc}")
        try:
            proc, out_r, err_r = self._spawn(job)
        except Exception as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return not_run(f"cannot start {job.argv[0]}: {why}")
        with self._lock:
            self.running[job.id] = proc
            canceled = self._canceled
        if canceled:  # cancel_all ran while this process was starting: it did not see it
            stop_group(proc.pid)
        try:
            timed_out = _pump(proc, {out_r: _LazyFile(job.stdout), err_r: _LazyFile(job.stderr)}, job.timeout)
        except Exception as exc:  # e.g. the disk is full: the node cannot be recorded, so it is stopped
            stop_group(proc.pid)
            proc.wait()
            self._report(Finished(job.id, proc.returncode, False, started, time.time(), error=f"could not record the node's output: {exc}"))
            return
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
