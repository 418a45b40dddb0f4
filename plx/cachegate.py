"""The cache gate: a task's cache key (one function, for the run and for `--dry-run`'s explanation),
lookups, the in-run dedup (one task per key computes it, the others wait), the cross-process dedup
(the key's OS lock) and the hook of the remote tier's read-through.
"""

from __future__ import annotations

import gc
import queue
import threading

from .environment import differences as environment_differences
from .errors import RunError
from .extras import Extras
from .hashing import canonical, expand, explain, hash_bytes, key_of, operation_recipe, task_recipe
from .history import History
from .planner import Plan, Task
from .project import Project
from .store import Artifact, KeyLock, Store
from .structs import record

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any, Callable


def task_key(
    task: Task, inputs: dict[str, list[Artifact]], extra: dict[str, Any], ops_seen: dict[str, Any] | None = None, op_recipes: dict[int, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """The cache key of a task and the recipe it hashes: operation, params, its inputs' contents
    and names, and the operation's extras (sources, python environment). The run and `--dry-run`
    both call this, so they cannot disagree. op_recipes keeps each operation's recipe (by the
    operation's identity, the operation kept with it), its hash and its canonical text, for the
    next task of the same operation: a node's key then encodes only what is its own."""
    ins = {n: [{"hash": a.hash, "name": a.filename} for a in arts] for n, arts in inputs.items()}
    if op_recipes is None:
        recipe = task_recipe(task.op, task.params, ins, ops_seen, extra=extra)
        return key_of(recipe), recipe
    known = op_recipes.get(id(task.op))
    if known is None or known[0] is not task.op:
        r = operation_recipe(task.op)
        known = op_recipes[id(task.op)] = (task.op, r, key_of(r), canonical(r))
    if ops_seen is not None:
        ops_seen.setdefault(known[2], known[1])
    recipe = task_recipe(task.op, task.params, ins, extra=extra, op_recipe=known[1])
    return hash_bytes(_recipe_text(recipe, known[3]).encode()), recipe


# Stands for the operation's recipe in a node's recipe while it is encoded: its canonical text is
# then put in its place. Only the keys sorted before "operation" (environment, format, inputs: hashes,
# a constant and file names, none of which can hold a NUL) are written before it, so the first
# occurrence is the operation's.
_OP_MARK = "\x00operation\x00"
_OP_MARK_TEXT = canonical(_OP_MARK)


def _recipe_text(recipe: dict[str, Any], op_text: str) -> str:
    """canonical(recipe), the operation's part given already encoded (the same text, so the same key)."""
    return canonical({**recipe, "operation": _OP_MARK}).replace(_OP_MARK_TEXT, op_text, 1)


@record
class Retry:
    """Look at the cache again for a task: another plx process, or the first of a duplicate, is done."""

    id: str
    held_slot: bool  # True when the wait occupied a -j slot (waiting on another process)


@record
class Fetched:
    """The remote's answer for a task's key (a Future of remote.Fetched or None)."""

    id: str
    future: Any


# What CacheGate.look decided for a task.
HIT = "hit"  # served from the store: outputs given
DUPLICATE = "duplicate"  # the same key is computed by another task of this run: wait for it
OTHER_PROCESS = "other process"  # another plx holds the key's lock: a thread waits, then Retry (holds a slot)
ASKING_REMOTE = "asking the remote"  # a local miss, the lock taken: the remote is asked, then Fetched
MISS = "miss"  # launch it (the key's lock is held when the task is cacheable and the cache used)


class CacheGate:
    """Between the scheduler and the executor: which tasks need to run, and which key each holds.

    Events it causes (Retry, Fetched) are put on the engine's queue; Retry events of tasks that hold
    no slot are counted in `retries`, so the loop knows to wait for them."""

    def __init__(self, store: Store, events: queue.Queue[Any], remote: Any = None, use_cache: bool = True, lock: Callable[[Store, str], Any] = KeyLock) -> None:
        self.store = store
        self.events = events
        self.remote = remote
        self.use_cache = use_cache
        self._lock = lock
        self.keys: dict[str, str] = {}
        self.recipes: dict[str, dict[str, Any]] = {}
        self.locks: dict[str, Any] = {}  # task -> the KeyLock it holds
        self.unlock_after_commit: list[Any] = []  # locks of keys whose cache entries are not committed yet
        self.inflight: dict[str, str] = {}  # key -> the task computing it in this run
        self.waiting: dict[str, list[str]] = {}  # key -> tasks of this run waiting on it
        self.retries = 0  # Retry events queued for tasks that hold no slot
        self.op_recipes: dict[int, Any] = {}  # id(operation) -> (operation, its recipe), for task_key

    def key(self, task: Task, inputs: dict[str, list[Artifact]], extra: dict[str, Any]) -> str:
        key, self.recipes[task.id] = task_key(task, inputs, extra, op_recipes=self.op_recipes)
        self.keys[task.id] = key
        return key

    def look(self, task: Task) -> tuple[str, dict[str, Artifact] | None]:
        """What to do with a task whose key is known (see HIT ... MISS); the outputs of a hit."""
        tid, key = task.id, self.keys[task.id]
        if not (task.cacheable and self.use_cache):
            if task.cacheable:
                self.inflight[key] = tid
            return MISS, None
        if self.inflight.get(key) not in (None, tid):
            self.waiting.setdefault(key, []).append(tid)
            return DUPLICATE, None  # settled later, when the first one finishes
        hit = None if self.store.surely_missing(key) else self.store.lookup(key)  # a cold run's keys: one query per batch, not per node
        if hit is not None:
            return HIT, hit
        lock = self._lock(self.store, key)
        if not lock.try_acquire():
            self._wait_other(tid, lock)
            self.inflight[key] = tid
            return OTHER_PROCESS, None
        hit = self.store.lookup(key)  # it may have finished between our look and the lock
        if hit is not None:
            lock.release()
            return HIT, hit
        self.locks[tid] = lock
        self.inflight[key] = tid
        if self.remote is not None and self.remote.usable:
            # A local miss: ask the remote off the loop's thread (the key's lock is held meanwhile).
            future = self.remote.submit(self.remote.fetch, key, self.store)
            future.add_done_callback(lambda f, tid=tid: self.events.put(Fetched(tid, f)))
            return ASKING_REMOTE, None
        return MISS, None

    def _wait_other(self, tid: str, lock: Any) -> None:
        """Another plx process is computing this key: wait for it off the main thread."""

        def wait_other() -> None:
            try:
                lock.wait()
            finally:  # whatever happened, the task looks at the cache again
                self.events.put(Retry(tid, held_slot=True))

        threading.Thread(target=wait_other, daemon=True).start()

    def has_waiters(self, tid: str) -> bool:
        return bool(self.waiting.get(self.keys[tid]))

    def waiters(self, tid: str) -> list[str]:
        """Once tid is done (success or cached), the tasks of this run waiting on its key: they are served its outputs."""
        key = self.keys.get(tid)
        if key is None:
            return []
        if self.inflight.get(key) == tid:
            del self.inflight[key]
        return self.waiting.pop(key, [])

    def release(self, tid: str, ok: bool) -> None:
        """tid is done (ok: success or cached) or failed: its key's lock goes once its entry is
        committed; when it failed, the tasks waiting on its key look again (Retry), each computing it
        itself when its turn comes."""
        lock = self.locks.pop(tid, None)
        if lock:
            self.unlock_after_commit.append(lock)
        key = self.keys.get(tid)
        if key and self.inflight.get(key) == tid:
            del self.inflight[key]
            if not ok:
                for other in self.waiting.pop(key, []):
                    self.retries += 1
                    self.events.put(Retry(other, held_slot=False))

    def committed(self) -> None:
        """The cache entries are committed: other plx processes waiting on those keys may go."""
        for lock in self.unlock_after_commit:
            lock.release()
        self.unlock_after_commit.clear()

    def close(self) -> None:
        for lock in [*self.unlock_after_commit, *self.locks.values()]:
            lock.release()


def explain_plan(project: Project, plan: Plan, remote: Any = None) -> list[dict[str, Any]]:
    """For --dry-run: per task, whether it would come from cache (the store's, or with `remote`, the
    remote's: its entry is read, nothing downloaded) or run, and why."""
    collect = gc.isenabled()
    gc.disable()  # as planning: many long-lived objects, no cycles; collecting only costs time (~10 % at 100,000 nodes)
    try:
        return _explain_plan(project, plan, remote)
    finally:
        if collect:
            gc.enable()


def _explain_plan(project: Project, plan: Plan, remote: Any) -> list[dict[str, Any]]:  # noqa: C901 - as explain_plan
    store = Store(project.store)
    extras = Extras(project, store)
    history = History(project.store)
    last_read: list[dict[str, dict[str, Any]]] = []  # the last recipes, read at the first task that would run

    def last(tid: str) -> dict[str, Any] | None:
        if not last_read:
            last_read.append(_last_recipes(history, plan.graph.name, set(plan.tasks)))
        return last_read[0].get(tid)

    op_recipes: dict[str, Any] = {}
    by_op: dict[int, Any] = {}
    known: dict[str, dict[str, Artifact] | None] = {}
    rows: dict[str, dict[str, Any]] = {}
    work: dict[str, str] = {}  # task -> what identifies its work before its key is known (for sweeps)
    arts, keyed, looked = _leaf_keys(plan, store, extras, op_recipes, by_op)
    pending = list(plan.tasks)
    while pending:
        # A local miss with a remote is asked in a wave (all at once); the tasks after it wait for its answer.
        asking: dict[str, tuple[str, Any]] = {}  # task -> (key, recipe)
        later: dict[str, None] = {}  # in plan order
        for tid in pending:
            task = plan.tasks[tid]
            leaf = keyed.pop(tid, None)  # its key is known already (it reads graph inputs only)
            if leaf is not None:
                key, recipe = leaf
            elif (asking or later) and any(s.task in asking or s.task in later for ss in task.inputs.values() for s in ss if s.task):
                later[tid] = None
                continue
            elif unknown := [s.task for ss in task.inputs.values() for s in ss if s.task and known.get(s.task) is None]:
                known[tid] = None
                # Its key depends on outputs not made yet: the same operation, params and upstream work
                # is the same work (two combinations of a sweep sharing it run it once).
                ins_w = {n: [f"{work[s.task]}.{s.output}" if s.task else str(s.path) for s in ss] for n, ss in task.inputs.items()}
                work[tid] = key_of({"operation": operation_recipe(task.op), "params": task.params, "after": ins_w})
                row = {"node": tid, "action": "run", "why": [f"after upstream {', '.join(sorted(set(unknown)))} runs"]}
                rows[tid] = {**row, "work": work[tid]} if task.cacheable else row
                continue
            else:
                ins = {
                    name: [known[s.task][s.output] if s.task else arts[(s.path, task.op.input(name).type)] for s in sources]  # type: ignore[index,union-attr]
                    for name, sources in task.inputs.items()
                }
                key, recipe = task_key(task, ins, extras.of(task.op), op_recipes, by_op)
            work[tid] = key
            hit = (looked[key] if key in looked else store.lookup(key)) if task.cacheable else None
            known[tid] = hit
            if hit is not None:
                rows[tid] = {"node": tid, "action": "cached", "why": [], "cache_key": key}
            elif not task.cacheable:
                rows[tid] = {"node": tid, "action": "run", "why": ["not cacheable"], "cache_key": key}
            elif remote is not None and remote.usable:
                asking[tid] = (key, recipe)
            else:
                rows[tid] = _run_row(tid, key, recipe, last(tid), extras)
        answers = remote.lookup([k for k, _r in asking.values()]) if asking else {}
        for tid, (key, recipe) in asking.items():
            known[tid] = answers.get(key)
            if known[tid] is not None:
                why = [f"from the remote {remote.shown}: would be downloaded, not run"]
                rows[tid] = {"node": tid, "action": "cached", "why": why, "cache_key": key, "source": "remote"}
            else:
                rows[tid] = _run_row(tid, key, recipe, last(tid), extras)
        pending = list(later)
    store.close()
    return [rows[tid] for tid in plan.tasks]


def _run_row(tid: str, key: str, recipe: Any, last: dict[str, Any] | None, extras: Extras) -> dict[str, Any]:
    """The --dry-run row of a cacheable task that would run: why (what differs from its last run)."""
    why = explain(last, recipe)
    old_env, new_env = (last or {}).get("_environment"), extras.environments.get(recipe.get("environment") or "")
    changes = environment_differences(old_env, new_env)
    if changes:
        shown = ", ".join(changes[:5]) + (f" and {len(changes) - 5} more" if len(changes) > 5 else "")
        why = [f"python environment changed: {shown}" if w.startswith("python environment changed") else w for w in why]
    return {"node": tid, "action": "run", "why": why, "cache_key": key, "work": key}


def _leaf_keys(
    plan: Plan, store: Store, extras: Extras, op_recipes: dict[str, Any], by_op: dict[int, Any]
) -> tuple[dict[tuple[Any, str], Artifact], dict[str, tuple[str, dict[str, Any]]], dict[str, dict[str, Artifact] | None]]:
    """For explain_plan: every graph input hashed (the stat cache asked at once), the keys of the
    tasks that read only graph inputs, and their lookups done together (store.lookup_many)."""
    types: dict[int, dict[str, str]] = {}  # id(operation) -> its inputs' types

    def types_of(op: Any) -> dict[str, str]:
        known = types.get(id(op))
        if known is None:
            known = types[id(op)] = {i.name: i.type for i in op.inputs}
        return known

    by_type: dict[str, dict[Any, None]] = {}
    for task in plan.tasks.values():
        for name, sources in task.inputs.items():
            for s in sources:
                if not s.task:
                    by_type.setdefault(types_of(task.op)[name], {})[s.path] = None
    arts: dict[tuple[Any, str], Artifact] = {}
    for type_, paths in by_type.items():
        arts.update(((p, type_), a) for p, a in zip(paths, store.hash_inputs(list(paths), type_), strict=True))
    keyed: dict[str, tuple[str, dict[str, Any]]] = {}
    batch: list[str] = []
    for tid, task in plan.tasks.items():
        if any(s.task for ss in task.inputs.values() for s in ss):
            continue
        t = types_of(task.op)
        ins = {name: [arts[(s.path, t[name])] for s in sources] for name, sources in task.inputs.items()}
        keyed[tid] = task_key(task, ins, extras.of(task.op), op_recipes, by_op)
        if task.cacheable:
            batch.append(keyed[tid][0])
    return arts, keyed, store.lookup_many(batch)  # at once: the signatures may then be read in one scan


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
