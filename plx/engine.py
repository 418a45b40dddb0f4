"""Runs a plan: schedules ready tasks on an executor, serves the cache, stores outputs, records history.

The engine never prints: it reports events to a Reporter (see report.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import shutil
import signal
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import __version__
from .environment import differences as environment_differences
from .errors import Interrupted, PlxError, RunError, disk_full_message, is_disk_full
from .executors import make_executor
from .executors.base import NOT_STARTED, Executor, Finished, Job
from .extras import Extras
from .hashing import compact, expand, explain, key_of, operation_recipe, task_recipe
from .history import History, RunRecord, new_run_id, now_iso, take_git_read
from .planner import Plan, Source, Task
from .project import Project
from .resources import Pool, check_requests, gpu_ids, machine_memory
from .runners import prepare
from .sources import place as place_sources
from .store import TREE_TYPE, Artifact, KeyLock, Store, content_hash
from .tracking import merge_tags, run_metrics

DONE_OK = {"success", "cached"}


class Reporter(Protocol):
    def run_started(self, title: str, nodes: list[str], jobs: int) -> None: ...
    def node_state(self, node: str, state: str, info: dict[str, Any]) -> None: ...
    def run_finished(self, records: list[dict[str, Any]]) -> None: ...


class NullReporter:
    def run_started(self, title: str, nodes: list[str], jobs: int) -> None:
        pass

    def node_state(self, node: str, state: str, info: dict[str, Any]) -> None:
        pass

    def run_finished(self, records: list[dict[str, Any]]) -> None:
        pass


@dataclass
class RunOptions:
    jobs: int
    no_cache: bool = False
    keep_going: bool = False
    argv: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)  # as given with -p, typed
    rerun_of: str | None = None
    executor: str = "local"  # or "dask"
    scheduler: str | None = None  # the Dask scheduler's address
    rev: dict[str, str] | None = None
    snapshot: dict[str, Any] | None = None
    remote: str | None = None  # the shared cache's URL (SPEC §8), resolved from --remote, PLX_REMOTE, plx.yaml
    labels: dict[str, Any] = field(default_factory=dict)  # name, tags, note (plx/tracking.py)


@dataclass
class _Retry:
    """Look at the cache again for a task: another plx process, or the first of a duplicate, is done."""

    id: str
    held_slot: bool  # True when the wait occupied a -j slot (waiting on another process)


class _GitReady:
    """The background read of git facts is done: record them."""


@dataclass
class _Fetched:
    """The remote's answer for a task's key (a Future of remote.Fetched or None)."""

    id: str
    future: Any


@dataclass
class Avail:
    """An artifact a task can read: stored (path None) or a user's file read in place."""

    art: Artifact
    path: Path | None = None


def snapshot(plan: Plan, lib: Any) -> dict[str, Any]:
    """The graph and every operation and sub-graph file it uses, exactly as run, keyed by project path."""
    from .model import Graph

    data_of = {id(loaded.obj): loaded.doc.data for loaded in lib.files.values() if loaded.obj is not None and loaded.doc is not None}
    files: dict[str, Any] = {}
    todo: list[Any] = [plan.graph]
    while todo:
        obj = todo.pop()
        if obj.file in files or id(obj) not in data_of:
            continue
        files[obj.file] = data_of[id(obj)]
        if isinstance(obj, Graph):
            todo.extend(t for node in obj.nodes.values() if (t := lib.resolve_node(obj, node)) is not None)
    settings: dict[str, Any] = {"operations": lib.project.operation_dirs}
    if lib.project.python:
        settings["python"] = lib.project.python
    return {"graph": plan.graph.file, "files": files, "settings": settings}


@dataclass
class Member:
    """One run of an engine: a sweep plans several, each recorded as its own run."""

    plan: Plan
    overrides: dict[str, Any]
    label: str = ""
    tags: list[str] = field(default_factory=list)  # a sweep combination's own tags: `lr=0.1`


SEP = "\x1f"  # joins a member's index and a task id inside a multi-run engine


