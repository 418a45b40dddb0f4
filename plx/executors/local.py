"""The local executor: each node a subprocess in its own process group, with timeouts and kills."""

from __future__ import annotations

import errno
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .. import procs
from ..workspace import LINK_INPUTS
from . import direct, warm
from .base import NOT_STARTED, Finished, Job

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any, Callable

GRACE_SECONDS = float(os.environ.get("PLX_KILL_GRACE", "2"))


def _resolve(program: str, path: str | None) -> str:
    """The program's full path, found once per process (direct.which): Popen would try every PATH entry per node."""
    if os.sep in program:
        return program
    found = direct.which(program, path)
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
    found = procs.all_pids()
    if not found:
        return True  # no /proc (plx's own process would be there): trust the kill test
    return any(st[2] == pgid and st[0] != "Z" for pid in found if (st := procs.proc_stat(pid)) is not None)


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


# Warm shells kept ready at most (never more than -j): nodes that end together start together, each
# on one of them; each unused one at a run's end was a bash started for nothing (~1 ms of CPU).
WARM_MAX = 4
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


_subreapers = 0  # executors alive in this process that need plx to be a child subreaper
_subreaper_lock = threading.Lock()


def _subreaper(on: bool) -> bool:
    """Count the executors that need orphans re-parented to plx; the setting is process-wide, so
    it is dropped when the last one closes (a Python program using plx.run keeps its usual ways)."""
    global _subreapers
    with _subreaper_lock:
        if on:
            if _subreapers == 0 and not procs.set_child_subreaper(True):
                return False
            _subreapers += 1
            return True
        _subreapers -= 1
        if _subreapers == 0:
            procs.set_child_subreaper(False)
        return True


