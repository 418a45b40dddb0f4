"""The remote tier (README, "Sharing results"): a shared cache at any fsspec URL, read through on a miss, written through after a success.

fsspec is used here and nowhere else. The remote holds the same things as the local store, in the
same shape:

  <url>/objects/ab/cdef...      one plain file per distinct content, named by its BLAKE3 hash
  <url>/entries/ab/cdef....json a cache entry: {"format", "outputs": {name: artifact}}

Objects are uploaded before the entry that names them, each written under a temporary name and
renamed where the back end has a rename (a local or mounted folder); an object store's PUT is
atomic already. So a reader never finds an entry whose objects are not all there, and two machines
pushing the same work write the same bytes under the same names. Everything downloaded is hashed
while it streams and thrown away unless it matches its name: a damaged, truncated or unreadable
remote object is a warning and a miss, never served. The first sign that the remote is unreachable
is one warning; the process then goes on without it.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import re
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

from .project import resolve_url as resolve_url  # the one place the URL is chosen
from .store import TREE_TYPE, Artifact, Store
from .structs import field, record

FORMAT = "plx-remote-1"
CHUNK = 4 << 20  # transfers stream in pieces of this size: never a whole artifact in memory
BLOCK = 16 << 20  # what a back end fetches or uploads per request (fewer, larger requests; still bounded)
BIG = 32 << 20  # a transfer at least this large shows progress on a terminal
WORKERS = int(os.environ.get("PLX_REMOTE_THREADS", "8"))
LOCAL_PROTOCOLS = ("file", "local")
_HEX = re.compile(r"^[0-9a-f]{64}$")

Warn = Callable[[str], None]
Progress = Callable[[str, int, int], None]  # (label, bytes done, bytes in all); done == total at the end


class RemoteDown(Exception):
    """The remote cannot be used at all (unreachable, no credentials, back end not installed)."""


class _Stopped(Exception):
    """An upload stopped because the process is stopping."""


class Damaged(Exception):
    """One remote object or entry is unusable: a miss, reported as a warning."""


def redact(url: str) -> str:
    """A URL (or a text holding URLs, such as `--remote=URL`) as it may be shown and recorded: any user:password@ part removed."""
    return re.sub(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@", r"\1***@", url)


def push_enabled() -> bool:
    """False when PLX_REMOTE_PUSH=0 (or false/no/off) makes the remote read-only for this process."""
    return os.environ.get("PLX_REMOTE_PUSH", "1").strip().lower() not in ("0", "false", "no", "off")


@record
class Fetched:
    """A remote cache entry downloaded and verified: temp files to adopt into the local store."""

    key: str
    outputs: dict[str, Artifact]
    files: list[tuple[Path, str]] = field(default_factory=list)  # (temp file, its verified hash)
    bytes: int = 0


class Remote:
    """One remote store; thread-safe. Nothing is imported or contacted until first needed."""

    def __init__(self, url: str, *, push: bool = True, warn: Warn | None = None, progress: Progress | None = None, storage_options: dict[str, Any] | None = None):
        self.url = url
        self.shown = redact(url)
        self.push = push
        self._warn = warn or (lambda _m: None)
        self.progress = progress
        self.storage_options = storage_options or {}
        self._fs: Any = None
        self.root = ""
        self.local = False
        self.down: str | None = None  # why the remote is not used any more
        self.calls = 0
        self._lock = threading.RLock()
        self._trace = os.environ.get("PLX_REMOTE_TRACE")  # a file that gets one line per remote call (tests, bench)
        self._io: cf.ThreadPoolExecutor | None = None  # object transfers
        self._jobs: cf.ThreadPoolExecutor | None = None  # per-entry work (which waits on object transfers)
        self._pushing: dict[str, cf.Future[int]] = {}  # object hash -> its upload in this process
        self._pending: list[cf.Future[Any]] = []
        self.closing = False
        self._bad: set[str] = set()  # objects found damaged on the remote: a push overwrites them
        self._entries: dict[str, dict[str, Artifact] | None] = {}  # lookup's answers
        self.pushed_entries = 0
        self.pushed_objects = 0
        self.pushed_bytes = 0

    # ---- plumbing ----------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self.down is None

    def warn(self, msg: str) -> None:
        self._warn(f"remote {self.shown}: {msg}")

    def _note(self, what: str, path: str = "") -> None:
        with self._lock:
            self.calls += 1
            if self._trace:
                with open(self._trace, "a", encoding="utf-8") as f:
                    f.write(f"{what} {path}\n")

    def fs(self) -> Any:
        """The fsspec file system (created on first use); raises RemoteDown if it cannot be."""
        if self.down is not None:
            raise RemoteDown(self.down)
        if self._fs is None:
            with self._lock:
                if self._fs is None:
                    self._fs = self._connect()
        return self._fs

    def _connect(self) -> Any:
        try:
            import fsspec
        except ImportError:
            raise self._give_up("fsspec is not installed (pip install fsspec)") from None
        try:
            fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        except ImportError as exc:
            extra = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}.get(self.url.split("://")[0], "")
            hint = f"pip install 'plx[{extra}]'" if extra else str(exc)
            raise self._give_up(f"its back end is not installed ({hint})") from None
        except Exception as exc:  # a malformed URL, an unknown protocol
            raise self._give_up(f"cannot open it: {_why(exc)}") from None
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self.local = protocol in LOCAL_PROTOCOLS
        self.root = root.rstrip("/")
        if self.local:
            top = Path(self.root)
            if not top.is_dir():
                if not top.parent.is_dir():  # an unmounted share, a typo: not a folder to create
                    raise self._give_up(f"the folder {top} does not exist and neither does {top.parent}")
                try:
                    top.mkdir(exist_ok=True)
                except OSError as exc:
                    raise self._give_up(f"cannot create the folder {top}: {_why(exc)}") from None
        self._note("connect", self.root)
        return fs

    def _give_up(self, why: str) -> RemoteDown:
        """Stop using the remote for the rest of this process, with one warning."""
        with self._lock:
            first = self.down is None
            if first:
                self.down = why
        if first:
            self.warn(f"{why}; going on without the remote")
        return RemoteDown(why)

    def _failed(self, exc: BaseException) -> RemoteDown:
        """A call failed in a way that is not about one object: the remote is unreachable or refuses us."""
        if isinstance(exc, RemoteDown):
            return exc
        if isinstance(exc, PermissionError):
            return self._give_up(f"access denied ({_why(exc)}); check the credentials")
        return self._give_up(f"unreachable ({_why(exc)})")

    def _pool(self) -> cf.ThreadPoolExecutor:
        with self._lock:
            if self._io is None:
                self._io = cf.ThreadPoolExecutor(WORKERS, thread_name_prefix="plx-remote-io")
            return self._io

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        """Run per-entry work (a fetch, a push) in the background."""
        with self._lock:
            if self._jobs is None:
                self._jobs = cf.ThreadPoolExecutor(WORKERS, thread_name_prefix="plx-remote")
            fut = self._jobs.submit(fn, *args)
            self._pending.append(fut)
            return fut

    def object_path(self, h: str) -> str:
        return f"{self.root}/objects/{h[:2]}/{h[2:]}"

    def entry_path(self, key: str) -> str:
        return f"{self.root}/entries/{key[:2]}/{key[2:]}.json"

    # ---- reading -----------------------------------------------------------------

    def read_entry(self, key: str) -> dict[str, Artifact] | None:
        """The outputs the remote's entry for key names, None if it has none; Damaged if unreadable."""
        fs = self.fs()
        path = self.entry_path(key)
        self._note("get", path)
        try:
            with fs.open(path, "rb") as f:
                raw = f.read(1 << 20)
        except FileNotFoundError:
            return None
        except IsADirectoryError as exc:
            raise Damaged(f"cache entry {key[:12]} is unreadable ({_why(exc)})") from None
        except Exception as exc:
            if isinstance(exc, PermissionError) and self.local:
                raise Damaged(f"cache entry {key[:12]} is unreadable ({_why(exc)})") from None
            raise self._failed(exc) from None
        try:
            data = json.loads(raw)
            outputs = {str(k): Artifact.from_json(v) for k, v in data["outputs"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise Damaged(f"cache entry {key[:12]} is damaged (not a plx entry)") from None
        for art in outputs.values():
            if not _HEX.match(art.hash):
                raise Damaged(f"cache entry {key[:12]} is damaged (bad hash {art.hash[:20]!r})")
        return outputs

    def lookup(self, keys: list[str]) -> dict[str, dict[str, Artifact] | None]:
        """For --dry-run: the outputs each key's remote entry names (None: no entry, a damaged one, or the
        remote is down), read concurrently; entries only, no object is downloaded. Answers are kept."""
        todo = [k for k in dict.fromkeys(keys) if k not in self._entries]
        if todo and self.down is None:
            futures = {self._pool().submit(self._entry_or_none, k): k for k in todo}
            for fut in cf.as_completed(futures):
                self._entries[futures[fut]] = fut.result()
        return {k: self._entries.get(k) for k in keys}

    def _entry_or_none(self, key: str) -> dict[str, Artifact] | None:
        try:
            return self.read_entry(key)
        except Damaged as exc:
            self.warn(f"{exc}: not used (the node would run here)")
        except RemoteDown:
            pass
        except Exception as exc:  # anything else from a back end: never a traceback
            self._failed(exc)
        return None

    def fetch(self, key: str, store: Store) -> Fetched | None:
        """Download key's entry and every object it needs that the local store lacks, verified.

        Never raises: a miss, a damaged entry or object, an unreachable remote all return None
        (the last two with a warning). Touches the local store only to read which objects it has;
        the caller adopts the verified temp files from its own thread."""
        if self.down is not None:
            return None
        fetched: Fetched | None = None
        try:
            outputs = self.read_entry(key)
            if outputs is None:
                return None
            fetched = Fetched(key, outputs)
            self._download_all(fetched, store)
            return fetched
        except Damaged as exc:
            self.warn(f"{exc}: not used (the node runs here instead)")
        except RemoteDown:
            pass
        except Exception as exc:  # anything else from a back end: never a traceback
            self._failed(exc)
        if fetched is not None:
            discard(fetched)
        return None

    def _download_all(self, fetched: Fetched, store: Store) -> None:  # noqa: C901 - above the threshold when it was set (issue 11)
        """The objects of fetched.outputs (tree manifests first, then their files), concurrently."""
        wanted: dict[str, int] = {}
        trees: list[Artifact] = []
        for art in fetched.outputs.values():
            if art.type == TREE_TYPE:
                trees.append(art)
            elif not store.object_path(art.hash).exists():
                wanted[art.hash] = art.size
        for tree in trees:
            local = store.object_path(tree.hash)
            if local.exists():
                manifest_file: Path = local
            else:
                manifest_file = self._download(tree.hash, store.tmp, -1)
                fetched.files.append((manifest_file, tree.hash))
            try:
                manifest = json.loads(manifest_file.read_bytes())
                members = {str(e["hash"]): int(e["size"]) for e in manifest if e["hash"]}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise Damaged(f"folder manifest {tree.hash[:12]} is damaged ({exc})") from None
            for h, size in members.items():
                if not _HEX.match(h):
                    raise Damaged(f"folder manifest {tree.hash[:12]} names a bad hash")
                if not store.object_path(h).exists():
                    wanted[h] = size
        futures = {self._pool().submit(self._download, h, store.tmp, size): h for h, size in wanted.items()}
        try:
            for fut in cf.as_completed(futures):
                path = fut.result()
                fetched.files.append((path, futures[fut]))
                fetched.bytes += path.stat().st_size
        except BaseException as exc:
            for fut in futures:
                fut.cancel()
            if not isinstance(exc, KeyboardInterrupt):
                # A download still running when another failed ends with a temp file too (seen as a
                # `remote-*` file left in <store>/tmp): wait for it. A Ctrl-C does not wait; gc removes those.
                cf.wait(futures)
            for fut in futures:  # whatever finished still holds a temp file: collect it for discard
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    p = fut.result()
                    if (p, futures[fut]) not in fetched.files:
                        fetched.files.append((p, futures[fut]))
            raise

    def _download(self, h: str, tmpdir: Path, size: int) -> Path:
        """Stream object h into a temp file in tmpdir, hashing as it comes; Damaged unless it matches."""
        import blake3

        fs = self.fs()
        path = self.object_path(h)
        self._note("get", path)
        fd, name = tempfile.mkstemp(dir=tmpdir, prefix="remote-")
        hasher = blake3.blake3()
        done = 0
        ok = False
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    data = self._small(fs, path, size)
                    if data is not None:
                        hasher.update(data)
                        out.write(data)
                        done = len(data)
                    else:
                        self._stream(fs, path, out, hasher, h, size)
                        done = out.tell()
                except FileNotFoundError:
                    raise Damaged(f"object {h[:12]} is missing") from None
                except Damaged:
                    raise
                except Exception as exc:
                    if isinstance(exc, (PermissionError, IsADirectoryError)) and self.local:
                        raise Damaged(f"object {h[:12]} is unreadable ({_why(exc)})") from None
                    raise self._failed(exc) from None
            if self.progress and size >= BIG:
                self.progress(f"download {h[:12]}", size, size)
            got = hasher.hexdigest()
            if got != h:
                with self._lock:
                    self._bad.add(h)
                what = "truncated" if 0 <= size and done < size else "damaged"
                raise Damaged(f"object {h[:12]} is {what} ({done} bytes, hash {got[:12]})")
            ok = True
            return Path(name)
        finally:
            if not ok:
                try:
                    os.unlink(name)
                except FileNotFoundError:
                    pass

    def _small(self, fs: Any, path: str, size: int) -> bytes | None:
        """A small object of known size in one ranged GET (no HEAD first), or None to stream it.

        At most one byte more than expected is asked for, so a longer object is caught without
        reading it all; an object shorter than expected (a range the server refuses) is streamed."""
        if self.local or not 0 < size <= CHUNK:
            return None
        try:
            return bytes(fs.cat_file(path, start=0, end=size + 1))
        except FileNotFoundError:
            raise
        except Exception:
            return None

    def _stream(self, fs: Any, path: str, out: Any, hasher: Any, h: str, size: int) -> None:
        done = 0
        with fs.open(path, "rb", block_size=BLOCK) as f:
            while True:
                if self.closing:  # the process is stopping: no need to finish (the temp file is removed)
                    raise RemoteDown("stopped")
                chunk = f.read(CHUNK)
                if not chunk:
                    break
                hasher.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if self.progress and size >= BIG:
                    self.progress(f"download {h[:12]}", done, size)

    # ---- writing -----------------------------------------------------------------

    def has_entry(self, key: str) -> bool:
        fs = self.fs()
        path = self.entry_path(key)
        self._note("exists", path)
        try:
            return bool(fs.exists(path))
        except Exception as exc:
            raise self._failed(exc) from None

    def push_entry(self, key: str, outputs: dict[str, Artifact], objects: list[tuple[str, Path]], skip_existing: bool = False) -> bool:
        """Upload the objects (concurrently), then the entry: never an entry before its objects.

        True if the entry was written (False: skip_existing and it was there already)."""
        if skip_existing and self.has_entry(key):
            return False
        self.push_objects(objects)
        body = json.dumps({"format": FORMAT, "outputs": {k: a.to_json() for k, a in outputs.items()}}, sort_keys=True).encode()
        self._write(self.entry_path(key), _BytesSource(body), len(body))
        with self._lock:
            self.pushed_entries += 1
        return True

    def push_objects(self, objects: Iterable[tuple[str, Path]]) -> None:
        """Upload objects the remote lacks, each once per process however many entries name it."""
        futures = []
        with self._lock:
            for h, path in objects:
                fut = self._pushing.get(h)
                if fut is None or (fut.done() and fut.exception() is not None):
                    fut = self._pushing[h] = self._pool().submit(self._upload, h, path)
                futures.append(fut)
        for fut in futures:
            fut.result()  # the first failure propagates: the entry is not written

    def _upload(self, h: str, path: Path) -> int:
        fs = self.fs()
        dst = self.object_path(h)
        size = path.stat().st_size
        self._note("info", dst)
        try:
            if h not in self._bad and fs.info(dst).get("size") == size:
                return 0  # content-addressed: the same name holds the same bytes
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise self._failed(exc) from None
        with open(path, "rb") as f:
            self._write(dst, f, size, label=f"upload {h[:12]}")
        with self._lock:
            self.pushed_objects += 1
            self.pushed_bytes += size
        return size

    def _write(self, dst: str, src: Any, size: int, label: str = "") -> None:  # noqa: C901 - above the threshold when it was set (issue 11)
        """Write src (a binary file) to dst so that no reader ever sees part of it."""
        fs = self.fs()
        target = f"{dst}.tmp-{uuid.uuid4().hex}" if self.local else dst  # an object store's PUT is atomic
        self._note("put", dst)
        try:
            if self.local:
                fs.makedirs(dst.rpartition("/")[0], exist_ok=True)
            done = 0
            out = fs.open(target, "wb", block_size=BLOCK)
            try:
                while True:
                    if self.closing:
                        raise _Stopped()
                    chunk = src.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    if self.progress and label and size >= BIG:
                        self.progress(label, done, size)
            except BaseException:
                # Never let a file object's close() commit part of the data (an object store's
                # multipart upload would): discard aborts it.
                try:
                    out.discard()
                    out.closed = True  # or its __del__ would try to finish the upload it just aborted
                except Exception:
                    pass
                raise
            out.close()
            if self.local:
                os.chmod(target, 0o444 if "/objects/" in dst else 0o644)
                os.replace(target, dst)  # same folder: atomic
        except Exception as exc:
            if self.local:
                try:
                    os.unlink(target)
                except OSError:
                    pass
            if isinstance(exc, _Stopped):
                raise RemoteDown("stopped") from None
            raise self._failed(exc) from None

    def wait(self) -> None:
        """Wait for the background work submitted so far (the pushes of a run)."""
        while True:
            with self._lock:
                pending, self._pending = self._pending, []
            if not pending:
                return
            cf.wait(pending)

    def close(self) -> None:
        """Drop queued work and stop uploads under way at their next piece (an interrupted run):
        an upload stopped half-way leaves nothing under its final name, and no entry is written."""
        self.closing = True
        for pool in (self._jobs, self._io):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    # ---- listing and verifying -----------------------------------------------------

    def iter_objects(self) -> list[tuple[str, str, int]]:
        """(hash, path, size) of every object of the remote (temp files of unfinished uploads left out)."""
        fs = self.fs()
        top = f"{self.root}/objects"
        self._note("find", top)
        try:
            found = fs.find(top, detail=True)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self._failed(exc) from None
        out = []
        for path, info in found.items():
            parts = path.rstrip("/").split("/")
            if len(parts) < 2 or ".tmp-" in parts[-1]:
                continue
            out.append((parts[-2] + parts[-1], path, int(info.get("size") or 0)))
        return sorted(out)

    def iter_entries(self) -> list[str]:
        fs = self.fs()
        top = f"{self.root}/entries"
        self._note("find", top)
        try:
            found = fs.find(top)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self._failed(exc) from None
        keys = []
        for path in found:
            parts = path.rstrip("/").split("/")
            if len(parts) >= 2 and parts[-1].endswith(".json") and ".tmp-" not in parts[-1]:
                keys.append(parts[-2] + parts[-1][: -len(".json")])
        return sorted(keys)

    def verify(self, tmpdir: Path) -> tuple[int, list[tuple[str, str]]]:
        """Re-hash every remote object (streamed, concurrently) and check every entry: (objects checked, damage)."""
        objects = self.iter_objects()
        damaged: list[tuple[str, str]] = []
        sizes = {h: size for h, _p, size in objects}

        def check(h: str, size: int) -> str | None:
            if not _HEX.match(h):
                return "not named by a hash"
            try:
                os.unlink(self._download(h, tmpdir, size))
            except Damaged as exc:
                return str(exc)
            return None

        futures = {self._pool().submit(check, h, size): h for h, size in sizes.items()}
        for fut in cf.as_completed(futures):
            why = fut.result()
            if why:
                damaged.append((futures[fut], why))
        for key in self.iter_entries():
            try:
                outputs = self.read_entry(key)
            except Damaged as exc:
                damaged.append((key, str(exc)))
                continue
            for name, art in (outputs or {}).items():
                if art.hash not in sizes:
                    damaged.append((art.hash, f"missing (output '{name}' of cache entry {key[:12]})"))
        damaged.sort()
        return len(objects), damaged


class _BytesSource:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def read(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        return chunk


def _why(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return (text or type(exc).__name__).strip().splitlines()[0][:200]


def discard(fetched: Fetched) -> None:
    for p, _h in fetched.files:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
    fetched.files.clear()


def adopt(store: Store, fetched: Fetched) -> dict[str, Artifact] | None:
    """Move a fetch's verified files into the local store; the outputs if all are now intact there."""
    try:
        for path, h in fetched.files:
            if path.exists():
                # The bytes were hashed while they streamed in: renamed straight in, as a node's outputs are.
                store._place(path, h)
    finally:
        discard(fetched)
    for art in fetched.outputs.values():
        if not store.intact(art):
            return None
    return fetched.outputs


def objects_of(store: Store, outputs: dict[str, Artifact]) -> list[tuple[str, Path]]:
    """Every local object behind some outputs (a folder: its manifest and its files), for a push."""
    out: dict[str, Path] = {}
    for art in outputs.values():
        out[art.hash] = store.object_path(art.hash)
        if art.type == TREE_TYPE:
            for e in store.tree(art.hash):
                if e["hash"]:
                    out[e["hash"]] = store.object_path(e["hash"])
    return list(out.items())


def open_remote(url: str | None, warn: Warn | None = None, progress: Progress | None = None) -> Remote | None:
    """The remote for a process, or None without one; PLX_REMOTE_PUSH decides whether it is written."""
    if not url:
        return None
    return Remote(url, push=push_enabled(), warn=warn, progress=progress)
