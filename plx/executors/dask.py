"""The Dask executor: each node's process runs on a worker of a Dask distributed cluster.

Workers must see the store at the same path as plx (a shared folder): they write the node's
logs and outputs there, and plx checks and stores the outputs as with the local executor.
On the worker, the node runs exactly as locally: in its own process group, with the timeout
enforced there, and killed (TERM, then KILL) when plx cancels the run.

A worker can die mid-node (killed, out of memory, its machine lost); Dask then runs the task
again elsewhere. So that a retried node never mixes two attempts' outputs:
  * the node's processes die with their worker: the leader gets PR_SET_PDEATHSIG (SIGKILL when
    the worker's thread that started it is gone; that thread waits for the node, so it outlives
    it otherwise), and a tiny watchdog outside the worker kills the node's whole process group
    when the worker's end of a pipe closes, which the kernel does when the worker dies;
  * every attempt is written down (`<work>.attempts`: attempt, worker, host, pid) before it
    starts; a later attempt kills what an earlier one on the same host may have left, moves the
    earlier attempt's work folder aside and starts in a fresh one, so the outputs plx stores come
    from exactly one attempt, and the record names the worker of each attempt.
A worker that cannot see the work folder fails the node with the path it cannot see.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunError
from .local import GRACE_SECONDS, Finished, Job, stop_group

# On each worker: the processes it is running for plx, by task key, so plx can cancel them.
_RUNNING: dict[str, subprocess.Popen[bytes]] = {}
_LOCK = threading.Lock()


@dataclass
class DaskFinished(Finished):
    """A node's end on Dask, with every attempt Dask made (a dead worker's task is run again)."""

    attempts: list[dict[str, Any]] = field(default_factory=list)


def _pdeathsig_prefix() -> list[str]:
    """`setpriv --pdeathsig KILL --` where util-linux has it: the leader dies with the thread that started it."""
    found = shutil.which("setpriv")
    return [found, "--pdeathsig", "KILL", "--"] if found and os.uname().sysname == "Linux" else []


def _attempts_file(cwd: str) -> Path:
    return Path(cwd + ".attempts")


def _read_attempts(cwd: str) -> list[dict[str, Any]]:
    try:
        text = _attempts_file(cwd).read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a worker killed while writing it
    return out


def _invisible(path: str) -> str | None:
    """The first folder on the way to path that this worker cannot see, or None if it sees path."""
    p = Path(path)
    if p.is_dir():
        return None
    missing = p
    for parent in p.parents:
        if parent.is_dir():
            break
        missing = parent
    return str(missing)


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:  # not inside a Dask worker (tests call this directly)
        return f"pid {os.getpid()}"


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _fresh_folder(cwd: str, n: int, fresh_dirs: list[str], earlier: list[dict[str, Any]]) -> None:
    """Before attempt n (> 1): stop what earlier attempts on this host left, move their folder aside, start clean."""
    host = socket.gethostname()
    for a in earlier:
        pgid = a.get("pgid")
        if a.get("host") == host and isinstance(pgid, int) and pgid > 1:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            deadline = time.monotonic() + 5
            while not _group_gone(pgid) and time.monotonic() < deadline:
                time.sleep(0.02)
    work = Path(cwd)
    if work.exists():
        os.rename(work, work.with_name(f"{work.name}.lost-attempt{n - 1}-{uuid.uuid4().hex[:8]}"))
    work.mkdir()
    for d in fresh_dirs:  # the empty directory outputs plx created before the first attempt
        (work / d).mkdir(parents=True, exist_ok=True)


def run_on_worker(
    key: str, argv: list[str], extra_env: dict[str, str], cwd: str, stdout: str, stderr: str, timeout: float | None, grace: float, fresh_dirs: list[str] | None = None
) -> tuple[int | None, bool, float, float, str | None]:
    """Runs on a Dask worker: one attempt of a node; returns (exit code, timed out, start, end, error)."""
    started = time.time()
    missing = _invisible(cwd)
    if missing is not None:
        return (
            None,
            False,
            started,
            time.time(),
            f"the Dask worker {_worker_address()} on {socket.gethostname()} cannot see {missing} "
            f"(needed for the work folder {cwd}): mount the project's shared folder at the same path on every worker, "
            "or start the worker where it can see it",
        )
    earlier = _read_attempts(cwd)
    n = len(earlier) + 1
    if earlier:
        _fresh_folder(cwd, n, fresh_dirs or [], earlier)
    # The watchdog: `read` ends with an error when the worker's end of the pipe closes (the worker
    # died), and then kills the node's group; a line from the worker (the node ended) lets it go.
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen(
            [*_pdeathsig_prefix(), *argv],
            cwd=cwd,
            env={**os.environ, **extra_env, "PLX_DASK_ATTEMPT": str(n)},
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    wd_r, wd_w = os.pipe()
    watchdog = subprocess.Popen(
        ["sh", "-c", f"read _ || kill -KILL -{proc.pid} 2>/dev/null"], stdin=wd_r, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    os.close(wd_r)
    line = {"attempt": n, "worker": _worker_address(), "host": socket.gethostname(), "pid": proc.pid, "pgid": proc.pid, "started": started}
    with open(_attempts_file(cwd), "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
    with _LOCK:
        _RUNNING[key] = proc
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        stop_group(proc.pid, grace)
        proc.wait()
    finally:
        with _LOCK:
            _RUNNING.pop(key, None)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.write(wd_w, b"done\n")
        except OSError:
            pass
        os.close(wd_w)
        watchdog.wait()
    return proc.returncode, timed_out, started, time.time(), None


def kill_on_worker(keys: list[str], hard: bool, grace: float) -> int:
    """Runs on every worker (client.run): stop the process groups of these tasks."""
    with _LOCK:
        procs = [p for k, p in _RUNNING.items() if k in keys]
    for p in procs:
        if hard:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        else:
            stop_group(p.pid, grace)
    return len(procs)


class DaskExecutor:
    """Submits each job as a Dask task (not pure: a node's process is never deduplicated by Dask)."""

    def __init__(self, results: queue.Queue[Any], scheduler: str):
        try:
            from distributed import Client
        except ImportError:
            raise RunError("the Dask executor needs the `dask` extra: pip install 'plx[dask]'") from None
        try:
            self.client = Client(scheduler, timeout=5, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise RunError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        self.results = results
        self.running: dict[str, Any] = {}  # job id -> future
        self.keys: dict[str, str] = {}
        self.stderr: dict[str, str] = {}
        self.cwd: dict[str, str] = {}
        self._lock = threading.Lock()

    def submit(self, job: Job) -> None:
        if job.before is not None:  # the inputs go to the shared store folder the workers see
            job.before()
        key = f"plx-node-{uuid.uuid4().hex}"
        # Empty folders plx made for directory outputs: a retried attempt starts with the same.
        fresh_dirs = [e.name for e in os.scandir(job.cwd) if e.is_dir()] if job.cwd.is_dir() else []
        future = self.client.submit(
            run_on_worker, key, job.argv, job.env, str(job.cwd), str(job.stdout), str(job.stderr), job.timeout, GRACE_SECONDS, fresh_dirs, key=key, pure=False
        )
        with self._lock:
            self.running[job.id] = future
            self.keys[job.id] = key
            self.stderr[job.id] = str(job.stderr)
            self.cwd[job.id] = str(job.cwd)
        future.add_done_callback(lambda f, job_id=job.id: self._done(job_id, f))

    def _done(self, job_id: str, future: Any) -> None:
        now = time.time()
        error: str | None = None
        try:
            code, timed_out, started, ended, error = future.result()
        except Exception as exc:  # the workers died too often, or the task was cancelled: the node failed
            code, timed_out, started, ended = -1, False, now, now
            error = f"the Dask task failed: {type(exc).__name__}: {exc}"
        cwd = self.cwd.get(job_id, "")
        attempts = _read_attempts(cwd) if cwd else []
        if cwd:
            _attempts_file(cwd).unlink(missing_ok=True)
            for lost in Path(cwd).parent.glob(Path(cwd).name + ".lost-attempt*"):  # its processes are gone: see _fresh_folder
                shutil.rmtree(lost, ignore_errors=True)
        with self._lock:
            self.running.pop(job_id, None)
            self.keys.pop(job_id, None)
            self.stderr.pop(job_id, None)
            self.cwd.pop(job_id, None)
        self.results.put(DaskFinished(job_id, None if error else code, timed_out, started, ended, error, attempts=attempts))

    def cancel_all(self, hard: bool = False) -> None:
        with self._lock:
            keys = list(self.keys.values())
        if keys:
            try:
                self.client.run(kill_on_worker, keys, hard, GRACE_SECONDS)
            except Exception:  # a worker that is gone has nothing left to kill
                pass

    def close(self) -> None:
        self.client.close()
