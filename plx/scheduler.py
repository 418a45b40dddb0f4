"""The scheduler: pure bookkeeping of a run's tasks (dependencies, ready and running tasks, node
states, resource slots). It does no I/O and knows no executor, store or record: the engine asks it
what may start and tells it what happened."""

from __future__ import annotations

import queue

from .records import DONE_OK as DONE_OK  # the states whose outputs exist (dependents may start)
from .records import NodeState
from .resources import Pool, Request

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable


class Scheduler:
    """Tasks by id: which are ready (all dependencies done), which run (holding their share of the
    pool: -j slots, memory, GPUs), and each one's state (`pending`, `running`, `success`, ...)."""

    def __init__(self, deps: dict[str, set[str]], requests: dict[str, Request], pool: Pool) -> None:
        self.requests = requests
        self.pool = pool
        self.state: dict[str, str] = dict.fromkeys(deps, NodeState.PENDING)
        self.down: dict[str, set[str]] = {t: set() for t in deps}
        for t, ds in deps.items():
            for d in ds:
                self.down[d].add(t)
        self.remaining_deps = {t: set(ds) for t, ds in deps.items()}
        self.ready: list[str] = [t for t, ds in self.remaining_deps.items() if not ds]
        self.running = 0  # tasks (or waits on another process) holding a share of the pool
        self.stopping = False  # no new task starts (a failure without --keep-going, or Ctrl-C)

    def take_next(self) -> str | None:
        """The first ready task that fits in what is free (usually the first one: a task waiting for
        two slots does not stop one that needs a single slot from starting), its share taken; None
        when none can start now."""
        if not self.ready or self.pool.slots <= 0 or self.stopping:
            return None
        ready = self.ready
        i = 0 if self.pool.fits(self.requests[ready[0]]) else next((i for i, t in enumerate(ready) if self.pool.fits(self.requests[t])), -1)
        if i < 0:
            return None
        tid = ready.pop(i)
        self.pool.take(tid, self.requests[tid])
        return tid

    def started(self, tid: str) -> None:
        """tid (taken by take_next) now occupies its share: a process, or a wait on another plx."""
        self.running += 1

    def not_started(self, tid: str) -> None:
        """tid (taken by take_next) did not need its share after all: served, waiting in this run, failed."""
        self.pool.give(tid)

    def ended(self, tid: str) -> None:
        """tid's process (or wait) ended: its share is free."""
        self.running -= 1
        self.pool.give(tid)

    def gpus_of(self, tid: str) -> list[str]:
        """The GPU ids a running task was given (for CUDA_VISIBLE_DEVICES)."""
        return self.pool.gpus_of(tid)

    def retake(self, tid: str) -> None:
        """tid runs again at once (a retry), taking its share back before anything else can."""
        self.pool.take(tid, self.requests[tid])

    def again(self, tid: str, first: bool = True) -> None:
        """tid is ready again (to look at the cache once more, or to run after a remote miss)."""
        if self.state[tid] == NodeState.PENDING:
            if first:
                self.ready.insert(0, tid)
            else:
                self.ready.append(tid)

    def done(self, tids: Iterable[str]) -> None:
        """Tasks done (success or cached): their dependents whose dependencies are all done become ready."""
        for tid in tids:
            if self.state[tid] not in DONE_OK:
                continue
            for d in sorted(self.down[tid]):
                self.remaining_deps[d].discard(tid)
                if not self.remaining_deps[d] and self.state[d] == NodeState.PENDING:
                    self.ready.append(d)

    def awaited(self, done: set[str], has_waiters: Callable[[str], bool]) -> bool:
        """Whether a task could start now but for the nodes in `done` (finished, not yet confirmed);
        a fan-in still waiting on other nodes does not count."""
        for tid in done:
            if has_waiters(tid):
                return True
            for d in self.down[tid]:
                rest = self.remaining_deps[d]
                if self.state[d] == NodeState.PENDING and len(rest) <= len(done) and rest <= done:
                    return True
        return False

    def finished(self) -> bool:
        """Nothing runs, and nothing more can start (stopping, or no task ready)."""
        return self.running == 0 and (self.stopping or not self.ready)

    def unfinished(self) -> list[str]:
        return [t for t, st in self.state.items() if st in (NodeState.PENDING, NodeState.RUNNING)]


def drain(executor: Any, events: queue.Queue[Any], finished: Callable[[Any], None], is_result: Callable[[Any], bool]) -> None:
    """After a Ctrl-C: stop every job and wait until each one's result is handed to `finished`.

    A second Ctrl-C (while stopping or while waiting) kills at once. The executor queues every
    job's result before the job leaves `executor.running`, so an empty `running` means all came."""
    try:
        executor.cancel_all()
    except KeyboardInterrupt:
        executor.cancel_all(hard=True)  # a second Ctrl-C: kill at once
    while True:
        try:
            ev = events.get(timeout=0.1)
        except queue.Empty:
            if not executor.running:
                break
            continue
        except KeyboardInterrupt:
            executor.cancel_all(hard=True)
            continue
        if is_result(ev):
            finished(ev)
