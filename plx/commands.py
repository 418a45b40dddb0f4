"""One plain function per command: takes arguments, returns data; the CLI only prints it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from .errors import Diagnostic, RunError, UsageError, did_you_mean
from .loader import Library
from .model import Graph, Operation, ParamSpec, parse_param_text
from .project import Project, load_project


def open_project(start: Path | None = None) -> tuple[Project, Library]:
    project = load_project(start)
    return project, Library(project)


def graph_path(project: Project, path: str) -> Path:
    """A GRAPH argument: relative to the current directory (or the project root as a fallback)."""
    p = Path(path).expanduser()
    for candidate in (p, project.root / p):
        if candidate.is_file():
            return candidate.resolve()
    raise UsageError(f"{path}: no such file")


# ---- validate ------------------------------------------------------------------


def validate(project: Project, lib: Library, paths: list[str]) -> tuple[list[Path], list[Diagnostic]]:
    """Check the given files (default: every operation and graph of the project)."""
    files: list[Path] = []
    if paths:
        for p in paths:
            path = Path(p)
            if path.is_dir():
                files.extend(sorted(q for q in path.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file()))
            elif path.is_file():
                files.append(path)
            else:
                raise UsageError(f"{p}: no such file or directory")
    else:
        files = lib.operation_files() + [g for g in lib.graph_files() if g not in lib.operation_files()]
        if not paths and not files:
            raise UsageError(
                f"no operation or graph files found under {', '.join(project.operation_dirs + project.graph_dirs)}/ "
                f"in {project.root}; give files to validate or run `plx init`"
            )
    for f in files:
        lib.check(f)
    diags = lib.all_diagnostics()
    if not paths:
        diags.extend(_duplicate_names(lib))
    return files, diags


def raw_warnings(lib: Library) -> list[Diagnostic]:
    """`| raw` applied to a param or an input in a bash_jinja2 template: allowed, but that value
    reaches bash unquoted, so `plx validate` lists each one (SPEC §2)."""
    from . import templates
    from .loader import _cmd_line

    out = []
    for loaded in list(lib.files.values()):
        op, doc = loaded.obj, loaded.doc
        if not isinstance(op, Operation) or op.runner != "bash_jinja2" or doc is None:
            continue
        for lineno, what in templates.raw_uses(op.cmd):
            line, col = _cmd_line(doc, lineno)
            hint = "a value holding ; $( ) or spaces becomes shell syntax; drop '| raw' unless that is meant"
            out.append(Diagnostic(doc.file, line, col, f"'{what} | raw' inserts the value into the script unquoted", hint))
    return out


def _duplicate_names(lib: Library) -> list[Diagnostic]:
    out = []
    for name, paths in lib.names().items():
        if len(paths) > 1:
            first = lib.display(paths[0])
            for p in paths[1:]:
                loaded = lib.load(p)
                assert loaded.doc is not None
                out.append(loaded.doc.diag(("name",), f"the operation name '{name}' is also used by {first}", "names must be unique in the project"))
    return out


# ---- overrides -----------------------------------------------------------------


def _split_assignment(text: str, flag: str) -> tuple[str, str]:
    name, eq, value = text.partition("=")
    if not eq or not name:
        raise UsageError(f"{flag} {text!r}: write NAME=VALUE")
    return name.strip(), value


def param_spec_for(lib: Library, graph: Graph, name: str) -> tuple[str | None, ParamSpec]:
    """The spec behind `-p NAME` or `-p NODE.PARAM` (NODE may be `parent/child`)."""
    if "." not in name:
        spec = graph.param(name)
        if spec is None:
            choices = [p.name for p in graph.params]
            raise RunError(
                f"-p {name}: the graph '{graph.name}' has no param '{name}'"
                + (f" ({did_you_mean(name, choices)})" if did_you_mean(name, choices) else "")
                + (f"; its params: {', '.join(choices)}" if choices else "; use NODE.PARAM for a node's param")
            )
        return None, spec
    node_path, _, pname = name.rpartition(".")
    current: Graph | Operation = graph
    for part in node_path.split("/"):
        part = part.split("[", 1)[0]  # an expansion `map[A]` has the params of its node `map`
        if not isinstance(current, Graph) or part not in current.nodes:
            choices = list(current.nodes) if isinstance(current, Graph) else []
            hint = did_you_mean(part, choices)
            raise RunError(f"-p {name}: there is no node '{part}'" + (f" ({hint})" if hint else f"; nodes: {', '.join(choices)}"))
        target = lib.resolve_node(current, current.nodes[part])
        assert target is not None
        current = target
    spec = current.param(pname)
    if spec is None:
        choices = [p.name for p in current.params]
        hint = did_you_mean(pname, choices)
        raise RunError(
            f"-p {name}: node '{node_path}' has no param '{pname}'" + (f" ({hint})" if hint else "") + (f"; its params: {', '.join(choices)}" if choices else "")
        )
    return node_path, spec


def parse_overrides(lib: Library, graph: Graph, items: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, Any]]:
    """-p values parsed by type -> (graph params, node params by node id, the record's flat view)."""
    gparams: dict[str, Any] = {}
    nparams: dict[str, dict[str, Any]] = {}
    flat: dict[str, Any] = {}
    for item in items:
        name, text = _split_assignment(item, "-p")
        node, spec = param_spec_for(lib, graph, name)
        try:
            value = parse_param_text(spec, text)
        except ValueError as exc:
            raise RunError(f"-p {name}: {exc}") from None
        flat[name] = value
        if node is None:
            gparams[spec.name] = value
        else:
            nparams.setdefault(node, {})[spec.name] = value
    return gparams, nparams, flat


def parse_inputs(project: Project, graph: Graph, items: list[str]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for item in items:
        name, value = _split_assignment(item, "-i")
        spec = graph.input(name)
        if spec is None:
            choices = [i.name for i in graph.inputs]
            hint = did_you_mean(name, choices)
            raise RunError(f"-i {name}: the graph has no input '{name}'" + (f" ({hint})" if hint else "") + (f"; its inputs: {', '.join(choices)}" if choices else ""))
        path = Path(value).expanduser()
        if not path.exists() and spec.is_list and any(ch in value for ch in "*?["):
            import glob

            matches = sorted(glob.glob(str(path), recursive=True))  # a list input takes a pattern, as its default may
            if not matches:
                raise UsageError(f"-i {name}={value}: the pattern matches no file")
            out.setdefault(name, []).extend(Path(m).resolve() for m in matches)
            continue
        if not path.exists():
            raise UsageError(f"-i {name}={value}: no such file")
        out.setdefault(name, []).append(path.resolve())
    return out


# ---- run -----------------------------------------------------------------------


def load_graph(lib: Library, path: Path) -> Graph:
    obj = lib.runnable(path)
    if not isinstance(obj, Graph):
        raise UsageError(f"{lib.display(path)} is an operation, not a graph; `plx run` takes a graph file")
    return obj


def at_revision(project: Project, graph_file: Path, rev: str) -> tuple[Project, Library, Path, dict[str, str]]:
    """The project as git revision rev has it (same store); untracked files still come from the work tree."""
    from .history import export_revision
    from .project import project_at

    try:
        rel = graph_file.resolve().relative_to(project.root)
    except ValueError:
        raise UsageError(f"{graph_file} is outside the project {project.root}; --rev needs a graph tracked in it") from None
    commit, root = export_revision(project.root, rev, project.store / "tmp")
    at_rev = project_at(root)
    at_rev.store_dir = str(project.store)
    at_rev.fallback_root = project.root
    graph_at_rev = root / rel
    if not graph_at_rev.is_file():
        raise UsageError(f"{rel} does not exist at revision {rev} ({commit[:10]})")
    return at_rev, Library(at_rev), graph_at_rev, {"rev": rev, "commit": commit}


def _sweep_values(lib: Library, graph: Graph, item: str) -> tuple[str, list[Any]]:
    """`NAME=V1,V2` or `NAME=[JSON list]` -> (NAME, typed values)."""

    name, text = _split_assignment(item, "--sweep")
    _, spec = param_spec_for(lib, graph, name)
    values: list[Any] = []
    if text.strip().startswith("["):
        from .model import _json

        try:
            raw = _json(text)
        except ValueError as exc:
            raise RunError(f"--sweep {name}: {exc}" if "finite" in str(exc) else f"--sweep {name}: not a JSON list: {exc}") from None
        if not isinstance(raw, list):
            raise RunError(f"--sweep {name}: not a JSON list: {text}")
        for v in raw:
            if isinstance(v, str) and spec.type not in ("str", "code", "enum"):
                v = _parse_one(spec, name, v)
            from .model import check_param_value

            problem = check_param_value(spec, v)
            if problem:
                raise RunError(f"--sweep {name}: {problem[0]}")
            values.append(v)
    else:
        values = [_parse_one(spec, name, v.strip()) for v in text.split(",")]
    if not values:
        raise RunError(f"--sweep {name}: give at least one value")
    return name, values


def _parse_one(spec: ParamSpec, name: str, text: str) -> Any:
    try:
        return parse_param_text(spec, text)
    except ValueError as exc:
        raise RunError(f"--sweep {name}: {exc}") from None


def plan_members(
    project: Project, lib: Library, graph_file: Path, *, targets: list[str], params: list[str], inputs: list[str], sweeps: list[str] | None = None
) -> tuple[list[Any], dict[str, Any]]:
    """The plans of a run: one, or with `sweeps` one per combination of the swept values (each a
    Member with its overrides and label). Returns (members, the -p overrides as typed values)."""
    import itertools

    from .engine import Member
    from .planner import plan as make_plan
    from .tracking import sweep_tags

    graph = load_graph(lib, graph_file)
    axes = [_sweep_values(lib, graph, s) for s in sweeps or []]
    names = [a[0] for a in axes]
    if len(set(names)) != len(names):
        raise UsageError("each --sweep must name a different param")
    gparams, nparams, flat = parse_overrides(lib, graph, params)
    specs = {name: param_spec_for(lib, graph, name) for name in names}
    files = parse_inputs(project, graph, inputs)
    members = []
    for combo in itertools.product(*(a[1] for a in axes)):  # no axes: one empty combination
        g, n, f = dict(gparams), {k: dict(v) for k, v in nparams.items()}, dict(flat)
        for name, value in zip(names, combo, strict=True):
            node, spec = specs[name]
            f[name] = value
            if node is None:
                g[spec.name] = value
            else:
                n.setdefault(node, {})[spec.name] = value
        label = ",".join(f"{k}={_show(v)}" for k, v in zip(names, combo, strict=True))
        members.append(Member(make_plan(lib, graph, params=g, node_params=n, inputs=files, targets=targets), f, label, sweep_tags(names, combo)))
    return members, flat


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

    from .engine import Engine, RunOptions
    from .history import prefetch_git_facts
    from .project import resolve_url
    from .store import Store

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
        members, flat = plan_members(project, lib, graph_file, targets=targets, params=params, inputs=inputs, sweeps=sweeps)
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
    project: Project, run_ref: str, *, jobs: int | None, no_cache: bool, keep_going: bool, reporter: Any, argv: list[str], labels: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """Run again the graph, operations and overrides recorded in a run; returns (record, notes)."""
    import json

    from .engine import Engine, RunOptions
    from .history import History
    from .planner import plan as make_plan
    from .project import Project as P
    from .project import resolve_url

    history = History(project.store)
    rid = history.resolve(run_ref)
    data = history.load(rid)
    snap = data.get("snapshot") or {}
    if not snap.get("files") or not snap.get("graph"):
        raise RunError(f"run {rid} has no snapshot of its files to rerun")
    root = project.store / "tmp" / f"rerun-{rid}-{os.getpid()}"
    from .store import Store

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
        gparams: dict[str, Any] = {}
        nparams: dict[str, dict[str, Any]] = {}
        for key, value in (data.get("params") or {}).items():
            if "." in key:
                node, _, pname = key.rpartition(".")
                nparams.setdefault(node, {})[pname] = value
            else:
                gparams[key] = value
        the_plan = make_plan(lib, graph, params=gparams, node_params=nparams, inputs=files)
        opts = RunOptions(
            jobs=jobs or project.default_jobs(),
            no_cache=no_cache,
            keep_going=keep_going,
            argv=argv,
            overrides=data.get("params") or {},
            rerun_of=rid,
            snapshot=snap,
            remote=resolve_url(project),
        )
        opts.labels = labels or {}
        record = Engine(replay, the_plan, opts, reporter, lib).run()
        return record, notes
    finally:
        shutil.rmtree(root, ignore_errors=True)
        lease.close()


def _numeric_leaves(value: Any, prefix: str, out: dict[str, float]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        out[prefix] = value
    elif isinstance(value, dict):
        for k, v in value.items():
            _numeric_leaves(v, f"{prefix}.{k}" if not prefix.endswith(":") else f"{prefix}{k}", out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _numeric_leaves(v, f"{prefix}.{i}" if not prefix.endswith(":") else f"{prefix}{i}", out)


def run_values(project: Project, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What `compare` lines up: params, input hashes, numeric leaves of json outputs."""
    import json

    from .store import Store

    params = {f"param {k}": v for k, v in (data.get("graph_params") or {}).items()}
    for node, info in data.get("nodes", {}).items():  # effective values, defaults filled
        for k, v in ((info.get("recipe") or {}).get("params") or {}).items():
            params[f"param {node}.{k}"] = v
    inputs: dict[str, Any] = {}
    for name, rec in (data.get("inputs") or {}).items():
        items = rec if isinstance(rec, list) else ([rec] if rec else [])
        inputs[f"input {name}"] = ",".join(i["hash"][:12] for i in items)
    metrics: dict[str, float] = {}
    store = Store(project.store)
    for node, info in data.get("nodes", {}).items():
        for out, art in (info.get("outputs") or {}).items():
            if art.get("type") != "json":
                continue
            try:
                value = json.loads(store.object_path(art["hash"]).read_bytes())
            except (OSError, ValueError):
                continue
            _numeric_leaves(value, f"{node}.{out}:", metrics)
    store.close()
    return {"params": params, "inputs": inputs, "environment": environment_values(data), "metrics": metrics}


def environment_values(data: dict[str, Any]) -> dict[str, Any]:
    """A run's python environments as compare lines them up: `python`, `package NAME`; with several
    interpreters in the run, each name is followed by the interpreter's path."""
    envs = list((data.get("environments") or {}).values())
    out: dict[str, Any] = {}
    for fp in envs:
        where = f" ({fp.get('executable')})" if len(envs) > 1 else ""
        out[f"python{where}"] = fp.get("python")
        for name, version in (fp.get("packages") or {}).items():
            out[f"package {name}{where}"] = version
    return out


def output_metrics(project: Project, data: dict[str, Any]) -> dict[str, float]:
    """Numeric leaves of a run's json graph outputs: {"metrics.accuracy": 0.96, ...}: the record's
    `metrics` (plx/tracking.py), read from the store for a record made before plx kept them."""
    from .tracking import run_metrics

    if isinstance(data.get("metrics"), dict):
        return dict(data["metrics"])
    return run_metrics(project.store, data)


def compare(project: Project, refs: list[str], show_all: bool) -> dict[str, Any]:
    from .history import History

    history = History(project.store)
    ids = [history.resolve(r) for r in refs]
    values = [run_values(project, history.load(i)) for i in ids]
    rows = []
    for kind in ("params", "inputs", "environment", "metrics"):
        keys: list[str] = []
        for v in values:
            keys += [k for k in v[kind] if k not in keys]
        for key in keys:
            cells = [v[kind].get(key) for v in values]
            if not show_all and all(c == cells[0] for c in cells):
                continue
            row: dict[str, Any] = {"name": key, "kind": kind.rstrip("s"), "values": cells}
            if kind == "environment" and any(v["environment"] for v in values):
                # against the first run: a package added, removed or changed (a run without python nodes has no environment)
                first = cells[0]
                row["changes"] = [None if i == 0 or c == first else "added" if first is None else "removed" if c is None else "changed" for i, c in enumerate(cells)]
            if kind == "metrics" and isinstance(cells[0], (int, float)):
                row["deltas"] = [None if not isinstance(c, (int, float)) else round(c - cells[0], 12) for c in cells]
            rows.append(row)
    return {"runs": ids, "rows": rows}


def dry_run(
    project: Project, lib: Library, graph_file: Path, *, targets: list[str], params: list[str], inputs: list[str], sweeps: list[str] | None = None
) -> list[dict[str, Any]]:
    """What a run would do, node by node, and why; with sweeps, for every combination (rows carry `sweep`)."""
    from .engine import explain_plan

    members, _ = plan_members(project, lib, graph_file, targets=targets, params=params, inputs=inputs, sweeps=sweeps)
    rows = []
    first: dict[str, str] = {}  # the work of a node that would run -> the combination that runs it
    for m in members:
        for row in explain_plan(project, m.plan):
            w = row.pop("work", None)  # set on cacheable nodes that would run
            if w is not None:
                if w in first:  # a sweep runs identical work once (SPEC §5)
                    row["shared"] = True
                    row["why"] = [*row["why"], f"the same work as in {first[w] or 'another combination'}: runs once"]
                else:
                    first[w] = m.label
            rows.append({"sweep": m.label, **row} if sweeps else row)
    return rows


def preview(project: Project, lib: Library, graph_file: Path, node: str, params: list[str]) -> str:
    from .planner import plan as make_plan
    from .runners import prepare

    graph = load_graph(lib, graph_file)
    gparams, nparams, _ = parse_overrides(lib, graph, params)
    the_plan = make_plan(lib, graph, params=gparams, node_params=nparams)
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
    from .environment import resolve_python

    prepared = prepare(task.op, task.params, ins, outs, None, python=resolve_python(project, task.op.python) if task.op.runner == "python" else None)
    env = "\n".join(f"# {k}={v}" for k, v in sorted(prepared.env.items()))
    return f"# node {node}: operation {task.op.name}, runner {task.op.runner}\n{env}\n{prepared.script}"


# ---- graph / ops / init --------------------------------------------------------


def graph_edges(lib: Library, graph: Graph) -> tuple[list[str], list[tuple[str, str, str]]]:
    from .planner import plan as make_plan

    the_plan = make_plan_no_inputs(lib, graph, make_plan)
    edges = []
    for t in the_plan.tasks.values():
        for name, sources in t.inputs.items():
            for s in sources:
                if s.task:
                    edges.append((s.task, t.id, f"{s.output} → {name}"))
    return list(the_plan.tasks), edges


def make_plan_no_inputs(lib: Library, graph: Graph, make_plan: Any) -> Any:
    """A plan for display only: graph input files need not exist (a list input's files are found
    when they exist, so a fanned-out node shows its expansions)."""
    from .planner import resolve_graph_inputs

    fake: dict[str, list[Path]] = {}
    for i in graph.inputs:
        try:
            fake[i.name] = resolve_graph_inputs(lib, Graph(graph.name, inputs=[i]), {})[i.name]
        except RunError:
            fake[i.name] = [Path(f"<{i.name}>")] if i.is_list else [Path(str(i.default or f"<{i.name}>"))]
    unset = {p.name: f"<{p.name}>" for p in graph.params if p.required}  # nor need graph params a value
    return make_plan(lib, graph, inputs=fake, params=unset)


def render_graph(lib: Library, graph: Graph, fmt: str) -> str:
    nodes, edges = graph_edges(lib, graph)
    if fmt == "dot":
        lines = [f'digraph "{graph.name}" {{', "  rankdir=LR;"]
        lines += [f'  "{n}";' for n in nodes]
        lines += [f'  "{a}" -> "{b}" [label="{label}"];' for a, b, label in edges]
        return "\n".join(lines + ["}"])
    if fmt == "mermaid":
        ids = {n: f"n{i}" for i, n in enumerate(nodes)}
        lines = ["graph LR"] + [f'  {ids[n]}["{n}"]' for n in nodes]
        lines += [f"  {ids[a]} -->|{label}| {ids[b]}" for a, b, label in edges]
        return "\n".join(lines)
    ups: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b, label in edges:
        ups[b].append(f"{a} ({label})")
    return "\n".join(f"{n}" + (f"  <- {', '.join(ups[n])}" if ups[n] else "") for n in nodes)


def ops(lib: Library) -> list[dict[str, Any]]:
    rows = []
    for path in lib.operation_files():
        loaded = lib.load(path)
        obj = loaded.obj
        if isinstance(obj, Operation):
            rows.append(
                {
                    "name": obj.name,
                    "runner": obj.runner,
                    "inputs": [i.name + ("[]" if i.is_list else "") + ("?" if i.optional else "") for i in obj.inputs],
                    "params": [p.name for p in obj.params],
                    "outputs": [o.name for o in obj.outputs],
                    "title": obj.title or "",
                    "file": lib.display(path),
                }
            )
        elif isinstance(obj, Graph):
            rows.append(
                {
                    "name": obj.name,
                    "runner": "graph",
                    "inputs": [i.name for i in obj.inputs],
                    "params": [p.name for p in obj.params],
                    "outputs": list(obj.outputs),
                    "title": obj.title or "",
                    "file": lib.display(path),
                }
            )
    return sorted(rows, key=lambda r: r["name"])


INIT_FILES = {
    "plx.yaml": "# plx project settings (all optional)\noperations: [operations]\ngraphs: [graphs]\n# jobs: 4\n",
    "operations/word_count.yaml": """\
kind: operation
name: word_count
title: Count words
description: Counts the words of a text file and writes the count as JSON.
runner: bash_jinja2
inputs:
  - name: text
    type: text
params:
  - name: min_length
    type: int
    default: 1
outputs:
  - name: counts
    type: json
    filename: counts.json
cmd: |
  words=$(tr -s '[:space:]' '\\n' < {{ input.text }} | awk -v m={{ param.min_length }} 'length($0) >= m' | wc -l)
  echo "{\\"words\\": $words}" > {{ output.counts }}
""",
    "graphs/example.yaml": """\
kind: graph
name: example
description: Counts the words of a bundled text file.
inputs:
  - name: text
    type: text
    default: data/example.txt
nodes:
  count:
    operation: word_count
    inputs: {text: inputs.text}
    params: {min_length: 3}
outputs:
  counts: count.counts
""",
    "data/example.txt": "plx runs experiments written as YAML graphs, caches what did not change,\nand records every run so that you can compare them later.\n",
}


def init(root: Path) -> list[tuple[str, str]]:
    """Create the project skeleton; existing files are kept. Returns (path, what happened)."""
    done = []
    for rel, text in INIT_FILES.items():
        p = root / rel
        if p.exists():
            done.append((rel, "kept (exists)"))
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        done.append((rel, "created"))
    gi = root / ".gitignore"
    lines = gi.read_text(encoding="utf-8").splitlines() if gi.exists() else []
    if not any(line.strip().rstrip("/") in (".plx", "/.plx") for line in lines):
        with open(gi, "a", encoding="utf-8") as f:
            if lines and lines[-1] != "":
                f.write("\n")
            f.write(".plx/\n")
        done.append((".gitignore", "added .plx/"))
    else:
        done.append((".gitignore", "kept (.plx/ already ignored)"))
    return done


# ---- log / get -----------------------------------------------------------------


def get_output(project: Project, run_id: str, spec: str, dest: str | None, force: bool) -> str:
    """Copy NODE.OUTPUT (or a graph output name) of a run out of the store; returns where it went."""
    from .history import History
    from .store import Artifact, Store

    history = History(project.store)
    rid = history.resolve(run_id)
    data = history.load(rid)
    nodes = data["nodes"]
    if "." in spec:
        node, _, out = spec.rpartition(".")
    elif spec in data.get("outputs", {}):
        ref = data["outputs"][spec]
        if "node" not in ref:
            raise RunError(f"graph output '{spec}' is an input file of the graph: {ref.get('path')}")
        node, out = ref["node"], ref["output"]
    else:
        raise UsageError(f"'{spec}': write NODE.OUTPUT, or the name of a graph output ({', '.join(data.get('outputs', {})) or 'none'})")
    if node not in nodes:
        from .fanout import missing_node_hint

        hint = missing_node_hint(node, list(nodes))
        raise RunError(f"run {rid} has no node '{node}'" + (f" ({hint})" if hint else ""))
    outs = nodes[node].get("outputs") or {}
    if out not in outs:
        state = nodes[node].get("state")
        if not outs:
            raise RunError(f"node '{node}' of run {rid} has no stored outputs (it is {state})")
        raise RunError(f"node '{node}' has no output '{out}' (its outputs: {', '.join(outs)})")
    art = Artifact.from_json(outs[out])
    store = Store(project.store)
    try:
        if not store.intact(art):
            raise RunError(f"the stored artifact of {node}.{out} is missing or damaged; run the graph again to rebuild it")
        if dest == "-":
            if art.type == "directory":
                raise UsageError("a directory output cannot be written to stdout; give -o DEST")
            with open(store.object_path(art.hash), "rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer)
            sys.stdout.flush()
            return "-"
        target = Path(dest) if dest else Path.cwd() / art.filename
        if target.exists() or target.is_symlink():
            if not force:
                raise RunError(f"{target} exists; give --force to replace it, or -o DEST")
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        tmp = target.parent / f".{target.name}.plx-tmp-{os.getpid()}"
        try:
            store.materialize(art, tmp)
            os.replace(tmp, target)
        except BaseException:  # a full disk: no half-written copy is left behind
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            raise
        return str(target)
    finally:
        store.close()
