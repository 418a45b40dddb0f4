"""Authoring: `plx validate`, `plx graph`, `plx ops`, `plx init`."""

from __future__ import annotations

from pathlib import Path

from ..errors import Diagnostic, RunError, UsageError
from ..loader import Library
from ..model import Graph, Operation
from ..project import Project

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any


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
    reaches bash unquoted, so `plx validate` lists each one (docs/reference.md)."""
    from .. import templates
    from ..loader import _cmd_line

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


def graph_edges(lib: Library, graph: Graph) -> tuple[list[str], list[tuple[str, str, str]]]:
    from ..planner import plan as make_plan

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
    from ..planner import resolve_graph_inputs

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
