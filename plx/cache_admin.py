"""`plx cache verify|gc|stats`: checking and trimming the store without touching live runs."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import time
from pathlib import Path
from typing import Any

from .errors import disk_full_message, is_disk_full, warn
from .hashing import hash_file
from .history import History
from .project import Project
from .records import RunState
from .repair import open_lock_file
from .store import TREE_TYPE, Artifact, Store

# While runs are live, an object no run or entry references yet is kept if plx stored it more
# recently than this (git's gc.pruneExpire): a live run records what it stores within moments.
GRACE_SECONDS = 3600
RUN_ID = re.compile(r"^\d{8}-\d{6}-\d{3}-[0-9a-f]+$")  # history.new_run_id


def verify(project: Project) -> tuple[int, list[tuple[str, str]]]:
    """Re-hash every object (ignoring the stat cache): (objects checked, [(hash, why)])."""
    store = Store(project.store)
    damaged = []
    n = 0
    for h, p in store.iter_objects():
        n += 1
        try:
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                damaged.append((h, f"a symbolic link (to {os.readlink(p)}), not a stored file; the node that made it runs again"))
            elif not stat.S_ISREG(st.st_mode):
                damaged.append((h, "not a plain file"))
            elif hash_file(p) != h:
                damaged.append((h, "its bytes do not match its hash"))
        except OSError as exc:
            damaged.append((h, f"unreadable: {exc.strerror}"))
    try:
        entries = list(store.entries())
    except Exception as exc:  # a full disk: SQLite cannot even open the index; the objects are checked
        if not is_disk_full(exc):
            raise
        warn(f"the cache entries were not checked: {disk_full_message(store.root)}")
        entries = []
    for key, entry in entries:
        for name, a in entry.get("outputs", {}).items():
            try:
                art = Artifact.from_json(a)
            except (KeyError, TypeError, ValueError):
                damaged.append((key, f"cache entry {key[:12]} is not readable: it is never served"))
                continue
            if not os.path.lexists(store.object_path(art.hash)):
                damaged.append((art.hash, f"missing (output '{name}' of cache entry {key[:12]})"))
    store.close()
    return n, damaged


def _objects_of(store: Store, art: Any, into: set[str]) -> None:
    if not isinstance(art, dict) or not isinstance(art.get("hash"), str):
        return
    into.add(art["hash"])
    if art.get("type") == TREE_TYPE:
        try:
            into.update(e["hash"] for e in store.tree(art["hash"]) if e["hash"])
        except (OSError, ValueError, TypeError, KeyError):
            pass


def gc(project: Project, keep_last: int | None) -> dict[str, Any]:
    """Remove what no run and no cache entry references, never what a live run uses.

    Every plx that runs nodes holds the store's lease (shared) while it does. When gc can take it
    exclusively, no run is live anywhere, and it keeps it while it deletes, so that none starts
    meanwhile. Otherwise gc leaves the cache index alone, deletes only objects stored before the
    grace period, and removes a run's work folders only after checking, at that moment, that the
    run's plx is dead (the run lock): a node's own files and their mtimes never decide anything."""
    store = Store(project.store)
    history = History(project.store)
    lease = open_lock_file(store.root / "lease")
    try:
        fcntl.flock(lease, fcntl.LOCK_EX | fcntl.LOCK_NB)
        exclusive = True
    except OSError:
        exclusive = False
    try:
        return _collect(store, history, keep_last, exclusive)
    finally:
        store.close()
        os.close(lease)  # releases the lease


def _collect(store: Store, history: History, keep_last: int | None, exclusive: bool) -> dict[str, Any]:  # noqa: C901 - above the threshold when it was set (issue 11)
    out: dict[str, Any] = {"runs": 0, "entries": 0, "objects": 0, "object_bytes": 0, "workdirs": 0, "workdir_bytes": 0, "temp_bytes": 0, "old_format_bytes": 0}
    ids = history.ids()
    runs = {rid: data for rid in ids if (data := history.load_or_warn(rid)) is not None}
    live = {rid for rid, r in runs.items() if r.get("status") == RunState.RUNNING}
    out["live"] = len(live)
    out["exclusive"] = exclusive
    if keep_last is not None:
        for rid in ids[keep_last:]:
            if rid in live or History._alive(history.dir / rid):
                continue
            shutil.rmtree(history.dir / rid, ignore_errors=True)
            runs.pop(rid, None)
            out["runs"] += 1
    keep: set[str] = set()
    kept_keys: set[str] = set()
    for r in runs.values():
        for node in r.get("nodes", {}).values():
            key = node.get("cache_key")
            if isinstance(key, str):
                kept_keys.add(key)
            outputs = node.get("outputs")
            for art in outputs.values() if isinstance(outputs, dict) else []:
                _objects_of(store, art, keep)
    for key, entry in list(store.entries()):
        outs = entry["outputs"]
        if exclusive:  # while runs are live, every entry stays: one of them may just have been served
            if keep_last is not None and key not in kept_keys:
                store.index.delete(key)
                out["entries"] += 1
                continue
            if any(not isinstance(a, dict) or not store.object_path(str(a.get("hash"))).is_file() for a in outs.values()):
                store.index.delete(key)  # a damaged entry can never be served: drop it
                out["entries"] += 1
                continue
        for art in outs.values():
            _objects_of(store, art, keep)
    if exclusive:  # rows and files of an older store's format that plx never reads (texttable)
        for table in (store.index, store.stats):
            rows, freed = table.drop_unreadable()
            out["entries"] += rows if table is store.index else 0  # stat-cache rows are not entries
            out["old_format_bytes"] += freed
    expire = time.time() - GRACE_SECONDS
    for h, p in list(store.iter_objects()):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):  # a link or folder (damage, e.g. by an older plx): never served, always removed
            store.drop_object(h)
            out["objects"] += 1
            continue
        if h in keep:
            continue
        if not exclusive:
            if st.st_mtime >= expire:  # the store's write time (plx sets it when it stores or reuses it)
                continue
            if not _take_if_still_old(store, h, p, expire):
                continue
        else:
            store.drop_object(h)
        out["objects"] += 1
        out["object_bytes"] += st.st_size if stat.S_ISREG(st.st_mode) else 0
    for d in list(store.tmp.iterdir()):
        if RUN_ID.match(d.name):  # a run's work folders: of failed nodes, or left by a killed plx
            if not exclusive and History._alive(history.dir / d.name):  # checked now, right before deleting
                continue
            size = _size(d)
            _remove(d)
            out["workdirs"] += sum(1 for _ in _node_dirs(d)) or 1
            out["workdir_bytes"] += size
            continue
        if not exclusive:
            # obj-* half-written objects, rerun-* and rev-* exports may belong to a live plx.
            try:
                if not d.name.startswith("obj-") or os.lstat(d).st_mtime >= expire:
                    continue
            except FileNotFoundError:
                continue
        out["temp_bytes"] += _size(d)
        _remove(d)
    out["bytes"] = out["object_bytes"] + out["workdir_bytes"] + out["temp_bytes"] + out["old_format_bytes"]
    return out


def _take_if_still_old(store: Store, h: str, p: Path, expire: float) -> bool:
    """Delete object p unless a live run reuses it at this instant (see Store._refresh).

    The object is first renamed away: a run marking it fresh after that finds it gone and stores it
    again; a run that marked it just before is seen in its mtime, and the object goes back."""
    trash = store.tmp / f"gc-{h}-{os.getpid()}"
    try:
        os.rename(p, trash)
    except FileNotFoundError:
        return False
    if os.lstat(trash).st_mtime >= expire:
        if os.path.lexists(p):  # stored again meanwhile: same bytes
            trash.unlink()
        else:
            os.rename(trash, p)
        return False
    _remove(trash)
    return True


def _node_dirs(d: Path) -> list[Path]:
    return [] if not d.is_dir() else [q for q in d.iterdir() if q.is_dir() and not q.name.endswith(".in")]


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def _size(p: Path) -> int:
    """Bytes of the files under p (links not followed)."""
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_size if stat.S_ISREG(st.st_mode) else 0
    total = 0
    for dirpath, _dirs, files in os.walk(p):
        for name in files:
            try:
                q = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            total += q.st_size if stat.S_ISREG(q.st_mode) else 0
    return total


def stats(project: Project) -> dict[str, int]:
    store = Store(project.store)
    n = size = 0
    for _, p in store.iter_objects():
        n += 1
        size += _size(p)
    entries = len(store.index)
    store.close()
    return {"objects": n, "bytes": size, "entries": entries, "runs": len(History(project.store).ids())}
