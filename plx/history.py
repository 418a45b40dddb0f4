"""Run records under the store: one folder per run, JSON written atomically, git facts.

runs/<id>/run.json      the run as planned and, at the end, as finished (atomic rewrite)
runs/<id>/events.jsonl  one line per node state change, appended (never rewritten)
runs/<id>/lock          flock held by the live plx process: a free lock on a `running`
                        run means that process died, so the run is `interrupted`
runs/<id>/logs/<node>.{stdout,stderr}   each node's output, written as it is produced
runs/<id>/worker.log    what plx did for each node, each line tagged `node<TAB>`
runs/index.sqlite       one summary row per run, so `plx log` never reads thousands of records
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from .errors import RunError, did_you_mean, is_damaged_db, is_disk_full, is_unwritable_db, warn
from .records import FINAL_NODE_STATES, NodeState, RunState, as_run, count_states
from .repair import ensure_dir, set_aside, temp_file
from .texttable import is_new_file, open_retrying, write_transaction

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any, Mapping

    from .records import RunData

WORKER_LOG = "worker.log"


_last_id_ms = 0


def new_run_id() -> str:
    """A run id that sorts by start time: UTC date, time, milliseconds, then random. Ids made by one
    process are strictly increasing (a sweep's members start within one millisecond: the next one
    takes the next millisecond), so "newest first" is the order they were started in."""
    global _last_id_ms
    ms = max(time.time_ns() // 1_000_000, _last_id_ms + 1)
    _last_id_ms = ms
    now = datetime.fromtimestamp(ms // 1000, UTC)
    return now.strftime("%Y%m%d-%H%M%S-") + f"{ms % 1000:03d}-" + os.urandom(2).hex()  # as secrets.token_hex(2), without importing secrets (hmac, hashlib)


# json.dumps(obj, default=str) builds an encoder at every call: one, kept (an event per node).
# check_circular off: a record is a tree plx builds (the check costs ~12 % of a 1,000-node record).
_encode = json.JSONEncoder(default=str, check_circular=False).encode


_last_iso: tuple[int, str] = (-1, "")


def now_iso() -> str:
    # Formatted once per millisecond: a node's worker log takes ~8 stamps within the same few.
    global _last_iso
    ms = time.time_ns() // 1_000_000
    last = _last_iso
    if last[0] == ms:
        return last[1]
    text = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000).isoformat(timespec="milliseconds")
    _last_iso = (ms, text)
    return text


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that a crash leaves either the old file or the new one, never half of one."""
    fd, tmp = temp_file(path.parent, ".tmp-", ".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            # One line, no indent: only json.dumps without indent uses the C encoder (10x faster on
            # a 1,000-node record). `plx log RUN --json` prints it indented.
            f.write(_encode(data) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class _GitRead:
    """A background read of git facts, with callbacks for when it is done."""

    def __init__(self, root: Path):
        import threading

        self.root = root
        self.result: dict[str, Any] = {}
        self.done = False
        self.callbacks: list[Any] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, args=(root,), daemon=True)
        self.thread.start()

    def _read(self, root: Path) -> None:
        try:
            self.result.update(_read_git_facts(root))
        finally:
            with self.lock:
                self.done = True
                callbacks, self.callbacks = self.callbacks, []
            for cb in callbacks:
                cb()

    def when_done(self, callback: Any) -> None:
        with self.lock:
            if not self.done:
                self.callbacks.append(callback)
                return
        callback()

    def facts(self, wait: bool) -> dict[str, Any] | None:
        """The facts, or None if the read is still going and wait is False."""
        if not wait and not self.done:
            return None
        self.thread.join()
        return dict(self.result) if self.result else _read_git_facts(self.root)


# A prefetch is for the one run about to start, and handed to it: a process that runs twice (the
# Python API, a notebook) must ask git again, or the second run records the first one's commit.
_prefetched: dict[Path, _GitRead] = {}


def prefetch_git_facts(root: Path) -> None:
    """Start reading git facts in the background for the next run: asking git takes about as long as
    validating and planning a small run, so the two overlap."""
    _prefetched[root] = _GitRead(root)


def take_git_read(root: Path) -> _GitRead:
    """The read prefetched for this run (it is not handed out again), or a new one."""
    return _prefetched.pop(root, None) or _GitRead(root)


def _read_git_facts(root: Path) -> dict[str, Any]:
    """One `git status` answers all three (gitpython would cost a 50 ms import and three git calls)."""
    import subprocess

    facts: dict[str, Any] = {"commit": None, "branch": None, "dirty": None}
    try:
        proc = subprocess.run(
            ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=60,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},  # a read must not take the index lock from a concurrent git
        )
    except (OSError, subprocess.SubprocessError):  # git missing or stuck: the facts stay null
        return facts
    if proc.returncode != 0:  # not a git work tree
        return facts
    dirty = False
    for line in proc.stdout.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split(" ", 2)[2]
            facts["commit"] = None if oid == "(initial)" else oid  # a repository without commits yet
        elif line.startswith("# branch.head "):
            head = line.split(" ", 2)[2]
            facts["branch"] = None if head == "(detached)" else head
        elif line and not line.startswith("#"):
            dirty = True  # a tracked file differs from HEAD, staged or not
    facts["dirty"] = dirty
    return facts


