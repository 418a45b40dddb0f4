"""What nodes leave running: plx as a child subreaper, a guardian that outlives a killed plx, and
the processes of a run found by their PLX_RUN_ID marker (docs/reliability.md, "nothing keeps running").

Every node process carries `PLX_RUN_ID=<run id>` and `PLX_NODE=<node>` in its environment (the
executor sets them, children inherit them). A process that calls `setsid` or double-forks leaves
the node's process group, so killing the group misses it; but while plx is a child subreaper
(`PR_SET_CHILD_SUBREAPER`), such an orphan is re-parented to plx instead of init, so it stays a
descendant of plx, where the executor finds and stops it.

When plx itself dies (SIGKILL, the OOM killer), its guardian stops every process of its runs at
once: a small process in a session of its own that holds the read end of a pipe whose only write
end is plx's, so it reads end-of-file exactly when plx is gone, however it died (a shell loop until
then; only then does it start Python, `stop_runs`). This replaces
`PR_SET_PDEATHSIG` on each node leader, which was built and measured first: it reaches only the
leader (not the rest of the node's tree), and it must be set in the child between fork and exec,
either by `preexec_fn` (Python code between fork and exec in a multi-threaded process, and a full
fork instead of vfork: 2.3x the CPU of a run of 300 trivial nodes) or by exec'ing through
`setpriv --pdeathsig` (one more exec per node: +22 % CPU on the same run). It also fires when the
*thread* that forked the leader exits, not the process: the executor's pool threads fork the
leaders, so it would only be correct because each pool thread waits for the node it started.
Whatever the guardian misses (it was killed too) the next plx command that finds the run
`interrupted` stops (`kill_leftovers`).

As root, node processes run without CAP_DAC_OVERRIDE (`drop_dac_override`), so the read-only
permission bits of a stored input linked into a node stop root's writes as they stop anyone's.
"""

from __future__ import annotations

import _signal
import contextlib
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any

PR_SET_CHILD_SUBREAPER = 36
PR_CAPBSET_READ, PR_CAPBSET_DROP = 23, 24
CAP_DAC_OVERRIDE = 1
MARKER = "PLX_RUN_ID"


@functools.lru_cache(maxsize=1)
def _prctl() -> object | None:
    """libc's prctl(2), callable with five ints; None where there is none (not Linux)."""
    try:
        return _prctl_from_ctypes_core()
    except Exception:  # another Python's _ctypes: the public ctypes package, as documented
        pass
    import ctypes  # here: the guardian, which imports this module, never needs it

    try:
        return ctypes.CDLL(None).prctl
    except (OSError, AttributeError):  # not Linux
        return None


def _prctl_from_ctypes_core() -> object:
    """prctl through `_ctypes`, the C module under the ctypes package, with the three classes ctypes
    itself would make for it (`c_int`, a cdecl function pointer, a library handle). Importing the
    package builds ~30 classes: 1.0-2.0 ms more on the way to a run's first node (measured inside a
    run's imports), for one function of five ints. Tested against ctypes (test_procs_reading)."""
    import _ctypes

    class Int(_ctypes._SimpleCData):  # ctypes.c_int
        _type_ = "i"

    class Function(_ctypes.CFuncPtr):  # ctypes.CDLL's _FuncPtr
        _flags_ = _ctypes.FUNCFLAG_CDECL
        _restype_ = Int

    class Libc:  # what a function pointer reads of ctypes.CDLL(None)
        _handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)  # type: ignore[arg-type]  # None: the program itself, as CDLL(None)

    return Function(("prctl", Libc()))  # type: ignore[arg-type]  # any object with a _handle will do


def set_child_subreaper(on: bool) -> bool:
    """Make orphaned descendants re-parent to this process (Linux 3.4+); False where unsupported."""
    prctl = _prctl()
    if prctl is None:
        return False
    return bool(prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) == 0)  # type: ignore[operator]


_thread = threading.local()
_own_process = False  # set by the plx command (cli.main): nothing but plx runs in this process


def own_process() -> None:
    """This process is the plx command: its threads may give up a capability for good. In another
    program (plx.run from Python), the caller's threads keep theirs (LocalExecutor)."""
    global _own_process
    _own_process = True


def owns_process() -> bool:
    return _own_process


def dac_override_droppable() -> bool:
    """Whether drop_dac_override works here, tried in a short-lived thread of its own: the calling
    thread keeps its capabilities."""
    result: list[bool] = []
    probe = threading.Thread(target=lambda: result.append(_drop_dac_override()), name="plx-cap-probe")
    probe.start()
    probe.join()
    return bool(result and result[0])


