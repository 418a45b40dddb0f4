"""A validated graph -> a flat DAG of tasks: sub-graphs inlined, params bound, inputs wired."""

from __future__ import annotations

import gc
import glob
import re
from pathlib import Path

from . import fanout
from .dag import topological, upstream_closure
from .errors import RunError, UsageError, ValidationError, did_you_mean
from .loader import Library, upstream_of
from .model import MISSING, Graph, Node, Operation, ParamSpec, binding, check_param_value, parse_ref
from .resources import Request, request_of
from .structs import field, record

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any, Callable, NoReturn


@record(frozen=True)
class Source:
    """Where one input file comes from: another task's output, or a file on disk."""

    task: str | None = None
    output: str | None = None
    path: Path | None = None


@record
class Task:
    """One operation to execute in the flattened DAG; ids of inner nodes read `parent/child`."""

    id: str
    op: Operation
    params: dict[str, Any]
    inputs: dict[str, list[Source]]
    timeout: float | None
    cacheable: bool
    deps: set[str] = field(default_factory=set)
    resources: Request = field(default_factory=Request)
    retries: int = 0


@record
class Plan:
    graph: Graph
    tasks: dict[str, Task]  # in a topological order
    outputs: dict[str, Source]  # the graph's named outputs
    inputs: dict[str, list[Path]]  # the graph's input files as resolved
    params: dict[str, Any]  # the graph params' values