class Engine:
    """Runs one or more plans as one DAG on one pool; identical work across them executes once."""

    def __init__(self, project: Project, plan: Plan | list[Member], opts: RunOptions, reporter: Reporter, lib: Any = None):
        self.project = project
        self.members = plan if isinstance(plan, list) else [Member(plan, opts.overrides)]
        self.opts = opts
        self.reporter = reporter
        self.store = Store(project.store)
        self.history = History(project.store)
        self.lib = lib
        self.events: queue.Queue[Finished | _Retry | _GitReady | _Fetched] = queue.Queue()
        self.executor: Executor = make_executor(opts, self.events)
        self.tasks: dict[str, Task] = {}
        self.member: dict[str, int] = {}
        self.local: dict[str, str] = {}
        multi = len(self.members) > 1
        for m, member in enumerate(self.members):
            prefix = f"{m}{SEP}" if multi else ""
            for tid, t in member.plan.tasks.items():
                iid = prefix + tid
                inputs = {n: [Source(task=prefix + x.task, output=x.output) if x.task else x for x in xs] for n, xs in t.inputs.items()}
                self.tasks[iid] = dataclasses.replace(t, id=iid, inputs=inputs, deps={prefix + d for d in t.deps})
                self.member[iid], self.local[iid] = m, tid
        self.state: dict[str, str] = {t: "pending" for t in self.tasks}
        self.results: dict[str, dict[str, Avail]] = {}
        self.keys: dict[str, str] = {}
        self.recipes: dict[str, dict[str, Any]] = {}
        self.op_recipes: dict[str, Any] = {}  # operation recipe hash -> recipe, kept once per run
        self.locks: dict[str, KeyLock] = {}
        self.unlock_after_commit: list[KeyLock] = []  # locks of keys whose cache entries are not committed yet
        # Nodes done whose cache entries await the next commit: reported `success`, and their
        # dependents started, only once the entry is committed (see _commit).
        self.unconfirmed: list[tuple[str, dict[str, Any]]] = []
        self._committed = time.monotonic()
        self.inflight: dict[str, str] = {}  # key -> the task computing it in this run
        self.waiting: dict[str, list[str]] = {}  # key -> tasks of this run waiting on it
        self.workdirs: dict[str, Path] = {}
        self._run_tmp: dict[str, bool] = {}
        self.with_indir: set[str] = set()  # tasks that got a `.in` folder (to remove it, and only it)
        self.big_inputs: set[str] = set()  # tasks whose input copies are worth removing as soon as they end
        self.done_workdirs: list[tuple[Path, bool]] = []  # removed when the run ends (see _finish)
        self.spare_workdirs: list[Path] = []  # finished work folders left empty: renamed for the next node
        self._workdir_mode: int | None = None
        self._git_facts: dict[str, Any] | None = None
        self._git_read: Any = None  # this run's own read of the git facts (history.take_git_read)
        self.down: dict[str, set[str]] = {t: set() for t in self.tasks}
        for t in self.tasks.values():
            for d in t.deps:
                self.down[d].add(t.id)
        self.remaining_deps = {t.id: set(t.deps) for t in self.tasks.values()}
        self.stopping = False
        self.failed: set[int] = set()  # members with a failed node
        self.retries = 0  # _Retry events queued for tasks that hold no slot
        self.interrupted = False
        self.input_arts: dict[Path, Avail] = {}
        self.records: list[RunRecord] = []
        self.extras = Extras(project, self.store)  # per operation: its sources' hashes, its python fingerprint
        self.pool: Pool | None = None  # what is free: -j slots, memory, GPUs (set up by run_all)
        self.attempts: dict[str, list[dict[str, Any]]] = {}  # finished attempts of tasks that were retried
        self.relaunched: set[str] = set()
        self._env_used: dict[int, set[Any]] | None = None
        self.remote: Any = None
        if opts.remote:
            from .remote import open_remote

            # Nothing is imported or contacted until a local miss: a no-op run never reaches the remote.
            self.remote = open_remote(opts.remote, warn=self._warn, progress=getattr(reporter, "transfer", None))
        # Asking the remote is waiting on the network, not work: it holds no -j slot (the remote's own
        # thread pool bounds it). task -> (inputs, key) while asked; then, on a miss, until launched.
        self.fetching: dict[str, tuple[dict[str, list[Avail]], str]] = {}
        self.missed: dict[str, tuple[dict[str, list[Avail]], str]] = {}

    def _warn(self, text: str) -> None:
        getattr(self.reporter, "warning", lambda _t: None)(text)

    def display(self, iid: str) -> str:
        label = self.members[self.member[iid]].label
        return f"{self.local[iid]} [{label}]" if label else self.local[iid]

    def rec(self, iid: str) -> RunRecord:
        return self.records[self.member[iid]]

    # ---- the run ----------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run a single plan; returns its record."""
        return self.run_all()[0]

    def run_all(self) -> list[dict[str, Any]]:
        try:  # before any record: a missing source, interpreter or resource is an error, not a run
            self._check_up_front()
        except BaseException:
            self.executor.close()
            self.store.close()
            raise
        self.history.settle_running()  # a run found dead now: what it left running is stopped
        # Held until the store closes: `plx cache gc` in any process deletes nothing this run uses.
        self.store.acquire_lease()
        seen_ops: set[int] = set()
        for task in self.tasks.values():  # recorded up front, so even an interrupted run can explain itself
            if id(task.op) not in seen_ops:
                seen_ops.add(id(task.op))
                r = operation_recipe(task.op)
                self.op_recipes.setdefault(key_of(r), r)
        for m, member in enumerate(self.members):
            plan = member.plan
            arts = {}
            for name, paths in plan.inputs.items():
                spec = plan.graph.input(name)
                arts[name] = [self.input_arts.setdefault(p, Avail(self.store.hash_input(p, spec.type if spec else "file"), p)) for p in paths]
            data: dict[str, Any] = {
                "id": new_run_id(),
                "graph": plan.graph.name,
                "graph_file": plan.graph.file,
                "status": "running",
                "started": now_iso(),
                "finished": None,
                "duration": None,
                "git": self._git_now(),
                "plx_version": __version__,
                "argv": self.opts.argv,
                "cwd": self.project.rel(Path.cwd()),
                "rerun_of": self.opts.rerun_of,
                "rev": self.opts.rev,
                "params": member.overrides,
                "graph_params": plan.params,
                "sweep": member.label or None,
                "inputs": {n: _input_json(plan.graph.input(n), a) for n, a in arts.items()},
                "outputs": {name: {"node": s.task, "output": s.output} if s.task else {"path": str(s.path)} for name, s in plan.outputs.items()},
                "snapshot": self.opts.snapshot or (snapshot(plan, self.lib) if self.lib else {}),
                "nodes": {t: {"state": "pending"} for t in plan.tasks},
                "op_recipes": self.op_recipes,
                "environments": self._environments_of(m),
                "name": self.opts.labels.get("name"),
                "tags": merge_tags(list(self.opts.labels.get("tags") or []), member.tags),
                "note": self.opts.labels.get("note"),
                "deps": {t: sorted(task.deps) for t, task in plan.tasks.items() if task.deps},  # the DAG, for `plx report`
                **({"remote": self.remote.shown} if self.remote is not None else {}),
            }
            while True:
                try:
                    self.records.append(RunRecord(self.history.dir, data))
                    break
                except FileExistsError:  # two runs started in the same millisecond
                    data["id"] = new_run_id()
        title = ", ".join(r.id for r in self.records) if len(self.records) < 4 else f"{len(self.records)} runs"
        self.reporter.run_started(f"{self.members[0].plan.graph.name} {title}", [self.display(t) for t in self.tasks], self.opts.jobs)
        track = getattr(self.reporter, "track", None)
        if track is not None:  # the live view: where each node's logs go, and its operation (for the ETA)
            op_hash: dict[int, str] = {}
            where = {}
            for t, task in self.tasks.items():
                op = op_hash.setdefault(id(task.op), key_of(operation_recipe(task.op)))
                where[self.display(t)] = (self.rec(t).id, self.local[t], op)
            track(self.project.store, self.members[0].plan.graph.name, where)
        previous = _install_sigterm()
        try:
            try:
                self._loop()
                if self.remote is not None:
                    self.remote.wait()  # the write-through of this run's results
            except KeyboardInterrupt:
                self._interrupt()
            self._commit()  # nodes done but not yet confirmed: their entries are committed, they succeeded
            self._record_git(wait=True)
        finally:
            signal.signal(signal.SIGTERM, previous)
            if self.remote is not None:
                self.remote.close()
            try:
                self.store.close()  # commits the cache entries not committed yet
            finally:
                for lock in [*self.unlock_after_commit, *self.locks.values()]:
                    lock.release()
            self.executor.close()
            for done in [*self.done_workdirs, *((d, False) for d in self.spare_workdirs)]:
                _remove_workdir(*done)
            for record in self.records:  # the run's folder of work folders, unless a failed node's is kept in it
                _remove_empty_tree(self.store.tmp / record.id)
        for t, st in self.state.items():
            if st in ("pending", "running"):
                self._set(t, "canceled" if self.interrupted else "skipped")
        out = []
        for m, record in enumerate(self.records):
            status = "canceled" if self.interrupted else "failed" if m in self.failed else "success"
            record.data["metrics"] = run_metrics(self.project.store, record.data)
            record.finish(status)
            out.append(record.data)
        self.reporter.run_finished(out)
        if self.interrupted:
            raise Interrupted(f"run {', '.join(r['id'] for r in out)} canceled")
        return out

    def _check_up_front(self) -> None:
        """Sources and interpreters of every operation, and resource requests against -j and the machine."""
        for task in self.tasks.values():
            self.extras.of(task.op)
        requests = {self.display(t): task.resources for t, task in self.tasks.items() if task.resources.declared}
        jobs = max(1, self.opts.jobs)
        if self.opts.executor == "dask":  # memory and GPUs are the workers' resources: the cluster checks them
            problems = check_requests(requests, jobs, None, None)
            if not problems and requests:
                problems = self.executor.check_resources(requests)
            self.pool = Pool(jobs, None, None)
        else:
            memory = machine_memory()
            gpus = gpu_ids() if any(r.gpus for r in requests.values()) else []
            problems = check_requests(requests, jobs, memory, gpus)
            self.pool = Pool(jobs, memory or None, gpus)
        if problems:
            raise RunError("; ".join(problems) if len(problems) == 1 else "resources that can never be met:\n  " + "\n  ".join(problems))

    def _environments_of(self, m: int) -> dict[str, Any]:
        """The python environments a member's nodes use, each once: fingerprint hash -> fingerprint."""
        if not self.extras.environments:
            return {}
        if self._env_used is None:  # one pass over the tasks for every member of a sweep
            self._env_used = {}
            for tid, t in self.tasks.items():
                self._env_used.setdefault(self.member[tid], set()).add(self.extras.of(t.op).get("environment"))
        used = self._env_used.get(m, set())
        return {h: fp for h, fp in self.extras.environments.items() if h in used}

    def _loop(self) -> None:
        ready = [t for t, deps in self.remaining_deps.items() if not deps]
        running = 0
        pool = self.pool or Pool(max(1, self.opts.jobs), None, None)
        git_recorded = False
        while True:
            while ready and pool.slots > 0 and not self.stopping:
                # The first ready task that fits in what is free (usually the first one): a task
                # waiting for two slots does not stop one that needs a single slot from starting.
                i = 0 if pool.fits(self.tasks[ready[0]].resources) else next((i for i, t in enumerate(ready) if pool.fits(self.tasks[t].resources)), -1)
                if i < 0:
                    break
                tid = ready.pop(i)
                pool.take(tid, self.tasks[tid].resources)
                if self._start(tid):
                    running += 1
                else:
                    pool.give(tid)
                    for done in [tid, *self._serve_waiters(tid)]:
                        ready.extend(self._settled(done))
            # Nodes that finished wait for one commit of their cache entries before they count as
            # done: at once (with the others whose events are queued now) when a node waits on
            # one of them, else with the next batch.
            if self.unconfirmed and (running == 0 or (self.events.empty() and self._awaited()) or time.monotonic() - self._committed > COMMIT_EVERY):
                ready.extend(self._commit())
                continue
            if running == 0 and self.retries == 0 and not self.fetching:
                if self.stopping or not ready:
                    break
                continue
            if not git_recorded:  # the first nodes are running: now there is time to ask git
                git_recorded = self._record_git(wait=False)
            if time.monotonic() - self._committed > COMMIT_EVERY or len(self.unlock_after_commit) >= 256:
                ready.extend(self._commit())
            try:  # wait no longer than COMMIT_EVERY for the next event: what is pending gets written meanwhile
                event = self.events.get(timeout=COMMIT_EVERY)
            except queue.Empty:
                continue
            if isinstance(event, _GitReady):
                git_recorded = self._record_git(wait=False)
                continue
            if isinstance(event, _Fetched):
                if self._fetched(event):  # a miss: the task runs here when a slot is free
                    ready.insert(0, event.id)
                else:
                    for done in [event.id, *self._serve_waiters(event.id)]:
                        ready.extend(self._settled(done))
                continue
            if isinstance(event, _Retry):
                if event.held_slot:
                    running -= 1
                    pool.give(event.id)
                else:
                    self.retries -= 1
                if self.state[event.id] == "pending":
                    ready.insert(0, event.id)
                continue
            running -= 1
            pool.give(event.id)
            ready.extend(self._finish(event))
            if event.id in self.relaunched:  # a new attempt of a failed node: _finish took its resources again
                self.relaunched.discard(event.id)
                running += 1

    def _awaited(self) -> bool:
        """Whether a task could start now but for the commit of nodes that finished (so: commit at
        once); a fan-in still waiting on other nodes does not count (their commits are batched)."""
        done = {tid for tid, _ in self.unconfirmed}
        for tid in done:
            if self.waiting.get(self.keys[tid]):
                return True
            for d in self.down[tid]:
                rest = self.remaining_deps[d]
                if self.state[d] == "pending" and len(rest) <= len(done) and rest <= done:
                    return True
        return False

    def _commit(self) -> list[str]:
        """Commit the cache entries written since the last time; then the nodes that made them
        succeed (recorded, reported, their dependents released: returned) and other plx processes
        see their keys. A plx killed at any moment thus never leaves a node recorded `success`, or
        a node started on its outputs, without the node's cache entry."""
        self.store.commit_entries()
        released: list[str] = []
        done, self.unconfirmed = self.unconfirmed, []
        for tid, info in done:
            released.extend(self._succeed(tid, info))
        for lock in self.unlock_after_commit:
            lock.release()
        self.unlock_after_commit.clear()
        for r in self.records:
            r.flush()
        getattr(self.reporter, "flush", lambda: None)()
        self._committed = time.monotonic()
        return released

    def _git_now(self) -> dict[str, Any] | None:
        """Git facts if known without waiting: the commit of --rev, or a finished background read."""
        if self.opts.rev:  # the files come from that commit, exactly
            return {"commit": self.opts.rev["commit"], "branch": None, "dirty": False}
        if self._git_facts is None and self._git_read is not None:
            self._git_facts = self._git_read.facts(wait=False)
        return dict(self._git_facts) if self._git_facts is not None else None

    def _record_git(self, wait: bool) -> bool:
        """Fill in the git facts the records were started without; True once done.

        Asking git takes about as long as launching the first nodes, so it happens in the
        background, and the facts are appended as a run event."""
        if self._git_read is None and not self.opts.rev:
            self._git_read = take_git_read(self.project.root)
            self._git_read.when_done(lambda: self.events.put(_GitReady()))
        facts = self._git_now()
        if facts is None and wait:
            self._git_facts = facts = self._git_read.facts(wait=True)
        if facts is None:
            return False
        for r in self.records:
            if r.data.get("git") is None:
                r.run_event(git=facts)
        return True

    # ---- starting a task ----

    def _inputs_of(self, task: Task) -> dict[str, list[Avail]]:
        out: dict[str, list[Avail]] = {}
        for name, sources in task.inputs.items():
            items: list[Avail] = []
            for s in sources:
                if s.task:
                    items.append(self.results[s.task][s.output])  # type: ignore[index]
                else:
                    items.append(self.input_arts[s.path])  # type: ignore[index]
            out[name] = items
        return out

    def _start(self, tid: str) -> bool:
        """Serve tid from the cache, or launch it. True if a process (or a wait) now occupies a slot."""
        if tid in self.missed:  # the remote had nothing: its key is locked and in flight already
            ins, key = self.missed.pop(tid)
            return self._launch(self.tasks[tid], ins, key)
        task = self.tasks[tid]
        ins = self._inputs_of(task)
        recipe = task_recipe(task.op, task.params, {n: [{"hash": a.art.hash, "name": a.art.filename} for a in v] for n, v in ins.items()}, extra=self.extras.of(task.op))
        key = key_of(recipe)
        self.keys[tid], self.recipes[tid] = key, recipe
        use_cache = task.cacheable and not self.opts.no_cache
        if use_cache:
            if self.inflight.get(key) not in (None, tid):
                self.waiting.setdefault(key, []).append(tid)
                self._set(tid, "pending", waiting_for=self.inflight[key])
                return False  # settled later, when the first one finishes
            hit = self.store.lookup(key)
            if hit is not None:
                self._serve(tid, hit)
                return False
            lock = KeyLock(self.store, key)
            if not lock.try_acquire():
                # Another plx process is computing this key: wait for it off the main thread.
                def wait_other(lock: KeyLock = lock) -> None:
                    try:
                        lock.wait()
                    finally:  # whatever happened, the task looks at the cache again
                        self.events.put(_Retry(tid, held_slot=True))

                self._set(tid, "pending", waiting_for="another plx process")
                threading.Thread(target=wait_other, daemon=True).start()
                self.inflight[key] = tid
                return True
            hit = self.store.lookup(key)  # it may have finished between our look and the lock
            if hit is not None:
                lock.release()
                self._serve(tid, hit)
                return False
            self.locks[tid] = lock
            if self.remote is not None and self.remote.usable:
                # A local miss: ask the remote off the loop's thread (the key's lock is held meanwhile).
                self.inflight[key] = tid
                self.fetching[tid] = (ins, key)
                self._set(tid, "pending", waiting_for="the remote")
                future = self.remote.submit(self.remote.fetch, key, self.store)
                future.add_done_callback(lambda f, tid=tid: self.events.put(_Fetched(tid, f)))
                return False
        if task.cacheable:
            self.inflight[key] = tid
        return self._launch(task, ins, key)

    def _fetched(self, ev: _Fetched) -> bool:
        """The remote answered for a task: serve its verified outputs (False), or True: it must run here."""
        from .remote import adopt

        tid = ev.id
        ins, key = self.fetching.pop(tid)
        fetched = None if ev.future.cancelled() or ev.future.exception() is not None else ev.future.result()
        outputs = adopt(self.store, fetched) if fetched is not None else None
        if outputs is not None:
            self.store.record(key, outputs, self.rec(tid).id)
            self.store.commit_entries()  # durable before any node reads these outputs (SPEC §9)
            self._serve(tid, outputs, remote=self.remote.shown)
            self._release(tid)
            return False
        if fetched is not None:
            self._warn(f"remote {self.remote.shown}: the objects of cache entry {key[:12]} are not intact here after download: not used")
        if self.stopping or self.state[tid] != "pending":
            self._release(tid)
            return False
        self.missed[tid] = (ins, key)
        return True

    def _launch(self, task: Task, ins: dict[str, list[Avail]], key: str) -> bool:
        tid = task.id
        record = self.rec(tid)
        node = self.local[tid]
        # Folders cost real time on some disks, so a node gets one (`work`), plus `.in` for its inputs.
        work = self.store.tmp / record.id / self.local[tid]
        indir, scratch = work.with_name(work.name + ".in"), work.with_name(work.name + ".in")
        if "/" in self.local[tid] or not self._run_tmp.get(record.id):
            work.parent.mkdir(parents=True, exist_ok=True)
            self._run_tmp[record.id] = True
        if self.spare_workdirs:
            os.rename(self.spare_workdirs.pop(), work)
        else:
            work.mkdir()
            if self._workdir_mode is None:  # what a new folder looks like here (umask), before any node ran in it
                self._workdir_mode = os.lstat(work).st_mode
        if ins or task.op.runner == "python":
            indir.mkdir()
            self.with_indir.add(tid)
            if sum(a.art.size for items in ins.values() for a in items) > _REMOVE_AT_ONCE_BYTES:
                self.big_inputs.add(tid)
        self.workdirs[tid] = work
        lines: list[str] = []

        def wlog(msg: str) -> None:
            lines.append(f"{now_iso()} {msg}\n")

        attempt = len(self.attempts.get(tid, [])) + 1
        if attempt > 1:
            wlog(f"attempt {attempt} of {task.retries + 1}")
        wlog(f"node {self.local[tid]}: operation {task.op.name} ({task.op.file}), runner {task.op.runner}")
        wlog(f"cache key {key}" + ("" if task.cacheable else " (not cacheable: always runs)") + (" (--no-cache)" if self.opts.no_cache else ""))
        source_files = self.extras.files(task.op)
        source_hashes = self.extras.of(task.op).get("sources", {})
        for rel, src in source_files:
            wlog(f"source {rel}: {work / rel} <- {src} ({source_hashes[rel][:16]})")
        paths: dict[str, list[str]] = {}
        copies: list[tuple[Avail, Path]] = []
        for name, items in ins.items():
            spec = task.op.input(name)
            placed = []
            for i, a in enumerate(items):
                dst = (indir / name / str(i) / a.art.filename) if spec and spec.is_list else (indir / name / a.art.filename)
                if spec is not None and spec.type == "cloud":
                    _place_input(self.store, a, dst)  # now: the template reads the reference it holds
                else:
                    copies.append((a, dst))
                placed.append(str(dst))
                wlog(f"input {name}: {dst} <- {a.path or 'store ' + a.art.hash[:16]} ({a.art.type}, {a.art.size} bytes)")
            paths[name] = placed
        outputs = {o.name: str(work / o.file_name) for o in task.op.outputs}
        for o in task.op.outputs:
            if o.type == "directory":
                (work / o.file_name).mkdir(parents=True, exist_ok=True)
        try:
            prepared = prepare(task.op, task.params, paths, outputs, scratch, python=self.extras.python(task.op))
        except Exception as exc:  # a template error at run time (e.g. a value jinja cannot render)
            why = str(exc) if isinstance(exc, PlxError) else f"cannot render the command: {exc}"
            wlog(f"failed: {why}")
            record.worker(node, lines)
            self._fail_now(tid, why)
            return False
        wlog("command:\n" + prepared.script.rstrip("\n"))
        env = dict(prepared.env)  # the executor adds these to the environment where the node runs
        env["PLX_RUN_ID"], env["PLX_NODE"] = record.id, self.local[tid]
        env["PLX_PROJECT_ROOT"] = str(self.project.fallback_root if self.opts.rerun_of and self.project.fallback_root else self.project.root)
        env["PLX_ATTEMPT"] = str(attempt)
        res = task.resources
        gpus = self.pool.gpus_of(tid) if self.pool is not None else []
        if res.gpus and self.opts.executor == "local":
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        if res.declared:
            wlog(f"resources: {res.cpus} cpus" + (f", {res.memory} bytes of memory" if res.memory else "") + (f", GPUs {','.join(gpus) or res.gpus}" if res.gpus else ""))
        timeout = task.timeout * 60 if task.timeout else None
        store = self.store

        def place_inputs() -> None:  # in the executor's thread: a large copy must not hold up the loop
            try:
                for a, dst in copies:
                    _place_input(store, a, dst)
                if source_files:
                    place_sources(source_files, source_hashes, work)
            except BaseException as exc:
                shutil.rmtree(indir, ignore_errors=True)  # no partial copy is left behind (a full disk)
                if is_disk_full(exc):
                    raise OSError(exc.errno if isinstance(exc, OSError) else None, disk_full_message(store.root)) from None
                raise

        job = Job(tid, prepared.argv, env, work, record.log(node, "stdout"), record.log(node, "stderr"), timeout, before=place_inputs if copies or source_files else None)
        if res.declared:
            job.resources = {"CPU": res.cpus, **({"MEMORY": res.memory} if res.memory else {}), **({"GPU": res.gpus} if res.gpus else {})}
        try:
            self.executor.submit(job)
        except Exception as exc:  # an executor that starts jobs at once (Dask) reports here
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            wlog(f"failed: cannot start the node: {why}")
            record.worker(node, lines)
            self._fail_now(tid, f"cannot start the node: {why}")
            return False
        record.worker(node, lines)
        logs = {s: str(record.log(node, s).relative_to(self.project.store)) for s in ("stdout", "stderr")}
        logs["worker"] = str(record.worker_log.relative_to(self.project.store))
        self._set(tid, "running", started=now_iso(), cache_key=key, logs=logs, **({"attempt": attempt} if attempt > 1 or task.retries else {}))
        return True

    def _fail_now(self, tid: str, reason: str) -> None:
        self._set(tid, "failed", reason=reason, exit_code=None, cache_key=self.keys.get(tid))
        self._release(tid)
        self._after_failure(tid)

    # ---- finishing a task ----

    def _finish(self, ev: Finished) -> list[str]:
        tid = ev.id
        task = self.tasks[tid]
        record, node = self.rec(tid), self.local[tid]
        duration = round(ev.ended - ev.started, 3)
        lines: list[str] = []
        try:

            def wlog(msg: str) -> None:
                lines.append(f"{now_iso()} {msg}\n")

            common: dict[str, Any] = {"exit_code": ev.exit_code, "duration": duration, "finished": now_iso(), "cache_key": self.keys[tid]}
            attempts = getattr(ev, "attempts", None)  # the Dask executor's: one per worker that ran the node
            if attempts:
                common["worker"] = attempts[-1].get("worker")
                common["dask_attempts"] = [{k: at.get(k) for k in ("attempt", "worker", "host", "pid")} for at in attempts]
                for at in attempts:
                    wlog(f"attempt {at.get('attempt')} on Dask worker {at.get('worker')} (host {at.get('host')}, pid {at.get('pid')})")
            state: str | None = None  # set when the node did not succeed
            reason = ""
            if ev.error is not None:  # no process ran
                state, reason = ("canceled" if ev.error == NOT_STARTED else "failed"), ev.error
            else:
                wlog(f"exit code {ev.exit_code}, {duration:.3f} s" + (" (killed: timeout)" if ev.timed_out else ""))
                # A node that fails while the run stops at a first failure failed on its own (plx
                # lets running nodes finish): `failed` with its reason, never `canceled`.
                if ev.timed_out:
                    state, reason = "timeout", f"timed out after {task.timeout} min; the process group was killed"
                elif ev.exit_code != 0:
                    state, reason = "failed", _exit_reason(ev.exit_code, record.log(node, "stderr"))
            work = self.workdirs[tid]
            read: dict[str, bytes] = {}
            if state is None:
                try:
                    problem = _check_outputs(task, work, read)
                except OSError as exc:
                    problem = f"cannot read the outputs: {disk_full_message(self.project.store) if is_disk_full(exc) else exc}"
                if problem:
                    state, reason = "failed", problem
            if state is not None:
                if reason:
                    wlog(f"failed: {reason}")
                if task.retries and state != "canceled":
                    n = len(self.attempts.setdefault(tid, [])) + 1
                    self.attempts[tid].append(
                        {"attempt": n, "state": state, "exit_code": ev.exit_code, "reason": reason, "duration": duration, "finished": common["finished"]}
                    )
                    if n <= task.retries and not self.stopping:
                        wlog(f"attempt {n} of {task.retries + 1} {state}: trying again")
                        record.worker(node, lines)
                        lines.clear()
                        self._try_again(tid, n)
                        return []
                    common["attempts"] = self.attempts[tid]
                self._set(tid, state, **({"reason": reason} if reason else {}), **common)
                self._release(tid)
                if state != "canceled":
                    self._after_failure(tid)
                return []
            stored: dict[str, Artifact] = {}
            try:
                for o in task.op.outputs:
                    p = work / o.file_name
                    art = self.store.put_tree(p, o.file_name) if o.type == TREE_TYPE else self.store.put_file(p, o.type, o.file_name, data=read.get(o.name))
                    stored[o.name] = art
                    wlog(f"output {o.name}: stored {art.hash} ({art.type}, {art.size} bytes)")
            except (OSError, ValueError) as exc:  # a full disk, a link that appeared after the check
                why = disk_full_message(self.project.store) if is_disk_full(exc) else exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                reason = f"cannot store output '{o.name}': {why}"
                wlog(f"failed: {reason}")
                self._set(tid, "failed", reason=reason, **common)
                self._release(tid)
                self._after_failure(tid)
                return []
            if task.cacheable:
                # Committed with others by _commit (one transaction, not one per node); the key's
                # lock is held until then, so another plx waiting on it finds the entry.
                self.store.record(self.keys[tid], stored, self.rec(tid).id)
                wlog("cache entry written")
                if self.remote is not None and self.remote.push and self.remote.usable:
                    self._push(self.keys[tid], stored)
                    wlog(f"pushed to the remote {self.remote.shown} (in the background)")
        finally:
            record.worker(node, lines)
        # Finished folders are removed when the run ends, not now: on some filesystems (ext4 without
        # a journal) every file created soon after a deletion scans the recently freed inodes, which
        # made launches several times slower. Large input copies are removed at once for the disk's sake.
        done = (self.workdirs.pop(tid), tid in self.with_indir)
        if tid in self.big_inputs:
            _remove_workdir(*done)
        elif not done[1] and self._reusable(done[0]):
            self.spare_workdirs.append(done[0])
        else:
            self.done_workdirs.append(done)
        self.results[tid] = {n: Avail(a) for n, a in stored.items()}
        if tid in self.attempts:  # it succeeded after failed attempts
            n = len(self.attempts[tid]) + 1
            common["attempts"] = [
                *self.attempts[tid],
                {"attempt": n, "state": "success", "exit_code": ev.exit_code, "duration": duration, "finished": common["finished"]},
            ]
        info = {"outputs": {n: a.to_json() for n, a in stored.items()}, **common}
        if task.cacheable:
            self.unconfirmed.append((tid, info))  # succeeds at the next commit
            return []
        return self._succeed(tid, info)

    def _succeed(self, tid: str, info: dict[str, Any]) -> list[str]:
        """Record and report tid's success; the tasks that became ready."""
        self._set(tid, "success", **info)
        self._release(tid)
        released = self._settled(tid)
        for other in self._serve_waiters(tid):
            released.extend(self._settled(other))
        return released

    def _push(self, key: str, stored: dict[str, Artifact]) -> None:
        """Write-through after a success: the artifacts, then the entry, in the background."""
        from .remote import RemoteDown, objects_of

        remote = self.remote
        objects = objects_of(self.store, stored)

        def push() -> None:
            try:
                remote.push_entry(key, stored, objects)
            except RemoteDown:
                pass  # warned once already
            except Exception as exc:  # a back end's error on one object: the others still go
                remote.warn(f"cannot push cache entry {key[:12]}: {exc}")

        remote.submit(push)

    def _try_again(self, tid: str, n: int) -> None:
        """Launch attempt n+1 of a failed task: in a fresh work folder, with fresh logs; the failed
        attempt's logs are kept as logs/<node>.attempt<n>.<stream> and its folder until the run ends."""
        task, record, node = self.tasks[tid], self.rec(tid), self.local[tid]
        logs = {}
        for stream in ("stdout", "stderr"):
            path = record.log(node, stream)
            kept = path.with_name(f"{node.rpartition('/')[2]}.attempt{n}.{stream}")
            try:
                os.rename(path, kept)
                logs[stream] = str(kept.relative_to(self.project.store))
            except FileNotFoundError:
                pass  # it wrote nothing there
        self.attempts[tid][-1]["logs"] = logs
        record.node_event(node, attempts=self.attempts[tid])
        work = self.workdirs.pop(tid)
        old = work.with_name(f"{work.name}.attempt{n}")
        os.rename(work, old)
        had_in = tid in self.with_indir
        if had_in:
            os.rename(work.with_name(work.name + ".in"), old.with_name(old.name + ".in"))
            self.with_indir.discard(tid)
        self.big_inputs.discard(tid)
        self.done_workdirs.append((old, had_in))
        if self.pool is not None:
            self.pool.take(tid, task.resources)
        if self._launch(task, self._inputs_of(task), self.keys[tid]):
            self.relaunched.add(tid)
        elif self.pool is not None:
            self.pool.give(tid)

    def _reusable(self, work: Path) -> bool:
        """Whether a finished work folder is exactly as a new one would be: empty, with the usual mode.

        Renaming it for the next node is as fresh as a mkdir and saves creating (and later deleting)
        a folder per node, which is what costs time on some filesystems."""
        try:
            with os.scandir(work) as entries:
                if next(entries, None) is not None:
                    return False
            st = os.lstat(work)
        except OSError:
            return False
        return st.st_mode == self._workdir_mode and st.st_uid == os.getuid()

    def _serve_waiters(self, tid: str) -> list[str]:
        """Once tid is done, the tasks of this run that wait on the same key get its outputs."""
        key = self.keys.get(tid)
        if self.state[tid] not in DONE_OK or key is None:
            return []
        if self.inflight.get(key) == tid:
            del self.inflight[key]
        waiters = self.waiting.pop(key, [])
        outputs = {n: a.art for n, a in self.results[tid].items()}
        for other in waiters:
            self._serve(other, outputs)
        return waiters

    def _serve(self, tid: str, outputs: dict[str, Artifact], remote: str | None = None) -> None:
        self.results[tid] = {n: Avail(a) for n, a in outputs.items()}
        now = now_iso()
        where = f"the remote {remote}" if remote else "the store"
        self.rec(tid).worker(
            self.local[tid],
            [f"{now} cache hit {self.keys[tid]}" + (f" from the remote {remote} (downloaded and verified)" if remote else "") + ": not executed\n"]
            + [f"{now} output {n}: {a.hash} ({a.type}, {a.size} bytes) from {where}\n" for n, a in outputs.items()],
        )
        extra = {"source": "remote"} if remote else {}
        self._set(tid, "cached", cache_key=self.keys[tid], exit_code=None, duration=0.0, outputs={n: a.to_json() for n, a in outputs.items()}, **extra)

    def _settled(self, tid: str) -> list[str]:
        """Tasks that became ready because tid is done (success or cached)."""
        if self.state[tid] not in DONE_OK:
            return []
        ready = []
        for d in sorted(self.down[tid]):
            self.remaining_deps[d].discard(tid)
            if not self.remaining_deps[d] and self.state[d] == "pending":
                ready.append(d)
        return ready

    def _release(self, tid: str) -> None:
        lock = self.locks.pop(tid, None)
        if lock:
            self.unlock_after_commit.append(lock)
        key = self.keys.get(tid)
        if key and self.inflight.get(key) == tid:
            del self.inflight[key]
            if self.state[tid] not in DONE_OK:
                # The first one failed: the waiters compute it themselves, when their turn comes.
                for other in self.waiting.pop(key, []):
                    self.retries += 1
                    self.events.put(_Retry(other, held_slot=False))

    def _after_failure(self, tid: str) -> None:
        self.failed.add(self.member[tid])
        if not self.opts.keep_going:
            self.stopping = True

    def _set(self, tid: str, state: str, **info: Any) -> None:
        self.state[tid] = state
        if state in ("failed", "timeout") and "log" not in info:
            # The log that explains the failure: the node's stderr if it wrote any, else the worker
            # log, where plx wrote why (inputs not placed, outputs missing, a template error, ...).
            stderr = self.rec(tid).log(self.local[tid], "stderr")
            info["log"] = "stderr" if stderr.exists() and stderr.stat().st_size else "worker"
        if "outputs" in info or state in DONE_OK:
            info["recipe"] = compact(self.recipes.get(tid))
        self.rec(tid).node_event(self.local[tid], state=state, **info)
        self.reporter.node_state(self.display(tid), state, info)

    def _interrupt(self) -> None:
        self.stopping = True
        self.reporter.node_state("", "interrupt", {})
        try:
            self.executor.cancel_all()
        except KeyboardInterrupt:
            self.executor.cancel_all(hard=True)  # a second Ctrl-C: kill at once
        while True:  # every job's Finished is queued before the job leaves executor.running
            try:
                ev = self.events.get(timeout=0.1)
            except queue.Empty:
                if not self.executor.running:
                    break
                continue
            except KeyboardInterrupt:
                self.executor.cancel_all(hard=True)
                continue
            if isinstance(ev, Finished):
                info: dict[str, Any] = {"exit_code": ev.exit_code, "duration": round(ev.ended - ev.started, 3), "finished": now_iso(), "cache_key": self.keys.get(ev.id)}
                state = "canceled"
                if ev.error is None and ev.exit_code not in _STOPPED_EXIT_CODES:
                    # It failed on its own (e.g. exit 4) while the run was stopping, not by plx's
                    # signal: recorded `failed` with its own reason (SPEC §9).
                    state = "failed"
                    info["reason"] = _exit_reason(ev.exit_code, self.rec(ev.id).log(self.local[ev.id], "stderr"))
                    self.failed.add(self.member[ev.id])
                elif ev.error is not None and ev.error != NOT_STARTED:
                    state, info["reason"] = "failed", ev.error
                self._set(ev.id, state, **info)
                self._release(ev.id)
        self.interrupted = True