def drop_dac_override() -> bool:
    """Take CAP_DAC_OVERRIDE out of the calling thread's capability bounding set (once per thread):
    every process this thread starts from then on, and theirs, runs without it, so root's processes
    cannot write where permission bits forbid (a store object is 0444), while they still read
    everything (CAP_DAC_READ_SEARCH is kept). The thread's own capabilities are unchanged: plx keeps
    writing where it must. The bounding set is per thread and inherited by the threads it creates.

    True when that holds; False where it cannot be made sure: not Linux, no CAP_SETPCAP to drop it,
    or CAP_DAC_OVERRIDE in the inheritable or ambient set (either would give it back at exec)."""
    done = getattr(_thread, "no_dac_override", None)
    if done is None:
        done = _thread.no_dac_override = _drop_dac_override()
    return bool(done)


def _drop_dac_override() -> bool:
    prctl = _prctl()
    if prctl is None:
        return False
    bit = 1 << CAP_DAC_OVERRIDE
    try:
        with open("/proc/thread-self/status", "rb") as f:
            for line in f:
                if line.startswith((b"CapInh:", b"CapAmb:")) and int(line.split()[1], 16) & bit:
                    return False
    except (OSError, ValueError, IndexError):
        return False
    if prctl(PR_CAPBSET_READ, CAP_DAC_OVERRIDE, 0, 0, 0) == 1 and prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:  # type: ignore[operator]
        return False
    return bool(prctl(PR_CAPBSET_READ, CAP_DAC_OVERRIDE, 0, 0, 0) == 0)  # type: ignore[operator]


