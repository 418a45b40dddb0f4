"""Where the project is and what its plx.yaml says (docs/reference.md)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import Diagnostic, ValidationError
from .structs import field, record

_SETTINGS = {"operations", "graphs", "jobs", "store", "python", "remote"}


def find_root(start: Path | None = None) -> Path:
    """The nearest ancestor holding plx.yaml; else the git work-tree root; else start."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "plx.yaml").is_file():
            return d
    for d in (here, *here.parents):
        if (d / ".git").exists():
            return d
    return here


@record
class Project:
    root: Path
    operation_dirs: list[str] = field(default_factory=lambda: ["operations"])
    graph_dirs: list[str] = field(default_factory=lambda: ["graphs"])
    jobs: int | None = None
    store_dir: str = ".plx"
    remote: str | None = None  # a shared cache's fsspec URL (PLX_REMOTE and --remote override it: remote.resolve_url)
    fallback_root: Path | None = None  # with --rev: files git does not track come from the work tree
    python: str | None = None  # default interpreter of python operations, as written in plx.yaml

    @property
    def store(self) -> Path:
        """The store: $PLX_STORE if set (a CI job or a laptop points at its own), else plx.yaml's `store`."""
        return self.root / (os.environ.get("PLX_STORE") or self.store_dir)  # an absolute path stays itself

    def default_jobs(self) -> int:
        return self.jobs or os.cpu_count() or 1

    def rel(self, path: Path | str) -> str:
        """A path as shown to the user: relative to the project root when inside it."""
        p = Path(path)
        try:
            return str(p.resolve().relative_to(self.root))
        except ValueError:
            return str(p)

    def path(self, written: str) -> Path:
        """A path written in a YAML file or given as an input: relative to the project root."""
        p = Path(written).expanduser()
        if p.is_absolute():
            return p
        if self.fallback_root is not None and not (self.root / p).exists() and (self.fallback_root / p).exists():
            return self.fallback_root / p
        return self.root / p


def load_project(start: Path | None = None) -> Project:
    """Discover the project and read its plx.yaml, reporting every bad setting."""
    return project_at(find_root(start))


def project_at(root: Path) -> Project:  # noqa: C901 - above the threshold when it was set (issue 11)
    """The project rooted exactly at root, with its plx.yaml if it has one."""
    project = Project(root)
    cfg = root / "plx.yaml"
    if not cfg.is_file():
        return project
    from .errors import did_you_mean
    from .yamldoc import load_file

    doc = load_file(cfg, "plx.yaml")
    data = doc.data
    if data is None:
        return project
    if not isinstance(data, dict):
        raise ValidationError([doc.diag((), "plx.yaml must be a mapping of settings")])
    errors: list[Diagnostic] = []
    for key, value in data.items():
        if key not in _SETTINGS:
            errors.append(doc.diag((key,), f"unknown setting '{key}'", did_you_mean(str(key), _SETTINGS) or f"settings: {', '.join(sorted(_SETTINGS))}", key=True))
        elif key in ("operations", "graphs"):
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                errors.append(doc.diag((key,), f"'{key}' must be a list of folders"))
            else:
                setattr(project, "operation_dirs" if key == "operations" else "graph_dirs", value)
        elif key == "jobs":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                errors.append(doc.diag((key,), "'jobs' must be a positive integer"))
            else:
                project.jobs = value
        elif key == "store":
            if not isinstance(value, str) or not value:
                errors.append(doc.diag((key,), "'store' must be a folder path"))
            else:
                project.store_dir = value
        elif key == "python":
            if not isinstance(value, str) or not value:
                errors.append(doc.diag((key,), "'python' must be an interpreter: a path relative to the project root, an absolute path or a command on PATH"))
            else:
                project.python = value
        elif key == "remote":
            if value is not None and (not isinstance(value, str) or not value.strip()):
                errors.append(doc.diag((key,), "'remote' must be a URL (s3://bucket/path, gs://..., file:///shared/folder) or a folder path"))
            else:
                project.remote = value
    if errors:
        raise ValidationError(errors)
    return project


def resolve_url(project: Project, flag: str | None = None, off: bool = False) -> str | None:
    """The remote of this process: --no-remote, else --remote, else PLX_REMOTE (empty: none), else plx.yaml."""
    if off:
        return None
    url = flag if flag else os.environ["PLX_REMOTE"] if "PLX_REMOTE" in os.environ else project.remote
    if not url or not url.strip():
        return None
    url = url.strip()
    if "://" not in url and "::" not in url:  # a plain path: relative to the project root, like every path
        url = str((project.root / Path(url).expanduser()).resolve())
    return url
