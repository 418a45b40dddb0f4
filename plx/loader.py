"""Operation and graph files -> model objects, with schema and semantic validation."""

from __future__ import annotations

import re
from pathlib import Path

from . import fanout, schema, templates
from .dag import find_cycle
from .errors import Diagnostic, ValidationError, did_you_mean
from .model import (
    MISSING,
    Graph,
    InputSpec,
    Node,
    Operation,
    OutputSpec,
    ParamSpec,
    accepts,
    binding,
    check_param_value,
    parse_ref,
)
from .parsecache import ParseCache
from .project import Project
from .structs import field, record
from .yamldoc import Doc, load_file

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any

    from .model import Runnable

RESERVED_NODE_IDS = {"inputs", "params", fanout.ITEM}


@record
class Loaded:
    """One file as loaded: its object (None when its structure is broken), doc and problems."""

    obj: Runnable | None
    doc: Doc | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    checked: bool = False  # graph semantics checked (recursion guard)


@record
class OutputInfo:
    type: str
    filename: str


class Library:
    """Finds operations and graphs by name or path, loads each file once, validates them."""

    def __init__(self, project: Project):
        self.project = project
        self.files: dict[Path, Loaded] = {}
        self._by_name: dict[str, list[Path]] | None = None
        self._found: dict[str, Path | list[str]] = {}  # `operation:` value -> file: graphs reuse a few many times
        self._resolved: dict[Path, Path] = {}

    # ---- finding files ------------------------------------------------------

    def display(self, path: Path) -> str:
        return self.project.rel(path)

    def operation_files(self) -> list[Path]:
        return self._yaml_files(self.project.operation_dirs)

    def graph_files(self) -> list[Path]:
        return self._yaml_files(self.project.graph_dirs)

    def _yaml_files(self, folders: list[str]) -> list[Path]:
        out: list[Path] = []
        for d in folders:
            base = self.project.path(d)
            if base.is_dir():
                out.extend(sorted(p for p in base.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()))
        return out

    def names(self) -> dict[str, list[Path]]:
        """Every named operation (or graph) in the operation folders, by name."""
        if self._by_name is None:
            self._by_name = {}
            for p in self.operation_files():
                loaded = self.load(p)
                name = loaded.doc.data.get("name") if loaded.doc and isinstance(loaded.doc.data, dict) else None
                if isinstance(name, str):
                    self._by_name.setdefault(name, []).append(p)
        return self._by_name

    def find(self, ref: str) -> Path | list[str]:
        """The file a node's `operation:` names (resolved), or candidate names for a hint."""
        found = self._found.get(ref)
        if found is None:
            found = self._found[ref] = self._find(ref)
            if isinstance(found, Path):
                found = self._found[ref] = found.resolve()
        return found

    def _find(self, ref: str) -> Path | list[str]:
        if "/" in ref or ref.endswith((".yaml", ".yml")):
            p = self.project.path(ref)
            return p if p.is_file() else []
        # Fast path: operations/<name>.yaml whose name matches, without scanning the folder.
        for d in self.project.operation_dirs:
            for ext in (".yaml", ".yml"):
                p = self.project.path(d) / f"{ref}{ext}"
                if p.is_file():
                    loaded = self.load(p)
                    if loaded.doc and isinstance(loaded.doc.data, dict) and loaded.doc.data.get("name") == ref:
                        return p
        found = self.names().get(ref)
        if found:
            return found[0]
        return list(self.names())

    # ---- loading ------------------------------------------------------------

    def load(self, path: Path) -> Loaded:
        if path in self.files:
            return self.files[path]
        resolved = self._resolved.get(path)
        if resolved is None:
            resolved = self._resolved[path] = path.resolve()
        path = resolved
        if path in self.files:
            return self.files[path]
        try:
            doc = load_file(path, self.display(path), ParseCache(self.project.store / "parsed"))
        except ValidationError as exc:
            loaded = Loaded(None, None, list(exc.diagnostics))
            self.files[path] = loaded
            return loaded
        loaded = Loaded(None, doc)
        self.files[path] = loaded
        data = doc.data
        if not isinstance(data, dict):
            what = schema.describe_type(data)
            loaded.diagnostics.append(doc.diag((), f"the top level must be a mapping with 'kind: operation' or 'kind: graph', not {what}"))
            return loaded
        kind = data.get("kind")
        if kind == "operation":
            loaded.obj = _operation(doc, loaded.diagnostics)
            if isinstance(loaded.obj, Operation) and loaded.obj.sources:
                from . import sources

                sources.check(self.project, doc, loaded.obj, loaded.diagnostics)
        elif kind == "graph":
            loaded.obj = _graph(doc, loaded.diagnostics)
        elif kind is None:
            loaded.diagnostics.append(doc.diag((), "missing 'kind'", "start the file with 'kind: operation' or 'kind: graph'"))
        else:
            loaded.diagnostics.append(doc.diag(("kind",), f"'kind' must be 'operation' or 'graph'; got {kind!r}", did_you_mean(str(kind), ["operation", "graph"])))
        return loaded

    def check(self, path: Path, stack: tuple[Path, ...] = ()) -> Loaded:
        """Load path and check its semantics, recursing into the operations it uses."""
        loaded = self.load(path)
        if isinstance(loaded.obj, Graph) and not loaded.checked:
            loaded.checked = True
            assert loaded.doc is not None
            _check_graph(self, loaded.obj, loaded.doc, loaded.diagnostics, stack + (path.resolve(),))
        return loaded

    def all_diagnostics(self) -> list[Diagnostic]:
        seen: set[str] = set()
        out: list[Diagnostic] = []
        for loaded in self.files.values():
            for d in loaded.diagnostics:
                if str(d) not in seen:
                    seen.add(str(d))
                    out.append(d)
        return out

    def outputs_of(self, obj: Runnable) -> dict[str, OutputInfo]:
        """The typed outputs a node using obj provides."""
        if isinstance(obj, Operation):
            return {o.name: OutputInfo(o.type, o.file_name) for o in obj.outputs}
        out: dict[str, OutputInfo] = {}
        for name, ref in obj.outputs.items():
            info = self._ref_info(obj, ref)
            if info:
                out[name] = info
        return out

    def _ref_info(self, graph: Graph, ref: str) -> OutputInfo | None:
        parts = parse_ref(ref)
        if not parts:
            return None
        head, tail = parts
        if head == "inputs":
            spec = graph.input(tail)
            return OutputInfo(spec.type, tail) if spec else None
        node = graph.nodes.get(head)
        target = self.resolve_node(graph, node) if node else None
        if target is None:
            return None
        return self.outputs_of(target).get(tail)

    def resolve_node(self, graph: Graph, node: Node) -> Runnable | None:
        found = self.find(node.operation)
        if isinstance(found, list):
            return None
        return self.load(found).obj

    def diag(self, graph: Graph, path: tuple[Any, ...], message: str, hint: str | None = None) -> Diagnostic:
        """A problem found after validation (while planning), located in graph's file."""
        for loaded in self.files.values():
            if loaded.obj is graph and loaded.doc is not None:
                return loaded.doc.diag(path, message, hint)
        return Diagnostic(graph.file, None, None, message, hint)

    def runnable(self, path: Path) -> Runnable:
        """Load and fully validate a graph or operation file, or raise every problem."""
        loaded = self.check(path)
        diags = self.all_diagnostics()
        if diags:
            raise ValidationError(diags)
        assert loaded.obj is not None
        return loaded.obj


