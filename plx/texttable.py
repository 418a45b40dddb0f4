"""A key -> text table in one SQLite file: the store's cache index and its stat cache.

Both are plain SQLite through the standard library. Earlier versions of plx kept them as diskcache
caches; the file (`<folder>/cache.db`) and its `Cache` table keep that layout: a store written by an older
plx is read as it is, and an older plx can still read this one. diskcache ran about forty
statements at each open (2.5 ms a table, 6 ms in a new store, at every `plx` command that
touches the cache) for features plx never used: eviction, pickled values, values kept as files.

Only rows of text keys (`raw = 1`) holding inline text (`mode = 1`) are values; any other row
(a value diskcache kept as a file, a tampered one marked as a pickle) reads as "not plain text"
(ValueError), which callers treat as no entry. Nothing read here is ever unpickled.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .errors import is_locked_db

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

TEXT = 1  # the `mode` of a row holding its value inline, as text (diskcache's MODE_RAW)
SCAN_FROM = 2048  # keys asked for at once from which one range scan may beat a probe per key

_SCHEMA = (
    # diskcache's table and key index, column for column: see the module's docstring
    "CREATE TABLE IF NOT EXISTS Cache (rowid INTEGER PRIMARY KEY, key BLOB, raw INTEGER, store_time REAL, expire_time REAL,"
    " access_time REAL, access_count INTEGER DEFAULT 0, tag BLOB, size INTEGER DEFAULT 0, mode INTEGER DEFAULT 0, filename TEXT, value BLOB)",
    "CREATE UNIQUE INDEX IF NOT EXISTS Cache_key_raw ON Cache(key, raw)",
)
_PUT = (
    "INSERT INTO Cache(key, raw, store_time, access_time, mode, value) VALUES (?, 1, ?, ?, 1, ?)"
    " ON CONFLICT(key, raw) DO UPDATE SET store_time = excluded.store_time, expire_time = NULL, access_time = excluded.access_time,"
    " access_count = 0, tag = NULL, size = 0, mode = 1, filename = NULL, value = excluded.value"
)


def is_new_file(path: Path) -> bool:
    """Whether the database at path is still to be made (absent or empty): nothing in it to lose yet."""
    try:
        return os.stat(path).st_size == 0
    except FileNotFoundError:  # not made yet (or just set aside by another process)
        return True


def open_retrying(connect: Callable[[], T], seconds: float) -> T:
    """connect(), tried again for up to `seconds` while SQLite answers "database is locked". It answers
    so at once, without waiting out the busy timeout, to a connection that opens while another process
    makes the file, switches it to WAL or checkpoints it as its last connection closes (seen with four
    plx opening a new store together, and with gc beside concurrent runs)."""
    deadline, delay = time.monotonic() + seconds, 0.005
    while True:
        try:
            return connect()
        except sqlite3.OperationalError as exc:
            if not is_locked_db(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


@contextlib.contextmanager
def write_transaction(con: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    """One write transaction on con (autocommit mode), committed at the end, rolled back on any error.

    A signal handler raises where Python checks for signals, between any two bytecodes: also right
    after BEGIN, before the `try` below, or inside the rollback. So an open transaction found at the
    start is one such an exception left (transactions here never nest): it is rolled back, its writes
    were never confirmed, and its caller writes them again. Left open, every later BEGIN on the shared
    connection failed ("cannot start a transaction within a transaction") and other processes waited
    for its lock (a SIGTERM during a commit, seen in CI)."""
    if con.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            con.execute("ROLLBACK")
    try:
        con.execute(begin)
        yield
        con.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled it back itself (a full disk)
        if con.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                con.execute("ROLLBACK")
        raise


def _hex_dirs(folder: Path) -> list[Path]:
    """The two-hex-digit folders in folder (where diskcache kept values as files), never a link."""
    try:
        with os.scandir(folder) as entries:
            return [Path(e.path) for e in entries if len(e.name) == 2 and all(c in "0123456789abcdef" for c in e.name) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []


class TextTable:
    """One `cache.db`; safe to share between the threads of one process and between processes
    (SQLite's write-ahead log; a writer waits up to a minute for another's transaction)."""

    def __init__(self, folder: Path):
        self.path = folder / "cache.db"
        self._lock = threading.RLock()  # one connection, used by one thread at a time
        self._writing = False  # inside transaction()
        self._con = open_retrying(self._connect, 60)

    def _connect(self) -> sqlite3.Connection:
        new = is_new_file(self.path)
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        try:
            # A new file has nothing to lose while it is made: no waiting for the disk until then (about
            # six syncs a table, in the first run of a project). Then NORMAL: a commit is durable against
            # a crash of plx (SIGKILL, OOM), not of the machine, without a sync each.
            con.execute(f"PRAGMA synchronous = {0 if new else 1}")
            if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # kept by the file: set once
                if new:
                    con.execute("PRAGMA auto_vacuum = FULL")  # deleted entries give their space back (as diskcache's did)
                con.execute("PRAGMA journal_mode = wal")
            con.execute("PRAGMA cache_size = 8192")
            con.execute("PRAGMA mmap_size = 67108864")
            try:  # reads a page: a damaged file says so now, not in the middle of a run
                con.execute("SELECT 1 FROM Cache LIMIT 1").fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                with write_transaction(con):
                    for statement in _SCHEMA:
                        con.execute(statement)
            if new:
                con.execute("PRAGMA synchronous = 1")
        except BaseException:
            con.close()
            raise
        return con

    def close(self) -> None:
        with self._lock:
            self._con.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (taken at once: two writers never deadlock upgrading a read)."""
        with self._lock:  # first: the connection is shared by threads
            # write_transaction takes an open transaction for one an interrupt left: a nested one
            # (this thread, inside its own transaction) must fail instead of ending the outer one.
            if self._writing and self._con.in_transaction:
                raise RuntimeError(f"{self.path}: a transaction inside a transaction (they do not nest)")
            try:
                with write_transaction(self._con):
                    self._writing = True
                    yield
            finally:
                self._writing = False

    def get(self, key: str) -> str | None:
        """The text of key, or None; ValueError for a row that is not plain text."""
        with self._lock:
            row = self._con.execute("SELECT mode, value FROM Cache WHERE key = ? AND raw = 1", (key,)).fetchone()
        if row is None:
            return None
        if row[0] != TEXT or not isinstance(row[1], str):
            raise ValueError(f"{self.path}: the row of {key[:40]!r} is not plain text")
        return row[1]

    def put_many(self, items: Iterable[tuple[str, str]]) -> None:
        """Set many keys, in one statement (inside the caller's transaction, if any)."""
        now = time.time()
        with self._lock:
            self._con.executemany(_PUT, [(k, now, now, v) for k, v in items])

    def delete(self, key: str) -> None:
        with self._lock:
            self._con.execute("DELETE FROM Cache WHERE key = ? AND raw = 1", (key,))

    def drop_unreadable(self) -> tuple[int, int]:
        """Delete the rows plx never reads (values diskcache kept as files, pickles, keys or values not
        text) and diskcache's value files (`xx/yy/*.val` in the table's folder), which a write of the
        same key left behind: (rows deleted, bytes of the files removed). For `plx cache gc` while no
        plx runs: an older plx, which reads such rows, may be running otherwise."""
        with self.transaction():
            rows = self._con.execute("DELETE FROM Cache WHERE NOT (raw = 1 AND mode = ? AND typeof(key) = 'text' AND typeof(value) = 'text')", (TEXT,)).rowcount
        freed = 0
        for top in _hex_dirs(self.path.parent):
            for sub in _hex_dirs(top):
                try:
                    with os.scandir(sub) as entries:
                        files = [e for e in entries if e.name.endswith(".val") and e.is_file(follow_symlinks=False)]
                except OSError:  # unreadable (another user's, in a shared store) or gone: left as it is
                    continue
                for e in files:
                    with contextlib.suppress(OSError):
                        size = e.stat(follow_symlinks=False).st_size
                        os.unlink(e.path)
                        freed += size
                with contextlib.suppress(OSError):  # only if empty now
                    os.rmdir(sub)
            with contextlib.suppress(OSError):
                os.rmdir(top)
        return rows, freed

    def keys(self) -> list[str]:
        with self._lock:
            return [k for (k,) in self._con.execute("SELECT key FROM Cache WHERE raw = 1") if isinstance(k, str)]

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._con.execute("SELECT count(*) FROM Cache").fetchone()
        return int(n)

    def texts(self, keys: list[str]) -> dict[str, str]:
        """The text of each of many keys that has one (rows not plain text left out): one query per
        500 keys; or, when they are SCAN_FROM or more and most of the rows under their common
        prefix (a folder for stat signatures; for cache keys, none: the whole table), at most twice
        as many (a no-op or `--dry-run` of 100,000 nodes asks for nearly all), one scan of those
        rows, two to three times faster than a probe per key, the rows then kept to the keys asked."""
        with self._lock:
            rows = self._rows(keys)
        return {k: v for k, mode, v in rows if mode == TEXT and isinstance(k, str) and isinstance(v, str)}

    def _rows(self, keys: list[str]) -> list[Any]:
        sql = self._con.execute
        if len(keys) >= SCAN_FROM:
            prefix = os.path.commonprefix([min(keys), max(keys)])
            args: tuple[str, ...] = ()
            if prefix:  # the rows under it, counted on the key index alone (no row read)
                where, args = "key >= ? AND key < ? AND ", (prefix, prefix + "\U0010ffff")
                (total,) = sql(f"SELECT count(*) FROM Cache WHERE {where}raw = 1", args).fetchone()
            else:  # the whole table, in its own order (cheaper than along the key index); the largest
                # rowid is at least the number of rows, and found without a count
                where = ""
                (total,) = sql("SELECT max(rowid) FROM Cache").fetchone()
            if isinstance(total, int) and total <= 2 * len(keys):
                wanted = set(keys)
                return [r for r in sql(f"SELECT key, mode, value FROM Cache WHERE {where}raw = 1", args) if r[0] in wanted]
        out: list[Any] = []
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            out += sql(f"SELECT key, mode, value FROM Cache WHERE raw = 1 AND key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return out
