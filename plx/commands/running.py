"""Running and sweeps: `plx run` (and `--dry-run`), `plx rerun`, `plx preview`."""

from __future__ import annotations

import gc
import os
from pathlib import Path

from .. import procs
from ..errors import RunError, UsageError, did_you_mean
from ..loader import Library
from ..overrides import Overrides, parse_inputs, parse_params, parse_sweep
from ..project import Project
from .common import at_revision, load_graph

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any


def plan_members(
    lib: Library, graph_file: Path, *, targets: list[str], params: list[str], inputs: list[str], sweeps: list[str] | None = None, freeze: bool = False
) -> tuple[list[Any], dict[str, Any]]:
    """The plans of a run: one, or with `sweeps` one per combination of the swept values (each a
    Member with its overrides and label). Returns (members, the -p overrides as typed values).

    With `freeze`, what is alive when they are planned is frozen for the collector (gc.freeze; the
    caller unfreezes): planning builds them with it paused, and the first collection after would scan
    every one of a 100,000-node plan's objects (then again as they age), finding nothing."""
    import itertools

    from ..engine import Member
    from ..planner import plan as make_plan
    from ..tracking import sweep_tags

    graph = load_graph(lib, graph_file)
    axes = [parse_sweep(lib, graph, s) for s in sweeps or []]
    names = [a[0] for a in axes]
    if len(set(names)) != len(names):
        raise UsageError("each --sweep must name a different param")
    given = parse_params(lib, graph, params)
    files = parse_inputs(graph, inputs)
    members = []
    collect = gc.isenabled()
    if freeze:
        gc.disable()  # the planner's own pause then ends here, not at its return
    try:
        for combo in itertools.product(*(a[1] for a in axes)):  # no axes: one empty combination
            o = given.copy()
            for name, value in zip(names, combo, strict=True):
                o.put(name, value)
            label = ",".join(f"{k}={_show(v)}" for k, v in zip(names, combo, strict=True))
            members.append(Member(make_plan(lib, graph, params=o.graph, node_params=o.nodes, inputs=files, targets=targets), o.flat, label, sweep_tags(names, combo)))
        if freeze:
            gc.freeze()
    finally:
        if collect:
            gc.enable()
    return members, given.flat


DASK_JOBS = 64  # nodes in flight on a Dask cluster unless -j or plx.yaml says otherwise