# ---- building objects ------------------------------------------------------------


def _param_specs(doc: Doc, items: list[dict[str, Any]], base: tuple[Any, ...], errors: list[Diagnostic]) -> list[ParamSpec]:
    out = []
    for i, p in enumerate(items):
        spec = ParamSpec(p["name"], p["type"], p.get("default", MISSING), p.get("values"), p.get("title"), p.get("description"))
        if spec.type == "enum" and not spec.values:
            errors.append(doc.diag(base + (i,), f"enum param '{spec.name}' needs 'values: [...]' listing its choices"))
        elif spec.values is not None and spec.type != "enum":
            errors.append(doc.diag(base + (i, "values"), f"'values' only applies to enum params, and '{spec.name}' is {spec.type}"))
        elif spec.default is not MISSING:
            problem = check_param_value(spec, spec.default, doc.source.get(base + (i, "default")))
            if problem:
                errors.append(doc.diag(base + (i, "default"), f"default of {problem[0]}", problem[1]))
        out.append(spec)
    return out


def _unique(doc: Doc, items: list[dict[str, Any]], base: tuple[Any, ...], what: str, errors: list[Diagnostic], seen: dict[str, str]) -> None:
    for i, item in enumerate(items):
        name = str(item.get("name"))
        if name in seen:
            errors.append(doc.diag(base + (i, "name"), f"{what} '{name}' is declared twice (also as {seen[name]})", "input, param and output names must all differ"))
        else:
            seen[name] = what


