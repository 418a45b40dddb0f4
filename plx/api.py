"""The Python API (README, "From Python"): build graphs in code, save them as the YAML a person would write, run them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

import yaml

from . import model
from .errors import PlxError, UsageError
from .project import Project, load_project
from .records import RunState
from .structs import field, record


class Operation:
    """An operation file, loaded and validated."""

    def __init__(self, op: model.Operation, path: Path):
        self.model = op
        self.path = path

    @property
    def name(self) -> str:
        return self.model.name

    @classmethod
    def load(cls, path: str | os.PathLike[str], project: Project | None = None) -> Operation:
        from .loader import Library

        proj = project or load_project()
        p = Path(path)
        p = p if p.is_absolute() or p.exists() else proj.root / p
        obj = Library(proj).runnable(p)
        if not isinstance(obj, model.Operation):
            raise UsageError(f"{path} is a graph, not an operation; use plx.load()")
        return cls(obj, p.resolve())

    def __repr__(self) -> str:
        return f"Operation({self.name!r}, runner={self.model.runner!r})"


OperationRef = Union[Operation, "Graph", str]


@record
class _Node:
    operation: str
    inputs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    cacheable: bool | None = None
    foreach: Any = None
    resources: dict[str, Any] | None = None
    retries: int | None = None


class Graph:
    """A graph being built in Python; `save` writes the same YAML file a person would."""

    def __init__(self, name: str, description: str | None = None, title: str | None = None, project: Project | None = None):
        self.name = name
        self.title = title
        self.description = description
        self.project = project
        self._inputs: list[dict[str, Any]] = []
        self._params: list[dict[str, Any]] = []
        self._nodes: dict[str, _Node] = {}
        self._outputs: dict[str, str] = {}
        self.path: Path | None = None

    def _proj(self) -> Project:
        if self.project is None:
            self.project = load_project()
        return self.project

    def input(self, name: str, type: str = "file", default: str | list[str] | None = None, min: int = 1, max: int = 1) -> str:
        """Declare a graph input; returns its reference `inputs.NAME` for wiring nodes."""
        entry: dict[str, Any] = {"name": name}
        if type != "file":
            entry["type"] = type
        if min != 1:
            entry["min"] = min
        if max != 1:
            entry["max"] = max
        if default is not None:
            entry["default"] = default
        self._inputs.append(entry)
        return f"inputs.{name}"

    def param(self, name: str, type: str, default: Any = model.MISSING, values: list[Any] | None = None) -> str:
        """Declare a graph param; returns `${NAME}` for binding node params to it."""
        entry: dict[str, Any] = {"name": name, "type": type}
        if values is not None:
            entry["values"] = values
        if default is not model.MISSING:
            entry["default"] = default
        self._params.append(entry)
        return "${" + name + "}"

    def node(
        self,
        id: str,
        operation: OperationRef,
        inputs: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        cacheable: bool | None = None,
        foreach: Any = None,
        resources: dict[str, Any] | None = None,
        retries: int | None = None,
    ) -> NodeRef:
        """Add a node; returns a handle whose attributes are its output references (`node.model` -> 'train.model').
        `foreach` fans it out as in YAML: 'inputs.NAME', 'params.NAME', a node id, a list or a mapping of lists."""
        if id in self._nodes:
            raise UsageError(f"graph '{self.name}' already has a node '{id}'")
        self._nodes[id] = _Node(self._operation_ref(operation), dict(inputs or {}), dict(params or {}), timeout, cacheable, foreach, resources, retries)
        return NodeRef(id)

    def output(self, name: str, ref: str | NodeOutput) -> None:
        self._outputs[name] = str(ref)

    def _operation_ref(self, op: OperationRef) -> str:
        if isinstance(op, str):
            return op
        path = op.path
        if path is None:
            raise UsageError(f"save graph '{op.name}' before using it as a sub-graph")
        proj = self._proj()
        if isinstance(op, Operation):
            from .loader import Library

            found = Library(proj).find(op.name)
            if isinstance(found, Path) and found.resolve() == path.resolve():
                return op.name  # found by its name, as a person would write it
        try:
            return str(path.resolve().relative_to(proj.root))
        except ValueError:
            return str(path)

    def to_dict(self) -> dict[str, Any]:  # noqa: C901 - above the threshold when it was set (issue 11)
        """The graph as the data of its YAML file, keys in the order people write them."""
        d: dict[str, Any] = {"kind": "graph", "name": self.name}
        if self.title:
            d["title"] = self.title
        if self.description:
            d["description"] = self.description
        if self._inputs:
            d["inputs"] = [dict(i) for i in self._inputs]
        if self._params:
            d["params"] = [dict(p) for p in self._params]
        nodes: dict[str, Any] = {}
        for nid, n in self._nodes.items():
            entry: dict[str, Any] = {"operation": n.operation}
            if n.foreach is not None:
                entry["foreach"] = n.foreach
            if n.inputs:
                entry["inputs"] = {k: ([str(x) for x in v] if isinstance(v, list) else str(v)) for k, v in n.inputs.items()}
            if n.params:
                entry["params"] = dict(n.params)
            if n.timeout is not None:
                entry["timeout"] = n.timeout
            if n.cacheable is not None:
                entry["cacheable"] = n.cacheable
            if n.resources is not None:
                entry["resources"] = dict(n.resources)
            if n.retries is not None:
                entry["retries"] = n.retries
            nodes[nid] = entry
        d["nodes"] = nodes
        if self._outputs:
            d["outputs"] = dict(self._outputs)
        return d

    def to_yaml(self) -> str:
        return str(yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False, allow_unicode=True, width=100))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the graph's YAML and validate it; returns the path."""
        p = Path(path)
        p = p if p.is_absolute() else self._proj().root / p
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"# written by plx.Graph.save\n{self.to_yaml()}", encoding="utf-8")
        self.path = p.resolve()
        from .loader import Library

        Library(self._proj()).runnable(self.path)
        return self.path

    @classmethod
    def from_dict(cls, data: dict[str, Any], project: Project | None = None) -> Graph:
        g = cls(data["name"], data.get("description"), data.get("title"), project)
        g._inputs = [dict(i) for i in data.get("inputs", [])]
        g._params = [dict(p) for p in data.get("params", [])]
        for nid, n in data.get("nodes", {}).items():
            g._nodes[nid] = _Node(
                n["operation"],
                dict(n.get("inputs", {})),
                dict(n.get("params", {})),
                n.get("timeout"),
                n.get("cacheable"),
                n.get("foreach"),
                n.get("resources"),
                n.get("retries"),
            )
        g._outputs = dict(data.get("outputs", {}))
        return g

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Graph) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self._nodes)} nodes)"