# ---- /proc ------------------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[str, int, int, int, int] | None:
    """(state, ppid, pgid, sid, starttime in clock ticks since boot) of a process, or None."""
    try:
        fields = _read_small(f"/proc/{pid}/stat").rpartition(b")")[2].split()
    except OSError:
        return None
    try:
        return fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _read_small(path: str) -> bytes:
    """A small /proc file whole, in three system calls: a sweep reads one per process of the
    machine, and Python's buffered open() makes nine (fstat twice, ioctl, lseek twice)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        first = os.read(fd, 4096)
        if len(first) < 4096:  # /proc/PID/stat is a few hundred bytes: whole in one read
            return first
        parts = [first]  # longer (an environment): read to its end, however the kernel cuts the reads
        while chunk := os.read(fd, 65536):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def all_pids() -> list[int]:
    """Every process of the machine (empty without a readable /proc)."""
    try:
        return [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []


def environ_marks(pid: int) -> dict[str, str]:
    """PLX_RUN_ID and PLX_NODE of a process, if it carries them (unreadable or a zombie: {})."""
    try:
        data = _read_small(f"/proc/{pid}/environ")
    except OSError:
        return {}
    out = {}
    for item in data.split(b"\0"):
        if item.startswith((b"PLX_RUN_ID=", b"PLX_NODE=")):
            k, _, v = item.decode("utf-8", "replace").partition("=")
            out[k] = v
    return out


def _boot_time() -> float:
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def descendants(root: int) -> dict[int, tuple[str, int, int, int, int]]:
    """Every process below root (children, theirs, ...), with its stat fields."""
    table = {pid: st for pid in all_pids() if (st := proc_stat(pid)) is not None}
    below: dict[int, list[int]] = {}
    for pid, st in table.items():
        below.setdefault(st[1], []).append(pid)
    out: dict[int, tuple[str, int, int, int, int]] = {}
    todo = list(below.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in out or pid == root:
            continue
        out[pid] = table[pid]
        todo.extend(below.get(pid, []))
    return out


def kill_checked(pids: Iterable[tuple[int, int]], grace: float) -> list[int]:
    """TERM (pid, starttime) pairs, KILL what is left after grace; a pid whose start time changed is
    another process now (PID reuse) and is left alone. Returns the pids signalled."""
    todo = [(pid, start) for pid, start in pids]

    def same(pid: int, start: int) -> bool:
        st = proc_stat(pid)
        return st is not None and st[4] == start and st[0] != "Z"

    sent = []
    for pid, start in todo:
        if same(pid, start):
            try:
                os.kill(pid, signal.SIGTERM)
                sent.append(pid)
            except OSError:
                pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(same(p, s) for p, s in todo):
        time.sleep(0.02)
    for pid, start in todo:
        if same(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return sent


def kill_leftovers(run_id: str, since: float, grace: float = 1.0) -> list[int]:
    """Stop every process still carrying PLX_RUN_ID=run_id that started after `since` (Unix time):
    what a plx that died left running. The start time guards against a reused pid."""
    return kill_runs_leftovers({run_id: since}, grace)


def kill_runs_leftovers(runs: dict[str, float], grace: float = 1.0) -> list[int]:
    """kill_leftovers for several runs (run id -> since) in one scan of /proc."""
    if not os.path.isdir("/proc") or not runs:
        return []
    me = os.getpid()
    boot, tick = _boot_time(), os.sysconf("SC_CLK_TCK")
    table = {pid: st for pid in all_pids() if pid != me and (st := proc_stat(pid)) is not None and st[0] != "Z"}
    recent = {pid for pid, st in table.items() if boot + st[4] / tick >= min(runs.values()) - 1.0}
    marked: set[int] = set()
    for pid in recent:
        run_id = environ_marks(pid).get(MARKER)
        if run_id in runs and boot + table[pid][4] / tick >= runs[run_id] - 1.0:
            marked.add(pid)
    # A process that cleared its environment is still found in the session of a marked one: the
    # node's own session, or one a node process created with setsid. Only a session that is the
    # run's own: its leader marked or gone, every member started after the run, not plx's session.
    sessions = {table[pid][3] for pid in marked} - {os.getsid(0)}
    for pid, st in table.items():
        if st[3] in sessions and (pid not in recent or (pid == st[3] and pid not in marked)):
            sessions.discard(st[3])
    found = [(pid, table[pid][4]) for pid in recent if pid in marked or table[pid][3] in sessions]
    return kill_checked(found, grace) if found else []


def _stop_run(*_: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops a run as Ctrl-C does


class _Gate:
    """Ctrl-C and SIGTERM through one handler (SignalGate): delivered at once, except inside
    signals_held blocks, where the gate only counts and keeps one for the end of the outermost."""

    def __init__(self, deliver_to: dict[int, Any]) -> None:
        self.depth = 0  # signals_held blocks open
        self.pending: tuple[int, Any] | None = None  # the signal to deliver when the outermost one ends
        self.deliver_to = deliver_to  # signal -> the handler it reaches when delivered

    def handle(self, signum: int, frame: Any) -> None:
        if self.depth:
            # One is kept: the first, or a SIGTERM over a Ctrl-C (a program's own Ctrl-C handler may
            # not stop the run; a supervisor's SIGTERM must).
            if self.pending is None or (signum == signal.SIGTERM and self.pending[0] != signal.SIGTERM):
                self.pending = (signum, frame)
            return
        self.pending = None
        self.deliver(signum, frame)

    def release(self) -> None:
        """The outermost held block ended (however it ended): deliver what came meanwhile."""
        if self.pending is not None:
            signum, frame = self.pending
            self.pending = None
            self.deliver(signum, frame)

    def deliver(self, signum: int, frame: Any) -> None:
        handler = self.deliver_to[signum]
        if callable(handler):  # Python's default for Ctrl-C (KeyboardInterrupt), _stop_run, or a program's own
            handler(signum, frame)
        elif handler == signal.SIG_DFL:  # the default action
            _signal.signal(signum, _signal.SIG_DFL)
            os.kill(os.getpid(), signum)


_gate: _Gate | None = None


class SignalGate:
    """Route Ctrl-C and SIGTERM through one handler while it is entered (in the main thread; elsewhere
    it does nothing). A run enters one for its length (stop_run: SIGTERM then stops it as Ctrl-C
    does), so that signals_held costs no system call: swapping both handlers in and out around each
    held step cost 4 `rt_sigaction`s, a few times per node."""

    def __init__(self, stop_run: bool = True) -> None:
        self.stop_run = stop_run
        self.previous: dict[int, Any] = {}  # what __exit__ puts back

    def __enter__(self) -> SignalGate:
        global _gate
        if _gate is not None or threading.current_thread() is not threading.main_thread():
            return self  # another gate (the same process) serves; a thread gets no signal
        handlers: dict[int, Any] = {s: _signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        if None in handlers.values():  # set outside Python: it cannot be called nor put back from here
            return self
        gate = _Gate({**handlers, **({signal.SIGTERM: _stop_run} if self.stop_run else {})})
        # Each is noted before it is replaced: a signal landing in between leaves nothing __exit__
        # cannot put back.
        for s, handler in handlers.items():
            self.previous[s] = handler
            _signal.signal(s, gate.handle)
        _gate = gate
        return self

    def __exit__(self, *exc: object) -> None:
        global _gate
        if not self.previous:
            return
        gate = _gate
        if gate is not None:
            gate.depth += 1  # a signal while the handlers go back is kept, then delivered below
        for s, handler in self.previous.items():
            _signal.signal(s, handler)
        self.previous = {}
        _gate = None
        if gate is not None:
            gate.depth -= 1
            gate.release()


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM for the block; deliver the first that came, after it. In the main thread
    only (elsewhere Python delivers no signal, and the block runs as it is).

    Both raise KeyboardInterrupt in the main thread between any two bytecodes: half-way through a
    step that must be whole (a job registered with its executor but not started: the engine's drain
    waited for it forever; nodes confirmed in part) they would leave a run that cannot end well."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    gate = _gate
    if gate is None:  # outside a run: a gate for this block alone (its signals reach the handlers it replaced)
        with SignalGate(stop_run=False):
            if _gate is None:  # handlers set outside Python: nothing Python could hold
                yield
            else:
                with signals_held():
                    yield
        return
    gate.depth += 1  # a run's gate: only count (a signal that lands after the decrement is delivered at once)
    try:
        yield
    finally:
        gate.depth -= 1
        if not gate.depth:  # also when the block raised: a Ctrl-C is never left for a later block
            gate.release()


# ---- the guardian -------------------------------------------------------------------------


# The guardian waits as a shell (~1 ms of CPU to start) and becomes Python only once plx is gone.
# An interpreter waiting from the start cost ~10 ms of CPU just as the first nodes start: measured,
# the first node's exec took 2-7 ms instead of 0.4 ms beside it. $0 is plx's interpreter.
_GUARDIAN = """trap '' INT HUP
set -f
runs=
while IFS= read -r line; do
  [ "$line" = done ] && exit 0
  set -- $line
  [ $# -eq 2 ] && runs="$runs $1 $2"
done
[ -z "$runs" ] || exec "$0" -S -c 'import sys; from plx.procs import stop_runs; stop_runs(sys.argv[1:])' $runs
"""


_ahead: list[subprocess.Popen[bytes] | None] = []  # the guardian start_guardian_ahead started, until taken


def start_guardian_ahead() -> None:
    """Start the plx command's guardian now, for its local executor to take (start_guardian): started
    beside a run's first nodes, its shell held a CPU while their processes started (on 2 cores, the
    first two nodes of a run started ~3 ms sooner without it, p25 of 32 alternating runs). A run
    that never starts a node (a graph that fails to load, a no-op) leaves it to read end of file
    when plx exits, and it exits too. Started before the executor's thread drops CAP_DAC_OVERRIDE,
    it keeps it, as plx's own process does: it runs no node's code, only plx's stop_runs."""
    if _own_process and not _ahead:
        _ahead.append(_spawn_guardian())