def _input_specs(items: list[dict[str, Any]]) -> list[InputSpec]:
    return [InputSpec(i["name"], i.get("type", "file"), i.get("min", 1), i.get("max", 1), i.get("default"), i.get("title"), i.get("description")) for i in items]


def _check_input_bounds(doc: Doc, items: list[dict[str, Any]], base: tuple[Any, ...], errors: list[Diagnostic]) -> None:
    for i, item in enumerate(items):
        lo, hi = item.get("min", 1), item.get("max", 1)
        if hi == 0:
            errors.append(doc.diag(base + (i, "max"), "'max' must be 1, more than 1, or -1 for unlimited"))
        elif hi != -1 and lo > hi:
            errors.append(doc.diag(base + (i, "min"), f"'min' ({lo}) is larger than 'max' ({hi})"))


def _operation(doc: Doc, errors: list[Diagnostic]) -> Operation | None:
    structural = schema.check(doc, schema.OPERATION_SCHEMA)
    errors.extend(structural)
    if structural:
        return None
    d = doc.data
    inputs, params, outputs = d.get("inputs", []), d.get("params", []), d.get("outputs", [])
    seen: dict[str, str] = {}
    _unique(doc, inputs, ("inputs",), "input", errors, seen)
    _unique(doc, params, ("params",), "param", errors, seen)
    _unique(doc, outputs, ("outputs",), "output", errors, seen)
    _check_input_bounds(doc, inputs, ("inputs",), errors)
    files: dict[str, str] = {}
    for i, o in enumerate(outputs):
        fname = o.get("filename", o["name"])
        if not isinstance(fname, str) or not re.match(schema.FILENAME_RE, fname):  # the schema says so too: never write outside the work folder
            where = ("outputs", i, "filename") if "filename" in o else ("outputs", i)
            errors.append(doc.diag(where, f"output '{o['name']}': {fname!r} is not a plain file name", "not empty, not '.' or '..', without '/'"))
            continue
        if fname in files:
            errors.append(doc.diag(("outputs", i), f"outputs '{files[fname]}' and '{o['name']}' would both be written to '{fname}'", "give them different filenames"))
        files[fname] = o["name"]
    op = Operation(
        name=d["name"],
        runner=d["runner"],
        cmd=d["cmd"],
        inputs=_input_specs(inputs),
        params=_param_specs(doc, params, ("params",), errors),
        outputs=[OutputSpec(o["name"], o.get("type", "file"), o.get("filename"), o.get("title"), o.get("description")) for o in outputs],
        cacheable=d.get("cacheable", True),
        timeout=d.get("timeout"),
        env=dict(d.get("env", {})),
        python=d.get("python"),
        title=d.get("title"),
        description=d.get("description"),
        file=doc.file,
        raw=d,
        sources=list(d.get("sources", [])),
        resources=dict(d.get("resources", {})),
        retries=d.get("retries", 0),
    )
    line, _ = _cmd_line(doc, 1)
    op.cmd_offset = None if line is None else line - 1
    _check_cmd(doc, op, errors)
    return op


def _cmd_line(doc: Doc, line_in_cmd: int) -> tuple[int | None, int | None]:
    line, col = doc.where(("cmd",))
    if line is None:
        return None, None
    if ("cmd",) in doc.block_scalars:
        return line + line_in_cmd, None
    return line + line_in_cmd - 1, col


