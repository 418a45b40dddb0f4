"""An operation's `sources:` (scripts, a local package): found, hashed into the key, copied for the node.

A source is a project file, a folder (all files below it) or a glob, written relative to the
project root. Its files are hashed with the store's stat cache (an unchanged file is not read
again) and copied into the node's work folder under the same relative paths, so that
`cmd: python scripts/train.py` runs with the work folder as its current directory.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from .errors import Diagnostic, RunError

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any

SKIPPED = {"__pycache__", ".git", ".plx"}  # never part of a folder source: caches and plx's own store
_GLOB = set("*?[")


def escapes(written: str, root: Path) -> bool:
    """Whether a source as written names something outside the project (`../x`, `/elsewhere`)."""
    p = os.path.normpath(written)
    if os.path.isabs(p):
        return not _inside(Path(p), root)
    return p == ".." or p.startswith(".." + os.sep)


def _inside(p: Path, root: Path) -> bool:
    for r in {root, root.resolve()}:
        if p == r or r in p.parents:
            return True
    return False


def expand(project: Any, written: str) -> list[tuple[str, Path]]:
    """The files a source names, as (path relative to the project root, path on disk), sorted."""
    root = project.root
    bases = [root] + ([project.fallback_root] if getattr(project, "fallback_root", None) is not None else [])
    for base in bases:
        p = os.path.normpath(written)
        full = p if os.path.isabs(p) else os.path.join(base, p)
        if any(ch in written for ch in _GLOB):
            matches = sorted(glob.glob(full, recursive=True))
        else:
            matches = [full] if os.path.exists(full) else []
        if matches:
            out: list[tuple[str, Path]] = []
            for m in matches:
                _files_of(Path(m), Path(base), out)
            return sorted(set(out))
    return []


def _files_of(path: Path, base: Path, out: list[tuple[str, Path]]) -> None:
    if path.is_dir():
        for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED)
            for f in filenames:
                q = Path(dirpath) / f
                if q.is_file():
                    out.append((_rel(q, base), q))
    elif path.is_file():
        out.append((_rel(path, base), path))


def _rel(p: Path, base: Path) -> str:
    try:
        return str(p.relative_to(base))
    except ValueError:
        return os.path.relpath(p, base.resolve())


def check(project: Any, doc: Any, op: Any, errors: list[Diagnostic]) -> None:
    """Validation of an operation's sources: inside the project, existing, not where an output goes."""
    outputs = {o.file_name: o.name for o in op.outputs}
    for i, written in enumerate(op.sources):
        path = ("sources", i)
        if not written.strip():
            errors.append(doc.diag(path, "a source cannot be empty", "write a project file, folder or glob such as scripts/train.py"))
            continue
        if escapes(written, project.root):
            errors.append(doc.diag(path, f"source '{written}' is outside the project", "sources are project files, written relative to the project root"))
            continue
        files = expand(project, written)
        if not files:
            what = "the pattern matches no file" if any(ch in written for ch in _GLOB) else "no such file or folder"
            errors.append(doc.diag(path, f"source '{written}': {what}", "sources are looked up from the project root"))
            continue
        for rel, _ in files:
            top = rel.split(os.sep, 1)[0]
            if top in outputs:
                errors.append(doc.diag(path, f"source '{rel}' would be copied where output '{outputs[top]}' is written ({top})", "rename the output's filename"))
                break


def resolve(project: Any, op: Any) -> list[tuple[str, Path]]:
    """Every file of an operation's sources, for a run; a source gone since validation is an error."""
    out: dict[str, Path] = {}
    for written in op.sources:
        files = expand(project, written)
        if not files:
            raise RunError(f"{op.file}: source '{written}' of operation '{op.name}' does not exist (any more)")
        out.update(files)
    return sorted(out.items())


def place(files: list[tuple[str, Path]], hashes: dict[str, str], work: Path) -> None:
    """Copy the sources into a node's work folder and check each copy against the hash in its key."""
    from .hashing import hash_file
    from .store import reflink_or_copy

    for rel, src in files:
        dst = work / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        reflink_or_copy(src, dst)
        os.chmod(dst, 0o755 if os.stat(src).st_mode & 0o111 else 0o644)
        now = hash_file(dst)
        if now != hashes[rel]:
            raise RuntimeError(f"source {rel} changed after the run started (its hash was {hashes[rel][:12]}, it is {now[:12]}); run again")