# Exit codes of a node stopped by plx's TERM or KILL (or a Ctrl-C): by the signal itself, or as a
# shell reports it (128 + signal). Anything else, while stopping, is the node's own failure.
_STOPPED_EXIT_CODES = (
    {None, 0}
    | {-s for s in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGPIPE)}
    | {128 + s for s in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT, signal.SIGPIPE)}
)


def _exit_reason(code: int | None, stderr: Path) -> str:
    """Why a node that exited non-zero failed: its exit code (or signal) and its last stderr line."""
    reason = f"exit code {code}" + (f" (killed by signal {-(code or 0)})" if (code or 0) < 0 else "")
    last = _last_line(stderr)
    return f"{reason}: {last}" if last else reason


def _last_line(path: Path, limit: int = 160) -> str:
    """The last non-empty line a node wrote to stderr (what went wrong, usually), shortened."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            lines = [ln.strip() for ln in f.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    if not lines:
        return ""
    return lines[-1] if len(lines[-1]) <= limit else lines[-1][: limit - 1] + "…"


_REMOVE_AT_ONCE_BYTES = 64 * 1024 * 1024
# Cache entries are committed, and the run's event and worker logs flushed, in batches at least
# this often (seconds): a transaction and two writes per node cost more than the rest of a short
# node's bookkeeping. A plx killed at any moment loses at most this much of its record.
COMMIT_EVERY = 0.1


def _remove_workdir(work: Path, with_indir: bool) -> None:
    """Remove a finished node's folders: usually empty once outputs moved, so rmdir is enough."""
    for d in (work, work.with_name(work.name + ".in")) if with_indir else (work,):
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError:
            shutil.rmtree(d, ignore_errors=True)


