"""What every command starts from: the project, its library, a GRAPH argument, `--rev`."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..loader import Library
from ..model import Graph
from ..project import Project, load_project


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


def load_graph(lib: Library, path: Path) -> Graph:
    obj = lib.runnable(path)
    if not isinstance(obj, Graph):
        raise UsageError(f"{lib.display(path)} is an operation, not a graph; `plx run` takes a graph file")
    return obj


def at_revision(project: Project, graph_file: Path, rev: str) -> tuple[Project, Library, Path, dict[str, str]]:
    """The project as git revision rev has it (same store); untracked files still come from the work tree."""
    from ..history import export_revision
    from ..project import project_at

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