def summary(data: Mapping[str, Any]) -> dict[str, Any]:
    """What `plx log` lists about a run."""
    c = count_states(data.get("nodes", {}))
    return {
        "id": data["id"],
        "graph": data.get("graph"),
        "status": data.get("status"),
        "started": data.get("started"),
        "finished": data.get("finished"),
        "duration": data.get("duration"),
        "git": data.get("git"),
        "counts": c,
        **_tracking(data),
    }


def _tracking(data: Mapping[str, Any]) -> dict[str, Any]:
    """Labels, params as used and metrics (plx/tracking.py): what `plx log` filters and sorts by."""
    from .records import labels, run_params

    metrics = data.get("metrics")
    return {**labels(data), "params": run_params(data), "metrics": metrics if isinstance(metrics, dict) else {}}


# Bumped whenever a summary gains a field: an index of an older version is dropped and rebuilt
# from the records (2: labels, params as used, metrics).
INDEX_VERSION = 2
_CREATE_RUNS = "CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, graph TEXT, status TEXT, summary TEXT NOT NULL)"


class Index:
    """runs/index.sqlite: run summaries; rebuilt from the records whenever it misses one."""

    def __init__(self, runs_dir: Path):
        ensure_dir(runs_dir)
        self.path = runs_dir / "index.sqlite"
        if os.path.lexists(self.path) and not self.path.is_file():  # a folder or link in its place
            aside = set_aside(self.path)
            warn(f"{self.path} was not a file (set aside as {aside.name}); rebuilding it from the run records", kind="note")
        try:
            self._open()
        except sqlite3.Error as exc:
            if not is_damaged_db(exc):
                raise
            self.rebuild(exc)

    def _open(self) -> None:
        open_retrying(self._open_once, 30)

    def _open_once(self) -> None:
        new = is_new_file(self.path)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            # The index is derived from the records (which are fsynced): its commits need not wait for
            # the disk (NORMAL; WAL keeps the file sound after a crash, only the last commits can be
            # lost, and a run the index lacks or shows running is read from its record, see
            # summaries). A new file has nothing to lose at all while it is made (OFF until made).
            self.db.execute(f"PRAGMA synchronous = {'OFF' if new else 'NORMAL'}")
            if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # WAL persists in the file: set once
                self.db.execute("PRAGMA journal_mode=WAL")
            if self.db.execute("PRAGMA user_version").fetchone()[0] != INDEX_VERSION:  # new, or an older plx's rows: rebuilt from the records
                # Checked again inside one write transaction: two processes opening a new index at once
                # must not both see version 0, the second dropping the rows the first just put.
                with write_transaction(self.db):
                    if self.db.execute("PRAGMA user_version").fetchone()[0] != INDEX_VERSION:
                        self.db.execute("DROP TABLE IF EXISTS runs")
                        self.db.execute(f"PRAGMA user_version = {INDEX_VERSION}")
                    self.db.execute(_CREATE_RUNS)  # in the same transaction: no one sees the version without the table
            else:
                self.db.execute(_CREATE_RUNS)  # a table dropped by hand
            self.db.execute("SELECT count(*) FROM runs").fetchone()
            if new:
                self.db.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            self.db.close()
            raise

    def rebuild(self, exc: BaseException) -> None:
        """The index is derived data: a damaged one is deleted and rebuilt from the run records."""
        try:
            self.db.close()
        except (AttributeError, sqlite3.Error):
            pass
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        warn(f"{self.path} was damaged ({exc}); rebuilt it from the run records", kind="note")
        self._open()

    def put(self, data: Mapping[str, Any]) -> None:
        s = summary(data)
        self.db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)", (s["id"], s["graph"], s["status"], json.dumps(s)))

    def put_summaries(self, rows: list[dict[str, Any]]) -> None:
        """Many summaries in one transaction: a commit per row made rebuilding 10,000 runs take 10 s."""
        with write_transaction(self.db, "BEGIN"):
            self.db.executemany("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)", [(s["id"], s["graph"], s["status"], json.dumps(s)) for s in rows])

    def ids(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT id FROM runs")}

    def delete(self, ids: list[str]) -> None:
        self.db.executemany("DELETE FROM runs WHERE id = ?", [(i,) for i in ids])

    def query(self, graph: str | None, statuses: list[str] | None, limit: int | None) -> list[dict[str, Any]]:
        sql, args = "SELECT summary FROM runs WHERE 1=1", []
        if graph:
            sql += " AND graph = ?"
            args.append(graph)
        if statuses:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            args += statuses
        sql += " ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [json.loads(row[0]) for row in self.db.execute(sql, args)]

    def close(self) -> None:
        self.db.close()


def export_revision(root: Path, rev: str, dest_parent: Path) -> tuple[str, Path]:
    """Write the files tracked at git revision rev under dest_parent/<commit>; returns (commit, folder)."""
    import stat as stat_mod

    try:
        import git

        repo = git.Repo(root, search_parent_directories=True)
    except Exception:
        raise RunError(f"--rev {rev}: {root} is not inside a git repository") from None
    try:
        try:
            commit = repo.commit(rev)
        except Exception:
            raise RunError(f"--rev {rev}: no such git revision") from None
        top = Path(repo.working_tree_dir or root).resolve()
        dest = dest_parent / f"rev-{commit.hexsha}"
        if not (dest / ".plx-complete").exists():
            tmp = dest_parent / f".rev-{commit.hexsha}-{os.getpid()}"
            for item in commit.tree.traverse():
                blob: Any = item
                if getattr(blob, "type", None) != "blob":
                    continue
                target = tmp / blob.path
                target.parent.mkdir(parents=True, exist_ok=True)
                if blob.mode == 0o120000:  # a symbolic link: keep it as one
                    os.symlink(blob.data_stream.read().decode(), target)
                    continue
                with open(target, "wb") as f:
                    blob.stream_data(f)
                if blob.mode & stat_mod.S_IXUSR:
                    os.chmod(target, 0o755)
            (tmp / ".plx-complete").parent.mkdir(parents=True, exist_ok=True)
            (tmp / ".plx-complete").touch()
            try:
                os.replace(tmp, dest)
            except OSError:  # another plx exported the same commit meanwhile
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
        sub_root = dest / root.resolve().relative_to(top) if root.resolve() != top else dest
        return commit.hexsha, sub_root
    finally:
        repo.close()


class RunRecord:
    """The live record of one run, written by the plx process that runs it."""

    def __init__(self, runs_dir: Path, data: dict[str, Any], index: Index | None = None):
        """index: the connection to the runs' index to use, kept open by its owner (History.shared_index);
        without one, the record opens and closes its own at its start and at its end."""
        self.dir = runs_dir / data["id"]
        ensure_dir(runs_dir)
        self.dir.mkdir(exist_ok=False)
        self.data = data
        self._log_dirs: set[str] = set()
        self._worker: Any = None
        self._t0 = time.time()
        self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        write_json_atomic(self.dir / "run.json", data)
        self._events = open(self.dir / "events.jsonl", "a", encoding="utf-8")
        self._index_dir = runs_dir
        self._index = index
        self._put_summary()

    def _put_summary(self) -> None:
        if self._index is not None:
            self._index.put(self.data)
            return
        index = Index(self._index_dir)
        try:
            index.put(self.data)
        finally:
            index.close()

    @property
    def id(self) -> str:
        return str(self.data["id"])

    def log(self, node: str, stream: str) -> Path:
        """logs/<node>.<stream>: files, not a folder per node (a folder per node costs time on some disks).
        Not kept per node: two paths for each of 100,000 nodes were tens of MB of a large run."""
        parent = node.rpartition("/")[0]  # a sub-graph's nodes share their parent's folder
        if parent not in self._log_dirs:
            (self.dir / "logs" / parent).mkdir(parents=True, exist_ok=True)
            self._log_dirs.add(parent)
        return self.dir / "logs" / f"{node}.{stream}"

    @property
    def worker_log(self) -> Path:
        return self.dir / WORKER_LOG

    def worker(self, node: str, lines: list[str]) -> None:
        """Add to a node's worker log: one file per run, each line tagged `node<TAB>` (a file per
        node would cost a file creation per node, cached ones included). `plx log RUN NODE --worker`
        shows one node's lines."""
        if self._worker is None:
            self._worker = open(self.worker_log, "a", encoding="utf-8")
        self._worker.write("".join(f"{node}\t{line}\n" for text in lines for line in text.rstrip("\n").split("\n")))

    def flush(self) -> None:
        """Write out the buffered events and worker lines (the engine does, at least every
        engine.COMMIT_EVERY seconds, so readers and `log -f` see them)."""
        self._events.flush()
        if self._worker is not None:
            self._worker.flush()

    def node_event(self, node: str, **fields: Any) -> None:
        """Record a node's change: appended to events.jsonl, written out by the next flush()."""
        self.data["nodes"].setdefault(node, {}).update(fields)
        self._events.write(_encode({"node": node, **fields}) + "\n")

    def run_event(self, **fields: Any) -> None:
        """Record run-level facts learnt after the start (the git facts), appended like node events."""
        self.data.update(fields)
        self._events.write(json.dumps({"run": fields}, default=str) + "\n")
        self._events.flush()

    def finish(self, status: str) -> None:
        self.data["status"] = status
        self.data["finished"] = now_iso()
        self.data["duration"] = round(time.time() - self._t0, 3)
        write_json_atomic(self.dir / "run.json", self.data)
        self._events.close()
        if self._worker is not None:
            self._worker.close()
        self._put_summary()
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)