def _check_cmd(doc: Doc, op: Operation, errors: list[Diagnostic]) -> None:
    if op.runner == "bash_jinja2":
        declared = {
            "param": {p.name for p in op.params},
            "input": {i.name for i in op.inputs},
            "output": {o.name for o in op.outputs},
            "cloud_input": {i.name for i in op.inputs if i.type == "cloud"},
        }
        for lineno, message, hint in templates.check(op.cmd, declared):
            line, col = _cmd_line(doc, lineno)
            errors.append(Diagnostic(doc.file, line, col, message, hint))
    elif op.runner == "python":
        try:
            compile(op.cmd, "<cmd>", "exec", dont_inherit=True)  # a syntax check (the ast module's import took ~1 ms of every run)
        except SyntaxError as exc:  # a NUL character too (Python 3.11)
            line, col = _cmd_line(doc, exc.lineno or 1)
            hint = "cmd runs as a script, not inside a function: end it early with sys.exit()" if "outside function" in exc.msg else None
            errors.append(Diagnostic(doc.file, line, col, f"Python syntax error in cmd: {exc.msg}", hint))


def _graph(doc: Doc, errors: list[Diagnostic]) -> Graph | None:
    structural = schema.check(doc, schema.GRAPH_SCHEMA)
    errors.extend(structural)
    if structural:
        return None
    d = doc.data
    inputs, params = d.get("inputs", []), d.get("params", [])
    seen: dict[str, str] = {}
    _unique(doc, inputs, ("inputs",), "input", errors, seen)
    _unique(doc, params, ("params",), "param", errors, seen)
    _check_input_bounds(doc, inputs, ("inputs",), errors)
    for i, item in enumerate(inputs):
        default = item.get("default")
        if isinstance(default, list) and item.get("max", 1) == 1:
            errors.append(
                doc.diag(("inputs", i, "default"), f"input '{item['name']}' takes one file, but its default is a list", "set 'max: -1' to make it a list input")
            )
    nodes = {}
    for nid, n in d["nodes"].items():
        if nid in RESERVED_NODE_IDS:
            errors.append(doc.diag(("nodes", nid), f"'{nid}' is reserved and cannot be a node id", "rename the node", key=True))
        nodes[nid] = Node(
            nid, n["operation"], dict(n.get("inputs", {})), dict(n.get("params", {})), n.get("timeout"), n.get("cacheable"), n.get("title"), n.get("description")
        )
        nodes[nid].foreach = n.get("foreach")
        nodes[nid].resources, nodes[nid].retries = n.get("resources"), n.get("retries")
    return Graph(
        name=d["name"],
        inputs=_input_specs(inputs),
        params=_param_specs(doc, params, ("params",), errors),
        nodes=nodes,
        outputs=dict(d.get("outputs", {})),
        title=d.get("title"),
        description=d.get("description"),
        file=doc.file,
        raw=d,
    )


# ---- graph semantics ---------------------------------------------------------------


def _check_graph(lib: Library, g: Graph, doc: Doc, errors: list[Diagnostic], stack: tuple[Path, ...]) -> None:
    targets: dict[str, Runnable] = {}
    for nid, node in g.nodes.items():
        found = lib.find(node.operation)
        if isinstance(found, list):
            what = "file" if "/" in node.operation or node.operation.endswith((".yaml", ".yml")) else "operation"
            hint = did_you_mean(node.operation, found) if found else None
            errors.append(
                doc.diag(
                    ("nodes", nid, "operation"),
                    f"node '{nid}' uses the {what} '{node.operation}', which does not exist",
                    hint
                    or ("it is looked up by path from the project root" if what == "file" else f"operations are looked up in {', '.join(lib.project.operation_dirs)}/"),
                )
            )
            continue
        if found in stack:
            chain = " -> ".join(lib.display(p) for p in stack[stack.index(found) :] + (found,))
            errors.append(doc.diag(("nodes", nid, "operation"), f"graph includes itself: {chain}", "a sub-graph cannot contain its parent"))
            continue
        loaded = lib.check(found, stack)
        if loaded.obj is None:
            if not loaded.diagnostics:
                continue
            errors.append(doc.diag(("nodes", nid, "operation"), f"node '{nid}' uses '{node.operation}', which is invalid (see the errors of {lib.display(found)})"))
            continue
        targets[nid] = loaded.obj
    statics = fanout.static_infos(g, doc, errors)
    for nid, node in g.nodes.items():
        if nid in targets:
            _check_node(lib, g, doc, node, targets[nid], targets, errors, statics)
    for name, ref in g.outputs.items():
        _check_ref(lib, g, doc, ("outputs", name), ref, targets, None, f"graph output '{name}'", errors, statics=statics)
    _check_cycles(g, doc, errors)


