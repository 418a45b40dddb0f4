"""The store's key -> text tables: a store written by an older plx (diskcache's layout, triggers and
all) is read and written as it is, and a row that is not plain text is never a value."""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import signal
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from plx.texttable import SCAN_FROM, TextTable, write_transaction

# What diskcache 5.6 made of an index folder (the Settings rows its triggers keep up to date).
_OLD = [
    "CREATE TABLE Settings (key TEXT NOT NULL UNIQUE, value)",
    "INSERT INTO Settings VALUES ('count', 0), ('size', 0)",
    "CREATE TABLE Cache (rowid INTEGER PRIMARY KEY, key BLOB, raw INTEGER, store_time REAL, expire_time REAL, access_time REAL,"
    " access_count INTEGER DEFAULT 0, tag BLOB, size INTEGER DEFAULT 0, mode INTEGER DEFAULT 0, filename TEXT, value BLOB)",
    "CREATE UNIQUE INDEX Cache_key_raw ON Cache(key, raw)",
    "CREATE INDEX Cache_expire_time ON Cache (expire_time)",
    "CREATE TRIGGER Settings_count_insert AFTER INSERT ON Cache FOR EACH ROW BEGIN UPDATE Settings SET value = value + 1 WHERE key = 'count'; END",
    "CREATE TRIGGER Settings_count_delete AFTER DELETE ON Cache FOR EACH ROW BEGIN UPDATE Settings SET value = value - 1 WHERE key = 'count'; END",
    "CREATE TRIGGER Settings_size_update AFTER UPDATE ON Cache FOR EACH ROW BEGIN UPDATE Settings SET value = value + NEW.size - OLD.size WHERE key = 'size'; END",
]


def _old_store(folder: Path) -> None:
    folder.mkdir()
    con = sqlite3.connect(folder / "cache.db")
    con.execute("PRAGMA journal_mode = wal")
    for statement in _OLD:
        con.execute(statement)
    rows = [("k-text", 1, 1, '{"outputs": {}}', None), ("k-file", 1, 3, None, "ab/cd.val"), ("k-pickle", 1, 4, pickle.dumps(["x"]), None), ("k-bytes", 0, 1, "x", None)]
    con.executemany("INSERT INTO Cache(key, raw, store_time, mode, value, filename) VALUES (?, ?, 0, ?, ?, ?)", [(k, raw, mode, v, f) for k, raw, mode, v, f in rows])
    con.commit()
    con.close()


def test_an_older_plx_store_is_read_and_written_as_it_is(tmp_path: Path) -> None:
    _old_store(tmp_path / "index")
    t = TextTable(tmp_path / "index")
    assert t.get("k-text") == '{"outputs": {}}'
    assert t.get("nothing") is None
    for key in ("k-file", "k-pickle"):  # a value kept as a file, a tampered row marked as a pickle: never a value
        with pytest.raises(ValueError):
            t.get(key)
    assert t.texts(["k-text", "k-file", "k-pickle", "k-bytes", "nothing"]) == {"k-text": '{"outputs": {}}'}
    with t.transaction():
        t.put_many([("k-file", "now text"), ("k-new", "new")])
    assert t.get("k-file") == "now text" and t.get("k-new") == "new"
    t.delete("k-new")
    assert t.get("k-new") is None
    assert sorted(t.keys()) == ["k-file", "k-pickle", "k-text"]
    t.close()
    con = sqlite3.connect(tmp_path / "index" / "cache.db")
    assert con.execute("SELECT value FROM Settings WHERE key = 'count'").fetchone() == (4,)  # its triggers still ran
    con.close()


def test_what_plx_never_reads_is_dropped_rows_and_value_files(tmp_path: Path) -> None:
    """An older store's unreadable rows and diskcache's value files (left behind when plx wrote the
    same key as text) go; text rows, and anything that is not a value file, stay."""
    folder = tmp_path / "index"
    _old_store(folder)
    (folder / "ab" / "cd").mkdir(parents=True)
    (folder / "ab" / "cd" / "0123.val").write_bytes(b"x" * 1000)  # value files (the rows name other ones: no matter)
    (folder / "ab" / "cd" / "4567.val").write_bytes(b"y" * 24)
    (folder / "ef" / "01").mkdir(parents=True)
    (folder / "ef" / "01" / "notes.txt").write_text("not diskcache's")
    (folder / "zz").mkdir()
    (folder / "zz" / "keep.val").write_text("not in a two-hex-digit folder")
    con = sqlite3.connect(folder / "cache.db")
    con.execute("INSERT INTO Cache(key, raw, store_time, mode, value) VALUES ('k-blob', 1, 0, 1, x'00ff')")  # text mode, bytes value
    con.commit()
    con.close()
    t = TextTable(folder)
    assert t.drop_unreadable() == (4, 1024)  # k-file, k-pickle, k-bytes, k-blob; the two .val files
    assert sorted(t.keys()) == ["k-text"] and t.get("k-text") == '{"outputs": {}}'
    assert not (folder / "ab").exists()  # emptied, so removed
    assert (folder / "ef" / "01" / "notes.txt").exists() and (folder / "zz" / "keep.val").exists()
    assert t.drop_unreadable() == (0, 0)  # nothing left to do
    t.close()