def resolve_graph_inputs(lib: Library, graph: Graph, given: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """Each graph input's files: from -i, else its default (a path, a list, or a glob)."""
    out: dict[str, list[Path]] = {}
    for spec in graph.inputs:
        if spec.name in given:
            out[spec.name] = given[spec.name]
            continue
        default = spec.default
        if default is None:
            if spec.min >= 1:
                raise RunError(f"graph input '{spec.name}' has no default; give it with -i {spec.name}=PATH")
            out[spec.name] = []
            continue
        paths: list[Path] = []
        for item in default if isinstance(default, list) else [default]:
            p = lib.project.path(item)
            if spec.is_list and any(ch in item for ch in "*?["):
                matches = sorted(glob.glob(str(p), recursive=True))
                if not matches and spec.min >= 1:
                    raise RunError(f"graph input '{spec.name}': the pattern '{item}' matches no file")
                paths.extend(Path(m) for m in matches)
            else:
                if not p.exists():
                    raise RunError(
                        f"graph input '{spec.name}': its default file '{item}' does not exist",
                    )
                paths.append(p)
        out[spec.name] = paths
    return out


def plan(
    lib: Library,
    graph: Graph,
    *,
    params: dict[str, Any] | None = None,
    node_params: dict[str, dict[str, Any]] | None = None,
    inputs: dict[str, list[Path]] | None = None,
    targets: list[str] | None = None,
) -> Plan:
    """Flatten graph into tasks; `targets` keeps only those nodes and their upstream."""
    collect = gc.isenabled()
    gc.disable()  # a plan is thousands of long-lived objects: collecting while building them only costs time
    try:
        return _plan(lib, graph, params=params, node_params=node_params, inputs=inputs, targets=targets)
    finally:
        if collect:
            gc.enable()


def _plan(
    lib: Library,
    graph: Graph,
    *,
    params: dict[str, Any] | None,
    node_params: dict[str, dict[str, Any]] | None,
    inputs: dict[str, list[Path]] | None,
    targets: list[str] | None,
) -> Plan:
    gparams = {p.name: p.default for p in graph.params}
    gparams.update(params or {})
    unset = [name for name, v in gparams.items() if v is MISSING]
    if unset:
        raise RunError(
            f"the graph param{'s' if len(unset) > 1 else ''} {', '.join(repr(n) for n in unset)} of {graph.file or graph.name} "
            f"{'have' if len(unset) > 1 else 'has'} no default; give {'them' if len(unset) > 1 else 'it'} with -p {unset[0]}=VALUE"
        )
    files = resolve_graph_inputs(lib, graph, inputs or {})
    tasks: dict[str, Task] = {}
    sources = {name: [Source(path=p) for p in paths] for name, paths in files.items()}
    exports = _flatten(lib, graph, "", gparams, sources, node_params or {}, tasks)
    for nid in node_params or {}:
        if "[" in nid and not any(t == nid or t.startswith(nid + "/") for t in tasks):
            hint = did_you_mean(nid, [t for t in tasks if t.startswith(nid.split("[", 1)[0] + "[")])
            raise RunError(f"-p {nid}.PARAM: the graph has no expansion '{nid}'" + (f" ({hint})" if hint else ""))
    if targets:
        tasks = _select(tasks, targets)
    return Plan(graph, tasks, {k: v[0] for k, v in exports.items() if v}, files, gparams)


def _flatten(
    lib: Library, graph: Graph, prefix: str, gparams: dict[str, Any], gsources: dict[str, list[Source]], overrides: dict[str, dict[str, Any]], tasks: dict[str, Task]
) -> dict[str, list[Source]]:
    ups = {nid: upstream_of(n) for nid, n in graph.nodes.items()}
    outs: dict[str, dict[str, list[Source]]] = {}
    fans: dict[str, dict[str, dict[str, list[Source]]]] = {}  # fanned-out node -> key -> its outputs
    items_of: dict[str, list[fanout.Item]] = {}
    parts_of: dict[str, dict[frozenset[tuple[str, str]], str]] = {}  # matrix keys by their parts, in any order

    def fail(path: tuple[Any, ...], message: str, hint: str | None = None) -> NoReturn:
        raise ValidationError([lib.diag(graph, path, message, hint)])

    def sources_of(ref: str, item: fanout.Item | None = None, files: list[Source] | None = None, up: str | None = None, where: tuple[Any, ...] = ()) -> list[Source]:
        if fanout.is_fan_ref(ref):
            fr = fanout.parse_fan_ref(ref)
            assert fr is not None, f"unvalidated reference {ref}"
            if fr.node == fanout.ITEM:
                assert item is not None
                if fr.output is None:
                    assert files is not None
                    return [files[item.index]]
                return fans[up or ""][item.key][fr.output or ""]
            per_key = fans[fr.node]
            if fr.key == fanout.GATHER:
                return [s for o in per_key.values() for s in o[fr.output or ""]]
            text = fanout.fill_key(fr.key, item) if item is not None and fr.key and "$" in fr.key else fr.key or ""
            key = fanout.find_key(per_key, parts_of[fr.node], text)
            if key is None:
                message, hint = fanout.unknown_key_message(fr.node, text, list(per_key), [n for n, _ in items_of[fr.node][0].parts] if items_of[fr.node] else [])
                who = f"node '{prefix}{where[1]}' input '{where[3]}'" if where[:1] == ("nodes",) else f"graph output '{where[-1]}'"
                fail(where, f"{who} reads '{ref}', but {message}", hint)
            return per_key[key][fr.output or ""]
        parts = parse_ref(ref)
        assert parts is not None
        head, tail = parts
        if head == "inputs":
            return gsources.get(tail, [])
        return outs[head][tail]

    for nid in topological(graph.nodes, ups):
        node = graph.nodes[nid]
        target = lib.resolve_node(graph, node)
        assert target is not None, f"unvalidated node {prefix + nid}"
        if node.foreach is None:
            outs[nid] = _emit(lib, graph, prefix, nid, prefix + nid, node, target, gparams, overrides, tasks, lambda ref, where: sources_of(ref, where=where), None, fail)
            continue
        fe = fanout.classify(node.foreach)
        assert isinstance(fe, fanout.Foreach), f"unvalidated foreach of {prefix + nid}"
        files = gsources.get(fe.source or "", []) if fe.kind == "input" else None
        up = fe.source if fe.kind == "node" else None
        try:
            keys = [_source_key(s, tasks) for s in files] if files is not None else None
            items = fanout.expand(fe, nid, gparams, keys, items_of.get(up or ""), lambda i, files=files: _describe(files[i] if files else Source(), lib, tasks))  # type: ignore[misc]
        except fanout.FanError as exc:
            fail(("nodes", nid) + exc.where, exc.message, exc.hint)
        items_of[nid] = items
        per_key: dict[str, dict[str, list[Source]]] = {}
        tpl = _Template.of(node, target)
        for it in items:
            per_key[it.key] = _emit(
                lib,
                graph,
                prefix,
                nid,
                f"{prefix}{nid}[{it.key}]",
                node,
                target,
                gparams,
                overrides,
                tasks,
                lambda ref, where, it=it, files=files, up=up: sources_of(ref, it, files, up, where),  # type: ignore[misc]
                it,
                fail,
                tpl,
            )
        fans[nid] = per_key
        parts_of[nid] = {frozenset(it.parts): it.key for it in items if it.parts}
    return {name: sources_of(ref, where=("outputs", name)) for name, ref in graph.outputs.items()}


def _emit(
    lib: Library,
    graph: Graph,
    prefix: str,
    nid: str,
    full: str,
    node: Node,
    target: Operation | Graph,
    gparams: dict[str, Any],
    overrides: dict[str, dict[str, Any]],
    tasks: dict[str, Task],
    sources_of: Callable[[str, tuple[Any, ...]], list[Source]],
    item: fanout.Item | None,
    fail: Callable[..., NoReturn],
    tpl: _Template | None = None,
) -> dict[str, list[Source]]:
    """Add the task(s) of one node (or one expansion of a fanned-out node); returns its outputs."""
    tpl = tpl or _Template.of(node, target)
    values: dict[str, Any] = {}
    for k, v in node.params.items():
        b = binding(v)
        if b is None:
            values[k] = v
        elif item is not None and b in item.vars:
            values[k] = value = item.vars[b]
            spec = tpl.specs.get(k)
            problem = check_param_value(spec, value) if spec is not None else None
            if problem:
                fail(("nodes", nid, "params", k), f"node '{full}': {problem[0]} (bound to '${{{b}}}')", problem[1])
        else:
            values[k] = gparams[b]
    if overrides:
        if "[" in full:  # an expansion, or a node inside one: `-p map.P` and `-p sub/inner.P` reach it too
            values.update(overrides.get(_template_id(full), {}))
        values.update(overrides.get(full, {}))
    wired: dict[str, list[Source]] = {}
    for name, value in node.inputs.items():
        refs = value if isinstance(value, list) else [value]
        wired[name] = got = [s for ref in refs for s in sources_of(ref, ("nodes", nid, "inputs", name))]
        spec_i = target.input(name) if name in tpl.gathers else None
        if spec_i is not None:
            if len(got) < spec_i.min:
                fail(
                    ("nodes", nid, "inputs", name),
                    f"node '{full}': input '{name}' needs at least {spec_i.min} file(s), but its gather gives {len(got)}",
                    "a fanned-out node over an empty list has no expansions",
                )
            if spec_i.max != -1 and len(got) > spec_i.max:
                fail(("nodes", nid, "inputs", name), f"node '{full}': input '{name}' takes at most {spec_i.max} files, but its gather gives {len(got)}")
    unset = [k for k, v in values.items() if v is MISSING]  # bound to a sub-graph's param that has no value
    if unset:
        raise RunError(f"node '{full}': param '{unset[0]}' is bound to a graph param that has no value; give it a default or a value with -p")
    if isinstance(target, Operation):
        filled = dict(tpl.defaults)
        filled.update(values)
        task_inputs = {i.name: wired.get(i.name, []) for i in target.inputs}
        deps = {s.task for ss in task_inputs.values() for s in ss if s.task}
        cacheable = target.cacheable if node.cacheable is None else node.cacheable
        tasks[full] = Task(full, target, filled, task_inputs, node.timeout or target.timeout, cacheable, deps)
        if target.resources or node.resources:
            tasks[full].resources = request_of(target.resources, node.resources)
        tasks[full].retries = target.retries if node.retries is None else node.retries
        return {o.name: [Source(task=full, output=o.name)] for o in target.outputs}
    sub_params = {p.name: p.default for p in target.params}
    sub_params.update(values)
    sub_sources = {i.name: wired.get(i.name, []) for i in target.inputs}
    return _flatten(lib, target, full + "/", sub_params, sub_sources, overrides, tasks)


@record
class _Template:
    """What every expansion of one node shares, computed once."""

    specs: dict[str, ParamSpec]
    defaults: dict[str, Any]
    gathers: set[str]  # inputs that gather `node[*].out`

    @staticmethod
    def of(node: Node, target: Operation | Graph) -> _Template:
        specs = {p.name: p for p in target.params} if isinstance(target, Operation) else {}
        gathers = {k for k, v in node.inputs.items() if any(fanout.is_fan_ref(r) and "[*]" in r for r in (v if isinstance(v, list) else [v]))}
        return _Template(specs, {p.name: p.default for p in target.params if not p.required}, gathers)


_KEY_IN_ID = re.compile(r"\[[^\[\]]*\]")


def _template_id(task_id: str) -> str:
    """`map[A]/inner[x=1]` -> `map/inner`: the node ids as written in the files."""
    return _KEY_IN_ID.sub("", task_id)


def _source_name(s: Source, tasks: dict[str, Task]) -> str:
    if s.path is not None:
        return s.path.name
    out = tasks[s.task or ""].op.output(s.output or "")
    return out.file_name if out else str(s.output)


def _describe(s: Source, lib: Library, tasks: dict[str, Task]) -> str:
    return lib.display(s.path) if s.path else f"{s.task}.{s.output}"


def _source_key(s: Source, tasks: dict[str, Task]) -> str:
    """The expansion key of one file of a list input: its name without extension; an upstream
    expansion's output (a sub-graph's list input fed by a gather) keeps that expansion's key."""
    if s.path is None and s.task and s.task.endswith("]"):
        return s.task[s.task.rindex("[") + 1 : -1]
    return fanout.file_key(_source_name(s, tasks))


def _select(tasks: dict[str, Task], targets: list[str]) -> dict[str, Task]:
    wanted: set[str] = set()
    for t in targets:
        matched = [tid for tid in tasks if tid == t or tid.startswith((t + "/", t + "["))]
        if not matched:
            hint = did_you_mean(t, list(tasks))
            raise UsageError(f"no node '{t}' in the graph" + (f" ({hint})" if hint else ""))
        wanted.update(matched)
    wanted = upstream_closure(wanted, lambda tid: tasks[tid].deps)
    return {tid: t for tid, t in tasks.items() if tid in wanted}