def _remove_empty_tree(top: Path) -> None:
    """Remove top and the folders below it, except those holding files (a failed node's, kept to look at)."""
    for dirpath, _dirs, _files in os.walk(top, topdown=False):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def _input_json(spec: Any, arts: list[Avail]) -> Any:
    items = [{"path": str(a.path), "hash": a.art.hash} for a in arts]
    return items if spec is not None and spec.is_list else (items[0] if items else None)


def _place_input(store: Store, a: Avail, dst: Path) -> None:
    """A node's private copy of one input: a user's file or folder, or an artifact of the store."""
    if a.path is None:
        store.materialize(a.art, dst)
        return
    _copy_user_input(a.path, dst, a.art.type)
    # The cache key used the hash taken when the run started: a file edited since must not be
    # run (and cached) under that key. The copy is what the node reads, so the copy is checked.
    now = content_hash(dst)
    if now != a.art.hash:
        raise RuntimeError(f"{a.path} changed after the run started (its hash was {a.art.hash[:12]}, it is {now[:12]}); run again")


def _copy_user_input(src: Path, dst: Path, type_: str) -> None:
    from .store import reflink_or_copy

    if src.is_dir():
        shutil.copytree(src, dst, symlinks=False, dirs_exist_ok=True)
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    reflink_or_copy(src, dst)
    os.chmod(dst, 0o755 if type_ == "executable" else 0o644)


