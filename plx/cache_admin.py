"""`plx cache verify|gc|stats`: checking and trimming the store without touching live runs."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from .hashing import hash_file
from .history import History
from .project import Project
from .store import TREE_TYPE, Artifact, Store


def verify(project: Project) -> tuple[int, list[tuple[str, str]]]:
    """Re-hash every object (ignoring the stat cache): (objects checked, [(hash, why)])."""
    store = Store(project.store)
    damaged = []
    n = 0
    for h, p in store.iter_objects():
        n += 1
        try:
            if hash_file(p) != h:
                damaged.append((h, "its bytes do not match its hash"))
        except OSError as exc:
            damaged.append((h, f"unreadable: {exc.strerror}"))
    for key, entry in store.entries():
        for name, a in entry.get("outputs", {}).items():
            art = Artifact.from_json(a)
            if not store.object_path(art.hash).exists():
                damaged.append((art.hash, f"missing (output '{name}' of cache entry {key[:12]})"))
    store.close()
    return n, damaged


def _objects_of(store: Store, art: dict[str, Any], into: set[str]) -> None:
    into.add(art["hash"])
    if art.get("type") == TREE_TYPE:
        try:
            into.update(e["hash"] for e in store.tree(art["hash"]) if e["hash"])
        except (OSError, ValueError):
            pass


def gc(project: Project, keep_last: int | None) -> dict[str, int]:
    store = Store(project.store)
    history = History(project.store)
    ids = history.ids()
    runs = {rid: history.load(rid) for rid in ids}
    live = {rid for rid, r in runs.items() if r.get("status") == "running"}
    forgotten = 0
    if keep_last is not None:
        for rid in ids[keep_last:]:
            if rid in live:
                continue
            shutil.rmtree(history.dir / rid, ignore_errors=True)
            runs.pop(rid)
            forgotten += 1
    keep: set[str] = set()
    kept_keys: set[str] = set()
    for r in runs.values():
        for node in r.get("nodes", {}).values():
            if node.get("cache_key"):
                kept_keys.add(node["cache_key"])
            for art in (node.get("outputs") or {}).values():
                _objects_of(store, art, keep)
    dropped_entries = 0
    for key, entry in list(store.entries()):
        outs = entry.get("outputs", {})
        if keep_last is not None and key not in kept_keys:
            store.index.delete(key)
            dropped_entries += 1
            continue
        if any(not store.object_path(a["hash"]).exists() for a in outs.values()):
            store.index.delete(key)  # a damaged entry can never be served: drop it
            dropped_entries += 1
            continue
        for art in outs.values():
            _objects_of(store, art, keep)
    # Objects a live run has stored but not yet recorded are newer than its start: keep them.
    oldest_live = min((time.time() - 3600 * 24 * 365 if not live else _start_epoch(runs[rid]) for rid in live), default=None)
    freed = removed = 0
    for h, p in list(store.iter_objects()):
        if h in keep:
            continue
        st = p.stat()
        if oldest_live is not None and st.st_mtime >= oldest_live - 5:
            continue
        store.drop_object(h)
        freed += st.st_size
        removed += 1
    for d in list(store.tmp.iterdir()):
        if d.name in live or (oldest_live is not None and d.stat().st_mtime >= oldest_live - 5):
            continue
        freed += _size(d)
        shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink(missing_ok=True)
    store.close()
    return {"runs": forgotten, "entries": dropped_entries, "objects": removed, "bytes": freed}


def _start_epoch(run: dict[str, Any]) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(run["started"]).timestamp()
    except (KeyError, ValueError, TypeError):
        return 0.0


def _size(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(q.stat().st_size for q in p.rglob("*") if q.is_file() and not q.is_symlink())


def stats(project: Project) -> dict[str, int]:
    store = Store(project.store)
    n = size = 0
    for _, p in store.iter_objects():
        n += 1
        size += p.stat().st_size
    entries = len(store.index)
    store.close()
    return {"objects": n, "bytes": size, "entries": entries, "runs": len(History(project.store).ids())}
