"""`plx push`, `plx pull` and `plx cache verify --remote`: moving cache entries between the store and the remote (docs/reference.md; README, "Sharing results")."""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path
from typing import Any, Callable

from .errors import RunError
from .history import History
from .project import Project, resolve_url
from .records import DONE_OK
from .remote import Damaged, Fetched, Remote, RemoteDown, adopt, objects_of, push_enabled
from .store import Artifact, Store


def open_for_command(project: Project, url: str | None, warn: Callable[[str], None], progress: Any = None) -> Remote:
    """The remote a push, pull or verify works with: for these commands, no remote is an error."""
    chosen = resolve_url(project, url)
    if not chosen:
        raise RunError("no remote is configured: set `remote:` in plx.yaml, PLX_REMOTE, or give --remote URL")
    return Remote(chosen, push=push_enabled(), warn=warn, progress=progress)


def _down(remote: Remote) -> RunError:
    return RunError(f"remote {remote.shown}: {remote.down or 'unusable'}")


def push(project: Project, refs: list[str], remote: Remote) -> dict[str, Any]:
    """Upload the cache entries (and their artifacts) of the given runs, default all local runs.

    Idempotent: an entry the remote has is skipped; objects are uploaded only where missing."""
    if not remote.push:
        raise RunError(f"remote {remote.shown} is read-only in this process (PLX_REMOTE_PUSH=0)")
    history = History(project.store)
    ids = [history.resolve(r) for r in refs] if refs else history.ids()
    store = Store(project.store)
    entries: dict[str, dict[str, Artifact]] = {}
    loose: dict[str, Path] = {}  # outputs of nodes without a cache entry (not cacheable): objects only
    missing = 0
    try:
        for rid in ids:
            for node in history.load(rid).get("nodes", {}).values():
                if node.get("state") not in DONE_OK:
                    continue
                key = node.get("cache_key")
                hit = store.lookup(key) if key else None
                if key and hit is not None:
                    entries.setdefault(key, hit)
                    continue
                for a in (node.get("outputs") or {}).values():
                    art = Artifact.from_json(a)
                    if store.intact(art):
                        loose.update(objects_of(store, {"x": art}))
                    else:
                        missing += 1
        jobs = {key: remote.submit(remote.push_entry, key, outs, objects_of(store, outs), True) for key, outs in entries.items()}
        jobs["<objects>"] = remote.submit(remote.push_objects, list(loose.items()))
        written = 0
        for fut in cf.as_completed(jobs.values()):
            try:
                written += 1 if fut.result() is True else 0
            except RemoteDown:
                pass
        if remote.down:
            raise _down(remote)
    finally:
        store.close()
        remote.close()
    return {
        "runs": len(ids),
        "entries": written,
        "entries_there": len(entries) - written,
        "objects": remote.pushed_objects,
        "bytes": remote.pushed_bytes,
        "missing_locally": missing,
    }


def pull_runs(project: Project, refs: list[str], remote: Remote) -> dict[str, Any]:
    """Fetch what the given (local) runs used and produced that the store lacks, by cache key or by hash."""
    history = History(project.store)
    ids = [history.resolve(r) for r in refs]
    store = Store(project.store)
    wanted: dict[str, tuple[str, dict[str, Artifact]]] = {}  # key -> (run, outputs as recorded)
    loose: dict[str, Artifact] = {}
    try:
        for rid in ids:
            for node in history.load(rid).get("nodes", {}).values():
                outs = {n: Artifact.from_json(a) for n, a in (node.get("outputs") or {}).items()}
                key = node.get("cache_key")
                if key and node.get("state") in DONE_OK:
                    if store.lookup(key) is None:
                        wanted.setdefault(key, (rid, outs))
                else:
                    loose.update({a.hash: a for a in outs.values() if not store.intact(a)})
        return _fetch_many(store, remote, {k: v[0] for k, v in wanted.items()}, loose)
    finally:
        store.close()
        remote.close()


def pull_graph(project: Project, plan: Any, remote: Remote) -> dict[str, Any]:
    """Fetch what a run of the plan would take from the cache: keys computed as --dry-run does.

    A node's key needs its upstream outputs, which may come from the remote: so the plan is
    explained once per level of the DAG, and each time every missing key it could compute is
    fetched at once (concurrently)."""
    from .engine import explain_plan

    store = Store(project.store)
    total = {"entries": 0, "bytes": 0, "misses": 0}
    tried: set[str] = set()
    try:
        while True:
            rows = explain_plan(project, plan)  # reads the entries committed below
            keys = {r["cache_key"]: "pull" for r in rows if r["action"] == "run" and r.get("cache_key") and "not cacheable" not in r["why"]}
            keys = {k: v for k, v in keys.items() if k not in tried}
            if not keys:
                break
            tried.update(keys)
            got = _fetch_many(store, remote, keys, {})
            store.flush()  # the entries, and the stat signatures of what was just verified: not hashed again below
            for k in total:
                total[k] += got.get(k, 0)
            if not got["entries"]:
                break
    finally:
        store.close()
        remote.close()
    return {**total, "cached": sum(1 for r in rows if r["action"] == "cached"), "run": sum(1 for r in rows if r["action"] == "run"), "rows": rows}


def _fetch_many(store: Store, remote: Remote, keys: dict[str, str], loose: dict[str, Artifact]) -> dict[str, Any]:
    """Fetch entries by key (concurrently) and lone artifacts by hash; adopt them from this thread."""
    futures = {remote.submit(remote.fetch, key, store): key for key in keys}
    out = {"entries": 0, "misses": 0, "objects": 0, "bytes": 0}
    for fut in cf.as_completed(futures):
        got = fut.result()
        if got is None:
            out["misses"] += 1
            continue
        out["bytes"] += got.bytes
        outputs = adopt(store, got)
        if outputs is not None:
            store.record(futures[fut], outputs, keys[futures[fut]])
            out["entries"] += 1
    if loose:
        bundle = Fetched("", {h: a for h, a in loose.items()})
        try:
            remote._download_all(bundle, store)
            out["bytes"] += bundle.bytes
            out["objects"] = len(bundle.files)
            if adopt(store, bundle) is None:
                out["misses"] += 1
        except Damaged as exc:
            remote.warn(f"{exc}: not used")
            out["misses"] += 1
    if remote.down:
        raise _down(remote)
    return out


def verify_remote(project: Project, remote: Remote) -> tuple[int, list[tuple[str, str]]]:
    """Re-hash every object of the remote and check that every entry's objects are there."""
    store = Store(project.store)  # downloads stream into its tmp folder and are deleted once hashed
    try:
        result = remote.verify(store.tmp)
    except RemoteDown:
        raise _down(remote) from None
    finally:
        store.close()
        remote.close()
    if remote.down:
        raise _down(remote)
    return result
