"""The parts of a node's cache key beyond its operation, params and inputs (README, "Caching"): the contents
of the operation's `sources`, and for the python runner the fingerprint of its interpreter.

Both are worked out once per operation (and once per interpreter) per plx process."""

from __future__ import annotations

from pathlib import Path

from . import environment, sources

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any


class Extras:
    def __init__(self, project: Any, store: Any):
        self.project = project
        self.store = store
        self._of: dict[int, dict[str, Any]] = {}
        self._files: dict[int, list[tuple[str, Path]]] = {}
        self._python: dict[int, str] = {}
        self._fingerprints: dict[str, dict[str, Any] | None] = {}  # by interpreter
        self.environments: dict[str, dict[str, Any]] = {}  # fingerprint hash -> fingerprint (with its packages)

    def of(self, op: Any) -> dict[str, Any]:
        """{"sources": {path: hash}, "environment": fingerprint hash}, each only when op has one."""
        got = self._of.get(id(op))
        if got is not None:
            return got
        out: dict[str, Any] = {}
        if op.sources:
            files = self._files[id(op)] = sources.resolve(self.project, op)
            out["sources"] = {rel: self.store.hash_path(p) for rel, p in files}
        if op.runner == "python":
            interpreter = self._python[id(op)] = environment.resolve_python(self.project, op.python)
            if interpreter not in self._fingerprints:
                where = op.file if op.python else "plx.yaml" if self.project.python else ""
                self._fingerprints[interpreter] = environment.fingerprint(self.store.root, interpreter, where)
            fp = self._fingerprints[interpreter]
            if fp is not None:
                self.environments.setdefault(fp["hash"], fp)
            out["environment"] = fp["hash"] if fp is not None else None
        self._of[id(op)] = out
        return out

    def files(self, op: Any) -> list[tuple[str, Path]]:
        """The source files of op, as (relative path, path on disk); `of(op)` first."""
        return self._files.get(id(op), [])

    def python(self, op: Any) -> str | None:
        """The resolved interpreter of a python op; `of(op)` first."""
        return self._python.get(id(op))
