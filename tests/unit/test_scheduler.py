"""The scheduler, the cache gate and the Ctrl-C drain, driven without processes: a fake executor
that finishes jobs when told, a fake store and fake key locks. The branches reached in a real run
only by timing (a duplicate key whose first task fails, an entry appearing between the lookup and
the lock, a second Ctrl-C while draining) are forced here."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from plx.cachegate import ASKING_REMOTE, DUPLICATE, HIT, MISS, OTHER_PROCESS, CacheGate, Fetched, Retry, task_key
from plx.errors import UsageError
from plx.executors import make_executor
from plx.executors.base import NOT_STARTED, Executor, Finished, Job, register, registered
from plx.hashing import key_of, operation_recipe, task_recipe
from plx.model import Operation, OutputSpec
from plx.planner import Task
from plx.resources import Pool, Request
from plx.scheduler import Scheduler, drain
from plx.store import Artifact


class FakeExecutor:
    """Takes jobs and finishes them only when the test says so."""

    def __init__(self, results: queue.Queue[Any]) -> None:
        self.results = results
        self.running: dict[str, Any] = {}
        self.submitted: list[str] = []
        self.cancels: list[bool] = []
        self.interrupt_cancel = 0  # how many cancel_all calls raise KeyboardInterrupt (a Ctrl-C meanwhile)

    def submit(self, job: Job) -> None:
        self.running[job.id] = job
        self.submitted.append(job.id)

    def finish(self, tid: str, exit_code: int = 0, error: str | None = None) -> None:
        self.results.put(Finished(tid, exit_code, False, 0.0, 0.0, error))
        del self.running[tid]

    def cancel_all(self, hard: bool = False) -> None:
        self.cancels.append(hard)
        if self.interrupt_cancel:
            self.interrupt_cancel -= 1
            raise KeyboardInterrupt
        for tid in list(self.running):
            self.finish(tid, -15 if not hard else -9)

    def close(self) -> None:
        pass

    def check_resources(self, requests: dict[str, Any]) -> list[str]:
        return []


def job(tid: str) -> Job:
    return Job(tid, ["true"], {}, Path("."), Path("out"), Path("err"), None)


def run_dag(
    deps: dict[str, set[str]], jobs: int, fail: set[str] = frozenset(), requests: dict[str, Request] | None = None, keep_going: bool = False
) -> tuple[Scheduler, list[str], int]:
    """Drive a scheduler to the end through the fake executor, finishing the oldest job first;
    returns the scheduler, the start order and the most jobs that ran at once."""
    events: queue.Queue[Any] = queue.Queue()
    ex = FakeExecutor(events)
    sched = Scheduler(deps, requests or {t: Request() for t in deps}, Pool(jobs, None, None))
    most = 0
    while True:
        while (tid := sched.take_next()) is not None:
            ex.submit(job(tid))
            sched.state[tid] = "running"
            sched.started(tid)
        most = max(most, sched.running)
        if sched.running == 0:
            assert sched.finished()
            break
        ex.finish(next(iter(ex.running)), exit_code=1 if next(iter(ex.running)) in fail else 0)
        ev = events.get_nowait()
        sched.ended(ev.id)
        if ev.exit_code == 0:
            sched.state[ev.id] = "success"
            sched.done([ev.id])
        else:
            sched.state[ev.id] = "failed"
            sched.stopping = not keep_going
    return sched, ex.submitted, most


DIAMOND = {"a": set(), "b": {"a"}, "c": {"a"}, "d": {"b", "c"}, "e": set()}


def test_a_dag_runs_in_dependency_order_within_the_slots() -> None:
    sched, order, most = run_dag(DIAMOND, jobs=2)
    assert order.index("a") < order.index("b") < order.index("d") and order.index("c") < order.index("d")
    assert sorted(order) == sorted(DIAMOND) and most == 2
    assert set(sched.state.values()) == {"success"}


def test_one_slot_runs_one_at_a_time() -> None:
    _, order, most = run_dag(DIAMOND, jobs=1)
    assert most == 1 and len(order) == 5


def test_a_failure_stops_new_starts_and_leaves_its_dependents_pending() -> None:
    sched, order, _ = run_dag(DIAMOND, jobs=1, fail={"a"})
    assert order == ["a"]
    assert sched.unfinished() == ["b", "c", "d", "e"]


def test_keep_going_runs_what_does_not_depend_on_the_failure() -> None:
    sched, order, _ = run_dag(DIAMOND, jobs=1, fail={"b"}, keep_going=True)
    assert "e" in order and "c" in order and "d" not in order
    assert sched.state["d"] == "pending"


def test_a_task_needing_more_slots_does_not_block_smaller_ones() -> None:
    deps = {"big": set(), "small": set(), "small2": set()}
    requests = {"big": Request(cpus=2), "small": Request(), "small2": Request()}
    sched = Scheduler(deps, requests, Pool(2, None, None))
    sched.ready = ["small", "big", "small2"]
    assert sched.take_next() == "small"  # one slot left: big does not fit
    sched.started("small")
    assert sched.take_next() == "small2"  # the next one that fits, past big
    sched.started("small2")
    assert sched.take_next() is None
    sched.ended("small")
    assert sched.take_next() is None  # big needs both
    sched.ended("small2")
    assert sched.take_next() == "big"


def test_memory_is_budgeted_like_slots() -> None:
    deps = {"x": set(), "y": set()}
    sched = Scheduler(deps, {"x": Request(memory=600), "y": Request(memory=600)}, Pool(4, 1000, None))
    assert sched.take_next() == "x"
    sched.started("x")
    assert sched.take_next() is None
    sched.ended("x")
    assert sched.take_next() == "y"


def test_awaited_means_a_dependent_could_start() -> None:
    sched = Scheduler({"a": set(), "b": set(), "c": {"a", "b"}, "d": {"a"}}, {t: Request() for t in "abcd"}, Pool(2, None, None))
    assert sched.awaited({"a"}, lambda _t: False)  # d waits on a alone
    sched.state["d"] = "success"
    assert not sched.awaited({"a"}, lambda _t: False)  # c still waits on b too
    assert sched.awaited({"a", "b"}, lambda _t: False)
    assert sched.awaited({"b"}, lambda t: t == "b")  # a task of this run waits on b's key


# ---- the cache gate ----


class FakeStore:
    """lookup answers from a script: one answer per call (the last one repeats)."""

    def __init__(self, *answers: dict[str, Artifact] | None) -> None:
        self.answers = list(answers)
        self.lookups = 0

    def lookup(self, key: str) -> dict[str, Artifact] | None:
        self.lookups += 1
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def surely_missing(self, key: str) -> bool:
        return False  # nothing read ahead: every look is a lookup


class FakeLock:
    """A key lock: held by another process while `other` is set."""

    made: list[FakeLock] = []

    def __init__(self, store: Any, key: str, other: bool = False) -> None:
        self.key, self.other, self.held, self.released = key, other, False, False
        FakeLock.made.append(self)

    def try_acquire(self) -> bool:
        self.held = not self.other
        return self.held

    def wait(self) -> None:
        pass  # the other process is done at once

    def release(self) -> None:
        self.released, self.held = True, False


OP = Operation("op", "command", "echo", outputs=[OutputSpec("out")])
ART = Artifact(hash="h" * 64, type="text", size=1, filename="out")


def task(tid: str, cacheable: bool = True) -> Task:
    return Task(tid, OP, {"p": 1}, {}, None, cacheable)


def gate(store: FakeStore, other: bool = False, **kw: Any) -> tuple[CacheGate, queue.Queue[Any]]:
    FakeLock.made = []
    events: queue.Queue[Any] = queue.Queue()
    return CacheGate(store, events, lock=lambda s, k: FakeLock(s, k, other), **kw), events  # type: ignore[arg-type]


def test_the_first_of_two_duplicates_fails_and_its_waiter_looks_again() -> None:
    g, events = gate(FakeStore(None))
    first, second = task("m0/t"), task("m1/t")
    assert g.key(first, {}, {}) == g.key(second, {}, {})
    assert g.look(first) == (MISS, None) and FakeLock.made[0].held
    assert g.look(second) == (DUPLICATE, None)  # waits for the first, no lock taken
    assert len(FakeLock.made) == 1
    g.release(first.id, ok=False)  # the first one failed
    assert g.retries == 1
    ev = events.get_nowait()
    assert ev == Retry("m1/t", held_slot=False)
    assert g.unlock_after_commit == FakeLock.made  # its lock goes at the next commit, not before
    g.committed()
    assert FakeLock.made[0].released
    assert g.look(second) == (MISS, None)  # its turn: it computes the key itself
    assert g.inflight[g.keys[second.id]] == second.id


def test_the_first_of_two_duplicates_succeeds_and_serves_its_waiter() -> None:
    g, events = gate(FakeStore(None))
    first, second = task("a"), task("b")
    g.key(first, {}, {}), g.key(second, {}, {})
    g.look(first), g.look(second)
    g.release(first.id, ok=True)
    assert g.waiters(first.id) == ["b"] and events.empty()


def test_an_entry_that_appears_between_the_lookup_and_the_lock_is_served() -> None:
    store = FakeStore(None, {"out": ART})  # a miss, then (after the lock) a hit
    g, _ = gate(store)
    t = task("t")
    g.key(t, {}, {})
    assert g.look(t) == (HIT, {"out": ART})
    assert store.lookups == 2
    assert FakeLock.made[0].released and t.id not in g.locks and not g.inflight


def test_a_key_locked_by_another_process_is_waited_for_off_the_loop() -> None:
    g, events = gate(FakeStore(None), other=True)
    t = task("t")
    g.key(t, {}, {})
    assert g.look(t) == (OTHER_PROCESS, None)
    assert events.get(timeout=5) == Retry("t", held_slot=True)  # then it looks again, holding its slot


def test_no_cache_and_uncacheable_tasks_always_run() -> None:
    g, _ = gate(FakeStore({"out": ART}), use_cache=False)
    t = task("t")
    g.key(t, {}, {})
    assert g.look(t) == (MISS, None) and not FakeLock.made
    g2, _ = gate(FakeStore({"out": ART}))
    u = task("u", cacheable=False)
    g2.key(u, {}, {})
    assert g2.look(u) == (MISS, None) and not g2.inflight


def test_a_local_miss_asks_the_remote_with_the_lock_held() -> None:
    class Remote:
        usable = True

        def submit(self, fn: Any, *args: Any) -> Any:
            from concurrent.futures import Future

            f: Future[Any] = Future()
            f.set_result(None)
            return f

        def fetch(self, key: str, store: Any) -> None:
            return None

    g, events = gate(FakeStore(None), remote=Remote())
    t = task("t")
    g.key(t, {}, {})
    assert g.look(t) == (ASKING_REMOTE, None)
    assert FakeLock.made[0].held
    ev = events.get_nowait()
    assert isinstance(ev, Fetched) and ev.id == "t"


def test_the_key_depends_on_inputs_params_and_extras_not_on_ids() -> None:
    a = Artifact(hash="a" * 64, type="text", size=1, filename="x.txt")
    b = Artifact(hash="b" * 64, type="text", size=1, filename="x.txt")
    k1, recipe = task_key(task("one"), {"i": [a]}, {})
    assert k1 == task_key(task("two"), {"i": [a]}, {})[0]
    assert k1 != task_key(task("one"), {"i": [b]}, {})[0]
    assert k1 != task_key(task("one"), {"i": [a]}, {"sources": {"s.py": "c" * 64}})[0]
    assert recipe["inputs"] == {"i": [{"hash": a.hash, "name": "x.txt"}]}


def test_the_key_with_the_operation_encoded_once_is_the_key_of_the_whole_recipe() -> None:
    """task_key's shortcut (the operation's canonical text reused) gives the key of key_of(recipe)."""
    a = Artifact(hash="a" * 64, type="text", size=1, filename="x é.txt")
    t = Task("t", OP, {"p": "\x00operation\x00", "q": [1.5, None, "é"]}, {}, None, True)
    for extra in ({}, {"environment": "e" * 64}, {"sources": {"s.py": "c" * 64}}, {"environment": "e", "sources": {"b": "d"}}):
        seen: dict[str, Any] = {}
        key, recipe = task_key(t, {"i": [a]}, extra, seen, {})
        assert key == key_of(recipe) == key_of(task_recipe(OP, t.params, {"i": [{"hash": a.hash, "name": a.filename}]}, extra=extra))
        assert seen == {key_of(operation_recipe(OP)): operation_recipe(OP)}


# ---- Ctrl-C ----


def test_a_second_ctrl_c_while_stopping_kills_at_once() -> None:
    events: queue.Queue[Any] = queue.Queue()
    ex = FakeExecutor(events)
    for t in ("a", "b"):
        ex.submit(job(t))
    ex.interrupt_cancel = 1  # a second Ctrl-C arrives while the first stop is being sent
    got: list[Finished] = []
    drain(ex, events, got.append, lambda ev: isinstance(ev, Finished))
    assert ex.cancels == [False, True]
    assert sorted(f.id for f in got) == ["a", "b"] and {f.exit_code for f in got} == {-9}


def test_a_second_ctrl_c_while_waiting_for_results_kills_at_once() -> None:
    class Interrupting(queue.Queue):  # type: ignore[type-arg]
        calls = 0

        def get(self, block: bool = True, timeout: float | None = None) -> Any:
            Interrupting.calls += 1
            if Interrupting.calls == 1:
                raise KeyboardInterrupt
            return super().get(block, timeout)

    events: Interrupting = Interrupting()
    ex = FakeExecutor(events)
    ex.submit(job("slow"))

    def slow_cancel(hard: bool = False) -> None:
        ex.cancels.append(hard)
        if hard:  # only the hard kill ends it
            ex.finish("slow", -9)

    ex.cancel_all = slow_cancel  # type: ignore[method-assign]
    got: list[Finished] = []
    drain(ex, events, got.append, lambda ev: isinstance(ev, Finished))
    assert ex.cancels == [False, True] and [f.exit_code for f in got] == [-9]


def test_drain_waits_for_a_result_still_on_its_way() -> None:
    events: queue.Queue[Any] = queue.Queue()
    ex = FakeExecutor(events)
    ex.submit(job("late"))
    ex.cancel_all = lambda hard=False: None  # type: ignore[method-assign]
    threading.Timer(0.3, lambda: ex.finish("late", error=NOT_STARTED)).start()
    got: list[Finished] = []
    t0 = time.monotonic()
    drain(ex, events, got.append, lambda ev: isinstance(ev, Finished))
    assert [f.error for f in got] == [NOT_STARTED] and time.monotonic() - t0 < 30


# ---- executors by name ----


def test_an_executor_is_added_by_name() -> None:
    class Opts:
        executor = "fake-for-test"
        jobs = 1

    made: list[FakeExecutor] = []

    def factory(opts: Any, results: queue.Queue[Any]) -> Executor:
        made.append(FakeExecutor(results))
        return made[-1]

    register("fake-for-test", factory)
    try:
        ex = make_executor(Opts(), queue.Queue())
        assert ex is made[0] and isinstance(ex, Executor)
    finally:
        registered().pop("fake-for-test")
    with pytest.raises(UsageError, match="unknown executor 'fake-for-test' \\(local or dask\\)"):
        make_executor(Opts(), queue.Queue())