class _Threads:
    """Up to `limit` threads that run the calls submitted, each started when no other one is idle.

    concurrent.futures's pool without futures (nothing here waits for a result: each call reports
    on the results queue), because importing it, and the logging it imports, took ~2.5 ms of the
    start of every run that runs a node."""

    def __init__(self, limit: int, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._limit, self._name = limit, name
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the node threads are shut down")
            if self._idle:
                self._idle -= 1  # the call is that thread's: another submit starts a thread of its own
            elif len(self._threads) < self._limit:
                t = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                t.start()  # first: a thread that could not start is not counted
                self._threads.append(t)
        self._calls.put((fn, args))

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            fn, args = call
            try:
                fn(*args)
            except BaseException:  # a plx bug: shown, and the thread goes on serving (as with the stdlib's pool)
                threading.excepthook(threading.ExceptHookArgs((*sys.exc_info(), threading.current_thread())))  # type: ignore[arg-type]
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Let every thread end once the calls already submitted are done (without waiting for them)."""
        with self._lock:
            self._closed = True
        for _ in self._threads:
            self._calls.put(None)


class LocalExecutor:
    """Runs jobs as subprocesses. A pool of -j threads starts each job's process, waits for it and
    reports back on a queue: starting a process costs ~0.3 ms, and doing it here, where the GIL is
    released, keeps the engine's loop free to schedule the next node meanwhile."""

    def __init__(self, results: queue.Queue[Any], jobs: int = 1) -> None:
        self.results = results
        self._waiters = _Threads(max(1, jobs), "plx-node")
        self._null: int | None = None
        # Whether stored inputs may reach nodes as read-only links to the store's objects (the engine's
        # Workspace asks; workspace.LINK_INPUTS says when without this executor). As root, only if node
        # processes run without CAP_DAC_OVERRIDE: the plx command drops it for good in the thread that
        # makes the executor (its pool threads inherit that); in another program (plx.run) the caller's
        # thread keeps it, only plx's pool threads drop it (_spawn), and no node starts in the caller's
        # thread (_inline). PLX_LINK_INPUTS=0 or =1 leaves every capability (copies, or links anyway).
        own = procs.owns_process()
        self._drop = os.environ.get("PLX_LINK_INPUTS") not in ("0", "1") and os.geteuid() == 0 and (procs.drop_dac_override() if own else procs.dac_override_droppable())
        self._inline = own or not self._drop
        self.link_inputs = LINK_INPUTS or self._drop
        self._environ = dict(os.environ)  # plx's environment, read once per run (not decoded again per node)
        # One bash started ahead for the next bash node (executors/warm.py), once a run has started
        # one. Not when plx's environment changes bash as it starts (a function, a BASH_ENV the warm
        # shell would read before it knows its node, SHELLOPTS with xtrace that would show its loader);
        # PLX_WARM_SHELLS=0 turns them off.
        self._warm_ok = os.environ.get("PLX_WARM_SHELLS", "1") != "0" and not warm.alters_bash(self._environ)
        self._warm: list[warm.WarmShell] = []  # ready, all for the same run
        self._warming = 0  # being started
        self._warm_target = min(max(1, jobs), WARM_MAX)
        # Runs whose node the engine's thread started: their warm shells are started when the engine
        # waits (idle), not between two nodes it starts one after the other.
        self._rewarm_due: list[str] = []
        self._message: tuple[Job, bytes | None] | None = None  # the last job _warm_for looked at, and its message
        # A script that is one `exec` of a program is started without bash where plx can do exactly
        # what bash would (executors/direct.py); PLX_DIRECT_EXEC=0 leaves every one to bash.
        self._direct_ok = os.environ.get("PLX_DIRECT_EXEC", "1") != "0"
        self._bash_view: dict[str, str] | None = None  # what bash makes of plx's environment (direct.probe)
        self._probed = threading.Lock()
        # The real path of each folder that holds node folders (a run's, under .plx/tmp), found once:
        # taken to stay where it is while the executor lives (direct.real_path).
        self._real_folders: dict[str, str] = {}
        # Every accepted job until its Finished is queued; None while its process is not started yet.
        self.running: dict[str, subprocess.Popen[bytes] | None] = {}
        self._lock = threading.Lock()
        self._canceled = False
        self._canceled_hard = False
        # What nodes leave behind (see plx/procs.py): processes marked with a run id of ours, or in
        # the group or session of one of our leaders, that outlive their node are stopped by a
        # reaper thread, and all of them when the executor closes (every way a run ends).
        self._spawning = 0  # processes being started: their pids are not known yet
        self._reported = False  # whether any job has ended
        self._owner: dict[int, tuple[str, str]] = {}  # every leader pid -> (run id, node)
        self._active: set[tuple[str, str]] = set()  # (run id, node) of jobs not finished
        self._marks: dict[str, tuple[str, str]] = {}  # job id -> (run id, node)
        self._runs: set[str] = set()
        self._done = threading.Event()
        self._guardian: subprocess.Popen[bytes] | None = None
        self._guardian_tried = False
        self._reaper: threading.Thread | None = None
        if _subreaper(True):
            self._reaper = threading.Thread(target=self._reap_loop, name="plx-reaper", daemon=True)
            self._reaper.start()

    def _devnull(self) -> int:
        # One descriptor for every node's stdin, instead of opening /dev/null per node.
        if self._null is None:
            self._null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return self._null

    def submit(self, job: Job) -> None:
        # Ctrl-C and SIGTERM raise KeyboardInterrupt in the main thread: half-way through here they
        # would leave a job registered that never reports, and the engine's drain would wait for it
        # forever (reproduced: TERM sent to a chain hung 5 runs in 12). The engine holds them while it
        # submits (procs.signals_held). A job is started in the calling thread only from the main one.
        self._submit(job, inline_ok=self._inline and threading.current_thread() is threading.main_thread())

    def _submit(self, job: Job, inline_ok: bool) -> None:
        self._devnull()
        mark = (job.env.get("PLX_RUN_ID", ""), job.env.get("PLX_NODE", job.id))
        with self._lock:
            alone = not self.running  # nothing else runs: the caller has nothing better to do than start it
            self.running[job.id] = None
            self._marks[job.id] = mark
            self._active.add(mark)
            new_run = mark[0] not in self._runs
            self._runs.add(mark[0])
        if new_run and self._reaper is not None:
            self._guard(mark[0])
        first = not self._reported and len(self.running) <= WARM_MAX
        if inline_ok and (job.before is None or getattr(job.before, "quick", False)) and (alone or first or self._warm_for(job)):
            # Started here, at once: handing the start to a pool thread costs a thread wake-up
            # between a node's end and its dependent's start (a chain's every step), which a loaded
            # machine makes long. With other nodes running, the caller's time is worth more to
            # them than the wake-up (starting a process waits for its exec), unless a warm shell
            # starts it (one write to a pipe), or no node has ended yet (the first few nodes of a
            # run: measured, the second one started 2.5 ms after the first through a new thread).
            started = self._start(job, inline=True)
            if started is not None:
                self._waiters.submit(self._watch, job, *started)
            return
        self._waiters.submit(self._run, job)

    def _warm_for(self, job: Job) -> bool:
        """Whether a warm shell is ready that would start the job (and nothing else would first)."""
        if not self._warm or not warm.is_bash_job(job.argv) or self._direct_candidate(job):
            return False
        run_id = job.env.get("PLX_RUN_ID", "")
        if not any(s.run_id == run_id for s in self._warm):
            return False
        data = warm.message(job.argv, job.env, os.path.abspath(job.cwd))
        self._message = (job, data)  # _from_warm's, when it starts this job next (in this thread)
        return data is not None

    def idle(self) -> None:
        """The engine has nothing to do until its next event: start the warm shells that the nodes
        it started itself made due."""
        while self._rewarm_due:
            self._rewarm(self._rewarm_due.pop())

    def _guard(self, run_id: str) -> None:
        """Tell the guardian (started with the first node) which run to stop if plx dies."""
        if not self._guardian_tried:
            self._guardian_tried = True
            self._guardian = procs.start_guardian()
        if self._guardian is not None and self._guardian.stdin is not None:
            try:
                self._guardian.stdin.write(f"{run_id} {time.time() - 1:.3f}\n".encode())
                self._guardian.stdin.flush()
            except OSError:  # the guardian is gone: the next plx command still stops what is left
                pass

    def _spawn(self, job: Job) -> tuple[subprocess.Popen[bytes], int, int, bool]:
        """Start the job's process; returns it, the read ends of its stdout and stderr pipes, and
        whether bash was started for it (as its process, or by a warm shell)."""
        plan = self._direct_plan(job)
        if plan is not None:
            started = self._start_direct(job, plan)
            if started is not None:
                return (*started, False)
        taken = self._from_warm(job)
        if taken is not None:
            return (*taken, True)

        def fresh(out_w: int, err_w: int) -> subprocess.Popen[bytes]:
            if self._drop and not procs.drop_dac_override():  # a thread not made by the one that dropped it
                raise OSError(errno.EPERM, "cannot start it without CAP_DAC_OVERRIDE (its stored inputs are links); PLX_LINK_INPUTS=0 gives it copies")
            env = {**self._environ, **job.env}
            argv = [_resolve(job.argv[0], env.get("PATH")), *job.argv[1:]]
            # A new session makes the node a process-group leader: killing the group reaches
            # every grandchild it spawns, and a Ctrl-C on plx's terminal does not reach it directly.
            return subprocess.Popen(argv, cwd=job.cwd, env=env, stdout=out_w, stderr=err_w, stdin=self._null, start_new_session=True)

        started = self._with_pipes(job, fresh)
        assert started is not None  # fresh raises rather than return None
        return (*started, True)

    def _with_pipes(self, job: Job, start: Callable[[int, int], subprocess.Popen[bytes] | None]) -> tuple[subprocess.Popen[bytes], int, int] | None:
        """start(stdout's write end, stderr's) with the reaper told a start is under way; the process
        and the read ends, or None (and nothing left open) when start made none or raised."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        with self._lock:
            self._spawning += 1
        proc = None
        try:
            proc = start(out_w, err_w)
        finally:
            os.close(out_w)
            os.close(err_w)
            if proc is None:
                os.close(out_r)
                os.close(err_r)
            self._spawned(proc, job)
        return (proc, out_r, err_r) if proc is not None else None

    def _spawned(self, proc: subprocess.Popen[bytes] | None, job: Job) -> None:
        """A start is over (proc None: none was made): the reaper may look again, and knows whose pid it is."""
        with self._lock:
            self._spawning -= 1
            if proc is not None:
                self._owner[proc.pid] = (job.env.get("PLX_RUN_ID", ""), job.env.get("PLX_NODE", job.id))

    def _direct_candidate(self, job: Job) -> bool:
        """Whether the job's script is one `exec` of a program, which plx may start without bash."""
        return self._direct_ok and warm.is_bash_job(job.argv) and job.argv[5].startswith("exec ")

    def _direct_plan(self, job: Job) -> direct.Direct | None:
        if not self._direct_candidate(job):
            return None
        with self._probed:  # asked once, by the first thread that needs it
            if self._bash_view is None and self._direct_ok:
                self._bash_view = direct.probe(_resolve("bash", self._environ.get("PATH")), self._environ)
                self._direct_ok = self._bash_view is not None
        if self._bash_view is None:
            return None
        cwd = os.path.abspath(job.cwd)
        parent = os.path.dirname(cwd)
        if parent not in self._real_folders:
            self._real_folders[parent] = os.path.realpath(parent)
        return direct.plan(job.argv[5], job.env, self._environ, self._bash_view, cwd, self._real_folders)

    def _start_direct(self, job: Job, plan: direct.Direct) -> tuple[subprocess.Popen[bytes], int, int] | None:
        """Start the program as bash would exec it; None when it could not be (a redirection that
        cannot be opened, a program that cannot be run): bash then does, and says why as it would."""

        def as_bash_would(out_w: int, err_w: int) -> subprocess.Popen[bytes] | None:
            opened: list[int] = []
            try:
                if self._drop and not procs.drop_dac_override():
                    return None
                fds, opened = direct.open_all(plan, {0: self._devnull(), 1: out_w, 2: err_w}, as_owner=self._drop, known=self._real_folders)
                return subprocess.Popen(plan.argv, executable=plan.program, cwd=job.cwd, env=plan.env, stdin=fds[0], stdout=fds[1], stderr=fds[2], start_new_session=True)
            except OSError:
                return None
            finally:
                for fd in opened:
                    os.close(fd)

        return self._with_pipes(job, as_bash_would)

    def _from_warm(self, job: Job) -> tuple[subprocess.Popen[bytes], int, int] | None:
        """The warm shell, made the job's process, if there is one for the job's run and the job can
        be one (warm.message); None to start a fresh process."""
        if not self._warm:
            return None
        run_id = job.env.get("PLX_RUN_ID", "")
        known, self._message = self._message, None
        data = known[1] if known is not None and known[0] is job else warm.message(job.argv, job.env, os.path.abspath(job.cwd))
        with self._lock:
            shell = next((s for s in self._warm if s.run_id == run_id), None)
            if data is None or shell is None:
                return None
            self._warm.remove(shell)
            # Counted as starting until it is registered: the reaper must not take it for a leftover.
            self._spawning += 1
        sent = False
        try:
            sent = shell.send(data)
        finally:
            self._spawned(shell.proc if sent else None, job)
        return (shell.proc, shell.out_r, shell.err_r) if sent else None

    def _rewarm(self, run_id: str) -> None:
        """Start one more warm shell for the run, unless enough are ready or starting (after a bash
        job started: its run is likely to start another, and this one's start overlaps the node running)."""
        if not self._warm_ok:
            return
        with self._lock:
            # Another run's (a sweep moved on) would wait unused.
            stale = [s for s in self._warm if s.run_id != run_id]
            if stale:
                self._warm = [s for s in self._warm if s.run_id == run_id]
            full = len(self._warm) + self._warming >= self._warm_target or self._canceled
            if not full:
                self._warming += 1
                self._spawning += 1
        for s in stale:
            s.discard()
        if full:
            return
        shell = None
        try:
            if self._drop and not procs.drop_dac_override():
                return  # this thread would give the shell a capability nodes must not have
            bash = _resolve("bash", self._environ.get("PATH"))
            shell = warm.start(bash, self._environ, run_id, self._devnull())
        except OSError:
            self._warm_ok = False  # bash cannot start here: every node says so in its own words
        finally:
            with self._lock:
                self._warming -= 1
                self._spawning -= 1
                if shell is not None and not self._canceled and all(s.run_id == run_id for s in self._warm):
                    self._warm.append(shell)
                    shell = None
            if shell is not None:
                shell.discard()

    def _drop_warm(self) -> None:
        with self._lock:
            shells, self._warm = self._warm, []
        for shell in shells:
            shell.discard()

    def _report(self, ev: Finished) -> None:
        # Queued before the job leaves `running`: once `running` is empty, every Finished is queued.
        self.results.put(ev)
        self._reported = True
        with self._lock:
            self.running.pop(ev.id, None)
            mark = self._marks.pop(ev.id, None)
            if mark is not None:
                self._active.discard(mark)

    def _run(self, job: Job) -> None:
        started = self._start(job, inline=False)
        if started is not None:
            self._watch(job, *started)

    def _start(self, job: Job, inline: bool) -> tuple[subprocess.Popen[bytes], int, int, float] | None:
        """Place the job's inputs and start its process (its pipes and start time); None when it
        could not be started, its Finished reported. inline: in the engine's thread (see idle)."""
        started = time.time()

        def not_run(error: str) -> None:  # reported, never lost: the engine waits for every job's Finished
            self._report(Finished(job.id, None, False, started, time.time(), error=error))

        if self._canceled:
            not_run(NOT_STARTED)
            return None
        try:
            if job.before is not None:
                job.before()
        except Exception as exc:  # e.g. the disk is full
            not_run(f"cannot place the inputs: {exc}")
            return None
        try:
            proc, out_r, err_r, bash = self._spawn(job)
        except Exception as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            not_run(f"cannot start {job.argv[0]}: {why}")
            return None
        with self._lock:
            self.running[job.id] = proc
            canceled = self._canceled
        if canceled:  # cancel_all ran while this process was starting: it did not see it
            stop_group(proc.pid)
        elif bash and self._warm_ok and warm.is_bash_job(job.argv):  # after a program started without bash, the next one likely is too
            run_id = job.env.get("PLX_RUN_ID", "")
            if inline:
                self._rewarm_due.append(run_id)
            else:
                self._rewarm(run_id)
        return proc, out_r, err_r, started

    def _watch(self, job: Job, proc: subprocess.Popen[bytes], out_r: int, err_r: int, started: float) -> None:
        """Pump the node's output into its logs until it is over (in a pool thread), then report it."""
        try:
            timed_out = _pump(proc, {out_r: _LazyFile(job.stdout), err_r: _LazyFile(job.stderr)}, job.timeout)
        except Exception as exc:  # e.g. the disk is full: the node cannot be recorded, so it is stopped
            stop_group(proc.pid)
            proc.wait()
            self._report(Finished(job.id, proc.returncode, False, started, time.time(), error=f"could not record the node's output: {exc}"))
            return
        self._report(Finished(job.id, proc.returncode, timed_out, started, time.time()))

    # ---- what nodes leave behind ----

    def _reap_loop(self) -> None:
        """Stop what finished nodes left running, every so often (never more than ~2 % of a core:
        a scan of /proc costs about 11 µs a process)."""
        interval = 0.2
        while not self._done.wait(interval):
            t0 = time.monotonic()
            try:
                self._sweep(final=False)
            except Exception:  # never let the reaper take plx down; close() sweeps again
                pass
            interval = max(0.2, 50 * (time.monotonic() - t0))

    def _sweep(self, final: bool) -> int:
        """Stop the leftovers of finished nodes (every leftover of ours when final) and reap the
        orphans re-parented to plx once they exit; returns how many processes were signalled.

        Runs under the lock, with no process being started: the pid of a leader not registered
        yet must never be reaped here (its Popen would lose its exit code)."""
        me = os.getpid()
        mysid = os.getsid(0)
        victims: list[tuple[int, int]] = []
        with self._lock:
            if self._spawning and not final:
                return 0
            reap = not self._spawning
            live = {p.pid for p in self.running.values() if p is not None}
            if self._guardian is not None:
                live.add(self._guardian.pid)
            live.update(s.proc.pid for s in self._warm)
            for pid, (state, ppid, pgid, sid, start) in procs.descendants(me).items():
                if pid in live or sid == mysid:  # a node's leader, or plx's own helpers (git)
                    continue
                if state == "Z":
                    if ppid == me and reap:  # an orphan of a node, adopted by plx as subreaper, now exited
                        try:
                            os.waitpid(pid, os.WNOHANG)
                        except ChildProcessError:
                            pass
                    continue
                if pgid in live:  # inside a running node's group: the group's kill reaches it
                    continue
                marks = procs.environ_marks(pid)
                owner: tuple[str, str] | None
                if marks.get(procs.MARKER) in self._runs and "PLX_NODE" not in marks:
                    # A warm shell's leader, or a subshell it forked: they learnt their node after they
                    # started. Known by the session the node started in (a subshell may lead a group).
                    owner = self._owner.get(pid) or self._owner.get(sid) or self._owner.get(pgid) or (marks[procs.MARKER], "")
                elif marks.get(procs.MARKER) in self._runs:
                    owner = (marks[procs.MARKER], marks.get("PLX_NODE", ""))
                else:  # its environment was cleared: known by the group or session it started in
                    owner = self._owner.get(pgid) or self._owner.get(sid)
                if owner is not None and (final or owner not in self._active):
                    victims.append((pid, start))
        if victims:
            procs.kill_checked(victims, 0.0 if self._canceled_hard else GRACE_SECONDS)
        return len(victims)

    def close(self) -> None:
        with self._lock:
            self._canceled = True  # no warm shell is started any more
        self._drop_warm()
        self._done.set()
        if self._reaper is not None:
            self._reaper.join()
            # Every way a run ends comes here: stop whatever any node left, including processes
            # that called setsid or double-forked (they were re-parented to plx), and reap them.
            # Each round stops one more level of a tree of such processes; a process that even KILL
            # cannot end (stuck in the kernel) must not hold plx for long.
            deadline = time.monotonic() + 3 * GRACE_SECONDS + 1
            while self._sweep(final=True) and time.monotonic() < deadline:
                pass
            if self._guardian is not None:  # the run ended as a run ends: nothing left for the guardian to do
                self._release_guardian(self._guardian)
                self._guardian = None
            _subreaper(False)
            self._reaper = None
        self._waiters.shutdown()
        if self._null is not None:
            os.close(self._null)
            self._null = None

    @staticmethod
    def _release_guardian(proc: subprocess.Popen[bytes]) -> None:
        """Tell the guardian the run ended; it exits on reading it. The plx command does not wait for
        that (~1.5 ms at the end of every run): it exits next, and its orphans are reaped for it. In
        another program (plx.run from Python) the guardian is waited for, or it would stay a zombie."""
        try:
            if procs.owns_process():
                assert proc.stdin is not None
                proc.stdin.write(b"done\n")
                proc.stdin.close()
                return
            proc.communicate(b"done\n", timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    def check_resources(self, requests: dict[str, Any]) -> list[str]:
        """Local requests are checked against this machine before the run (resources.check_requests)."""
        return []

    def cancel_all(self, hard: bool = False) -> None:
        """Stop every running job's whole process group (TERM, then KILL; KILL at once if hard).
        Jobs not started yet are not started."""
        with self._lock:
            self._canceled = True
            self._canceled_hard = self._canceled_hard or hard
            leaders = [p for p in self.running.values() if p is not None]
        self._drop_warm()
        if hard:
            for p in leaders:
                _kill_group(p.pid, signal.SIGKILL)
            return
        threads = [threading.Thread(target=stop_group, args=(p.pid,)) for p in leaders]
        if self._reaper is not None:  # what left the nodes' groups is stopped meanwhile, not after
            threads.append(threading.Thread(target=self._sweep, args=(True,)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
