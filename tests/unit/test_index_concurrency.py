"""The run index opened by many processes at once: a lock held for a moment is waited out, never an error."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from pathlib import Path

from plx.errors import is_disk_full, is_locked_db
from plx.history import Index

PROCESSES = 6
ROUNDS = 40


def _open_in_rounds(base: str, barrier: mp.synchronize.Barrier, errors: mp.Queue) -> None:  # type: ignore[type-arg]
    for r in range(ROUNDS):
        barrier.wait()  # every process opens the same fresh index at the same moment
        try:
            index = Index(Path(base) / str(r))
            index.put({"id": f"{r}-{mp.current_process().pid}", "graph": "g", "status": "ok", "nodes": {}})
            index.db.close()
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
            errors.put(repr(exc))


def test_index_opened_by_many_processes_at_once(tmp_path: Path) -> None:
    """Reproduced in CI: a run started beside `plx cache gc` and another run died with
    "database is locked" from `PRAGMA journal_mode=WAL` (SQLite does not wait out that lock)."""
    ctx = mp.get_context("fork")
    barrier, errors = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_open_in_rounds, args=(str(tmp_path), barrier, errors)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    seen = []
    while not errors.empty():
        seen.append(errors.get())
    assert seen == []
    assert all(p.exitcode == 0 for p in procs)
    assert len(Index(tmp_path / "0").ids()) == PROCESSES


def test_lock_and_full_disk_errors_are_told_apart() -> None:
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = 5  # type: ignore[attr-defined]
    recovery = sqlite3.OperationalError("unusual text")
    recovery.sqlite_errorcode = 261  # type: ignore[attr-defined]  # SQLITE_BUSY_RECOVERY
    full = sqlite3.OperationalError("unusual text")
    full.sqlite_errorcode = 13  # type: ignore[attr-defined]  # SQLITE_FULL
    assert is_locked_db(busy) and is_locked_db(recovery) and not is_locked_db(full)
    assert is_disk_full(full) and not is_disk_full(recovery)