def run_many(
    project: Project,
    lib: Library,
    graph_file: Path,
    *,
    targets: list[str],
    params: list[str],
    inputs: list[str],
    jobs: int | None,
    no_cache: bool,
    keep_going: bool,
    reporter: Any,
    argv: list[str],
    sweeps: list[str] | None = None,
    rev: str | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    remote: str | None = None,
    no_remote: bool = False,
    labels: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run a graph: one run, or with `sweeps` every combination of the swept values as one DAG on
    one pool, recorded as one run each. Returns the records."""
    from contextlib import ExitStack

    from ..engine import Engine, RunOptions
    from ..history import prefetch_git_facts
    from ..project import resolve_url
    from ..store import Store

    remote_url = resolve_url(project, remote, no_remote)
    with ExitStack() as cleanup:
        rev_info = None
        if rev:
            lease = Store(project.store)  # `plx cache gc` keeps the exported files while this run needs them
            lease.acquire_lease()
            cleanup.callback(lease.close)
            project, lib, graph_file, rev_info = at_revision(project, graph_file, rev)
        else:
            prefetch_git_facts(project.root)  # overlaps validation and planning
            if executor == "local":
                procs.start_guardian_ahead()  # so does the start of the local executor's guardian (~1 ms of a CPU)
        members, flat = plan_members(lib, graph_file, targets=targets, params=params, inputs=inputs, sweeps=sweeps, freeze=True)
        cleanup.callback(gc.unfreeze)  # also done by the engine when the run ends
        if executor == "dask" and not jobs and not project.jobs:
            # This machine's CPUs say nothing about a cluster's; Dask queues what its workers cannot run
            # yet, and a round trip per node with few in flight would cost more than the node (bench/remote.py).
            jobs = DASK_JOBS
        opts = RunOptions(
            jobs=jobs or project.default_jobs(),
            no_cache=no_cache,
            keep_going=keep_going,
            argv=argv,
            overrides=flat,
            rev=rev_info,
            executor=executor,
            scheduler=scheduler,
            remote=remote_url,
        )
        opts.labels = labels or {}
        return Engine(project, members, opts, reporter, lib).run_all()


def run(project: Project, lib: Library, graph_file: Path, **options: Any) -> dict[str, Any]:
    """Run a graph once (no sweep); returns its record."""
    return run_many(project, lib, graph_file, **options)[0]


def _show(v: Any) -> str:
    import json

    return v if isinstance(v, str) else json.dumps(v)


def rerun(
    project: Project,
    run_ref: str,
    *,
    jobs: int | None,
    no_cache: bool,
    keep_going: bool,
    reporter: Any,
    argv: list[str],
    labels: dict[str, Any] | None = None,
    remote: str | None = None,
    no_remote: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """Run again the graph, operations and overrides recorded in a run; returns (record, notes)."""
    import json

    from ..engine import Engine, RunOptions
    from ..history import History
    from ..planner import plan as make_plan
    from ..project import Project as P
    from ..project import resolve_url

    history = History(project.store)
    rid = history.resolve(run_ref)
    data = history.load(rid)
    snap = data.get("snapshot") or {}
    if not snap.get("files") or not snap.get("graph"):
        raise RunError(f"run {rid} has no snapshot of its files to rerun")
    root = project.store / "tmp" / f"rerun-{rid}-{os.getpid()}"
    from ..store import Store

    lease = Store(project.store)  # `plx cache gc` keeps the replayed files while this run needs them
    lease.acquire_lease()
    try:
        for rel, content in snap["files"].items():
            if Path(rel).is_absolute():
                continue
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(content, indent=1), encoding="utf-8")  # JSON is YAML
        settings = snap.get("settings", {})
        replay = P(root, operation_dirs=settings.get("operations", project.operation_dirs), store_dir=str(project.store), fallback_root=project.root)
        replay.python = settings.get("python")
        lib = Library(replay)
        graph = load_graph(lib, root / snap["graph"])
        notes: list[str] = []
        files: dict[str, list[Path]] = {}
        missing: list[str] = []
        store = Store(project.store)
        for name, rec in (data.get("inputs") or {}).items():
            items = rec if isinstance(rec, list) else ([rec] if rec else [])
            for item in items:
                p = Path(item["path"])
                if not p.exists():
                    missing.append(f"{name}: {item['path']}")
                    continue
                files.setdefault(name, []).append(p)
                if store.hash_input(p, "file").hash != item["hash"]:
                    notes.append(f"input {name} changed since run {rid}: {item['path']}")
        store.close()
        if missing:
            raise RunError(f"run {rid} read input files that no longer exist: {'; '.join(missing)}")
        recorded = Overrides.from_flat(data.get("params") or {})
        the_plan = make_plan(lib, graph, params=recorded.graph, node_params=recorded.nodes, inputs=files)
        opts = RunOptions(
            jobs=jobs or project.default_jobs(),
            no_cache=no_cache,
            keep_going=keep_going,
            argv=argv,
            overrides=data.get("params") or {},
            rerun_of=rid,
            snapshot=snap,
            remote=resolve_url(project, remote, no_remote),
        )
        opts.labels = labels or {}
        record = Engine(replay, the_plan, opts, reporter, lib).run()
        return record, notes
    finally:
        import shutil  # here, not at the top: `plx run` never imports it (deferred.py)

        shutil.rmtree(root, ignore_errors=True)
        lease.close()


def dry_run(
    project: Project,
    lib: Library,
    graph_file: Path,
    *,
    targets: list[str],
    params: list[str],
    inputs: list[str],
    sweeps: list[str] | None = None,
    remote: str | None = None,
    no_remote: bool = False,
) -> list[dict[str, Any]]:
    """What a run would do, node by node, and why; with sweeps, for every combination (rows carry `sweep`).

    With a remote, a local miss is looked up there (its entry only: nothing is downloaded), as the run would."""
    from ..engine import explain_plan
    from ..errors import warn
    from ..project import resolve_url
    from ..remote import open_remote

    members, _ = plan_members(lib, graph_file, targets=targets, params=params, inputs=inputs, sweeps=sweeps, freeze=True)
    try:
        the_remote = open_remote(resolve_url(project, remote, no_remote), warn=lambda m: warn(m))
    except BaseException:
        gc.unfreeze()
        raise
    rows = []
    first: dict[str, str] = {}  # the work of a node that would run -> the combination that runs it
    try:
        for m in members:
            for row in explain_plan(project, m.plan, the_remote):
                w = row.pop("work", None)  # set on cacheable nodes that would run
                if w is not None:
                    if w in first:  # a sweep runs identical work once (docs/reference.md)
                        row["shared"] = True
                        row["why"] = [*row["why"], f"the same work as in {first[w] or 'another combination'}: runs once"]
                    else:
                        first[w] = m.label
                rows.append({"sweep": m.label, **row} if sweeps else row)
    finally:
        gc.unfreeze()
        if the_remote is not None:
            the_remote.close()
    return rows


def preview(project: Project, lib: Library, graph_file: Path, node: str, params: list[str]) -> str:
    from ..planner import plan as make_plan
    from ..runners import prepare

    graph = load_graph(lib, graph_file)
    given = parse_params(lib, graph, params)
    the_plan = make_plan(lib, graph, params=given.graph, node_params=given.nodes)
    task = the_plan.tasks.get(node)
    if task is None:
        expansions = [t for t in the_plan.tasks if t.startswith(node + "[") and "/" not in t[len(node) :]]
        if expansions:
            shown = ", ".join(expansions[:5]) + (f", ... ({len(expansions)} in all)" if len(expansions) > 5 else "")
            raise UsageError(f"node '{node}' is fanned out: preview one of its expansions: {shown}")
        hint = did_you_mean(node, list(the_plan.tasks))
        raise UsageError(f"no node '{node}' in {lib.display(graph_file)}" + (f" ({hint})" if hint else ""))
    ins = {}
    for name, sources in task.inputs.items():
        ins[name] = [str(s.path) if s.path else f"<{s.task}.{s.output}>" for s in sources]
    outs = {o.name: f"<workdir>/{o.file_name}" for o in task.op.outputs}
    from ..environment import resolve_python

    prepared = prepare(task.op, task.params, ins, outs, None, python=resolve_python(project, task.op.python) if task.op.runner == "python" else None)
    env = "\n".join(f"# {k}={v}" for k, v in sorted(prepared.env.items()))
    return f"# node {node}: operation {task.op.name}, runner {task.op.runner}\n{env}\n{prepared.script}"