def test_a_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    t = TextTable(tmp_path)
    with pytest.raises(RuntimeError), t.transaction():
        t.put_many([("a", "1")])
        raise RuntimeError("a run stopped half-way")
    assert t.get("a") is None and len(t) == 0
    t.close()


def test_a_transaction_a_signal_left_open_is_rolled_back_by_the_next(tmp_path: Path) -> None:
    """Seen in CI: SIGTERM's KeyboardInterrupt landed right after BEGIN, before the `try` that rolls
    back; the shared connection stayed in the transaction, and the run's every later commit failed
    with "cannot start a transaction within a transaction" (a traceback, exit 1)."""
    t = TextTable(tmp_path)
    t._con.execute("BEGIN IMMEDIATE")  # what the interrupted transaction left: begun, written, never ended
    t.put_many([("lost", "never confirmed")])
    with t.transaction():
        t.put_many([("kept", "1")])
    assert t.get("kept") == "1" and t.get("lost") is None
    other = sqlite3.connect(tmp_path / "cache.db", timeout=0)  # and the write lock is free for other processes
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()
    t.close()


def test_transactions_a_real_signal_interrupts_never_stay_open(tmp_path: Path) -> None:
    """A real timer signal, one per transaction at a delay that sweeps its length, raises wherever Python
    checks for signals: in BEGIN's wake, in the body, in COMMIT's, in the rollback. After each, the
    next transaction must work and commit."""

    class Signalled(BaseException):  # as plx's SIGTERM handler's KeyboardInterrupt, but pytest's own session goes on
        pass

    def interrupt(signum: int, frame: Any) -> None:
        raise Signalled

    t = TextTable(tmp_path)
    previous = signal.signal(signal.SIGALRM, interrupt)
    interrupted = 0
    gc.disable()  # a signal landing in a collector callback (hypothesis installs one) is only printed
    try:
        for i in range(2000):
            try:
                signal.setitimer(signal.ITIMER_REAL, 1e-6 * (1 + i % 80))  # one shot
                with t.transaction():
                    t.put_many([(f"k{i}", "v")])
                signal.setitimer(signal.ITIMER_REAL, 0)
            except Signalled:
                interrupted += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        gc.enable()
    assert interrupted > 0, "no signal landed: the test proved nothing"
    with t.transaction():
        t.put_many([("after", "1")])
    assert t.get("after") == "1" and not t._con.in_transaction
    t.close()


def test_a_transaction_inside_a_transaction_fails_and_writes_nothing(tmp_path: Path) -> None:
    """An open transaction at the start is taken for one an interrupt left, and rolled back: a nested
    one (same thread, inside its own) must fail instead, and not end the outer one half-written."""
    t = TextTable(tmp_path)
    with pytest.raises(RuntimeError), t.transaction():
        t.put_many([("outer", "1")])
        with t.transaction():
            t.put_many([("inner", "2")])
    assert t.keys() == [] and not t._con.in_transaction
    with t.transaction():
        t.put_many([("after", "3")])
    assert t.get("after") == "3"
    t.close()


def test_the_run_index_rolls_back_what_a_signal_left_open(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    con.execute("CREATE TABLE t (v)")
    con.execute("BEGIN")
    con.execute("INSERT INTO t VALUES ('lost')")
    with write_transaction(con, "BEGIN"):
        con.execute("INSERT INTO t VALUES ('kept')")
    assert con.execute("SELECT v FROM t").fetchall() == [("kept",)] and not con.in_transaction
    con.close()


@pytest.mark.parametrize("n", [10, SCAN_FROM + 5])  # probes per key, then one scan
def test_texts_of_many_keys_agree_with_get(tmp_path: Path, n: int) -> None:
    t = TextTable(tmp_path)
    with t.transaction():
        t.put_many([(f"/data/{i:06d}", f"h{i}") for i in range(n)])
    asked = [f"/data/{i:06d}" for i in range(0, n + 3)]  # three that are not there
    got = t.texts(asked)
    assert got == {k: v for k in asked if (v := t.get(k)) is not None}
    assert len(got) == n
    t.close()


def test_threads_of_one_process_share_a_table(tmp_path: Path) -> None:
    t = TextTable(tmp_path)
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            for i in range(50):
                with t.transaction():
                    t.put_many([(f"{w}-{i}", str(i))])
                assert t.get(f"{w}-{i}") == str(i)
        except BaseException as exc:  # seen by the test, not only warned about by the thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == [] and len(t) == 200
    t.close()


def _open_and_write(folder: Path, start: Any, results: Any) -> None:
    start.wait()
    try:
        t = TextTable(folder)
        with t.transaction():
            t.put_many([(f"k{os.getpid()}", "v")])
        t.close()
        results.put("")
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_that_make_one_new_table_at_once_all_open_it(tmp_path: Path) -> None:
    """Four plx starting on a new store together: SQLite refuses some of them at once ("database is
    locked") while another makes the file or switches it to WAL; each must open it and write."""
    ctx = multiprocessing.get_context("fork")
    failures = []
    for r in range(40):
        folder = tmp_path / f"r{r}"
        folder.mkdir()
        start, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_and_write, args=(folder, start, results)) for _ in range(4)]
        for p in procs:
            p.start()
        failed = [e for e in (results.get(timeout=120) for _ in procs) if e]
        for p in procs:
            p.join()
        t = TextTable(folder)
        assert len(t) == 4 - len(failed)  # every one that opened it wrote its row
        t.close()
        failures += failed
    assert failures == []
