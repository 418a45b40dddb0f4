"""A validated graph -> a flat DAG of tasks: sub-graphs inlined, params bound, inputs wired."""

from __future__ import annotations

import glob
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RunError, UsageError, did_you_mean
from .loader import Library, upstream_of
from .model import MISSING, Graph, Operation, binding, parse_ref


@dataclass(frozen=True)
class Source:
    """Where one input file comes from: another task's output, or a file on disk."""

    task: str | None = None
    output: str | None = None
    path: Path | None = None


@dataclass
class Task:
    """One operation to execute in the flattened DAG; ids of inner nodes read `parent/child`."""

    id: str
    op: Operation
    params: dict[str, Any]
    inputs: dict[str, list[Source]]
    timeout: float | None
    cacheable: bool
    deps: set[str] = field(default_factory=set)


@dataclass
class Plan:
    graph: Graph
    tasks: dict[str, Task]  # in a topological order
    outputs: dict[str, Source]  # the graph's named outputs
    inputs: dict[str, list[Path]]  # the graph's input files as resolved
    params: dict[str, Any]  # the graph params' values


def find_cycle(adjacency: dict[str, list[str]]) -> list[str] | None:
    """Nodes on one cycle of a directed graph (edges node -> its upstream), or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(adjacency, WHITE)
    for start in adjacency:
        if color[start] != WHITE:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = [start]
        color[start] = GREY
        while stack:
            node, i = stack[-1]
            nexts = adjacency.get(node, [])
            if i < len(nexts):
                stack[-1] = (node, i + 1)
                nxt = nexts[i]
                if color.get(nxt, BLACK) == GREY:
                    cycle = path[path.index(nxt) :]
                    return list(reversed(cycle)) if len(cycle) > 1 else cycle
                if color.get(nxt) == WHITE:
                    color[nxt] = GREY
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                color[node] = BLACK
                stack.pop()
                path.pop()
    return None


def topological(nodes: dict[str, Any], upstream: dict[str, set[str]]) -> list[str]:
    """Node ids so that each comes after its upstream (Kahn), keeping file order among peers."""
    indeg = {n: len([u for u in upstream[n] if u in nodes]) for n in nodes}
    down: dict[str, list[str]] = {n: [] for n in nodes}
    for n, ups in upstream.items():
        for u in ups:
            if u in down:
                down[u].append(n)
    ready = deque(n for n in nodes if indeg[n] == 0)
    out: list[str] = []
    while ready:
        n = ready.popleft()
        out.append(n)
        for d in down[n]:
            indeg[d] -= 1
            if indeg[d] == 0:
                ready.append(d)
    return out


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
    if targets:
        tasks = _select(tasks, targets)
    return Plan(graph, tasks, {k: v[0] for k, v in exports.items() if v}, files, gparams)


def _flatten(
    lib: Library, graph: Graph, prefix: str, gparams: dict[str, Any], gsources: dict[str, list[Source]], overrides: dict[str, dict[str, Any]], tasks: dict[str, Task]
) -> dict[str, list[Source]]:
    ups = {nid: upstream_of(n) for nid, n in graph.nodes.items()}
    outs: dict[str, dict[str, list[Source]]] = {}

    def sources_of(ref: str) -> list[Source]:
        parts = parse_ref(ref)
        assert parts is not None
        head, tail = parts
        if head == "inputs":
            return gsources.get(tail, [])
        return outs[head][tail]

    for nid in topological(graph.nodes, ups):
        node = graph.nodes[nid]
        full = prefix + nid
        target = lib.resolve_node(graph, node)
        assert target is not None, f"unvalidated node {full}"
        values = {k: (gparams[b] if (b := binding(v)) is not None else v) for k, v in node.params.items()}
        values.update(overrides.get(full, {}))
        wired: dict[str, list[Source]] = {}
        for name, value in node.inputs.items():
            refs = value if isinstance(value, list) else [value]
            wired[name] = [s for ref in refs for s in sources_of(ref)]
        unset = [k for k, v in values.items() if v is MISSING]  # bound to a sub-graph's param that has no value
        if unset:
            raise RunError(f"node '{full}': param '{unset[0]}' is bound to a graph param that has no value; give it a default or a value with -p")
        if isinstance(target, Operation):
            filled = {p.name: p.default for p in target.params if not p.required}
            filled.update(values)
            task_inputs = {i.name: wired.get(i.name, []) for i in target.inputs}
            deps = {s.task for ss in task_inputs.values() for s in ss if s.task}
            cacheable = target.cacheable if node.cacheable is None else node.cacheable
            tasks[full] = Task(full, target, filled, task_inputs, node.timeout or target.timeout, cacheable, deps)
            outs[nid] = {o.name: [Source(task=full, output=o.name)] for o in target.outputs}
        else:
            sub_params = {p.name: p.default for p in target.params}
            sub_params.update(values)
            sub_sources = {i.name: wired.get(i.name, []) for i in target.inputs}
            outs[nid] = _flatten(lib, target, full + "/", sub_params, sub_sources, overrides, tasks)
    return {name: sources_of(ref) for name, ref in graph.outputs.items()}


def _select(tasks: dict[str, Task], targets: list[str]) -> dict[str, Task]:
    wanted: set[str] = set()
    for t in targets:
        matched = [tid for tid in tasks if tid == t or tid.startswith(t + "/")]
        if not matched:
            hint = did_you_mean(t, list(tasks))
            raise UsageError(f"no node '{t}' in the graph" + (f" ({hint})" if hint else ""))
        wanted.update(matched)
    stack = list(wanted)
    while stack:
        for d in tasks[stack.pop()].deps:
            if d not in wanted:
                wanted.add(d)
                stack.append(d)
    return {tid: t for tid, t in tasks.items() if tid in wanted}