def _check_outputs(task: Task, work: Path, read: dict[str, bytes]) -> str | None:
    """Why the outputs of a finished node are unacceptable, or None; keeps the bytes it had to read."""
    for o in task.op.outputs:
        p = work / o.file_name
        try:
            mode = os.lstat(p).st_mode  # one call answers "exists", "link" and "folder"
        except FileNotFoundError:
            return f"output '{o.name}' was not written: expected {o.file_name} in the working directory"
        if stat.S_ISLNK(mode):
            return f"output '{o.name}' ({o.file_name}) is a symbolic link; write a real file inside the working directory"
        if o.type == "directory":
            if not stat.S_ISDIR(mode):
                return f"output '{o.name}' must be a directory, but {o.file_name} is a file"
            problem = _replace_links(o.name, work, p)
            if problem:
                return problem
            continue
        if stat.S_ISDIR(mode):
            return f"output '{o.name}' must be a file, but {o.file_name} is a directory"
        if o.type in ("json", "text", "csv"):
            with open(p, "rb") as f:
                data = read[o.name] = f.read()
            try:
                if o.type == "json":
                    json.loads(data)
                else:
                    data.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"output '{o.name}' is not UTF-8 text (byte {exc.start})"
            except ValueError as exc:
                return f"output '{o.name}' is not valid JSON: {exc}"
    return None


