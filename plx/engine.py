"""Runs a plan: the loop that wires the scheduler (what may start), the cache gate (what must run),
the workspace (work folders, inputs, outputs), an executor (where processes run) and the recorder
(run records, events, what the reporter is told).

The engine never prints: it reports events to a Reporter (see report.py).
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import signal
import sys
import threading
import time
from pathlib import Path

from .cachegate import ASKING_REMOTE, DUPLICATE, HIT, OTHER_PROCESS, CacheGate, Fetched, Retry
from .cachegate import explain_plan as explain_plan  # `plx run --dry-run`
from .errors import Interrupted, PlxError, RunError
from .executors import make_executor
from .executors.base import NOT_STARTED, Finished, Job
from .extras import Extras
from .hashing import key_of, operation_recipe
from .history import now_iso
from .planner import Plan, Source, Task
from .procs import SignalGate, signals_held
from .project import Project
from .recorder import NullReporter as NullReporter
from .recorder import Recorder, input_json
from .records import NodeState
from .resources import Pool, check_requests, gpu_ids, machine_memory
from .runners import prepare, shell_functions_possible
from .scheduler import DONE_OK, Scheduler, drain
from .store import Artifact, Store
from .structs import field, record, replace
from .workspace import LINK_INPUTS, Avail, StoreFailed, Workspace

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from .executors.protocol import Executor
    from .recorder import Reporter


@record
class RunOptions:
    jobs: int
    no_cache: bool = False
    keep_going: bool = False
    argv: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)  # as given with -p, typed
    rerun_of: str | None = None
    executor: str = "local"  # or "dask", or any name registered in plx.executors.base
    scheduler: str | None = None  # the Dask scheduler's address
    rev: dict[str, str] | None = None
    snapshot: dict[str, Any] | None = None
    remote: str | None = None  # the shared cache's URL (SPEC §8), resolved from --remote, PLX_REMOTE, plx.yaml
    labels: dict[str, Any] = field(default_factory=dict)  # name, tags, note (plx/tracking.py)


class _GitReady:
    """The background read of git facts is done: record them."""


@record
class Member:
    """One run of an engine: a sweep plans several, each recorded as its own run."""

    plan: Plan
    overrides: dict[str, Any]
    label: str = ""
    tags: list[str] = field(default_factory=list)  # a sweep combination's own tags: `lr=0.1`


PREFETCH = 512  # ready tasks whose cache entries are read in one batch

SEP = "\x1f"  # joins a member's index and a task id inside a multi-run engine


def merged_tasks(members: list[Member]) -> tuple[dict[str, Task], dict[str, int], dict[str, str]]:
    """The tasks of every member as one DAG (ids prefixed by the member's index when there are
    several); each task's member, and its own id in its member's plan."""
    tasks: dict[str, Task] = {}
    member: dict[str, int] = {}
    local: dict[str, str] = {}
    multi = len(members) > 1
    for m, mem in enumerate(members):
        prefix = f"{m}{SEP}" if multi else ""
        for tid, t in mem.plan.tasks.items():
            iid = prefix + tid
            if not multi:  # ids unchanged: the plan's own task (a copy per task costs 5 µs, at 100,000 nodes 0.5 s)
                tasks[iid] = t
            else:
                inputs = {n: [Source(task=prefix + x.task, output=x.output) if x.task else x for x in xs] for n, xs in t.inputs.items()}
                tasks[iid] = replace(t, id=iid, inputs=inputs, deps={prefix + d for d in t.deps})
            member[iid], local[iid] = m, tid
    return tasks, member, local


class Engine:
    """Runs one or more plans as one DAG on one pool; identical work across them executes once.

    Still about 600 lines: it is the one place where the parts meet (a node's start touches the
    gate, the workspace, the recorder and the executor; its end the workspace, the gate, the store's
    commit and the scheduler), and the order of those steps is what the guarantees of
    docs/reliability.md rest on (an entry committed before the node succeeds, a key's lock released
    only after that commit), so the steps are kept readable side by side here. Each method stays
    under ruff's complexity limit; what can be decided alone lives in the parts."""

    def __init__(self, project: Project, plan: Plan | list[Member], opts: RunOptions, reporter: Reporter, lib: Any = None):
        self.project = project
        self.members = plan if isinstance(plan, list) else [Member(plan, opts.overrides)]
        self.opts = opts
        self.reporter = reporter
        self.store = Store(project.store)
        self.lib = lib
        self.events: queue.Queue[Finished | Retry | _GitReady | Fetched] = queue.Queue()
        # The local executor (a thread pool, the subreaper and its reaper thread) is made when the
        # first node launches: a no-op run never needs it. Others are made now (they check their
        # options and connect).
        self._executor: Executor | None = None if opts.executor == "local" else make_executor(opts, self.events)
        self.tasks, self.member, self.local = merged_tasks(self.members)
        self.recorder = Recorder(project, opts, reporter, [m.label for m in self.members], self.member, self.local)
        # Whether stored inputs may be links is the executor's to say (the local one, once made: see executor).
        self.workspace = Workspace(self.store, getattr(self._executor, "link_inputs", LINK_INPUTS))
        self.sched: Scheduler | None = None  # set up by run_all, once the resource pool is known
        self.state: dict[str, str] = dict.fromkeys(self.tasks, NodeState.PENDING)
        self.results: dict[str, dict[str, Avail]] = {}
        self.op_recipes: dict[str, Any] = {}  # operation recipe hash -> recipe, kept once per run
        # Nodes done whose cache entries await the next commit: reported `success`, and their
        # dependents started, only once the entry is committed (see _commit).
        self.unconfirmed: list[tuple[str, dict[str, Any]]] = []
        # Nodes that ended alone (nothing else running: the run waits on their dependents) whose
        # folders are recycled (workspace.finished) once the loop is about to wait, not between their
        # end and their dependents' start (~65 µs of every hop of a chain). With other nodes running,
        # at once: then the work only moves, and done beside running nodes it took longer.
        self._tidy: list[str] = []
        self._committed = time.monotonic()
        self.failed: set[int] = set()  # members with a failed node
        self.interrupted = False
        self.input_arts: dict[Any, Avail] = {}
        self.extras = Extras(project, self.store)  # per operation: its sources' hashes, its python fingerprint
        # A lone command may be exec'd (runners.prepare) where nodes get plx's own environment, if no
        # bash function can come from it: checked once (the local executor takes it when it opens).
        self._exec_ok = opts.executor == "local" and not shell_functions_possible(os.environ)
        self.pool: Pool | None = None  # what is free: -j slots, memory, GPUs (set up by run_all)
        self.attempts: dict[str, list[dict[str, Any]]] = {}  # finished attempts of tasks that were retried
        self.relaunched: set[str] = set()
        self._env_used: dict[int, set[Any]] | None = None
        self.remote: Any = None
        if opts.remote:
            from .remote import open_remote

            # Nothing is imported or contacted until a local miss: a no-op run never reaches the remote.
            self.remote = open_remote(opts.remote, warn=self._warn, progress=getattr(reporter, "transfer", None))
        self.gate = CacheGate(self.store, self.events, self.remote, use_cache=not opts.no_cache)
        # Asking the remote is waiting on the network, not work: it holds no -j slot (the remote's own
        # thread pool bounds it). task -> inputs while asked; then, on a miss, until launched.
        self.fetching: dict[str, dict[str, list[Avail]]] = {}
        self.missed: dict[str, dict[str, list[Avail]]] = {}
        self._all_hits = True  # no task was anything but served from the store yet
        self._prefixes_due = False  # set by _run_all for a large run: objects/xx folders made once nodes run
        self._collect = False  # whether to turn the collector back on (run_all)

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = make_executor(self.opts, self.events)
            self.workspace.link_inputs = getattr(self._executor, "link_inputs", LINK_INPUTS)
        return self._executor

    def _close_executor(self) -> None:
        if self._executor is not None:
            self._executor.close()

    def _resume_collector(self) -> None:
        if self._collect and not gc.isenabled():
            gc.enable()

    def _warn(self, text: str) -> None:
        getattr(self.reporter, "warning", lambda _t: None)(text)

    @property
    def records(self) -> list[Any]:
        return self.recorder.records

    @property
    def stopping(self) -> bool:
        return self.sched is not None and self.sched.stopping

    def display(self, iid: str) -> str:
        return self.recorder.display(iid)

    # ---- the run ----------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run a single plan; returns its record."""
        return self.run_all()[0]

    def run_all(self) -> list[dict[str, Any]]:
        """Check, record, loop, settle; the records of every member."""
        # The executor's threads (a node's inputs placed, its process started, its output pumped)
        # make a dozen system calls a node, and after each one wait for the interpreter's lock,
        # which the engine's thread, busy with the other nodes, hands over only at its own next
        # system call or after the switch interval (5 ms by default). A shorter one, for the run:
        # wide-1000 took 1.70 against 1.87 s (medians of 6, alternating; 0.5 and 0.1 ms: 1.80 s).
        try:
            with _short_switch_interval():
                return self._run_all()
        finally:
            self._resume_collector()  # paused by _run_all (until the first task that runs, or the end)

    def _run_all(self) -> list[dict[str, Any]]:
        try:  # before any record: a missing source, interpreter or resource is an error, not a run
            self._check_up_front()
        except BaseException:
            self._close_executor()
            self.store.close()
            raise
        self.recorder.history.settle_running()  # a run found dead now: what it left running is stopped
        # Held until the store closes: `plx cache gc` in any process deletes nothing this run uses.
        self.store.acquire_lease()
        self.store.open_ahead()  # meanwhile the records are written
        # Made once the first nodes run (_loop): beside the start, its 256 new folders slowed the first
        # node's exec by ~2 ms and its start by ~5 (measured, chain-200).
        self._prefixes_due = len(self.tasks) >= PREFIXES_FROM
        # The collector is off until a task is not served from the store (_start), else until the
        # records are final: what a no-op run allocates (records, results) is acyclic or lives to the
        # end, and a 100,000-node no-op spent half a second in collections finding nothing.
        self._collect = gc.isenabled()
        gc.disable()
        self._scheduler()
        self._start_records()
        self.recorder.announce(self.members[0].plan.graph.name, self.tasks)
        signals = SignalGate()  # Ctrl-C and SIGTERM both stop the run (KeyboardInterrupt), but never inside signals_held
        gc.freeze()  # the plan and the records live until the run ends: the collector need not scan them again and again
        closing = None  # the store's databases, closing in a thread while the run ends
        try:
            try:
                try:
                    signals.__enter__()
                    self._loop()
                    if self.remote is not None:
                        self.remote.wait()  # the write-through of this run's results
                    self._commit()  # nodes done but not yet confirmed: their entries are committed, they succeeded
                    self.recorder.record_git(wait=True, when_read=self._git_ready)
                except KeyboardInterrupt:  # also while the last nodes are confirmed or git is read: the run ends interrupted
                    self._interrupt()
                    self._commit()
                    self.recorder.record_git(wait=True, when_read=self._git_ready)
            finally:
                gc.unfreeze()
                signals.__exit__()
                with contextlib.suppress(OSError):  # an error ends the run early: its events so far are written (plx ends without Python's teardown)
                    self.recorder.flush()
                if self.remote is not None:
                    self.remote.close()
                try:
                    closing = self.store.close(wait=False)  # commits the cache entries not committed yet
                finally:
                    self.gate.close()
                self._close_executor()
                self._tidy_up()
                self.workspace.close([r.id for r in self.records])
            for t, st in self.state.items():
                if st in (NodeState.PENDING, NodeState.RUNNING):
                    self._set(t, NodeState.CANCELED if self.interrupted else NodeState.SKIPPED)
            out = self.recorder.finish(self.interrupted, self.failed)
        finally:
            if closing is not None:
                closing.join()
        if self.interrupted:
            raise Interrupted(f"run {', '.join(r['id'] for r in out)} canceled")
        return out

    def _start_records(self) -> None:
        """One record per member, before anything runs, so even an interrupted run can explain itself."""
        seen_ops: set[int] = set()
        for task in self.tasks.values():
            if id(task.op) not in seen_ops:
                seen_ops.add(id(task.op))
                r = operation_recipe(task.op)
                self.op_recipes.setdefault(key_of(r), r)
        for m, member in enumerate(self.members):
            plan = member.plan
            arts = {}
            for name, paths in plan.inputs.items():
                spec = plan.graph.input(name)
                new = [p for p in dict.fromkeys(paths) if p not in self.input_arts]
                for p, art in zip(new, self.store.hash_inputs(new, spec.type if spec else "file"), strict=True):
                    self.input_arts[p] = Avail(art, p)
                arts[name] = [self.input_arts[p] for p in paths]
            inputs = {n: input_json(plan.graph.input(n), a) for n, a in arts.items()}
            self.recorder.start(plan, member, inputs, self.op_recipes, self._environments_of(m), self.lib, self.remote.shown if self.remote is not None else None)

    def _check_up_front(self) -> None:
        """Sources and interpreters of every operation, and resource requests against -j and the machine."""
        for task in self.tasks.values():
            self.extras.of(task.op)
        requests = {self.display(t): task.resources for t, task in self.tasks.items() if task.resources.declared}
        jobs = max(1, self.opts.jobs)
        if self.opts.executor != "local":  # memory and GPUs are the workers' resources: the cluster checks them
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

    def _scheduler(self) -> Scheduler:
        sched = Scheduler(
            {t: task.deps for t, task in self.tasks.items()}, {t: task.resources for t, task in self.tasks.items()}, self.pool or Pool(max(1, self.opts.jobs), None, None)
        )
        sched.state = self.state  # one dict of states: the engine's records and the scheduler's readiness
        self.sched = sched
        return sched

    def _loop(self) -> None:
        sched = self.sched or self._scheduler()
        git_recorded = False
        while True:
            self._start_ready(sched)
            # Nodes that finished wait for one commit of their cache entries before they count as
            # done: at once (with the others whose events are queued now) when a node waits on
            # one of them, else with the next batch.
            if self.unconfirmed and (sched.running == 0 or (self.events.empty() and self._awaited()) or time.monotonic() - self._committed > COMMIT_EVERY):
                self._commit()
                continue
            if sched.running == 0 and self.gate.retries == 0 and not self.fetching:
                if sched.finished():
                    break
                continue
            if not git_recorded:  # the first nodes are running: now there is time to ask git
                git_recorded = self.recorder.record_git(wait=False, when_read=self._git_ready)
            if self._prefixes_due and self._executor is not None:
                self._prefixes_due = False
                threading.Thread(target=self.store.make_prefixes, name="plx-prefixes", daemon=True).start()
            if time.monotonic() - self._committed > COMMIT_EVERY or len(self.gate.unlock_after_commit) >= 256:
                self._commit()
            if self._tidy and (self.events.empty() or len(self._tidy) >= TIDY_AFTER):
                self._tidy_up()
            idle = getattr(self._executor, "idle", None)  # optional: work the executor put off while the loop was busy
            if idle is not None and self.events.empty():
                idle()
            try:  # wait no longer than COMMIT_EVERY for the next event: what is pending gets written meanwhile
                event = self.events.get(timeout=COMMIT_EVERY)
            except queue.Empty:
                continue
            if isinstance(event, _GitReady):
                git_recorded = self.recorder.record_git(wait=False, when_read=self._git_ready)
            else:
                self._on_event(event)

    def _recycle(self, tid: str) -> None:
        """A succeeded node's folders: for its dependents to start first when the run waits on them (see _tidy)."""
        if self.sched is not None and self.sched.running == 0:
            self._tidy.append(tid)
        else:
            self.workspace.finished(tid)

    def _tidy_up(self) -> None:
        """Recycle the folders of the nodes that succeeded since the last time (see _tidy)."""
        while self._tidy:
            self.workspace.finished(self._tidy.pop())

    def _start_ready(self, sched: Scheduler) -> None:
        """Start (or serve from the store) the tasks that are ready, while there are free slots."""
        while (tid := sched.take_next()) is not None:
            if tid not in self.gate.keys and self.gate.use_cache and self.tasks[tid].cacheable:  # the next tasks' entries, in one batch
                # The first batch is PREFETCH tasks; once it was all hits (a no-op so far), the
                # rest of what is ready in one (its rows then read by a scan: TextTable.texts).
                batch = len(sched.ready) + 1 if self._all_hits and self.gate.keys else PREFETCH
                self._prefetch([tid, *sched.ready[: batch - 1]])
            if self._start(tid):
                sched.started(tid)
            else:
                sched.not_started(tid)
                self._done([tid, *self._serve_waiters(tid)])

    def _on_event(self, event: Finished | Retry | Fetched) -> None:
        """What the loop does with an executor's result, a retry or the remote's answer."""
        sched = self.sched
        assert sched is not None
        if isinstance(event, Fetched):
            if self._fetched(event):  # a miss: the task runs here when a slot is free
                sched.again(event.id)
            else:
                self._done([event.id, *self._serve_waiters(event.id)])
        elif isinstance(event, Retry):
            if event.held_slot:
                sched.ended(event.id)
            else:
                self.gate.retries -= 1
            sched.again(event.id)
        else:
            sched.ended(event.id)
            self._finish(event)
            if event.id in self.relaunched:  # a new attempt of a failed node: _finish took its resources again
                self.relaunched.discard(event.id)
                sched.started(event.id)

    def _git_ready(self) -> None:
        self.events.put(_GitReady())

    def _done(self, tids: list[str]) -> None:
        if self.sched is not None:
            self.sched.done(tids)

    def _awaited(self) -> bool:
        """Whether a task could start now but for the commit of nodes that finished (so: commit at
        once); a fan-in still waiting on other nodes does not count (their commits are batched)."""
        assert self.sched is not None
        return self.sched.awaited({tid for tid, _ in self.unconfirmed}, self.gate.has_waiters)

    def _commit(self) -> None:
        """Commit the cache entries written since the last time; then the nodes that made them
        succeed (recorded, reported, their dependents released) and other plx processes see their
        keys. A plx killed at any moment thus never leaves a node recorded `success`, or a node
        started on its outputs, without the node's cache entry. Ctrl-C and SIGTERM wait until the
        nodes are confirmed (all of them, not some: the rest would be recorded canceled)."""
        with signals_held():
            self.store.commit_entries()
            done, self.unconfirmed = self.unconfirmed, []
            for tid, info in done:
                self._succeed(tid, info)
            self.gate.committed()
            self.recorder.flush()
        self._committed = time.monotonic()

    # ---- starting a task ----

    def _inputs_of(self, task: Task) -> dict[str, list[Avail]]:
        out: dict[str, list[Avail]] = {}
        for name, sources in task.inputs.items():
            items: list[Avail] = []
            for s in sources:
                if s.task:
                    items.append(self.results[s.task][s.output])  # type: ignore[index]
                else:
                    items.append(self.input_arts[s.path])
            out[name] = items
        return out

    def _prefetch(self, tids: list[str]) -> None:
        """The keys of tasks about to start, their cache entries read in one batch (PREFETCH at a
        time, so that a cold run's first launch does not wait for every key; all that are ready
        once every task so far was served from the store)."""
        todo = [self.tasks[t] for t in tids if t not in self.gate.keys and self.tasks[t].cacheable]
        if len(todo) > 1:
            self.store.prefetch([self._key(t, self._inputs_of(t)) for t in todo])

    def _key(self, task: Task, ins: dict[str, list[Avail]]) -> str:
        """A task's cache key; computed once (its inputs do not change once it is ready)."""
        known = self.gate.keys.get(task.id)
        return known if known is not None else self.gate.key(task, {n: [a.art for a in v] for n, v in ins.items()}, self.extras.of(task.op))

    def _start(self, tid: str) -> bool:
        """Serve tid from the cache, or launch it. True if a process (or a wait) now occupies a slot."""
        task = self.tasks[tid]
        if tid in self.missed:  # the remote had nothing: its key is locked and in flight already
            return self._launch(task, self.missed.pop(tid), self.gate.keys[tid])
        known = self.gate.keys.get(tid)  # read ahead with the batch (_prefetch): its inputs are needed only to launch it
        ins = self._inputs_of(task) if known is None else None
        key = known if known is not None else self._key(task, ins or {})
        verdict, hit = self.gate.look(task)
        if verdict == HIT:
            assert hit is not None
            self._serve(tid, hit)
            return False
        self._all_hits = False
        self._resume_collector()
        if verdict == DUPLICATE:
            self._set(tid, NodeState.PENDING, waiting_for=self.gate.inflight[key])
            return False  # settled later, when the first one finishes
        if verdict == OTHER_PROCESS:
            self._set(tid, NodeState.PENDING, waiting_for="another plx process")
            return True
        if verdict == ASKING_REMOTE:
            self.fetching[tid] = ins if ins is not None else self._inputs_of(task)
            self._set(tid, NodeState.PENDING, waiting_for="the remote")
            return False
        return self._launch(task, ins if ins is not None else self._inputs_of(task), key)

    def _fetched(self, ev: Fetched) -> bool:
        """The remote answered for a task: serve its verified outputs (False), or True: it must run here."""
        from .remote import adopt

        tid = ev.id
        ins, key = self.fetching.pop(tid), self.gate.keys[tid]
        fetched = None if ev.future.cancelled() or ev.future.exception() is not None else ev.future.result()
        outputs = adopt(self.store, fetched) if fetched is not None else None
        if outputs is not None:
            self.store.record(key, outputs, self.recorder.rec(tid).id)
            self.store.commit_entries()  # durable before any node reads these outputs (SPEC §9)
            self._serve(tid, outputs, remote=self.remote.shown)
            self._release(tid)
            return False
        if fetched is not None:
            self._warn(f"remote {self.remote.shown}: the objects of cache entry {key[:12]} are not intact here after download: not used")
        if self.stopping or self.state[tid] != NodeState.PENDING:
            self._release(tid)
            return False
        self.missed[tid] = ins
        return True

    def _launch(self, task: Task, ins: dict[str, list[Avail]], key: str) -> bool:
        """Make the node's work folder, render its command and hand its job to the executor.

        True when the executor took it; a node that cannot start fails here (with its reason).
        Long because the worker log tells each step in the order it happens (folder, sources,
        inputs, command, resources): the parts each do one step, this reads them in sequence."""
        tid = task.id
        record, node = self.recorder.rec(tid), self.local[tid]
        self.executor  # noqa: B018 - made (if not yet) before the inputs are placed: it says whether they may be links
        work, indir = self.workspace.open(tid, record.id, node, ins, task.op.runner == "python")
        lines: list[str] = []

        def wlog(msg: str) -> None:
            lines.append(f"{now_iso()} {msg}\n")

        attempt = len(self.attempts.get(tid, [])) + 1
        if attempt > 1:
            wlog(f"attempt {attempt} of {task.retries + 1}")
        wlog(f"node {node}: operation {task.op.name} ({task.op.file}), runner {task.op.runner}")
        wlog(f"cache key {key}" + ("" if task.cacheable else " (not cacheable: always runs)") + (" (--no-cache)" if self.opts.no_cache else ""))
        source_files = self.extras.files(task.op)
        source_hashes = self.extras.of(task.op).get("sources", {})
        for rel, src in source_files:
            wlog(f"source {rel}: {work / rel} <- {src} ({source_hashes[rel][:16]})")
        paths, copies = self.workspace.place(task, ins, indir, wlog)
        outputs = {o.name: str(work / o.file_name) for o in task.op.outputs}
        for o in task.op.outputs:
            if o.type == "directory":
                (work / o.file_name).mkdir(parents=True, exist_ok=True)
        try:
            prepared = prepare(task.op, task.params, paths, outputs, indir, python=self.extras.python(task.op), exec_ok=self._exec_ok)
        except Exception as exc:  # a template error at run time (e.g. a value jinja cannot render)
            why = str(exc) if isinstance(exc, PlxError) else f"cannot render the command: {exc}"
            return self._not_launched(tid, lines, wlog, why, why)
        wlog("command:\n" + prepared.script.rstrip("\n"))
        env = self._job_env(task, prepared.env, attempt, wlog)
        timeout = task.timeout * 60 if task.timeout else None
        job = Job(
            tid,
            prepared.argv,
            env,
            work,
            record.log(node, "stdout"),
            record.log(node, "stderr"),
            timeout,
            before=self.workspace.placer(copies, source_files, source_hashes, work, indir),
        )
        res = task.resources
        if res.declared:
            job.resources = {"CPU": res.cpus, **({"MEMORY": res.memory} if res.memory else {}), **({"GPU": res.gpus} if res.gpus else {})}
        try:
            with signals_held():  # a job half-registered with its executor would never report: drain would wait forever
                self.executor.submit(job)
        except Exception as exc:  # an executor that starts jobs at once (Dask) reports here
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return self._not_launched(tid, lines, wlog, f"cannot start the node: {why}", f"cannot start the node: {why}")
        self.recorder.worker(tid, lines)
        self._set(tid, NodeState.RUNNING, started=now_iso(), cache_key=key, logs=self.recorder.logs(tid), **({"attempt": attempt} if attempt > 1 or task.retries else {}))
        return True

    def _job_env(self, task: Task, prepared: dict[str, str], attempt: int, wlog: Any) -> dict[str, str]:
        """What the executor adds to the environment where the node runs (and the resources it got, logged)."""
        tid = task.id
        env = dict(prepared)
        env["PLX_RUN_ID"], env["PLX_NODE"] = self.recorder.rec(tid).id, self.local[tid]
        env["PLX_PROJECT_ROOT"] = str(self.project.fallback_root if self.opts.rerun_of and self.project.fallback_root else self.project.root)
        env["PLX_ATTEMPT"] = str(attempt)
        res = task.resources
        gpus = self.sched.gpus_of(tid) if self.sched is not None else []
        if res.gpus and self.opts.executor == "local":
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        if res.declared:
            wlog(f"resources: {res.cpus} cpus" + (f", {res.memory} bytes of memory" if res.memory else "") + (f", GPUs {','.join(gpus) or res.gpus}" if res.gpus else ""))
        return env

    def _not_launched(self, tid: str, lines: list[str], wlog: Any, logged: str, reason: str) -> bool:
        wlog(f"failed: {logged}")
        self.recorder.worker(tid, lines)
        self._fail_now(tid, reason)
        return False

    def _fail_now(self, tid: str, reason: str) -> None:
        self._set(tid, NodeState.FAILED, reason=reason, exit_code=None, cache_key=self.gate.keys.get(tid))
        self._release(tid)
        self._after_failure(tid)

    # ---- finishing a task ----

    def _finish(self, ev: Finished) -> None:
        """A node's process ended: check and store its outputs (or fail it, or try it again)."""
        tid = ev.id
        task = self.tasks[tid]
        lines: list[str] = []

        def wlog(msg: str) -> None:
            lines.append(f"{now_iso()} {msg}\n")

        try:
            common = self._common(ev, wlog)
            read: dict[str, bytes] = {}
            state, reason = self._judge(ev, task, read, wlog)
            if state is not None:
                if reason:
                    wlog(f"failed: {reason}")
                self._failed(tid, ev, state, reason, common, lines)
                return
            try:
                stored = self.workspace.store_outputs(task, tid, read, wlog)
            except StoreFailed as exc:
                wlog(f"failed: {exc}")
                self._set(tid, NodeState.FAILED, reason=str(exc), **common)
                self._release(tid)
                self._after_failure(tid)
                return
            if task.cacheable:
                self._cache(tid, stored, wlog)
        finally:
            self.recorder.worker(tid, lines)
        self._recycle(tid)
        self.results[tid] = {n: Avail(a) for n, a in stored.items()}
        if tid in self.attempts:  # it succeeded after failed attempts
            n = len(self.attempts[tid]) + 1
            common["attempts"] = [
                *self.attempts[tid],
                {"attempt": n, "state": NodeState.SUCCESS, "exit_code": ev.exit_code, "duration": common["duration"], "finished": common["finished"]},
            ]
        info = {"outputs": {n: a.to_json() for n, a in stored.items()}, **common}
        if task.cacheable:
            self.unconfirmed.append((tid, info))  # succeeds at the next commit
        else:
            self._succeed(tid, info)

    def _judge(self, ev: Finished, task: Task, read: dict[str, bytes], wlog: Any) -> tuple[str | None, str]:
        """The state of a node whose process ended, and why (None: it succeeded): its exit, its
        inputs linked to the store (checked, whatever the outcome), its outputs (read: files the check read)."""
        changed = self.workspace.release_inputs(ev.id)
        state, reason = self._outcome(ev, task, wlog)
        if changed:
            wlog(changed)
            if state is None:
                state, reason = NodeState.FAILED, changed
        if state is None:
            problem = self.workspace.check(task, ev.id, read)
            if problem:
                state, reason = NodeState.FAILED, problem
        return state, reason

    def _common(self, ev: Finished, wlog: Any) -> dict[str, Any]:
        """What a node's record gets however it ended (exit code, duration, Dask's attempts)."""
        common: dict[str, Any] = {"exit_code": ev.exit_code, "duration": round(ev.ended - ev.started, 3), "finished": now_iso(), "cache_key": self.gate.keys[ev.id]}
        attempts = getattr(ev, "attempts", None)  # the Dask executor's: one per worker that ran the node
        if attempts:
            common["worker"] = attempts[-1].get("worker")
            common["dask_attempts"] = [{k: at.get(k) for k in ("attempt", "worker", "host", "pid")} for at in attempts]
            for at in attempts:
                wlog(f"attempt {at.get('attempt')} on Dask worker {at.get('worker')} (host {at.get('host')}, pid {at.get('pid')})")
        return common

    def _outcome(self, ev: Finished, task: Task, wlog: Any) -> tuple[str | None, str]:
        """The state of a node whose process ended, and why, judged by the process alone (None: it succeeded)."""
        if ev.error is not None:  # no process ran
            return (NodeState.CANCELED if ev.error == NOT_STARTED else NodeState.FAILED), ev.error
        wlog(f"exit code {ev.exit_code}, {round(ev.ended - ev.started, 3):.3f} s" + (" (killed: timeout)" if ev.timed_out else ""))
        # A node that fails while the run stops at a first failure failed on its own (plx
        # lets running nodes finish): `failed` with its reason, never `canceled`.
        if ev.timed_out:
            return NodeState.TIMEOUT, f"timed out after {task.timeout} min; the process group was killed"
        if ev.exit_code != 0:
            return NodeState.FAILED, _exit_reason(ev.exit_code, self.recorder.rec(ev.id).log(self.local[ev.id], "stderr"))
        return None, ""

    def _failed(self, tid: str, ev: Finished, state: str, reason: str, common: dict[str, Any], lines: list[str]) -> None:
        """A node did not succeed: try it again if it has retries left, else record it."""
        task = self.tasks[tid]
        if task.retries and state != NodeState.CANCELED:
            n = len(self.attempts.setdefault(tid, [])) + 1
            self.attempts[tid].append(
                {"attempt": n, "state": state, "exit_code": ev.exit_code, "reason": reason, "duration": common["duration"], "finished": common["finished"]}
            )
            if n <= task.retries and not self.stopping:
                lines.append(f"{now_iso()} attempt {n} of {task.retries + 1} {state}: trying again\n")
                self.recorder.worker(tid, lines)
                lines.clear()
                self._try_again(tid, n)
                return
            common["attempts"] = self.attempts[tid]
        self._set(tid, state, **({"reason": reason} if reason else {}), **common)
        self._release(tid)
        if state != NodeState.CANCELED:
            self._after_failure(tid)

    def _cache(self, tid: str, stored: dict[str, Artifact], wlog: Any) -> None:
        """Write tid's cache entry, committed with others by _commit (one transaction, not one per
        node); the key's lock is held until then, so another plx waiting on it finds the entry."""
        key = self.gate.keys[tid]
        self.store.record(key, stored, self.recorder.rec(tid).id)
        wlog("cache entry written")
        if self.remote is not None and self.remote.push and self.remote.usable:
            self._push(key, stored)
            wlog(f"pushed to the remote {self.remote.shown} (in the background)")

    def _succeed(self, tid: str, info: dict[str, Any]) -> None:
        """Record and report tid's success; release the tasks it (and its waiters) made ready."""
        self._set(tid, NodeState.SUCCESS, **info)
        self._release(tid)
        self._done([tid, *self._serve_waiters(tid)])

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
        task, record, node = self.tasks[tid], self.recorder.rec(tid), self.local[tid]
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
        self.workspace.retire_attempt(tid, n)
        assert self.sched is not None
        self.sched.retake(tid)
        if self._launch(task, self._inputs_of(task), self.gate.keys[tid]):
            self.relaunched.add(tid)
        else:
            self.sched.not_started(tid)

    def _serve_waiters(self, tid: str) -> list[str]:
        """Once tid is done, the tasks of this run that wait on the same key get its outputs."""
        if self.state[tid] not in DONE_OK:
            return []
        waiters = self.gate.waiters(tid)
        outputs = {n: a.art for n, a in self.results[tid].items()}
        for other in waiters:
            self._serve(other, outputs)
        return waiters

    def _serve(self, tid: str, outputs: dict[str, Artifact], remote: str | None = None) -> None:
        self.results[tid] = {n: Avail(a) for n, a in outputs.items()}
        now = now_iso()
        where = f"the remote {remote}" if remote else "the store"
        key = self.gate.keys[tid]
        self.recorder.worker(
            tid,
            [f"{now} cache hit {key}" + (f" from the remote {remote} (downloaded and verified)" if remote else "") + ": not executed\n"]
            + [f"{now} output {n}: {a.hash} ({a.type}, {a.size} bytes) from {where}\n" for n, a in outputs.items()],
        )
        extra = {"source": "remote"} if remote else {}
        self._set(tid, NodeState.CACHED, cache_key=key, exit_code=None, duration=0.0, outputs={n: a.to_json() for n, a in outputs.items()}, **extra)

    def _release(self, tid: str) -> None:
        self.gate.release(tid, ok=self.state[tid] in DONE_OK)

    def _after_failure(self, tid: str) -> None:
        self.failed.add(self.member[tid])
        if not self.opts.keep_going and self.sched is not None:
            self.sched.stopping = True

    def _set(self, tid: str, state: str, **info: Any) -> None:
        self.state[tid] = state
        self.recorder.node(tid, state, self.gate.recipes.get(tid), info)
        if state in DONE_OK:  # recorded with its recipe, its last use: not kept for the rest of a large run
            self.gate.recipes.pop(tid, None)

    def _interrupt(self) -> None:
        """Ctrl-C (or SIGTERM): stop every job, record each one's end, and mark the run interrupted."""
        if self.sched is not None:
            self.sched.stopping = True
        self.reporter.node_state("", "interrupt", {})
        if self._executor is not None:  # else nothing was ever launched
            drain(self._executor, self.events, self._stopped, lambda ev: isinstance(ev, Finished))
        self.interrupted = True

    def _stopped(self, ev: Finished) -> None:
        """A job's end while the run stops: canceled, unless it failed on its own."""
        info: dict[str, Any] = {"exit_code": ev.exit_code, "duration": round(ev.ended - ev.started, 3), "finished": now_iso(), "cache_key": self.gate.keys.get(ev.id)}
        state = NodeState.CANCELED
        if ev.error is None and ev.exit_code not in _STOPPED_EXIT_CODES:
            # It failed on its own (e.g. exit 4) while the run was stopping, not by plx's
            # signal: recorded `failed` with its own reason (SPEC §9).
            state = NodeState.FAILED
            info["reason"] = _exit_reason(ev.exit_code, self.recorder.rec(ev.id).log(self.local[ev.id], "stderr"))
            self.failed.add(self.member[ev.id])
        elif ev.error is not None and ev.error != NOT_STARTED:
            state, info["reason"] = NodeState.FAILED, ev.error
        changed = self.workspace.release_inputs(ev.id)
        if changed:
            self.recorder.worker(ev.id, [f"{now_iso()} {changed}\n"])
        self._set(ev.id, state, **info)
        self._release(ev.id)


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


# Cache entries are committed, and the run's event and worker logs flushed, in batches at least
# this often (seconds): a transaction and two writes per node cost more than the rest of a short
# node's bookkeeping. A plx killed at any moment loses at most this much of its record.
COMMIT_EVERY = 0.1
SWITCH_INTERVAL = 0.0002  # seconds (see run_all)
_switch_lock = threading.Lock()
_switch_runs = 0  # runs under way in this process (the Python API may run several, in threads)
_switch_saved = 0.0  # the interval before the first of them, given back when the last one ends


@contextlib.contextmanager
def _short_switch_interval() -> Iterator[None]:
    global _switch_runs, _switch_saved
    with _switch_lock:
        if _switch_runs == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_switch_saved, SWITCH_INTERVAL))
        _switch_runs += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_runs -= 1
            if _switch_runs == 0:
                sys.setswitchinterval(_switch_saved)


# A run of at least this many nodes creates the store's 256 objects/xx folders in the background once
# its first nodes run (Store.make_prefixes) rather than one by one as outputs are stored.
PREFIXES_FROM = 64
TIDY_AFTER = 8  # nodes whose folders wait for recycling at most, while events keep coming (their folders are the next nodes')