def _apply_events(events: Path, data: dict[str, Any]) -> None:
    """A running run's record brought up to date with the events written since it started."""
    try:
        lines = events.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:  # none yet, or unreadable: the record as written at the start
        lines = []
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if not isinstance(ev, dict):
            continue  # JSON, but not an event plx wrote
        if isinstance(ev.get("node"), str):
            data["nodes"].setdefault(ev.pop("node"), {}).update(ev)
        elif isinstance(ev.get("run"), dict):
            data.update(ev["run"])  # run-level facts learnt after the start


class History:
    """Reads run records; marks runs whose plx process died as `interrupted`."""

    def __init__(self, store_root: Path):
        self.dir = store_root / "runs"
        self._index: Index | None = None

    def shared_index(self) -> Index:
        """One connection to the index for a whole run (settle_running, each record's start and end),
        closed by close(): opening one costs ~0.9 ms, closing it (a checkpoint, with its syncs) ~0.8 ms."""
        if self._index is None:
            self._index = Index(self.dir)
        return self._index

    def close(self) -> None:
        index, self._index = self._index, None
        if index is not None:
            index.close()

    def ids(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted((p.name for p in self.dir.iterdir() if (p / "run.json").is_file()), reverse=True)

    def resolve(self, ref: str) -> str:
        ids = self.ids()
        if not ids:
            raise RunError("there are no runs yet; start one with `plx run GRAPH`")
        if ref == "last" or ref.startswith("last~"):
            back = ref.partition("~")[2]
            n = int(back) if back.isdigit() else 0 if not back else -1
            if n < 0 or n >= len(ids):
                raise RunError(f"'{ref}': there are {len(ids)} runs; last~N counts back from the newest (last~0)")
            return ids[n]
        if ref in ids:
            return ref
        matches = [i for i in ids if i.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise RunError(f"'{ref}' matches {len(matches)} runs ({', '.join(matches[:3])}...); give more of the id")
        hint = did_you_mean(ref, ids)
        raise RunError(f"no run '{ref}'" + (f" ({hint})" if hint else "; `plx log` lists the runs"))

    def load(self, run_id: str) -> RunData:
        """A run's record; a damaged one is a RunError that says so (callers listing runs skip it)."""
        d = self.dir / run_id
        try:
            data: Any = json.loads((d / "run.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"run {run_id} has no record ({d / 'run.json'} is missing)") from None
        except (OSError, ValueError) as exc:
            raise RunError(damaged_record(d, str(exc.strerror or exc) if isinstance(exc, OSError) else f"not JSON: {exc}")) from None
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict) or not all(isinstance(n, dict) for n in data["nodes"].values()):
            raise RunError(damaged_record(d, "not a plx run record"))
        data["id"] = run_id
        if data.get("status") == RunState.RUNNING:
            _apply_events(d / "events.jsonl", data)
            if not self._alive(d):
                # Its plx writes the final run.json before it lets go of the lock: read again now, or a
                # run that ended between the read above and the lock check is marked interrupted.
                try:
                    again: Any = json.loads((d / "run.json").read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    again = None
                if isinstance(again, dict) and again.get("status") != RunState.RUNNING and isinstance(again.get("nodes"), dict):
                    again["id"] = run_id
                    data = again
                else:
                    try:
                        self._mark_interrupted(d, data)
                    except (OSError, sqlite3.Error):  # a full disk: the next reader marks it
                        pass
        elif "metrics" not in data:  # recorded by a plx without metrics: read them from the store
            from .tracking import run_metrics

            data["metrics"] = run_metrics(self.dir.parent, data)
        return as_run(data)

    def load_or_warn(self, run_id: str) -> RunData | None:
        """A run's record, or None with a warning when it is damaged (for commands that list runs)."""
        try:
            return self.load(run_id)
        except RunError as exc:
            warn(f"skipped: {exc}")
            return None

    @staticmethod
    def _alive(d: Path) -> bool:
        try:
            fd = os.open(d / "lock", os.O_RDWR)
        except (FileNotFoundError, IsADirectoryError):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    def _mark_interrupted(self, d: Path, data: dict[str, Any]) -> None:
        _stop_leftovers(data)
        data["status"] = RunState.INTERRUPTED
        for node in data["nodes"].values():
            if node.get("state") not in FINAL_NODE_STATES:
                node["state"] = NodeState.CANCELED
        data.setdefault("finished", None)
        write_json_atomic(d / "run.json", data)
        index = Index(self.dir)
        index.put(data)
        index.close()

    def settle_running(self) -> None:
        """Find the runs whose plx died (marking them `interrupted` stops what they left running)."""
        if not (self.dir / "index.sqlite").exists():
            return
        try:
            rows = self.shared_index().query(None, [RunState.RUNNING], None)  # the caller closes it (close())
        except (sqlite3.Error, OSError, ValueError):  # a damaged index: `plx log` rebuilds it and settles then
            return
        for row in rows:
            try:
                self.load(row["id"])
            except (RunError, OSError, ValueError, KeyError):  # a damaged record: `plx log` says so
                continue

    def summaries(self, graph: str | None = None, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Run summaries, newest first, from the index (brought up to date with the records first)."""
        on_disk = self.ids()
        if not on_disk:
            return []
        try:
            rows = self._indexed(on_disk, graph, status, limit)
        except sqlite3.Error as exc:
            if is_disk_full(exc):
                warn("the disk holding the store is full: listing the runs from their records (slower)")
            elif is_unwritable_db(exc):
                warn(f"{self.dir} cannot be written ({exc}): listing the runs from their records (slower)")
            else:
                raise
            rows = [summary(d) for d in map(self.load_or_warn, on_disk) if d is not None and (not graph or d.get("graph") == graph)]
        out = []
        for row in rows:
            if row["status"] == RunState.RUNNING:
                data = self.load_or_warn(row["id"])  # live counts, or found dead: `interrupted`
                if data is None:
                    continue
                row = summary(data)
            if status and row["status"] != status:
                continue
            out.append(row)
            if limit and len(out) >= limit:
                break
        return out

    def _indexed(self, on_disk: list[str], graph: str | None, status: str | None, limit: int | None) -> list[dict[str, Any]]:
        """Summaries from the index, brought up to date with the records; a damaged index is rebuilt."""
        index = Index(self.dir)
        try:
            for attempt in (1, 2):
                try:
                    known = index.ids()
                    missing = [i for i in on_disk if i not in known]
                    # records written by an older plx, or an index lost, deleted or rebuilt; all loaded
                    # first (a load may mark a dead run in the index itself), then put in one transaction
                    fresh = [summary(d) for d in map(self.load_or_warn, missing) if d is not None]
                    if fresh:
                        index.put_summaries(fresh)
                    gone = list(known - set(on_disk))
                    if gone:
                        index.delete(gone)
                    if not status:
                        return index.query(graph, None, limit)
                    if status == RunState.INTERRUPTED:  # recorded as such, or still `running` in a dead run's record
                        return index.query(graph, None, None)
                    # A row still `running` may be a run that ended (found dead, or its last commit
                    # lost with the machine): summaries reads it from its record, then filters.
                    rows = index.query(graph, [status], limit) + ([] if status == RunState.RUNNING else index.query(graph, [RunState.RUNNING], None))
                    return sorted(rows, key=lambda r: str(r.get("id")), reverse=True)
                except sqlite3.DatabaseError as exc:
                    if attempt == 2 or not is_damaged_db(exc):
                        raise
                    index.rebuild(exc)
            raise AssertionError("unreachable")
        finally:
            index.close()

    def read_log(self, run_id: str, node: str, stream: str, pos: int = 0) -> tuple[bytes, int]:
        """A node's log from byte pos of its file on: (bytes, the position to read on from)."""
        path = self.dir / run_id / "logs" / f"{node}.{stream}"
        if stream != "worker" or path.exists():  # older records kept a worker file per node
            data = _read_from(path, pos)
            return data, pos + len(data)
        data = _read_from(self.dir / run_id / WORKER_LOG, pos)
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written is read next time
        tag = node.encode() + b"\t"
        mine = b"".join(line[len(tag) :] for line in complete.splitlines(keepends=True) if line.startswith(tag))
        return mine, pos + len(complete)


def _stop_leftovers(data: dict[str, Any]) -> None:
    """Stop the processes a dead plx left running for this run (marked with its run id, started
    after the run did: a pid reused by another process is left alone)."""
    from .procs import kill_leftovers

    try:
        since = datetime.fromisoformat(str(data.get("started"))).timestamp()
    except ValueError:
        since = time.time() - 7 * 86400
    kill_leftovers(str(data.get("id")), since)


def read_events(history: History, run_id: str, pos: int = 0) -> tuple[list[dict[str, Any]], int]:
    """A run's node state changes from byte pos of its events.jsonl on (complete lines only), and
    the position to read on from: what `plx log RUN -f` prints as they happen."""
    data = _read_from(history.dir / run_id / "events.jsonl", pos)
    complete = data[: data.rfind(b"\n") + 1]
    out = []
    for line in complete.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict) and "node" in ev and "state" in ev:
            out.append(ev)
    return out, pos + len(complete)


def damaged_record(d: Path, why: str) -> str:
    return f"the record of run {d.name} is damaged ({d / 'run.json'}: {why}); its logs are still in {d / 'logs'}; delete the folder {d} to forget the run"


def _read_from(path: Path, pos: int) -> bytes:
    """A file's bytes from pos on; nothing if it does not exist (yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(pos)
            return f.read()
    except FileNotFoundError:
        return b""
