"""The Dask executor: each node's process runs on a worker of a Dask distributed cluster.

Workers must see the store at the same path as plx (a shared folder): they write the node's
logs and outputs there, and plx checks and stores the outputs as with the local executor.
On the worker, the node runs exactly as locally: in its own process group, with the timeout
enforced there, and killed (TERM, then KILL) when plx cancels the run.

A worker can die mid-node (killed, out of memory, its machine lost); Dask then runs the task
again elsewhere. So that a retried node never mixes two attempts' outputs:
  * the node's processes die with their worker: a watchdog process outside the worker (one per
    worker, in a session of its own) kills the node's whole process group when the worker's end of
    a pipe closes, which the kernel does when the worker dies, and then every process carrying the
    worker's marker (PLX_DASK_WORKER) in its environment: those that left the group (setsid);
  * every attempt is written down (a line in the worker's file under `.plx-dask-attempts/` beside
    the work folders: task key, attempt, worker, host, pid) as it starts; a later attempt (it finds
    the node's stdout log there already) kills what an earlier one on the same host may have left,
    moves the earlier attempt's work folder aside and starts in a fresh one, so the outputs plx
    stores come from exactly one attempt, and the record names the worker of each attempt.
A task's result comes back to plx as an event (_report), not fetched from the worker.
A worker that cannot see the work folder fails the node with the path it cannot see, or with a remote
runs it through the remote (_via_remote), announcing each attempt to the scheduler first (_announce).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..errors import RunError
from ..structs import field, record
from .base import NOT_STARTED, Finished, Job
from .local import GRACE_SECONDS, stop_group

BATCH = 16  # jobs handed to Dask at once while its workers have enough to do (DaskExecutor._holding)

# On each worker: the processes it is running for plx, by task key, so plx can cancel them.
_RUNNING: dict[str, subprocess.Popen[bytes]] = {}
_CANCELED: set[str] = set()  # tasks plx stopped: one that starts after the stop runs nothing
# Each run this worker started a node of, and when (this host's clock, less a second: /proc's start times
# are rounded down to the boot's whole second): what the run's nodes left running here (a `setsid` child
# outliving its node) is stopped when plx closes the run (stop_run_leftovers).
_RUN_STARTS: dict[str, float] = {}
_FORGET_RUNS_AFTER = 7 * 24 * 3600  # a run whose plx never closed it (killed) is forgotten after a week
STOP_WAIT = 30.0  # plx waits at most this long for the workers to stop a run's leftovers
_LOCK = threading.Lock()


@record
class DaskFinished(Finished):
    """A node's end on Dask, with every attempt Dask made (a dead worker's task is run again)."""

    attempts: list[dict[str, Any]] = field(default_factory=list)


ATTEMPTS = ".plx-dask-attempts"  # beside the work folders: one file per worker process, a line per attempt
_MADE: set[str] = set()  # the attempts folders this worker has made


def _attempts_file(cwd: str) -> Path:
    """Where attempts through the remote are written on the worker's own disk (workers sharing a host)."""
    return Path(cwd + ".attempts")