def _replace_links(name: str, work: Path, top: Path) -> str | None:
    """A directory output is stored as files and folders, never links: each link to a file inside
    the work folder is replaced by a copy of that file; any other link fails the node (why, or None)."""
    from .store import reflink_or_copy

    root = work.resolve()
    for dirpath, dirnames, filenames in os.walk(top):
        for entry in dirnames + filenames:
            q = Path(dirpath) / entry
            rel = q.relative_to(work)
            mode = os.lstat(q).st_mode
            if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
                continue
            if not stat.S_ISLNK(mode):
                return f"output '{name}' holds {rel}, which is neither a file nor a folder (a pipe, socket or device)"
            try:
                target = q.resolve(strict=True)
            except (OSError, RuntimeError):
                return f"output '{name}' holds a link {rel} that points to nothing (or to itself); write the file itself"
            if root not in target.parents:
                return f"output '{name}' holds a link {rel} pointing outside the working directory ({os.readlink(q)}); copy the file instead"
            if not target.is_file():
                return f"output '{name}' holds a link {rel} to a folder; write the files themselves"
            copy = q.with_name(f".plx-link-{entry}")
            reflink_or_copy(target, copy)
            os.chmod(copy, 0o755 if target.stat().st_mode & stat.S_IXUSR else 0o644)
            os.replace(copy, q)  # the link itself becomes the content it pointed to
    return None