def start_guardian() -> subprocess.Popen[bytes] | None:
    """Start the guardian (see the module's docstring); its stdin is the pipe to it. None: no /proc
    or no shell (the next plx command then stops what a killed run left)."""
    if _ahead and _ahead[0] is not None and _ahead[0].poll() is None:
        return _ahead.pop()
    return _spawn_guardian()


def _spawn_guardian() -> subprocess.Popen[bytes] | None:
    if not os.path.isdir("/proc"):
        return None
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", _GUARDIAN, sys.executable],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not stopped by a signal to plx's process group or terminal
            env=_guardian_env(),
        )
    except OSError:
        return None
    # Not the lowest priority: should plx be killed on a busy machine, it must still get to its work.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, proc.pid, 10)
    return proc


def _guardian_env() -> dict[str, str]:
    """plx's environment without a run's marker, and with plx importable however plx was found."""
    env = {k: v for k, v in os.environ.items() if k not in ("PLX_RUN_ID", "PLX_NODE")}
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = here + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def stop_runs(words: list[str]) -> None:
    """The guardian once plx is gone (its pipe's end of file without `done`): stop every process
    still carrying the run ids it was told, given as `<run id> <start time>` pairs of words."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    runs: dict[str, float] = {}
    for run_id, since in zip(words[::2], words[1::2], strict=False):
        with contextlib.suppress(ValueError):
            runs[run_id] = float(since)
    for _ in range(5):  # again, while stopping one lets another be found (a node starting one more)
        if not kill_runs_leftovers(runs, grace=1.0):
            return
