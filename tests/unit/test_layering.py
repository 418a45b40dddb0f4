"""The import layering of plx/: every import (module-level or inside a function) points down the
layers below, which docs/design.md shows; a module missing from the table, or an import against
the arrow, fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from plx.dag import find_cycle

ROOT = Path(__file__).resolve().parents[2]
PLX = ROOT / "plx"
DESIGN = ROOT / "docs" / "design.md"

# Bottom to top: a module may import modules of its own layer (without a cycle) and of the layers
# before it, never of a layer after it. A sub-module not listed takes its package's layer
# (`commands.run` that of `commands`). Kept equal to the arrow of docs/design.md by this test.
LAYERS: list[tuple[str, list[str]]] = [
    ("base", ["structs", "errors", "model", "hashing", "dag", "yamldoc", "parsecache", "shellquote", "resources", "procs", "repair", "deferred", "tables", "texttable", "executors.base", "executors.protocol", "records"]),
    (
        "definitions",
        ["schema", "project", "templates", "fanout", "loader", "planner", "store", "environment", "sources", "extras", "runners", "remote", "history", "tracking", "overrides"],
    ),
    ("execution", ["executors", "scheduler", "cachegate", "workspace", "recorder", "engine"]),
    ("commands", ["commands", "sharing", "cache_admin"]),
    ("front ends", ["api", "report", "report_html", "console", "cli", "entry", "__main__", "refdoc"]),
]

# Imports that close a cycle inside one layer, each with its reason. Keep this short.
CYCLES_ALLOWED = {
    ("history", "tracking"): "the run index summarises labels and metrics (tracking's pure helpers); tracking's commands read runs through History",
    ("executors.base", "executors.protocol"): "the protocol names Job; base hands the protocol out on first use (__getattr__) and to the type checker only",
}


def layer_of(module: str) -> int:
    index = {m: i for i, (_, mods) in enumerate(LAYERS) for m in mods}
    name = module
    while name not in index:
        if "." not in name:
            raise AssertionError(f"plx.{module} is in no layer: add it to LAYERS in {Path(__file__).name} and to the module table of docs/design.md")
        name = name.rpartition(".")[0]
    return index[name]


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PLX.rglob("*.py")):
        parts = list(path.relative_to(PLX).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:  # plx/__init__.py itself: the package, the top of everything
            out[".".join(parts)] = path
    return out


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every plx module `module` imports, at any depth of its code (function-level imports too)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name.removeprefix("plx.") for a in node.names if a.name.startswith("plx."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
            elif node.module and (node.module == "plx" or node.module.startswith("plx.")):
                base, node = [], ast.ImportFrom(module=node.module.removeprefix("plx").lstrip("."), names=node.names, level=1)
            else:
                continue
            target = [*base, *(node.module.split(".") if node.module else [])]
            for alias in node.names:  # `from . import fanout` imports the module plx.fanout
                sub = ".".join([*target, alias.name])
                if sub in known:
                    out.add(sub)
                elif target:
                    out.add(".".join(target))
                # else: a name of the package itself (`from . import __version__`): a constant, no layer
    out.discard(module)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(m, p, known) for m, p in known.items()}


def test_every_module_is_in_a_layer_and_in_the_design_table() -> None:
    table = set(re.findall(r"^\| `([\w/]+)(?:\.py|/)`", DESIGN.read_text(), re.M))
    for module in modules():
        layer_of(module)
        listed = module.replace(".", "/")
        if module != "__main__":
            assert listed in table, f"plx/{listed}.py is missing from the module table of docs/design.md"


def test_the_layers_name_only_modules_that_exist() -> None:
    known = modules()
    ghosts = [m for _, mods in LAYERS for m in mods if m not in known]
    assert not ghosts, f"LAYERS names modules that plx/ does not have: {ghosts}"


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for module, deps in graph().items():
        for dep in sorted(deps):
            if layer_of(dep) > layer_of(module):
                wrong.append(f"plx.{module} ({LAYERS[layer_of(module)][0]}) imports plx.{dep} ({LAYERS[layer_of(dep)][0]})")
    assert not wrong, "imports against the layering of docs/design.md:\n  " + "\n  ".join(wrong)


def test_no_import_cycle() -> None:
    edges = {m: sorted(d for d in deps if (m, d) not in CYCLES_ALLOWED and (d, m) not in CYCLES_ALLOWED) for m, deps in graph().items()}
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join([*cycle, cycle[0]])


def test_the_design_shows_these_layers() -> None:
    arrow = " <- ".join("{" + ", ".join(mods) + "}" for _, mods in LAYERS)
    assert f"`{arrow}`" in DESIGN.read_text(), f"docs/design.md must show the layers as:\n`{arrow}`"


def test_the_checker_sees_what_it_must() -> None:
    """The parser finds a function-level import and a `from . import module` (so the test can fail)."""
    known = modules()
    assert "planner" in imports("commands", known["commands"], known) or "planner" in imports("cli", known["cli"], known)
    assert "loader" in imports("api", known["api"], known)  # imported inside functions only
    assert "executors.base" in imports("executors.local", known["executors.local"], known)
    assert "fanout" in imports("loader", known["loader"], known)  # `from . import fanout, ...`
    assert layer_of("executors.local") == layer_of("executors") > layer_of("executors.base")
