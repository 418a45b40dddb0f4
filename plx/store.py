"""The content-addressed artifact store, the cache index and the stat cache.

Layout under the store folder (default `.plx/`):
  objects/ab/cdef...   one read-only plain file per distinct content (BLAKE3 name)
  index/               cache entries: key -> JSON outputs (texttable.TextTable)
  stats/               (path, size, mtime, inode, ctime) -> hash, so unchanged files are not re-read (the same)
  key-locks            one file; a byte-range lock per cache key being computed (released if a holder dies)
  lease                one file: every plx that runs nodes or stores holds a shared flock on it for as
                       long as it does; `plx cache gc` deletes freely only while it holds it exclusively
  tmp/                 work folders and half-written objects, on the same filesystem as objects/
Directories are stored as trees: a JSON manifest object listing (path, hash, mode) of every file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import sys
import threading
from pathlib import Path

from .errors import PlxError, is_damaged_db, is_unwritable_db, warn
from .hashing import canonical, hash_bytes, hash_file
from .repair import ensure_dir, open_lock_file, set_aside, temp_file
from .structs import record
from .texttable import TextTable

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any, Iterator, Mapping

TREE_TYPE = "directory"


@record(frozen=True)
class Artifact:
    """A stored output: its content hash (a tree manifest's hash for directories)."""

    hash: str
    size: int
    type: str
    filename: str

    def to_json(self) -> dict[str, Any]:
        return {"hash": self.hash, "size": self.size, "type": self.type, "filename": self.filename}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> Artifact:
        return Artifact(str(d["hash"]), int(d["size"]), str(d["type"]), str(d["filename"]))


def reflink_or_copy(src: Path, dst: Path) -> None:
    """Clone src to dst sharing blocks where the filesystem can (btrfs, XFS), else copy."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), 0x40049409, fin.fileno())  # FICLONE
            return
        except OSError:
            pass
        # shutil.copyfileobj's loop, without importing shutil on a run's way (deferred.py)
        while chunk := fin.read(1 << 20):
            fout.write(chunk)


def manifest_hash(manifest: list[dict[str, Any]]) -> str:
    """A folder's hash: the hash of its manifest's canonical JSON."""
    return hash_bytes(canonical(manifest).encode())


def content_hash(path: Path) -> str:
    """The hash plx gives a file's or a folder's content, read afresh (no stat cache)."""
    return manifest_hash(Store._manifest(path, hash_file)) if path.is_dir() else hash_file(path)


class Store:
    """Artifacts by content hash plus the cache index; safe for concurrent plx processes."""

    def __init__(self, root: Path):
        self.root = root
        self.objects = root / "objects"
        self._objects_str = str(self.objects)
        self.tmp = root / "tmp"
        self.locks = root / "key-locks"
        try:
            for d in (self.objects, self.tmp):
                ensure_dir(d)
        except OSError as exc:  # a read-only mount, another user's folder: said here, where the store is known
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            raise PlxError(
                f"{exc.filename or root}: {exc.strerror} (plx keeps its cache and run records in the store {root}: "
                "make it writable, or set PLX_STORE to a folder you can write)"
            ) from None
        self._index: TextTable | None = None
        self._stats: TextTable | None = None
        self._new_stats: dict[str, str] = {}  # written in one transaction, not one per object
        self._new_entries: dict[str, str] = {}  # cache entries waiting for commit_entries
        # Rows read ahead in one query for many keys (prefetch): the index's entries of tasks about to
        # be looked up, the stat cache's hashes of their objects' signatures as they were then.
        self._ahead_entries: dict[str, dict[str, Artifact]] = {}
        self._ahead_misses: set[str] = set()  # keys prefetch found no entry for (see surely_missing)
        self._ahead_stats: dict[str, str] = {}
        self._lock_fd: int | None = None
        self._lease: Any = None  # a file object: closed (the lease released) even if close() is never called
        self._prefixes: set[str] = set()  # objects/xx folders known to exist
        self._opening: threading.Thread | None = None  # open_ahead's
        self._open_lock = threading.Lock()  # one opening of each database, whichever thread first needs it

    # ---- index and stat cache (opened lazily: dry runs and logs rarely need both) ----

    @property
    def index(self) -> TextTable:
        if self._index is None:
            with self._open_lock:
                self._opened_ahead()
                if self._index is None:
                    self._index = self._open_db("index", "cache misses: the nodes run again once")
        return self._index

    @property
    def stats(self) -> TextTable:
        if self._stats is None:
            with self._open_lock:
                self._opened_ahead()
                if self._stats is None:
                    self._stats = self._open_db("stats", "files are hashed again once")
        return self._stats

    def open_ahead(self) -> None:
        """Open index/ and stats/ in a thread while the caller goes on (SQLite works without the GIL):
        making a new database takes ~3 ms on the way to a cold run's first node. Their first use waits
        for the thread; whatever it could not open is opened then, with the usual messages."""
        if self._opening is None and (self._index is None or self._stats is None):
            self._opening = threading.Thread(target=self._open_quietly, name="plx-store-open", daemon=True)
            self._opening.start()

    def _open_quietly(self) -> None:
        try:
            for name in ("index", "stats"):
                if getattr(self, f"_{name}") is None:
                    ensure_dir(self.root / name)
                    setattr(self, f"_{name}", TextTable(self.root / name))
        except Exception:  # damaged, unwritable: the first use says so (_open_db)
            pass

    def _opened_ahead(self) -> None:
        opening, self._opening = self._opening, None
        if opening is not None:
            opening.join()

    def _open_db(self, name: str, what: str) -> TextTable:
        """Open index/ or stats/; a damaged database is set aside and started afresh (misses, not errors)."""
        path = self.root / name
        ensure_dir(path)
        try:
            return TextTable(path)
        except Exception as exc:
            if is_unwritable_db(exc):  # said as Store() says it of the store's folders
                raise PlxError(
                    f"{path / 'cache.db'}: {exc} (plx keeps its cache and run records in the store {self.root} and writes there: "
                    "make it writable, or set PLX_STORE to a folder you can write)"
                ) from None
            if not is_damaged_db(exc):
                raise
            why = str(exc)
        aside = set_aside(path)
        warn(f"{path} was damaged ({why}); set aside as {aside.name} and started empty ({what})")
        ensure_dir(path)
        return TextTable(path)

    def _damaged(self, name: str, exc: BaseException) -> None:
        """A database found damaged while in use: close it; the next use sets it aside and starts afresh."""
        db = self._index if name == "index" else self._stats
        if name == "index":  # first: an interrupt between the two must not leave a closed table in use
            self._index = None
        else:
            self._stats = None
        try:
            if db is not None:
                db.close()
        except Exception:
            pass
        path = self.root / name
        aside = set_aside(path)
        warn(f"{path} was damaged ({exc}); set aside as {aside.name} and started empty")

    def acquire_lease(self) -> None:
        """Hold the store's lease (shared) until close(): `plx cache gc` then deletes nothing this
        process may be using. Blocks only while a gc that found no live run works (it holds the lease exclusively)."""
        if self._lease is not None:
            return
        fd = open_lock_file(self.root / "lease")
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            warn("waiting for `plx cache gc` to finish", kind="note")
            fcntl.flock(fd, fcntl.LOCK_SH)
        self._lease = os.fdopen(fd, "r+b", buffering=0)

    def close(self, wait: bool = True) -> threading.Thread | None:
        """Commit what is pending, then close the databases and release the lease. With wait=False the
        closing goes on in a thread, returned to be joined: closing a database checkpoints it, with
        its syncs (~1 ms each), which the end of a run can overlap with its own work."""
        self._opened_ahead()
        try:
            self.flush()
        except BaseException:
            self._close_now(self._take_handles())
            raise
        handles = self._take_handles()
        if wait:
            self._close_now(handles)
            return None
        # An error there loses nothing (everything was committed): the next open finds the write-ahead log.
        closing = threading.Thread(target=self._close_now, args=(handles, True), name="plx-store-close")
        closing.start()
        return closing

    def _take_handles(self) -> list[Any]:
        """The open databases and descriptors, forgotten here (a later use opens them again)."""
        handles = [self._index, self._stats, self._lock_fd, self._lease]
        self._index = self._stats = self._lock_fd = self._lease = None
        return [h for h in handles if h is not None]

    @staticmethod
    def _close_now(handles: list[Any], quietly: bool = False) -> None:
        """Close each of them, even after one fails (the first error is raised at the end, unless quietly)."""
        error: BaseException | None = None
        for h in handles:
            try:
                if isinstance(h, int):
                    os.close(h)
                else:
                    h.close()
            except Exception as exc:
                error = error or exc
        if error is not None and not quietly:
            raise error

    def flush(self) -> None:
        self.commit_entries()
        if self._new_stats:
            try:
                with self.stats.transaction():
                    self.stats.put_many(self._new_stats.items())
            except Exception as exc:
                if not is_damaged_db(exc):
                    raise
                self._damaged("stats", exc)  # only a cache of hashes: lose this batch, not the run
            self._new_stats.clear()

    def _remember(self, key: str, h: str) -> None:
        self._new_stats[key] = h
        if len(self._new_stats) >= 512:
            self.flush()

    def _many(self, name: str, keys: list[str]) -> dict[str, str]:
        """The text values of many keys of index/ or stats/ (TextTable.texts); a row that is not
        plain text is left out: the single get() then decides about it, as for any key."""
        if not keys:
            return {}
        try:
            return (self.index if name == "index" else self.stats).texts(keys)
        except Exception as exc:
            if not is_damaged_db(exc):
                raise
            self._damaged(name, exc)
            return {}

    def _known(self, key: str) -> str | None:
        h = self._new_stats.get(key) or self._ahead_stats.pop(key, None)  # read ahead for this one look: not kept for the run
        if h is None:
            try:
                h = self.stats.get(key)
            except ValueError:  # a row that is not text: ignore it
                return None
            except Exception as exc:
                if not is_damaged_db(exc):
                    raise
                self._damaged("stats", exc)
                return None
        return None if h is None else str(h)

    def lock_fd(self) -> int:
        if self._lock_fd is None:
            self._lock_fd = open_lock_file(self.locks)
        return self._lock_fd

    # ---- hashing with the stat cache ----

    @staticmethod
    def _stat_key(path: Path | str, st: os.stat_result) -> str:
        return f"{path}\x00{st.st_size}\x00{st.st_mtime_ns}\x00{st.st_ino}\x00{st.st_ctime_ns}"

    def hash_path(self, path: Path) -> str:
        """The content hash of a file, re-read only when its stat signature changed."""
        path = path.resolve()
        st = path.stat()
        key = self._stat_key(path, st)
        cached = self._known(key)
        if cached is not None:
            return cached
        h = hash_file(path)
        self._remember(key, h)
        return h

    def hash_input(self, path: Path, type_: str) -> Artifact:
        """An artifact record for a graph input file or folder (not copied into the store)."""
        if path.is_dir():
            manifest = self._manifest(path, self.hash_path)
            return Artifact(manifest_hash(manifest), sum(e["size"] for e in manifest), type_, path.name)
        return Artifact(self.hash_path(path), path.stat().st_size, type_, path.name)

    def hash_inputs(self, paths: list[Path], type_: str) -> list[Artifact]:
        """hash_input of many graph inputs, the stat cache asked once per 500 files: a file whose
        signature (resolved path, size, mtime, inode, ctime) is known keeps its hash, any other is read."""
        resolved_dirs: dict[str, str] = {}
        todo: list[tuple[int, str, os.stat_result, str]] = []
        out: list[Artifact | None] = []
        for path in paths:
            parent, name = os.path.split(os.fspath(path))
            try:
                st = os.lstat(path)
            except OSError:
                st = None
            if st is None or not stat.S_ISREG(st.st_mode) or name in ("", ".", ".."):
                out.append(self.hash_input(path, type_))  # a folder, a link, or an error to raise: one at a time
                continue
            real = resolved_dirs.get(parent)
            if real is None:
                real = resolved_dirs[parent] = os.path.realpath(parent)
            # the same text as Path.resolve(): the parent resolved, then a name that is no link
            todo.append((len(out), f"{real}/{name}" if real != "/" else f"/{name}", st, name))
            out.append(None)
        keys = [self._stat_key(r, st) for _, r, st, _ in todo]
        known = self._many("stats", [k for k in keys if k not in self._new_stats])
        for (i, real, st, name), key in zip(todo, keys, strict=True):
            h = self._new_stats.get(key) or known.get(key)
            if h is None:
                h = hash_file(real)
                self._remember(key, h)
            out[i] = Artifact(h, st.st_size, type_, name)
        return [a for a in out if a is not None]

    # ---- objects ----

    def object_path(self, h: str) -> Path:
        return self.objects / h[:2] / h[2:]

    def _place(self, src: Path, h: str) -> None:
        """Put src's bytes at object h atomically: temp file + rename on the same filesystem.

        Every object placed (or found already there) gets the current time as its mtime: the
        store's own write time, from which `plx cache gc` counts its grace period (a node's
        output may carry any mtime: `cp -p`, `tar x`, `touch -d`)."""
        self.acquire_lease()
        dst = self.object_path(h)
        if os.path.lexists(dst):
            if self._object_ok(h) and self._refresh(dst, h):
                return
            self.drop_object(h)  # damaged (or taken by gc this instant): replace it with these good bytes
        if dst.parent.name not in self._prefixes:
            dst.parent.mkdir(exist_ok=True)
            self._prefixes.add(dst.parent.name)
        st = os.lstat(src)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            # src is plx's own file (a node's output, already checked, linked nowhere else): rename it in.
            os.chmod(src, 0o444)
            os.utime(src)
            os.replace(src, dst)
        else:  # a copy: a hard-linked output's other names (a user's file) keep their inode and mode
            fd, tmp_name = temp_file(self.tmp, "obj-")
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                reflink_or_copy(src, tmp)
                os.chmod(tmp, 0o444)
                os.replace(tmp, dst)
            finally:
                if tmp.exists():
                    tmp.unlink()
        self._remember(self._stat_key(dst, dst.stat()), h)

    def _refresh(self, dst: Path, h: str) -> bool:
        """Mark an existing object as just stored (see _place), keeping its stat-cache entry.
        False if it is gone (a `plx cache gc` took it at this instant): the caller stores it again."""
        try:
            os.utime(dst)
            self._remember(self._stat_key(dst, dst.stat()), h)
        except FileNotFoundError:
            return False
        except OSError:  # an object of another user in a shared store: gc's reference walk still keeps it
            pass
        return True

    def make_prefixes(self) -> None:
        """Create the objects/xx folders that do not exist yet. A run about to store many objects
        calls this in a background thread: on some disks a new folder takes half a millisecond,
        which would otherwise fall between a node's end and its dependents' start."""
        if sys.platform == "linux":  # this thread only, at the lowest priority: it works while the nodes do
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            have = set(os.listdir(self.objects))
        except OSError:
            return
        for name in (f"{i:02x}" for i in range(256)):
            if name not in have:
                try:
                    os.mkdir(self.objects / name)
                except FileExistsError:
                    pass
                except OSError:  # a full disk, say: _place makes what it needs, and says why if it cannot
                    return
            self._prefixes.add(name)  # known to exist now: _place does not try to make it (2 system calls, once per folder)

    def recheck(self, h: str, mtime_ns: int) -> bool:
        """Re-hash object h, whose stat signature changed for a known reason (a node was given a hard
        link to it, now removed), and remember its new signature if its bytes still match; False if
        they do not. A mode or mtime the node gave it is undone: read-only, and plx's time (see _place)."""
        p = f"{self._objects_str}/{h[:2]}/{h[2:]}"
        try:
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode):
                return False
            if st.st_mode & 0o777 != 0o444 or st.st_mtime_ns != mtime_ns:
                os.chmod(p, 0o444)
                if st.st_mtime_ns != mtime_ns:
                    os.utime(p)
                st = os.lstat(p)
            if hash_file(p) != h:  # after the signature is taken: a write since then changes it
                return False
        except OSError:
            return False
        self._remember(self._stat_key(p, st), h)
        return True

    def put_bytes(self, data: bytes) -> str:
        h = hash_bytes(data)
        if not (self.object_path(h).exists() and self._object_ok(h) and self._refresh(self.object_path(h), h)):
            fd, tmp_name = temp_file(self.tmp, "obj-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                self._place(Path(tmp_name), h)
            finally:
                if os.path.lexists(tmp_name):  # a full disk: no half-written file is left behind
                    os.unlink(tmp_name)
        return h

    def put_file(self, path: Path, type_: str, filename: str, data: bytes | None = None) -> Artifact:
        """Store a file (moved in when plx owns it: see _place); `data`, when the caller already read the bytes, saves reading them again."""
        h = hash_bytes(data) if data is not None else hash_file(path)
        size = len(data) if data is not None else path.stat().st_size
        self._place(path, h)
        return Artifact(h, size, type_, filename)

    def put_tree(self, path: Path, filename: str) -> Artifact:
        """Store every file of a folder and a manifest naming them; the manifest's hash names the tree."""
        manifest = self._manifest(path, hash_file, follow_links=False)
        for entry in manifest:
            if entry["hash"]:  # empty folders are listed with no content
                self._place(path / entry["path"], entry["hash"])
        h = self.put_bytes(canonical(manifest).encode())
        return Artifact(h, sum(e["size"] for e in manifest), TREE_TYPE, filename)

    @staticmethod
    def _manifest(path: Path, hasher: Any, follow_links: bool = True) -> list[dict[str, Any]]:
        """(path, hash, size, exec) of every file of a folder. A stored tree never holds a link:
        with follow_links=False (a node's output, whose links the engine replaced by what they
        point to) any link found is an error."""
        out = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            if not follow_links:
                for name in dirnames + filenames:
                    if os.path.islink(os.path.join(dirpath, name)):
                        raise ValueError(f"{Path(dirpath, name).relative_to(path.parent)} is a symbolic link; a stored folder holds only files and folders")
            for name in sorted(filenames):
                p = Path(dirpath) / name
                st = p.stat()
                out.append({"path": str(p.relative_to(path)), "hash": hasher(p), "size": st.st_size, "exec": bool(st.st_mode & stat.S_IXUSR)})
            for name in dirnames:
                d = Path(dirpath) / name
                if not any(d.iterdir()):
                    out.append({"path": str(d.relative_to(path)) + "/", "hash": "", "size": 0, "exec": False})
        return out

    def tree(self, h: str) -> list[dict[str, Any]]:
        return list(json.loads(self.object_path(h).read_bytes()))

    def intact(self, art: Artifact) -> bool:
        """Whether every object of the artifact exists with its bytes matching its hash."""
        hashes = [art.hash]
        if art.type == TREE_TYPE:
            if not self._object_ok(art.hash):
                return False
            try:
                hashes = [e["hash"] for e in self.tree(art.hash) if e["hash"]]
            except (OSError, ValueError):
                return False
        return all(self._object_ok(h) for h in hashes)

    def _object_ok(self, h: str) -> bool:
        # a str path, the same text as str(object_path(h)): pathlib costs more than the lstat here
        p = f"{self._objects_str}/{h[:2]}/{h[2:]}"
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(st.st_mode):  # a link or folder left by damage (or an older plx): never served
            return False
        # Any write to the object changes its ctime, so a matching signature means unchanged bytes.
        if self._known(self._stat_key(p, st)) == h:
            return True
        ok = hash_file(p) == h
        if ok:
            self._remember(self._stat_key(p, st), h)
        return ok

    def drop_object(self, h: str) -> None:
        p = self.object_path(h)
        try:
            if p.is_dir() and not p.is_symlink():
                import shutil  # here, not at the top: `plx run` never imports it (deferred.py)

                shutil.rmtree(p)
            else:
                p.unlink()  # unlinking needs no write permission on the file itself
        except FileNotFoundError:
            pass

    def materialize(self, art: Artifact, dst: Path) -> None:
        """A private, writable copy (or reflink) of an artifact at dst: nodes cannot reach the store."""
        if art.type == TREE_TYPE:
            dst.mkdir(parents=True, exist_ok=True)
            for e in self.tree(art.hash):
                target = dst / e["path"]
                if e["path"].endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                reflink_or_copy(self.object_path(e["hash"]), target)
                os.chmod(target, 0o755 if e["exec"] else 0o644)
            return
        dst.parent.mkdir(parents=True, exist_ok=True)
        reflink_or_copy(self.object_path(art.hash), dst)
        os.chmod(dst, 0o755 if art.type == "executable" else 0o644)

    def iter_objects(self) -> Iterator[tuple[str, Path]]:
        if not self.objects.is_dir():
            return
        for sub in sorted(self.objects.iterdir()):
            if sub.is_dir():
                for p in sorted(sub.iterdir()):
                    yield sub.name + p.name, p

    # ---- cache entries ----

    def prefetch(self, keys: list[str]) -> None:
        """Read the entries of many keys about to be looked up, and the stat cache's hashes of their
        objects, in one query each per 500 (a no-op run asks per batch of nodes, not per node).
        lookup() still checks every object then: an lstat each, re-hashed if its signature is not
        the one known (nothing is served on what was read here alone)."""
        asked = [k for k in keys if k not in self._new_entries and k not in self._ahead_entries]
        rows = self._many("index", asked)
        self._ahead_misses.update(k for k in asked if k not in rows)
        sigs = []
        for key, raw in rows.items():
            try:
                outputs = {k: Artifact.from_json(v) for k, v in json.loads(raw)["outputs"].items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # lookup() reads it again and finds it is no entry
            self._ahead_entries[key] = outputs
            for art in outputs.values():
                h = art.hash
                p = f"{self._objects_str}/{h[:2]}/{h[2:]}"
                try:
                    sigs.append(self._stat_key(p, os.lstat(p)))
                except OSError:
                    pass
        self._ahead_stats.update(self._many("stats", sigs))

    def lookup_many(self, keys: list[str]) -> dict[str, dict[str, Artifact] | None]:
        """lookup() of many keys at once, for `--dry-run` (which serves nothing): the entries read
        together (TextTable.texts), each object `lstat`ed once and its signature looked up together
        (re-hashed when it is not the known one), as lookup() checks them. A key this does not settle
        (a folder output) is left out: lookup() answers it."""
        keys = [k for k in dict.fromkeys(keys) if k not in self._new_entries]  # identical nodes share a key: asked once
        texts = self._many("index", keys)
        out: dict[str, dict[str, Artifact] | None] = dict.fromkeys(keys)  # no row, or one that is not text: a miss, as lookup() finds
        checks: dict[str, tuple[dict[str, Artifact], list[tuple[str, str]]]] = {}  # key -> outputs, (signature, hash) of each object
        for key, raw in texts.items():
            del out[key]  # settled below, or left to lookup()
            try:
                outputs = {k: Artifact.from_json(v) for k, v in json.loads(raw)["outputs"].items()}
            except (ValueError, KeyError, TypeError, AttributeError):
                out[key] = None  # as lookup() finds it: no entry
                continue
            if any(a.type == TREE_TYPE for a in outputs.values()):
                continue
            sigs = self._signatures(outputs.values())
            if sigs is None:
                out[key] = None  # an object missing, or not a plain file: never served
            else:
                checks[key] = (outputs, sigs)
        known = self._many("stats", [sig for _outputs, sigs in checks.values() for sig, _h in sigs])
        for key, (outputs, sigs) in checks.items():
            out[key] = outputs if all((self._new_stats.get(sig) or known.get(sig)) == h or self._rehash(sig, h) for sig, h in sigs) else None
        return out

    def _signatures(self, arts: Any) -> list[tuple[str, str]] | None:
        """(stat signature, hash) of each artifact's object; None if one is missing or not a plain file."""
        sigs = []
        for a in arts:
            p = f"{self._objects_str}/{a.hash[:2]}/{a.hash[2:]}"
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                return None
            if not stat.S_ISREG(st.st_mode):
                return None
            sigs.append((self._stat_key(p, st), a.hash))
        return sigs

    def _rehash(self, sig: str, h: str) -> bool:
        """An object whose signature is not the known one: its bytes read again (as _object_ok does)."""
        p = sig.partition("\x00")[0]
        try:
            ok = hash_file(p) == h
        except OSError:
            return False
        if ok:
            self._remember(sig, h)
        return ok

    def surely_missing(self, key: str) -> bool:
        """Whether prefetch, moments ago, found no entry for key (asked once: the answer is used up).
        Good for a first look only: another plx may have written it since, so a miss that matters
        (one about to be computed) is looked up again once its key is locked (CacheGate.look)."""
        if key in self._ahead_misses:
            self._ahead_misses.discard(key)
            return key not in self._new_entries
        return False

    def lookup(self, key: str) -> dict[str, Artifact] | None:
        """The outputs of a cache entry, only if every one of its artifacts is intact."""
        ahead = self._ahead_entries.pop(key, None)
        if ahead is not None and key not in self._new_entries and all(self.intact(art) for art in ahead.values()):
            return ahead  # else the entry as it is now, should another plx have replaced it
        try:
            raw = self._new_entries.get(key) or self.index.get(key)
        except ValueError:
            return None  # a row that is not plain text (tampered or foreign): a miss, never unpickled
        except Exception as exc:
            if not is_damaged_db(exc):
                raise
            self._damaged("index", exc)
            return None
        if raw is None:
            return None
        return self._intact_outputs(raw)

    def _intact_outputs(self, raw: Any) -> dict[str, Artifact] | None:
        try:
            outputs = {k: Artifact.from_json(v) for k, v in json.loads(raw)["outputs"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        for art in outputs.values():
            if not self.intact(art):
                return None
        return outputs

    def record(self, key: str, outputs: dict[str, Artifact], run_id: str) -> None:
        """Add a cache entry; it is written by the next commit_entries (one transaction for many)."""
        self._new_entries[key] = json.dumps({"outputs": {k: a.to_json() for k, a in outputs.items()}, "run": run_id})

    def commit_entries(self) -> None:
        if self._new_entries:
            for attempt in (1, 2):
                try:
                    with self.index.transaction():
                        self.index.put_many(self._new_entries.items())
                    break
                except Exception as exc:
                    if attempt == 2 or not is_damaged_db(exc):
                        raise
                    self._damaged("index", exc)  # then commit into the fresh, empty index
            self._new_entries.clear()

    def entries(self) -> Iterator[tuple[str, dict[str, Any]]]:
        try:
            keys = self.index.keys()
        except Exception as exc:
            if not is_damaged_db(exc):
                raise
            self._damaged("index", exc)
            return
        for key in keys:
            try:
                raw = self.index.get(key)
                if raw is not None:
                    entry = json.loads(raw)
                    if isinstance(entry, dict) and isinstance(entry.get("outputs"), dict):
                        yield key, entry
            except ValueError:
                continue


class KeyLock:
    """An exclusive OS lock on one cache key, shared by all plx processes of a store.

    A byte-range lock (fcntl) on one `locks` file, at an offset derived from the key: no file per
    key, and the kernel releases it when its holder dies, so a SIGKILLed plx never blocks the next.
    Locks are per process, so each plx coordinates its own tasks in memory (CacheGate.inflight).
    """

    def __init__(self, store: Store, key: str):
        self.store = store
        self.offset = int(key[:15], 16)
        self.held = False

    def try_acquire(self) -> bool:
        try:
            fcntl.lockf(self.store.lock_fd(), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self.offset)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        self.held = True
        return True

    def wait(self, poll: float = 0.05) -> None:
        """Return once the other process is done (called from a thread).

        Polls instead of blocking: the kernel's deadlock detection sees two plx processes each
        waiting for a key the other holds as a cycle (EDEADLK), though each will finish its own.
        The one shared descriptor is used on purpose: closing any descriptor of the file would
        drop all of this process's locks."""
        import time

        fd = self.store.lock_fd()
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self.offset)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EDEADLK):
                    raise
                time.sleep(poll)
                continue
            fcntl.lockf(fd, fcntl.LOCK_UN, 1, self.offset)
            return

    def release(self) -> None:
        if self.held:
            fcntl.lockf(self.store.lock_fd(), fcntl.LOCK_UN, 1, self.offset)
            self.held = False
