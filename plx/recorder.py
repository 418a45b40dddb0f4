"""The recorder of a run: one run record per sweep member (labels, inputs, snapshot, git facts),
node events and worker lines, and what the reporter is told. The engine never prints."""

from __future__ import annotations

from pathlib import Path

from . import __version__
from .hashing import compact, key_of, operation_recipe
from .history import History, RunRecord, new_run_id, now_iso, take_git_read
from .planner import Plan, Task
from .project import Project
from .records import NodeState, RunState
from .scheduler import DONE_OK
from .tracking import merge_tags, run_metrics

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any, Callable, Protocol


if TYPE_CHECKING:  # what the engine tells a reporter (report.py's, NullReporter): for the type checker

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


class Recorder:
    """Records of the runs of one engine (a sweep records each member as its own run), by task id.

    `member` and `local` map an engine task id (prefixed in a sweep) to its member and its own id."""

    def __init__(self, project: Project, opts: Any, reporter: Reporter, labels: list[str], member: dict[str, int], local: dict[str, str]) -> None:
        self.project = project
        self.opts = opts
        self.reporter = reporter
        self.history = History(project.store)
        self.labels = labels  # per member: its sweep label ("" when alone)
        self.member = member
        self.local = local
        self.records: list[RunRecord] = []
        self._git_facts: dict[str, Any] | None = None
        self._git_read: Any = None  # this run's own read of the git facts (history.take_git_read)
        self._rel_dirs: dict[str, str] = {}  # run id -> its folder, relative to the store

    def display(self, iid: str) -> str:
        label = self.labels[self.member[iid]]
        return f"{self.local[iid]} [{label}]" if label else self.local[iid]

    def rec(self, iid: str) -> RunRecord:
        return self.records[self.member[iid]]

    def start(self, plan: Plan, member: Any, inputs: dict[str, Any], op_recipes: dict[str, Any], environments: dict[str, Any], lib: Any, remote: str | None) -> RunRecord:
        """A member's record, written now (status `running`): what it runs, with what, and why."""
        data: dict[str, Any] = {
            "id": new_run_id(),
            "graph": plan.graph.name,
            "graph_file": plan.graph.file,
            "status": RunState.RUNNING,
            "started": now_iso(),
            "finished": None,
            "duration": None,
            "git": self.git_now(),
            "plx_version": __version__,
            "argv": self.opts.argv,
            "cwd": self.project.rel(Path.cwd()),
            "rerun_of": self.opts.rerun_of,
            "rev": self.opts.rev,
            "params": member.overrides,
            "graph_params": plan.params,
            "sweep": member.label or None,
            "inputs": inputs,
            "outputs": {name: {"node": s.task, "output": s.output} if s.task else {"path": str(s.path)} for name, s in plan.outputs.items()},
            "snapshot": self.opts.snapshot or (snapshot(plan, lib) if lib else {}),
            "nodes": {t: {"state": NodeState.PENDING} for t in plan.tasks},
            "op_recipes": op_recipes,
            "environments": environments,
            "name": self.opts.labels.get("name"),
            "tags": merge_tags(list(self.opts.labels.get("tags") or []), member.tags),
            "note": self.opts.labels.get("note"),
            "deps": {t: sorted(task.deps) for t, task in plan.tasks.items() if task.deps},  # the DAG, for `plx report`
            **({"remote": remote} if remote is not None else {}),
        }
        while True:
            try:
                record = RunRecord(self.history.dir, data, self.history.shared_index())
                break
            except FileExistsError:  # two runs started in the same millisecond
                data["id"] = new_run_id()
        self.records.append(record)
        return record

    def announce(self, graph: str, tasks: dict[str, Task]) -> None:
        """Tell the reporter the run started (and, for the live view, where each node's logs go)."""
        title = ", ".join(r.id for r in self.records) if len(self.records) < 4 else f"{len(self.records)} runs"
        self.reporter.run_started(f"{graph} {title}", [self.display(t) for t in tasks], self.opts.jobs)
        track = getattr(self.reporter, "track", None)
        if track is not None:  # the live view: where each node's logs go, and its operation (for the ETA)
            op_hash: dict[int, str] = {}
            where = {}
            for t, task in tasks.items():
                op = op_hash.setdefault(id(task.op), key_of(operation_recipe(task.op)))
                where[self.display(t)] = (self.rec(t).id, self.local[t], op)
            track(self.project.store, graph, where)

    # ---- git facts ----

    def git_now(self) -> dict[str, Any] | None:
        """Git facts if known without waiting: the commit of --rev, or a finished background read."""
        if self.opts.rev:  # the files come from that commit, exactly
            return {"commit": self.opts.rev["commit"], "branch": None, "dirty": False}
        if self._git_facts is None and self._git_read is not None:
            self._git_facts = self._git_read.facts(wait=False)
        return dict(self._git_facts) if self._git_facts is not None else None

    def record_git(self, wait: bool, when_read: Callable[[], None]) -> bool:
        """Fill in the git facts the records were started without; True once done.

        Asking git takes about as long as launching the first nodes, so it happens in the
        background (when_read is called once it is done), and the facts are appended as a run event."""
        if self._git_read is None and not self.opts.rev:
            self._git_read = take_git_read(self.project.root)
            self._git_read.when_done(when_read)
        facts = self.git_now()
        if facts is None and wait:
            self._git_facts = facts = self._git_read.facts(wait=True)
        if facts is None:
            return False
        for r in self.records:
            if r.data.get("git") is None:
                r.run_event(git=facts)
        return True

    # ---- nodes ----

    def node(self, tid: str, state: str, recipe: dict[str, Any] | None, info: dict[str, Any]) -> None:
        """A node's new state: appended to its run's events, and reported."""
        if state in (NodeState.FAILED, NodeState.TIMEOUT) and "log" not in info:
            # The log that explains the failure: the node's stderr if it wrote any, else the worker
            # log, where plx wrote why (inputs not placed, outputs missing, a template error, ...).
            stderr = self.rec(tid).log(self.local[tid], "stderr")
            info["log"] = "stderr" if stderr.exists() and stderr.stat().st_size else "worker"
        if "outputs" in info or state in DONE_OK:
            info["recipe"] = compact(recipe)
        self.rec(tid).node_event(self.local[tid], state=state, **info)
        self.reporter.node_state(self.display(tid), state, info)

    def worker(self, tid: str, lines: list[str]) -> None:
        """Lines of the worker log about a node (what plx did for it)."""
        self.rec(tid).worker(self.local[tid], lines)

    def logs(self, tid: str) -> dict[str, str]:
        """Where a node's logs are, relative to the store (for its record)."""
        record, node = self.rec(tid), self.local[tid]
        rel = self._rel_dirs.get(record.id)
        if rel is None:  # once per record: pathlib's relative_to per node showed in profiles
            rel = self._rel_dirs[record.id] = str(record.dir.relative_to(self.project.store))
        out = {s: f"{rel}/logs/{node}.{s}" for s in ("stdout", "stderr")}  # as record.log(node, s)
        out["worker"] = f"{rel}/{record.worker_log.name}"
        return out

    def flush(self) -> None:
        for r in self.records:
            r.flush()
        getattr(self.reporter, "flush", lambda: None)()

    def finish(self, interrupted: bool, failed: set[int]) -> list[dict[str, Any]]:
        """The final records (with metrics), written; the reporter is told."""
        out = []
        for m, record in enumerate(self.records):
            status = RunState.CANCELED if interrupted else RunState.FAILED if m in failed else RunState.SUCCESS
            record.data["metrics"] = run_metrics(self.project.store, record.data)
            record.finish(status)
            out.append(record.data)
        self.history.close()
        self.reporter.run_finished(out)
        return out


def input_json(spec: Any, arts: list[Any]) -> Any:
    """A graph input as its record keeps it: path and hash, one or a list."""
    items = [{"path": str(a.path), "hash": a.art.hash} for a in arts]
    return items if spec is not None and spec.is_list else (items[0] if items else None)