def _interface(obj: Runnable) -> tuple[list[InputSpec], list[ParamSpec]]:
    return obj.inputs, obj.params


def _check_node(
    lib: Library,
    g: Graph,
    doc: Doc,
    node: Node,
    target: Runnable,
    targets: dict[str, Runnable],
    errors: list[Diagnostic],
    statics: dict[str, fanout.Static | None] | None = None,
) -> None:
    statics = statics or {}
    base = ("nodes", node.id)
    if isinstance(target, Graph):
        for key in ("resources", "retries"):
            if getattr(node, key) is not None:
                errors.append(
                    doc.diag(
                        base + (key,),
                        f"node '{node.id}' runs the graph '{node.operation}': '{key}' applies to operation nodes",
                        f"set it on the nodes of {target.file}",
                        key=True,
                    )
                )
    in_specs, param_specs = _interface(target)
    by_name = {i.name: i for i in in_specs}
    for name, value in node.inputs.items():
        spec = by_name.get(name)
        if spec is None:
            hint = did_you_mean(name, list(by_name)) or (f"its inputs: {', '.join(by_name)}" if by_name else f"'{node.operation}' takes no inputs")
            errors.append(doc.diag(base + ("inputs", name), f"node '{node.id}': '{node.operation}' has no input '{name}'", hint, key=True))
            continue
        refs = value if isinstance(value, list) else [value]
        if isinstance(value, list):
            if not spec.is_list:
                errors.append(
                    doc.diag(
                        base + ("inputs", name),
                        f"node '{node.id}': input '{name}' takes one file, but is given a list",
                        "give a single reference, or declare the input with max > 1",
                    )
                )
            elif spec.max != -1 and len(value) > spec.max:
                errors.append(doc.diag(base + ("inputs", name), f"node '{node.id}': input '{name}' takes at most {spec.max} files, but is given {len(value)}"))
            elif len(value) < spec.min and not any(fanout.is_fan_ref(r) for r in value):
                errors.append(doc.diag(base + ("inputs", name), f"node '{node.id}': input '{name}' needs at least {spec.min} files, but is given {len(value)}"))
        for i, ref in enumerate(refs):
            path = base + ("inputs", name) + ((i,) if isinstance(value, list) else ())
            _check_ref(lib, g, doc, path, ref, targets, spec, f"node '{node.id}' input '{name}'", errors, node.id, statics)
    for spec in in_specs:
        if spec.min >= 1 and spec.name not in node.inputs:
            errors.append(doc.diag(base, f"node '{node.id}' is missing the required input '{spec.name}'", f"wire it: inputs: {{{spec.name}: <node>.<output>}}"))
    p_by_name = {p.name: p for p in param_specs}
    for name, value in node.params.items():
        spec_p = p_by_name.get(name)
        if spec_p is None:
            hint = did_you_mean(name, list(p_by_name)) or (f"its params: {', '.join(p_by_name)}" if p_by_name else f"'{node.operation}' takes no params")
            errors.append(doc.diag(base + ("params", name), f"node '{node.id}': '{node.operation}' has no param '{name}'", hint, key=True))
            continue
        bound = binding(value)
        if bound is not None:
            if node.foreach is not None:
                st = statics.get(node.id)
                if st is None:
                    continue  # foreach is wrong: reported there
                if bound in st.vars:
                    why = fanout.check_binding(spec_p, st.vars[bound])
                    if why:
                        errors.append(doc.diag(base + ("params", name), f"node '{node.id}': {why} (bound to '${{{bound}}}')"))
                    continue
            gp = g.param(bound)
            if gp is None and bound in fanout.RESERVED_VARS and node.foreach is None:
                errors.append(
                    doc.diag(
                        base + ("params", name),
                        f"node '{node.id}': param '{name}' is bound to '${{{bound}}}', which is only defined in a node with foreach",
                        "add 'foreach: ...' to the node, or bind a graph param",
                    )
                )
            elif gp is None:
                errors.append(
                    doc.diag(
                        base + ("params", name),
                        f"node '{node.id}': param '{name}' is bound to '${{{bound}}}', but the graph declares no param '{bound}'",
                        did_you_mean(bound, [p.name for p in g.params] + (list(st.vars) if node.foreach is not None and st else []))
                        or "declare it under the graph's params",
                    )
                )
            elif gp.type != spec_p.type and not (spec_p.type == "float" and gp.type == "int"):
                errors.append(doc.diag(base + ("params", name), f"node '{node.id}': param '{name}' is {spec_p.type}, but graph param '{bound}' is {gp.type}"))
            continue
        problem = check_param_value(spec_p, value, doc.source.get(base + ("params", name)))
        if problem:
            errors.append(doc.diag(base + ("params", name), f"node '{node.id}': {problem[0]}", problem[1]))
    for spec_p in param_specs:
        if spec_p.required and spec_p.name not in node.params:
            errors.append(doc.diag(base, f"node '{node.id}' is missing the required param '{spec_p.name}' ({spec_p.type})", f"add params: {{{spec_p.name}: ...}}"))