def _install_sigterm() -> Any:
    """SIGTERM stops a run like Ctrl-C does (only possible from the main thread)."""

    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        return signal.signal(signal.SIGTERM, raise_interrupt)
    return signal.getsignal(signal.SIGTERM)


def explain_plan(project: Project, plan: Plan) -> list[dict[str, Any]]:
    """For --dry-run: per task, whether it would come from cache or run, and why."""
    store = Store(project.store)
    extras = Extras(project, store)
    history = History(project.store)
    last = _last_recipes(history, plan.graph.name, set(plan.tasks))
    op_recipes: dict[str, Any] = {}
    known: dict[str, dict[str, Artifact] | None] = {}
    rows = []
    work: dict[str, str] = {}  # task -> what identifies its work before its key is known (for sweeps)
    for tid, task in plan.tasks.items():
        unknown = [s.task for ss in task.inputs.values() for s in ss if s.task and known.get(s.task) is None]
        if unknown:
            known[tid] = None
            # Its key depends on outputs not made yet: the same operation, params and upstream work
            # is the same work (two combinations of a sweep sharing it run it once).
            ins_w = {n: [f"{work[s.task]}.{s.output}" if s.task else str(s.path) for s in ss] for n, ss in task.inputs.items()}
            work[tid] = key_of({"operation": operation_recipe(task.op), "params": task.params, "after": ins_w})
            row = {"node": tid, "action": "run", "why": [f"after upstream {', '.join(sorted(set(unknown)))} runs"]}
            rows.append({**row, "work": work[tid]} if task.cacheable else row)
            continue
        ins: dict[str, list[dict[str, str]]] = {}
        for name, sources in task.inputs.items():
            items = []
            for s in sources:
                art = known[s.task][s.output] if s.task else store.hash_input(s.path, task.op.input(name).type)  # type: ignore[index,arg-type,union-attr]
                items.append({"hash": art.hash, "name": art.filename})
            ins[name] = items
        recipe = task_recipe(task.op, task.params, ins, op_recipes, extra=extras.of(task.op))
        key = key_of(recipe)
        work[tid] = key
        hit = store.lookup(key) if task.cacheable else None
        known[tid] = hit
        if hit is not None:
            rows.append({"node": tid, "action": "cached", "why": [], "cache_key": key})
        elif not task.cacheable:
            rows.append({"node": tid, "action": "run", "why": ["not cacheable"], "cache_key": key})
        else:
            why = explain(last.get(tid), recipe)
            old_env, new_env = (last.get(tid) or {}).get("_environment"), extras.environments.get(recipe.get("environment") or "")
            changes = environment_differences(old_env, new_env)
            if changes:
                shown = ", ".join(changes[:5]) + (f" and {len(changes) - 5} more" if len(changes) > 5 else "")
                why = [f"python environment changed: {shown}" if w.startswith("python environment changed") else w for w in why]
            rows.append({"node": tid, "action": "run", "why": why, "cache_key": key, "work": key})
    store.close()
    return rows


def _last_recipes(history: History, graph: str, wanted: set[str], scan: int = 50) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for run_id in history.ids()[:scan]:
        try:
            data = history.load(run_id)
        except (OSError, ValueError, RunError):  # a damaged record explains nothing
            continue
        if data.get("graph") != graph:
            continue
        for tid, node in data.get("nodes", {}).items():
            if tid in wanted and tid not in found and node.get("recipe"):
                found[tid] = expand(node["recipe"], data.get("op_recipes") or {})
                env = found[tid].get("environment")
                if env and env in (data.get("environments") or {}):  # its packages, for --dry-run to name what changed
                    found[tid] = {**found[tid], "_environment": data["environments"][env]}
        if len(found) == len(wanted):
            break
    return found