def _read_lines(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a worker killed while writing it
    return out


def _read_attempts(cwd: str) -> list[dict[str, Any]]:
    return _read_lines(_attempts_file(cwd))


def earlier_attempts(cwd: str, key: str) -> list[dict[str, Any]]:
    """The attempts of Dask task key written down by any worker (the shared folder's attempts files), in order."""
    found = [a for f in (Path(cwd).parent / ATTEMPTS).glob("*.jsonl") for a in _read_lines(f) if a.get("key") == key]
    return sorted(found, key=lambda a: (a.get("attempt") or 0, a.get("started") or 0))


def _write_attempt(cwd: str, line: dict[str, Any]) -> None:
    """Append an attempt to this worker's file beside the work folders (opened, appended, closed: on a
    shared file system close() is what makes it visible to the other hosts)."""
    folder = Path(cwd).parent / ATTEMPTS
    if str(folder) not in _MADE:
        folder.mkdir(exist_ok=True)
        _MADE.add(str(folder))
    try:
        f = open(folder / f"{socket.gethostname()}-{os.getpid()}.jsonl", "a", encoding="utf-8")
    except FileNotFoundError:  # removed since (a folder of that name made again): make it again
        folder.mkdir(exist_ok=True)
        f = open(folder / f"{socket.gethostname()}-{os.getpid()}.jsonl", "a", encoding="utf-8")
    with f:
        f.write(json.dumps(line) + "\n")


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


def _kill_earlier(earlier: list[dict[str, Any]]) -> None:
    """Stop the process groups earlier attempts of a node left on this host, and wait until they are gone."""
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


def _fresh_folder(cwd: str, n: int, fresh_dirs: list[str], earlier: list[dict[str, Any]]) -> None:
    """Before attempt n (> 1): stop what earlier attempts on this host left, move their folder aside, start clean."""
    _kill_earlier(earlier)
    work = Path(cwd)
    if work.exists():
        os.rename(work, work.with_name(f"{work.name}.lost-attempt{n - 1}-{uuid.uuid4().hex[:8]}"))
    work.mkdir()
    for d in fresh_dirs:  # the empty directory outputs plx created before the first attempt
        (work / d).mkdir(parents=True, exist_ok=True)


# One watchdog process per worker, outside the worker's process group and session: it reads the
# process groups of the worker's running nodes from a pipe that only the worker writes to, and
# when the pipe closes (the worker died, however) it kills every group still listed.
# Then it kills every process that carries this worker's marker (PLX_DASK_WORKER, in every node's
# environment): those a node started in a session or group of their own (setsid, a double fork), and a
# leader started just before the worker died, before the watchdog heard of its group.
_WATCHDOG_CODE = """
import os, signal, sys
groups = set()
for line in sys.stdin:
    op, _, pgid = line.partition(" ")
    if pgid.strip().isdigit():
        (groups.add if op == "add" else groups.discard)(int(pgid))
for g in groups:
    try:
        os.killpg(g, signal.SIGKILL)
    except OSError:
        pass
mark, me = b"PLX_DASK_WORKER=" + sys.argv[1].encode(), os.getpid()
for _ in range(5):  # what forks while it is being killed is found by the next pass
    found = False
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]
    except OSError:
        break
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                marked = mark in f.read().split(b"\\0")
            if marked:
                os.kill(pid, signal.SIGKILL)
                found = True
        except OSError:
            pass
    if not found:
        break
"""
_TOKEN = uuid.uuid4().hex  # this worker process's marker
_WATCHDOG: subprocess.Popen[bytes] | None = None
_WATCH_LOCK = threading.Lock()


def _watch(line: str) -> None:
    """Tell this worker's watchdog (started on first use, restarted if it is gone) about a node's group."""
    global _WATCHDOG
    with _WATCH_LOCK:
        for _ in range(2):
            if _WATCHDOG is None or _WATCHDOG.poll() is not None:
                _WATCHDOG = subprocess.Popen(
                    [sys.executable, "-c", _WATCHDOG_CODE, _TOKEN], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
                )
            try:
                assert _WATCHDOG.stdin is not None
                _WATCHDOG.stdin.write(line.encode() + b"\n")
                _WATCHDOG.stdin.flush()
                return
            except OSError:
                _WATCHDOG = None


Result = tuple[int | None, bool, float, float, str | None, dict[str, Any] | None]


def _announce(topic: str | None, key: str) -> int:
    """Tell the scheduler (and through it plx, subscribed to topic) that an attempt of task key starts on
    this worker, before anything starts: a worker that dies later cannot take the record of its attempt
    with it. Used where no shared folder carries the attempts files. Returns the attempt's number."""
    if not topic:
        return 1
    try:
        from distributed import get_worker
        from distributed.utils import sync

        w = get_worker()
        msg = {"key": key, "worker": str(w.address), "host": socket.gethostname()}
        sync(w.loop, w.scheduler.log_event, topic=[topic, f"{topic}/{key}"], msg=msg)  # stored before it returns
        return max(1, len(sync(w.loop, w.scheduler.events, topic=f"{topic}/{key}")))
    except Exception:  # not inside a Dask worker (tests call this directly), or a scheduler without events
        return 1


def run_on_worker(
    key: str,
    argv: list[str],
    extra_env: dict[str, str],
    cwd: str,
    stdout: str,
    stderr: str,
    timeout: float | None,
    grace: float,
    fresh_dirs: list[str] | None = None,
    remote: str | None = None,
    bundle: list[tuple[str, str, int, bool]] | None = None,
    topic: str | None = None,
) -> Result:
    """Runs on a Dask worker: one attempt of a node; returns (exit code, timed out, start, end, error, remote result).

    A worker that sees the work folder (a shared folder) runs the node there; one that does not,
    with a remote, runs it through the remote (see _via_remote)."""
    started = time.time()
    missing = _invisible(cwd)
    if missing is not None:
        if remote and bundle is not None:
            return _via_remote(key, argv, extra_env, cwd, timeout, grace, fresh_dirs or [], remote, bundle, topic)
        return (
            None,
            False,
            started,
            time.time(),
            f"the Dask worker {_worker_address()} on {socket.gethostname()} cannot see {missing} "
            f"(needed for the work folder {cwd}): mount the project's shared folder at the same path on every worker, "
            "or configure a remote (remote: in plx.yaml, or PLX_REMOTE) so that workers need no shared folder",
            None,
        )
    # A first attempt creates the node's stdout log (plx never does): finding it there means an earlier
    # attempt of this task got that far (its worker died), and only then are its traces looked up.
    earlier: list[dict[str, Any]] = []
    try:
        os.close(os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
    except FileExistsError:
        earlier = earlier_attempts(cwd, key)
        _fresh_folder(cwd, max(len(earlier) + 1, 2), fresh_dirs or [], earlier)
        earlier = earlier or [{"key": key, "attempt": 1, "worker": None, "host": None, "pid": None}]  # it died before writing its line
    line: dict[str, Any] = {}
    code, timed_out = _run_attempt(key, argv, extra_env, cwd, stdout, stderr, timeout, grace, len(earlier) + 1, started, line)
    result: Result = (code, timed_out, started, time.time(), None, None)
    _report(topic, key, result, [*earlier, line])
    return result


def _report(topic: str | None, key: str, result: Result, attempts: list[dict[str, Any]]) -> None:
    """Send a task's result to plx as an event (see DaskExecutor._event): it travels on the streams the
    worker and the scheduler already keep open, ahead of the task's own completion, so plx never has to
    fetch the result from the worker (a round trip through the scheduler per node)."""
    if not topic:
        return
    try:
        from distributed import get_worker

        get_worker().log_event(topic, {"key": key, "result": list(result[:5]), "attempts": attempts})
    except Exception:  # not in a worker (tests call run_on_worker directly): plx fetches the result instead
        pass


def worker_cache() -> Path:
    """The local cache of a worker that has no shared folder: PLX_WORKER_CACHE, else ~/.cache/plx/worker."""
    return Path(os.environ.get("PLX_WORKER_CACHE") or Path.home() / ".cache" / "plx" / "worker")


def _via_remote(
    key: str,
    argv: list[str],
    extra_env: dict[str, str],
    cwd: str,
    timeout: float | None,
    grace: float,
    fresh_dirs: list[str],
    url: str,
    bundle: list[tuple[str, str, int, bool]],
    topic: str | None = None,
) -> Result:
    """One attempt on a worker with no shared folder: the node's inputs come from the remote into the
    worker's own cache and are placed at the same paths as on plx's machine (so the command plx
    prepared works as is); its outputs are stored in that cache and uploaded; plx downloads them."""
    from ..remote import Fetched, Remote, adopt, objects_of
    from ..store import TREE_TYPE, Artifact, Store

    started = time.time()
    n = _announce(topic, key)
    # Workers that share a disk but not the project (several on one host) use the same paths: an earlier
    # attempt on this host may have left processes there (the watchdog kills them, perhaps not yet).
    _kill_earlier(_read_attempts(cwd))
    warnings: list[str] = []
    rem = Remote(url, warn=warnings.append)
    store = Store(worker_cache())
    work = Path(cwd)
    indir = work.with_name(work.name + ".in")
    logs = work.with_name(work.name + ".logs")
    try:
        for d in (work, indir, logs):
            shutil.rmtree(d, ignore_errors=True)  # every attempt starts afresh
        work.mkdir(parents=True)
        logs.mkdir()
        for name in fresh_dirs:
            (work / name).mkdir(parents=True, exist_ok=True)
        wanted = {rel: Artifact(h, size, "executable" if ex else "file", Path(rel).name) for rel, h, size, ex in bundle}
        fetched = Fetched("", wanted)
        rem._download_all(fetched, store)
        if adopt(store, fetched) is None:
            raise RuntimeError("the inputs downloaded from the remote are not intact")
        for rel, art in wanted.items():
            store.materialize(art, indir / rel)
    except Exception as exc:
        store.close()
        why = rem.down or (warnings[-1] if warnings else f"{type(exc).__name__}: {exc}")
        return None, False, started, time.time(), f"the Dask worker {_worker_address()} cannot fetch the node's inputs from the remote {rem.shown}: {why}", None
    code, timed_out = _run_attempt(key, argv, extra_env, cwd, str(logs / "stdout"), str(logs / "stderr"), timeout, grace, n, started)
    extra: dict[str, Any] = {"worker": _worker_address(), "host": socket.gethostname(), "outputs": {}}
    for stream in ("stdout", "stderr"):
        try:
            with open(logs / stream, "rb") as f:
                extra[stream] = f.read(8 << 20)
        except OSError:
            extra[stream] = b""
    error = None
    try:
        if code == 0 and not timed_out:
            outputs: dict[str, Any] = {}
            for entry in sorted(os.scandir(work), key=lambda e: e.name):
                p = Path(entry.path)
                if entry.is_symlink():
                    outputs = {}
                    break  # plx reports the link when it checks the (missing) output
                kind = "executable" if os.access(p, os.X_OK) else "file"  # plx checks the declared type when it gets them
                outputs[entry.name] = store.put_tree(p, entry.name) if entry.is_dir() else store.put_file(p, kind, entry.name)
            rem.push_objects(objects_of(store, outputs))
            extra["outputs"] = {name: a.to_json() for name, a in outputs.items()}
            extra["trees"] = [name for name, a in outputs.items() if a.type == TREE_TYPE]
    except Exception as exc:
        error = f"the Dask worker {_worker_address()} cannot upload the node's outputs to the remote {rem.shown}: {rem.down or exc}"
    finally:
        store.close()
        for d in (work, indir, logs):
            shutil.rmtree(d, ignore_errors=True)
        _attempts_file(cwd).unlink(missing_ok=True)
    return code, timed_out, started, time.time(), error, extra


def _run_attempt(
    key: str,
    argv: list[str],
    extra_env: dict[str, str],
    cwd: str,
    stdout: str,
    stderr: str,
    timeout: float | None,
    grace: float,
    n: int,
    started: float,
    line: dict[str, Any] | None = None,
) -> tuple[int | None, bool]:
    """Start the node (its leader dies with this thread), tell the watchdog its group, write the attempt
    down (in `line` too), and wait for it. Without `line`: through the remote, on the worker's own disk."""
    with open(stdout, "wb") as out, open(stderr, "wb") as err, _LOCK:
        if key in _CANCELED:  # plx stopped the run before this task started: it never starts the node
            return -signal.SIGTERM, False
        run_id = extra_env.get("PLX_RUN_ID", "")
        if run_id and run_id not in _RUN_STARTS:
            now = time.time()
            for old in [r for r, t in _RUN_STARTS.items() if t < now - _FORGET_RUNS_AFTER]:
                del _RUN_STARTS[old]
            _RUN_STARTS[run_id] = now - 1
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **extra_env, "PLX_DASK_ATTEMPT": str(n), "PLX_DASK_WORKER": _TOKEN},
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _RUNNING[key] = proc  # under the lock kill_on_worker takes: it sees this process, or the task sees the stop
    _watch(f"add {proc.pid}")
    this = {"key": key, "attempt": n, "worker": _worker_address(), "host": socket.gethostname(), "pid": proc.pid, "pgid": proc.pid, "started": started}
    if line is not None:
        line.update(this)
        _write_attempt(cwd, this)
    else:
        with open(_attempts_file(cwd), "a", encoding="utf-8") as f:
            f.write(json.dumps(this) + "\n")
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
        _watch(f"del {proc.pid}")
    return proc.returncode, timed_out


def kill_on_worker(keys: list[str], hard: bool, grace: float) -> int:
    """Runs on every worker (client.run): stop the process groups of these tasks; those not started yet never start."""
    with _LOCK:
        _CANCELED.update(keys)
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


async def stop_run_leftovers(run_ids: list[str], grace: float) -> int:
    """Runs on the workers that ran the runs' nodes (client.run) when plx closes them: stop what those
    nodes started here and left running (a process that called `setsid` or left its node's process
    group). Found by the run's PLX_RUN_ID marker among the processes started since this worker's first
    node of the run, in one scan of /proc (procs.kill_runs_leftovers, which checks start times), in a
    thread: the worker's event loop (its heartbeats) is not held meanwhile. Returns how many were stopped."""
    import asyncio

    from ..procs import kill_runs_leftovers

    with _LOCK:
        runs = {r: since for r in run_ids if (since := _RUN_STARTS.pop(r, None)) is not None}
    return len(await asyncio.to_thread(kill_runs_leftovers, runs, grace)) if runs else 0


class DaskExecutor:
    """Submits each job as a Dask task (not pure: a node's process is never deduplicated by Dask)."""

    def __init__(self, results: queue.Queue[Any], scheduler: str, remote: str | None = None):
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
        self.stdout: dict[str, str] = {}
        self.remote_url = remote
        self._remote: Any = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queued: list[Job] = []  # submitted, not handed to Dask yet
        self._sender: threading.Thread | None = None
        self._closing = False
        self._canceled = False
        self._inflight = 0  # tasks handed to Dask, not finished
        self._threads, self._threads_at = 0, 0.0  # the cluster's worker threads, and when they were counted
        # Workers send each task's result (see _report), and without the shared folder announce each
        # attempt (see _announce), as events on this topic; subscribed before any task is submitted (one
        # ordered stream: no event can come before it, and a task's events come before its completion).
        self.topic = f"plx-{uuid.uuid4().hex}"
        self.announced: dict[str, list[dict[str, Any]]] = {}  # task key -> its attempts, in order
        self.reported: dict[str, dict[str, Any]] = {}  # task key -> the result its last attempt sent
        self.folders: set[Path] = set()  # where workers write attempts files (removed at close)
        self.run_ids: set[str] = set()  # the runs of the jobs submitted: their leftovers are stopped at close
        self.workers_used: set[str] = set()  # the workers their attempts ran on (as the attempts say)
        self.client.subscribe_topic(self.topic, self._event)

    def _event(self, event: tuple[float, dict[str, Any]]) -> None:
        msg = event[1]
        key = str(msg.get("key"))
        with self._lock:
            if "result" in msg:
                self.reported[key] = msg  # a later attempt's replaces an earlier one's
            else:
                self.announced.setdefault(key, []).append(msg)

    def remote(self) -> Any:
        if self._remote is None and self.remote_url:
            from ..remote import Remote, push_enabled

            self._remote = Remote(self.remote_url, push=push_enabled())
        return self._remote

    def _bundle(self, job: Job) -> list[tuple[str, str, int, bool]] | None:
        """With a remote: the node's input folder as (path, hash, size, executable), uploaded, for workers without a shared folder."""
        rem = self.remote()
        if rem is None or not rem.usable or not rem.push:  # a read-only remote (PLX_REMOTE_PUSH=0) cannot carry them
            return None
        from ..hashing import hash_file

        indir = job.cwd.with_name(job.cwd.name + ".in")
        items: list[tuple[str, str, int, bool]] = []
        objects: list[tuple[str, Path]] = []
        if indir.is_dir():
            for p in sorted(indir.rglob("*")):
                if p.is_file():
                    h = hash_file(p)
                    st = p.stat()
                    items.append((str(p.relative_to(indir)), h, st.st_size, bool(st.st_mode & 0o100)))
                    objects.append((h, p))
        try:
            rem.push_objects(objects)
        except Exception:
            return None  # warned; workers then need the shared folder
        return items

    def submit(self, job: Job) -> None:
        """Queue a job: the sender thread places its inputs and hands it to Dask with every job queued
        meanwhile, in one graph (the scheduler's cost is mostly per graph, not per task)."""
        with self._wake:
            self.running[job.id] = None  # queued: a drain waits for its result too
            self._queued.append(job)
            self.run_ids.add(job.env.get("PLX_RUN_ID", ""))
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_loop, name="plx-dask-submit", daemon=True)
                self._sender.start()
            self._wake.notify()

    def _holding(self) -> bool:
        """Whether to keep queued jobs a little longer: while Dask holds enough tasks to keep every worker
        thread busy, jobs are handed over BATCH at a time (a node that finishes frees one slot at a time,
        and one graph per node is what costs the scheduler most). Never while stopping."""
        if self._canceled or self._closing or len(self._queued) >= BATCH:
            return False
        if time.monotonic() - self._threads_at > 2:  # workers come and go: asked again at most every 2 s
            self._threads_at = time.monotonic()
            self._lock.release()
            try:
                self._threads = self._cluster_threads()
            finally:
                self._lock.acquire()
        return self._inflight >= max(2 * self._threads, 2)

    def _cluster_threads(self) -> int:
        try:
            return sum(int(w.get("nthreads") or 0) for w in self.client.scheduler_info().get("workers", {}).values())
        except Exception:
            return 0

    def _send_loop(self) -> None:
        while True:
            with self._wake:
                while not self._closing and (not self._queued or self._holding()):
                    self._wake.wait(timeout=1.0)
                if not self._queued:
                    return
                batch, self._queued = self._queued, []
            groups: dict[tuple[tuple[str, float], ...], list[tuple[Job, tuple[Any, ...]]]] = {}
            for job in batch:
                if self._canceled:
                    self._not_run(job, NOT_STARTED)
                    continue
                try:
                    args = self._prepare(job)
                except Exception as exc:
                    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                    self._not_run(job, f"cannot start the node: {why}")
                    continue
                # A node's declared resources become Dask worker resources (CPU, MEMORY, GPU): the scheduler
                # runs it only on a worker started with enough of them (`dask worker --resources "CPU=4,GPU=1"`).
                groups.setdefault(tuple(sorted((job.resources or {}).items())), []).append((job, args))
            for resources, items in groups.items():
                try:
                    self._hand_over(resources, items)
                except BaseException as exc:  # never lose a job: the engine waits for every one's result
                    for job, _args in items:
                        if self.running.get(job.id, False) is None:
                            self._not_run(job, f"cannot start the node: {type(exc).__name__}: {exc}")

    def _prepare(self, job: Job) -> tuple[Any, ...]:
        """Place the job's inputs (in the shared folder the workers see, or uploaded to the remote); its task's arguments."""
        if job.before is not None:
            job.before()
        key = f"plx-node-{uuid.uuid4().hex}"
        # Empty folders plx made for directory outputs: a retried attempt starts with the same.
        fresh_dirs = [e.name for e in os.scandir(job.cwd) if e.is_dir()] if job.cwd.is_dir() else []
        bundle = self._bundle(job)
        with self._lock:
            self.keys[job.id] = key
            self.stderr[job.id] = str(job.stderr)
            self.cwd[job.id] = str(job.cwd)
            self.stdout[job.id] = str(job.stdout)
            self.folders.add(job.cwd.parent)
        remote = self.remote_url if bundle is not None else None
        return (key, job.argv, job.env, str(job.cwd), str(job.stdout), str(job.stderr), job.timeout, GRACE_SECONDS, fresh_dirs, remote, bundle, self.topic)

    def _hand_over(self, resources: tuple[tuple[str, float], ...], items: list[tuple[Job, tuple[Any, ...]]]) -> None:
        try:
            columns = list(zip(*(args for _job, args in items), strict=True))
            extra: dict[str, Any] = {"resources": dict(resources)} if resources else {}
            futures = self.client.map(run_on_worker, *columns, key=list(columns[0]), pure=False, **extra)
        except Exception as exc:
            for job, _args in items:
                self._not_run(job, f"cannot start the node: the Dask scheduler refused it: {exc}")
            return
        with self._lock:
            self._inflight += len(items)
        for (job, _args), future in zip(items, futures, strict=True):
            with self._lock:
                self.running[job.id] = future
            future.add_done_callback(lambda f, job_id=job.id: self._done(job_id, f))
        if self._canceled:  # a stop came while they were being handed over
            self.cancel_all()

    def _not_run(self, job: Job, error: str) -> None:
        now = time.time()
        self.results.put(DaskFinished(job.id, None, False, now, now, error))  # queued before it leaves `running`
        self._forget(job.id)

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self.running.pop(job_id, None)
            self.keys.pop(job_id, None)
            self.stderr.pop(job_id, None)
            self.cwd.pop(job_id, None)
            self.stdout.pop(job_id, None)

    def _done(self, job_id: str, future: Any) -> None:
        now = time.time()
        error: str | None = None
        extra: dict[str, Any] | None = None
        key, cwd = self.keys.get(job_id, ""), self.cwd.get(job_id, "")
        with self._lock:
            announced = self.announced.pop(key, [])
            reported = self.reported.pop(key, None)
        attempts: list[dict[str, Any]] = []
        if reported is not None and future.status == "finished":  # the result came with the worker's event
            code, timed_out, started, ended, error = reported["result"]
            attempts = reported["attempts"]
        else:
            try:
                code, timed_out, started, ended, error, extra = future.result()
                if extra is not None:
                    error = self._from_remote(job_id, extra) or error
            except Exception as exc:  # the workers died too often, or the task was cancelled: the node failed
                code, timed_out, started, ended = -1, False, now, now
                error = f"the Dask task failed: {type(exc).__name__}: {exc}"
            if cwd and extra is None:
                attempts = earlier_attempts(cwd, key)
        if cwd and len(attempts) > 1:  # the earlier attempts' processes are gone: see _fresh_folder
            for lost in Path(cwd).parent.glob(Path(cwd).name + ".lost-attempt*"):
                shutil.rmtree(lost, ignore_errors=True)
        if not attempts and announced:  # ran through the remote: each attempt's worker told the scheduler when it started
            attempts = [{"attempt": i, "worker": a.get("worker"), "host": a.get("host"), "pid": None} for i, a in enumerate(announced, 1)]
        elif not attempts and extra:
            attempts = [{"attempt": 1, "worker": extra.get("worker"), "host": extra.get("host"), "pid": None}]
        with self._lock:
            self.workers_used.update(str(a["worker"]) for a in attempts if a.get("worker"))
        # queued before it leaves `running`, so a stop in between still waits for this result
        self.results.put(DaskFinished(job_id, None if error else code, timed_out, started, ended, error, attempts=attempts))
        self._forget(job_id)
        with self._wake:
            self._inflight -= 1
            if self._queued:
                self._wake.notify()

    def _from_remote(self, job_id: str, extra: dict[str, Any]) -> str | None:
        """A node that ran on a worker without the shared folder: its logs and outputs, here. Returns an error or None."""
        for stream, paths in (("stdout", self.stdout), ("stderr", self.stderr)):
            if extra.get(stream) and paths.get(job_id):
                with open(paths[job_id], "wb") as f:
                    f.write(extra[stream])
        outputs = extra.get("outputs") or {}
        if not outputs:
            return None
        from ..remote import Fetched, adopt
        from ..store import Artifact, Store

        work = Path(self.cwd[job_id])
        root = next((p.parent for p in work.parents if p.name == "tmp" and (p.parent / "objects").is_dir()), None)
        if root is None:
            return f"cannot find the store of {work}"
        store = Store(root)
        try:
            arts = {name: Artifact.from_json(a) for name, a in outputs.items()}
            fetched = Fetched("", arts)
            self.remote()._download_all(fetched, store)
            if adopt(store, fetched) is None:
                return f"the outputs the Dask worker {extra.get('worker')} uploaded to the remote are not intact"
            for name, art in arts.items():
                store.materialize(art, work / name)
        except Exception as exc:
            return f"cannot download the outputs of the Dask worker {extra.get('worker')} from the remote: {exc}"
        finally:
            store.close()
        return None

    def check_resources(self, requests: dict[str, Any]) -> list[str]:
        """Why some nodes' resources could never be met by the cluster's workers (a node Dask cannot
        place would wait forever), or nothing."""
        try:
            workers = self.client.scheduler_info().get("workers", {}).values()
        except Exception as exc:
            return [f"cannot ask the Dask scheduler about its workers: {exc}"]
        offers = [w.get("resources") or {} for w in workers]
        problems = []
        for node, r in requests.items():
            need = {"CPU": r.cpus, **({"MEMORY": r.memory} if r.memory else {}), **({"GPU": r.gpus} if r.gpus else {})}
            if not any(all(offer.get(k, 0) >= v for k, v in need.items()) for offer in offers):
                wanted = ",".join(f"{k}={v}" for k, v in need.items())
                problems.append(
                    f"node '{node}' needs the Dask worker resources {wanted}, and no worker of the cluster has them (start workers with --resources \"{wanted}\")"
                )
        return problems

    def cancel_all(self, hard: bool = False) -> None:
        """Jobs still queued here are not started; on the workers, the processes of running tasks are
        stopped and a task that starts later returns at once without starting its node (so the drain
        does not wait for Dask's queue to run). Tasks are not canceled in Dask: a node that fails on its
        own meanwhile still reports its own result."""
        with self._wake:
            self._canceled = True
            self._wake.notify()  # what is queued here is reported not started
            keys = list(self.keys.values())
        if keys:
            try:
                self.client.run(kill_on_worker, keys, hard, GRACE_SECONDS)
            except Exception:  # a worker that is gone has nothing left to kill
                pass

    def _stop_leftovers(self) -> None:
        """The workers that ran this executor's nodes stop what those left running there (SPEC §9:
        nothing keeps running). Only at the end: a scan of a host's processes per node would cost more
        than the node. A worker that does not answer within STOP_WAIT (stopped, cut off) does not hold
        plx: a worker that is gone took its node processes with it (its watchdog)."""
        with self._lock:
            run_ids = sorted(r for r in self.run_ids if r)
            workers = sorted(self.workers_used)
        if not run_ids or not workers:
            return

        def call() -> None:
            with contextlib.suppress(Exception):
                self.client.run(stop_run_leftovers, run_ids, GRACE_SECONDS, workers=workers, on_error="ignore")

        caller = threading.Thread(target=call, name="plx-dask-leftovers", daemon=True)
        caller.start()
        caller.join(STOP_WAIT)

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._sender is not None:
            self._sender.join(timeout=30)
        try:
            try:
                self._stop_leftovers()
            finally:
                self.client.close()
        finally:
            for folder in self.folders:  # the workers' attempts files (read only when a worker died)
                shutil.rmtree(folder / ATTEMPTS, ignore_errors=True)