class NodeOutput(str):
    """A reference `node.output`, usable wherever a reference string is."""


class NodeRef:
    def __init__(self, id: str):
        self.id = id

    def __getattr__(self, output: str) -> NodeOutput:
        if output.startswith("_"):
            raise AttributeError(output)
        return NodeOutput(f"{self.id}.{output}")

    def __getitem__(self, output: str) -> NodeOutput:
        return NodeOutput(f"{self.id}.{output}")


def load(path: str | os.PathLike[str], project: Project | None = None) -> Graph | Operation:
    """Load and validate a graph or operation file."""
    from .loader import Library

    proj = project or load_project()
    p = Path(path)
    p = p if p.is_absolute() or p.exists() else proj.root / p
    lib = Library(proj)
    obj = lib.runnable(p)
    if isinstance(obj, model.Operation):
        return Operation(obj, p.resolve())
    loaded = lib.load(p)
    assert loaded.doc is not None
    g = Graph.from_dict(loaded.doc.data, proj)
    g.path = p.resolve()
    return g


@record
class Run:
    """A finished run: its id, status, node states and outputs."""

    id: str
    status: str
    nodes: dict[str, str]
    record: dict[str, Any]
    project: Project

    @property
    def ok(self) -> bool:
        return self.status == RunState.SUCCESS

    @property
    def outputs(self) -> dict[str, Path]:
        """Graph outputs -> the read-only file in the store (a directory's manifest for directory outputs)."""
        from .store import Store

        out = {}
        store_objects = Store(self.project.store)
        for name, ref in (self.record.get("outputs") or {}).items():
            if "node" in ref:
                art = (self.record["nodes"].get(ref["node"], {}).get("outputs") or {}).get(ref["output"])
                if art:
                    out[name] = store_objects.object_path(art["hash"])
            elif "path" in ref:
                out[name] = Path(ref["path"])
        store_objects.close()
        return out

    def get(self, output: str, dest: str | os.PathLike[str], force: bool = False) -> Path:
        """Copy an output (`NAME` or `NODE.OUTPUT`) out of the store to dest."""
        from .commands import get_output

        return Path(get_output(self.project, self.id, output, str(dest), force))

    def metrics(self) -> dict[str, float]:
        """The numeric values of the graph's json outputs, flattened: {'metrics.accuracy': 0.96}."""
        from .commands import output_metrics

        return output_metrics(self.project, self.record)

    @classmethod
    def _from(cls, record: dict[str, Any], project: Project) -> Run:
        return cls(record["id"], record["status"], {n: d.get("state", "") for n, d in record["nodes"].items()}, record, project)


def run(
    graph: Graph | str | os.PathLike[str],
    jobs: int | None = None,
    params: dict[str, Any] | None = None,
    inputs: dict[str, str] | None = None,
    no_cache: bool = False,
    keep_going: bool = False,
    progress: bool = False,
    project: Project | None = None,
) -> Run:
    """Run a graph (a Graph or a path) and return its Run; a failed node gives status 'failed', not an exception."""
    from . import commands
    from .engine import NullReporter
    from .report import PlainReporter

    proj = project or (graph.project if isinstance(graph, Graph) and graph.project else load_project())
    if isinstance(graph, Graph):
        if graph.path is None:
            tmp = proj.store / "tmp" / f"api-{graph.name}-{os.getpid()}.yaml"
            graph.project = proj
            graph.save(tmp)
        path = graph.path
    else:
        path = Path(graph) if Path(graph).is_absolute() else proj.root / Path(graph)
    assert path is not None
    from .loader import Library

    lib = Library(proj)
    items = [f"{k}={_text(v)}" for k, v in (params or {}).items()]
    record = commands.run(
        proj,
        lib,
        path,
        targets=[],
        params=items,
        inputs=[f"{k}={v}" for k, v in (inputs or {}).items()],
        jobs=jobs,
        no_cache=no_cache,
        keep_going=keep_going,
        reporter=PlainReporter() if progress else NullReporter(),
        argv=["<python api>"],
    )
    return Run._from(record, proj)


def _text(v: Any) -> str:
    """A typed value as the text `-p` parses back to the same value."""
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


__all__ = ["Graph", "Operation", "Run", "load", "run", "PlxError"]
