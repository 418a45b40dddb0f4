"""Content hashes (BLAKE3) and cache keys built from readable, versioned recipes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from blake3 import blake3

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any

# Bump when the recipe's shape or meaning changes: old entries then simply never match.
KEY_FORMAT = "plx-key-2"  # 2: the contents of `sources` and the python interpreter's fingerprint
_MMAP_FROM = 4 * 1024 * 1024  # below this, a plain read beats mmap + threads


def hash_bytes(data: bytes) -> str:
    return blake3(data).hexdigest()


def hash_file(path: Path | str) -> str:
    """BLAKE3 of a file's bytes; large files are memory-mapped and hashed on all cores."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # no file object: most files hashed are small
    try:
        size = os.fstat(fd).st_size
        if size >= _MMAP_FROM:
            h = blake3(max_threads=blake3.AUTO)
            h.update_mmap(path)
            return h.hexdigest()
        data = os.read(fd, size + 1)
        if len(data) <= size:  # a short read of a regular file is its end
            return blake3(data).hexdigest()
        h = blake3(data)  # it grew since fstat: read on to its end, as f.read() would
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


# json.dumps with options builds an encoder at every call: one, kept (a key per node).
# check_circular off: what is hashed is plain data built by plx, never a cycle (the check costs ~12 %).
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False).encode


def canonical(obj: Any) -> str:
    """One spelling for equal data: sorted keys, no spaces, so hashes never depend on dict order."""
    return _canonical(obj)


def operation_recipe(op: Any) -> dict[str, Any]:
    """The parts of an operation that decide what it computes (not its title, timeout, ...)."""
    recipe = {
        "runner": op.runner,
        "cmd": op.cmd,
        "env": dict(sorted(op.env.items())),
        "python": op.python,
        "inputs": [{"name": i.name, "type": i.type, "min": i.min, "max": i.max} for i in op.inputs],
        "outputs": [{"name": o.name, "type": o.type, "filename": o.file_name} for o in op.outputs],
    }
    if op.runner == "bash_jinja2":
        # Values are shell-quoted by default (docs/reference.md): the same `cmd` text renders another
        # script than it did before, so results cached under the old rendering must not be reused.
        recipe["quoting"] = "shell"
    return recipe


def task_recipe(
    op: Any,
    params: dict[str, Any],
    inputs: dict[str, list[dict[str, str]]],
    ops_seen: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    op_recipe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The recipe of one node: operation, params (defaults filled), input contents and names, and
    in `extra` the contents of its `sources` ({path: hash}) and its python `environment` (the
    interpreter's fingerprint hash), each only when the operation has one.

    ops_seen collects each distinct operation recipe by its hash, so a run records it once;
    op_recipe is operation_recipe(op) when the caller has it already."""
    if op_recipe is None:
        op_recipe = operation_recipe(op)
    if ops_seen is not None:
        ops_seen.setdefault(key_of(op_recipe), op_recipe)
    return {"format": KEY_FORMAT, "operation": op_recipe, "params": params, "inputs": inputs, **(extra or {})}


_OP_KEYS: dict[int, tuple[Any, str]] = {}  # the keys of the last operation recipes compacted, by identity


def compact(recipe: dict[str, Any] | None) -> dict[str, Any] | None:
    """A recipe as a run record keeps it: the operation by the hash of its recipe (hashed once per
    recipe object: the nodes of a run share their operation's; recipes are never changed in place)."""
    if recipe is None:
        return None
    op = recipe["operation"]
    known = _OP_KEYS.get(id(op))
    if known is None or known[0] is not op:
        if len(_OP_KEYS) >= 256:
            _OP_KEYS.clear()
        known = _OP_KEYS[id(op)] = (op, key_of(op))  # op kept alive: its id is not reused meanwhile
    return {**recipe, "operation": known[1]}


def expand(recipe: dict[str, Any], op_recipes: dict[str, Any]) -> dict[str, Any]:
    """The inverse of compact, given the run's operation recipes."""
    op = recipe.get("operation")
    if isinstance(op, str):
        return {**recipe, "operation": op_recipes.get(op, {"unknown": op})}
    return recipe


def key_of(recipe: dict[str, Any]) -> str:
    return hash_bytes(canonical(recipe).encode())


def explain(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """What differs between two recipes, in words: `param lr 0.1 → 0.01`."""
    if old is None:
        return ["no cache entry yet"]
    if old.get("format") != new.get("format"):
        return ["cache key format changed"]
    out: list[str] = []
    op_old, op_new = old.get("operation", {}), new.get("operation", {})
    for field in sorted(set(op_old) | set(op_new)):
        if op_old.get(field) != op_new.get(field):
            out.append(f"operation {field} changed")
    p_old, p_new = old.get("params", {}), new.get("params", {})
    for name in sorted(set(p_old) | set(p_new)):
        if p_old.get(name) != p_new.get(name):
            out.append(f"param {name} {_show(p_old.get(name))} → {_show(p_new.get(name))}")
    i_old, i_new = old.get("inputs", {}), new.get("inputs", {})
    for name in sorted(set(i_old) | set(i_new)):
        if i_old.get(name) != i_new.get(name):
            out.append(f"input {name} changed ({_short(i_old.get(name))} → {_short(i_new.get(name))})")
    s_old, s_new = old.get("sources") or {}, new.get("sources") or {}
    for path in sorted(set(s_old) | set(s_new)):
        if s_old.get(path) != s_new.get(path):
            out.append(f"source {path} " + ("added" if path not in s_old else "removed" if path not in s_new else "changed"))
    if old.get("environment") != new.get("environment"):
        out.append("python environment changed (`plx compare` shows the packages)")
    return out or ["the cache entry or its artifacts are missing"]


def _show(v: Any) -> str:
    return "(none)" if v is None else json.dumps(v) if not isinstance(v, str) else v


def _short(items: list[dict[str, str]] | None) -> str:
    if not items:
        return "none"
    return ",".join(i.get("hash", "?")[:8] for i in items)
