"""The one parser of `-p`, `-i` and `--sweep`, and the one place that puts an override on a graph
param or a node param (`NAME` is the graph's, `NODE.PARAM` a node's, `parent/child.PARAM` inside a sub-graph)."""

from __future__ import annotations

from pathlib import Path

from .errors import RunError, UsageError, did_you_mean
from .loader import Library
from .model import Graph, Operation, ParamSpec, parse_param_text
from .structs import field, record

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any


@record
class Overrides:
    """Param values by where they go: the graph's params, each node's params (by node id), and the
    record's flat view (`{"lr": 0.01, "train.depth": 3}`, as `plx log --json` shows `overrides`)."""

    graph: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    flat: dict[str, Any] = field(default_factory=dict)

    def put(self, name: str, value: Any) -> None:
        """Place the value of `NAME` or `NODE.PARAM` (the node path may hold `/` and `[KEY]`)."""
        node, _, pname = name.rpartition(".")
        self.flat[name] = value
        if node:
            self.nodes.setdefault(node, {})[pname] = value
        else:
            self.graph[name] = value

    def copy(self) -> Overrides:
        return Overrides(dict(self.graph), {k: dict(v) for k, v in self.nodes.items()}, dict(self.flat))

    @staticmethod
    def from_flat(flat: dict[str, Any]) -> Overrides:
        """The overrides recorded in a run (its `params`), placed again (`plx rerun`)."""
        out = Overrides()
        for name, value in flat.items():
            out.put(name, value)
        return out


def split_assignment(text: str, flag: str) -> tuple[str, str]:
    name, eq, value = text.partition("=")
    if not eq or not name:
        raise UsageError(f"{flag} {text!r}: write NAME=VALUE")
    bad = next((i for i, ch in enumerate(text) if "\udc80" <= ch <= "\udcff"), None)
    if bad is not None:  # a byte the command line held that is not UTF-8: values are recorded as text
        shown = text.encode("utf-8", "surrogateescape")
        raise UsageError(f"{flag} {shown!r}: byte {ord(text[bad]) - 0xDC00:#04x} at position {bad} is not UTF-8 text; write the value in UTF-8")
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


def parse_params(lib: Library, graph: Graph, items: list[str]) -> Overrides:
    """`-p` values, each checked against its param and parsed by its type."""
    out = Overrides()
    for item in items:
        name, text = split_assignment(item, "-p")
        _, spec = param_spec_for(lib, graph, name)
        try:
            out.put(name, parse_param_text(spec, text))
        except ValueError as exc:
            raise RunError(f"-p {name}: {exc}") from None
    return out


def parse_sweep(lib: Library, graph: Graph, item: str) -> tuple[str, list[Any]]:
    """`--sweep NAME=V1,V2` or `--sweep 'NAME=[JSON list]'` -> (NAME, typed values)."""
    from .model import _json, check_param_value

    name, text = split_assignment(item, "--sweep")
    _, spec = param_spec_for(lib, graph, name)
    values: list[Any] = []
    if text.strip().startswith("["):
        try:
            raw = _json(text)
        except ValueError as exc:
            raise RunError(f"--sweep {name}: {exc}" if "finite" in str(exc) else f"--sweep {name}: not a JSON list: {exc}") from None
        if not isinstance(raw, list):
            raise RunError(f"--sweep {name}: not a JSON list: {text}")
        for v in raw:
            if isinstance(v, str) and spec.type not in ("str", "code", "enum"):
                v = _parse_one(spec, name, v)
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


def parse_inputs(graph: Graph, items: list[str]) -> dict[str, list[Path]]:
    """`-i NAME=PATH` (a list input also takes a glob pattern) -> the files of each graph input."""
    out: dict[str, list[Path]] = {}
    for item in items:
        name, value = split_assignment(item, "-i")
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