def _check_ref(
    lib: Library,
    g: Graph,
    doc: Doc,
    path: tuple[Any, ...],
    ref: str,
    targets: dict[str, Runnable],
    spec: InputSpec | None,
    who: str,
    errors: list[Diagnostic],
    node_id: str | None = None,
    statics: dict[str, fanout.Static | None] | None = None,
) -> None:
    def errors_append(doc: Doc, path: tuple[Any, ...], message: str, hint: str | None = None) -> None:
        errors.append(doc.diag(path, message, hint))

    out_type: str | None
    if fanout.is_fan_ref(ref):
        out_type = fanout.check_fan_ref(lib, g, doc, path, ref, node_id, statics or {}, targets, spec, who, errors)
        if out_type is not None and spec is not None and not accepts(spec.type, out_type):
            errors_append(
                doc, path, f"{who} is {spec.type}, but '{ref}' is {out_type}", "an input of type file takes any type but directory; text takes text, csv and json"
            )
        return
    parts = parse_ref(ref)
    if parts is None:
        errors_append(doc, path, f"{who}: '{ref}' is not a reference", "write '<node>.<output>' or 'inputs.<graph input>'")
        return
    head, tail = parts
    if head == "inputs":
        gi = g.input(tail)
        if gi is None:
            errors_append(
                doc,
                path,
                f"{who} reads 'inputs.{tail}', but the graph has no input '{tail}'",
                did_you_mean(tail, [i.name for i in g.inputs]) or "declare it under the graph's inputs",
            )
            return
        out_type = gi.type
    else:
        if head not in g.nodes:
            errors_append(doc, path, f"{who} reads '{ref}', but there is no node '{head}'", did_you_mean(head, list(g.nodes)))
            return
        if head not in targets:
            return  # its operation is already reported
        if g.nodes[head].foreach is not None:
            errors_append(
                doc,
                path,
                f"{who} reads '{ref}', but node '{head}' is fanned out",
                f"read every expansion with '{head}[*].{tail}' (into a list input), or one with '{head}[KEY].{tail}'",
            )
            return
        outs = lib.outputs_of(targets[head])
        if tail not in outs:
            errors_append(
                doc,
                path,
                f"{who} reads '{ref}', but node '{head}' has no output '{tail}'",
                did_you_mean(tail, list(outs)) or (f"its outputs: {', '.join(outs)}" if outs else "it has no outputs"),
            )
            return
        out_type = outs[tail].type
    if spec is not None and not accepts(spec.type, out_type):
        errors_append(doc, path, f"{who} is {spec.type}, but '{ref}' is {out_type}", "an input of type file takes any type but directory; text takes text, csv and json")


def _check_cycles(g: Graph, doc: Doc, errors: list[Diagnostic]) -> None:
    edges = {nid: sorted(_upstream(n)) for nid, n in g.nodes.items()}
    cycle = find_cycle({k: [u for u in v if u in g.nodes] for k, v in edges.items()})
    if cycle:
        errors.append(doc.diag(("nodes", cycle[0]), "cycle: " + " -> ".join(cycle + [cycle[0]]), "a node cannot depend on its own output, directly or through others"))


def _upstream(node: Node) -> set[str]:
    out = set()
    for value in node.inputs.values():
        for ref in value if isinstance(value, list) else [value]:
            head = fanout.ref_node(ref)
            if head is not None:
                out.add(head)
    up = fanout.upstream(node.foreach) if node.foreach is not None else None
    if up is not None:
        out.add(up)
    return out


upstream_of = _upstream
