"""The workspace of a run: each node's work folder and input folder (empty folders of finished nodes
recycled), its inputs (a stored file as a read-only hard link checked when the node ends, anything
else as a private copy) and sources, the checks of its outputs, and their storing.

Folders are what a short node costs most on some disks (creating one, and removing it later, can
take a millisecond; see docs/design.md, Inputs), so per node only what must exist is created, a
finished node's empty folders are renamed for the next node (and its private copy of a small user
file, rewritten, for the next copy), and what is left is removed when the run ends, several folders
at a time.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import stat
import threading
from pathlib import Path

from .errors import disk_full_message, is_disk_full
from .hashing import hash_bytes, hash_file
from .planner import Task
from .sources import place as place_sources
from .store import TREE_TYPE, Artifact, Store, content_hash
from .structs import field, record

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Callable

# Files a runner writes into a node's input folder (runners.prepare): never an input's place.
_HELPERS = ("values.json", "script.py", "script.sh")
_RECYCLED_SUBDIRS = 64  # an input folder with more sub-folders (one per input) is not kept for reuse
_QUICK_ITEMS = 16  # a node with at most this many inputs, copying at most _QUICK_BYTES, is placed as it starts
_QUICK_BYTES = 1 << 20
_SPARE_BYTES = 1 << 20  # a finished node's private copy of a user's file up to this size is reused (Workspace._keep_spare)
_REMOVERS = 4  # folders removed at once when the run ends: each removal mostly waits on the disk


@record
class Avail:
    """An artifact a task can read: stored (path None) or a user's file read in place."""

    art: Artifact
    path: Path | None = None


@record
class _Inputs:
    """A node's input folder: its sub-folders (parents first) and what was placed in it."""

    indir: Path
    subdirs: tuple[str, ...]
    items: list[Placement] = field(default_factory=list)
    ready: bool = False  # the sub-folders exist (a recycled folder brings them)
    real: bool = True  # its folders were still folders, not links, when the node ended
    recycled: bool = False  # renamed from a finished node's


@record
class Placement:
    """One input item of a node: where it goes, and (once placed) whether as a link to the store."""

    name: str  # the input's name
    avail: Avail
    dst: Path
    inode: int | None = None  # set by the placer when dst is a hard link to the stored object, until checked
    linked: bool = False
    mtime_ns: int = 0  # the object's when it was linked (its time in the store)
    home: _Inputs | None = None  # the node's input folder


# As root, permission bits stop nothing: a node could write into a linked object and put the same
# bytes back before it ends, and a node reading it meanwhile would get other bytes with every check
# passing (SPEC §9: a node's result depends only on its own attempt). The local executor links as
# root only when its nodes run without CAP_DAC_OVERRIDE (its `link_inputs`); this is the default for
# the others: root gets private copies. PLX_LINK_INPUTS=0 copies always, =1 links anyway (the tests
# of the link checks, which run as root).
LINK_INPUTS = os.environ.get("PLX_LINK_INPUTS") == "1" or (os.environ.get("PLX_LINK_INPUTS") != "0" and os.geteuid() != 0)


def linkable(a: Avail, link: bool = True) -> bool:
    """A stored plain file is handed to a node as a hard link to the store's read-only object (when
    `link`: see LINK_INPUTS); a user's file, a folder, an executable (its bit) and a cloud reference
    are copied."""
    return link and a.path is None and a.art.type not in (TREE_TYPE, "executable", "cloud")


class Workspace:
    """The work folders of one engine's nodes, by task id: made, filled, retired, removed at the end."""

    def __init__(self, store: Store, link_inputs: bool = LINK_INPUTS) -> None:
        self.store = store
        self.link_inputs = link_inputs  # stored inputs as links (see LINK_INPUTS), else private copies
        self.workdirs: dict[str, Path] = {}
        self._run_tmp: dict[str, bool] = {}
        self.inputs: dict[str, _Inputs] = {}  # tasks with an input folder, until they end
        self.done: list[Path] = []  # folders of finished nodes that still hold something: removed at the end
        self.emptied: list[Path] = []  # emptied folders of finished nodes, not kept for reuse: removed at the end
        self.spare_workdirs: list[Path] = []  # empty folders of finished nodes: renamed for the next node
        self.spare_indirs: dict[tuple[str, ...], list[Path]] = {}  # emptied input folders, by their sub-folders
        self.spare_files: list[str] = []  # finished nodes' private copies of small user files (names in the spare folder): renamed for the next copy
        self._spare_home: int | None = None  # the spare folder, open (-1: none to be had)
        self._spare_home_path: Path | None = None
        self._spares_made = 0
        self._lock = threading.Lock()  # the spare folders are taken by placer threads too
        self._workdir_mode: int | None = None

    def _folder(self, path: Path) -> None:
        """Make an empty folder at path: a finished node's, renamed, or a new one."""
        while True:
            with self._lock:
                spare = self.spare_workdirs.pop() if self.spare_workdirs else None
            if spare is None:
                path.mkdir()
                if self._workdir_mode is None:  # what a new folder looks like here (umask), before any node ran in it
                    self._workdir_mode = os.lstat(path).st_mode
                return
            try:
                os.rename(spare, path)
                return
            except FileNotFoundError:  # removed meanwhile (never by plx): take another
                continue

    def open(self, tid: str, run_id: str, node: str, ins: dict[str, list[Avail]], needs_in: bool) -> tuple[Path, Path]:
        """A fresh work folder for a node; its `.in` folder (when it has inputs or needs one) is made by place."""
        # Folders cost real time on some disks, so a node gets one (`work`), plus `.in` for its inputs.
        work = self.store.tmp / run_id / node
        indir = work.with_name(work.name + ".in")
        if "/" in node or not self._run_tmp.get(run_id):
            work.parent.mkdir(parents=True, exist_ok=True)
            self._run_tmp[run_id] = True
        self._folder(work)
        self.workdirs[tid] = work
        if ins or needs_in:
            self.inputs[tid] = _Inputs(indir, ())
        return work, indir

    def place(self, task: Task, ins: dict[str, list[Avail]], indir: Path, wlog: Callable[[str], None]) -> tuple[dict[str, list[str]], list[Placement]]:
        """The node's `.in` folder (a finished node's with the same sub-folders, renamed, else a new
        one whose sub-folders the placer makes), where each input goes (paths by input name) and the
        placements still to make; a `cloud` reference is placed at once, since the template reads it."""
        paths: dict[str, list[str]] = {}
        todo: list[Placement] = []
        record = self.inputs.get(task.id)
        if record is not None:
            record.subdirs = tuple(ins)  # a folder per input, a list input's too (see _list_names)
            with self._lock:
                spares = self.spare_indirs.get(record.subdirs)
                spare = spares.pop() if spares else None
            if spare is not None:
                os.rename(spare, indir)
            else:
                self._folder(indir)
            record.ready = spare is not None or not record.subdirs
            record.recycled = spare is not None
        for name, items in ins.items():
            spec = task.op.input(name)
            placed = []
            files = _list_names(items) if spec and spec.is_list else [a.art.filename for a in items]
            for a, filename in zip(items, files, strict=True):
                dst = indir / name / filename
                p = Placement(name, a, dst, home=record)
                if record is not None:
                    record.items.append(p)
                if spec is not None and spec.type == "cloud":
                    self._make_subdirs(record)
                    _place_input(self.store, a, dst)  # now: the template reads the reference it holds
                else:
                    todo.append(p)
                placed.append(str(dst))
                how = "link to store" if linkable(a, self.link_inputs) else "store"
                wlog(f"input {name}: {dst} <- {a.path or how + ' ' + a.art.hash[:16]} ({a.art.type}, {a.art.size} bytes)")
            paths[name] = placed
        return paths, todo

    def _make_subdirs(self, record: _Inputs | None) -> None:
        if record is None or record.ready:
            return
        for sub in record.subdirs:
            self._folder(record.indir / sub)
        record.ready = True

    def placer(self, todo: list[Placement], sources: list[tuple[str, Path]], hashes: dict[str, str], work: Path, indir: Path) -> Callable[[], None] | None:
        """What the executor runs first, where the job runs: in a thread of its own (a large copy must
        not hold up the loop), or, when `quick` (a few links and small copies), as it starts the job."""
        if not todo and not sources:
            return None
        record = todo[0].home if todo else None
        copied = sum(p.avail.art.size for p in todo if not linkable(p.avail, self.link_inputs))
        quick = not sources and len(todo) <= _QUICK_ITEMS and copied <= _QUICK_BYTES and (record is None or record.ready or len(record.subdirs) <= _QUICK_ITEMS)
        return _Placer(self, todo, sources, hashes, work, indir, record, quick)

    def release_inputs(self, tid: str) -> str | None:
        """A node's processes ended: every input it got as a link to the store is checked (its bytes
        still those of the object) and the link removed. Why the node must fail, or None.

        A stored object whose bytes changed (a node wrote into its input: plx runs as root in many
        containers, where read-only permission bits stop nothing) is removed from the store, so the
        cache entries that name it are misses and their nodes run again: nothing wrong is served."""
        record = self.inputs.get(tid)
        if record is None:
            return None
        changed = []
        record.real = _real_dirs(record)  # else a folder became a link: nothing is removed through it
        for p in record.items:
            if p.inode is not None:
                if not _check_link(self.store, p, remove=record.real):
                    changed.append(p)
                p.inode = None
        if not changed:
            return None
        names = ", ".join(sorted({f"'{p.name}'" for p in changed}))
        return (
            f"input {names} changed while the node ran: an input from the store is a read-only link to the stored object, "
            "so no node may write into one (write a new file in the working directory); the damaged object was removed "
            "from the store, and the node that made it runs again on the next run"
        )

    def check(self, task: Task, tid: str, read: dict[str, bytes]) -> str | None:
        """Why a finished node's outputs are unacceptable, or None (see check_outputs)."""
        try:
            return check_outputs(task, self.workdirs[tid], read)
        except OSError as exc:
            return f"cannot read the outputs: {disk_full_message(self.store.root) if is_disk_full(exc) else exc}"

    def store_outputs(self, task: Task, tid: str, read: dict[str, bytes], wlog: Callable[[str], None]) -> dict[str, Artifact]:
        """Move the checked outputs into the store; raises StoreFailed naming the output it could not store."""
        work = self.workdirs[tid]
        stored: dict[str, Artifact] = {}
        for o in task.op.outputs:
            p = work / o.file_name
            try:
                art = self.store.put_tree(p, o.file_name) if o.type == TREE_TYPE else self.store.put_file(p, o.type, o.file_name, data=read.get(o.name))
            except (OSError, ValueError) as exc:  # a full disk, a link that appeared after the check
                why = disk_full_message(self.store.root) if is_disk_full(exc) else exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise StoreFailed(f"cannot store output '{o.name}': {why}") from None
            stored[o.name] = art
            wlog(f"output {o.name}: stored {art.hash} ({art.type}, {art.size} bytes)")
        return stored

    def finished(self, tid: str) -> None:
        """A node succeeded: its input copies are removed now (a file removed soon after it was
        written costs next to nothing on disks where removing one written long ago waits on the
        disk); its empty folders are kept for the next nodes, anything else is removed with the run."""
        work = self.workdirs.pop(tid)
        if self._reusable(work):
            with self._lock:
                self.spare_workdirs.append(work)
        else:
            self.done.append(work)
        record = self.inputs.pop(tid, None)
        if record is None:
            return
        if not (record.real and _real_dirs(record)):  # the node put a link in place of one of its input folders
            self.done.append(record.indir)  # removed by rmtree at the end, which never follows a link
            return
        uid = os.getuid()
        for p in record.items:
            if not p.linked:  # links are gone already (release_inputs)
                if not self._keep_spare(p, uid):
                    _remove(p.dst)
        if len(record.subdirs) <= _RECYCLED_SUBDIRS and self._emptied(record):
            with self._lock:
                self.spare_indirs.setdefault(record.subdirs, []).append(record.indir)
        else:  # a large fan-in's: its folders should be empty now, and are removed at the end
            for name in _HELPERS:
                _remove(record.indir / name)
            self.emptied += [record.indir / s for s in record.subdirs] + [record.indir]

    def _keep_spare(self, p: Placement, uid: int) -> bool:
        """Keep a finished node's private copy of a user's small file for the next copy (True): a
        rename and a rewrite instead of creating a file now and deleting one later, which on some
        disks is what a short node costs most. Only a plain file exactly as plx made it."""
        if p.avail.path is None or p.avail.art.type in (TREE_TYPE, "executable", "cloud") or p.avail.art.size > _SPARE_BYTES:
            return False
        try:
            st = os.lstat(p.dst)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != uid or stat.S_IMODE(st.st_mode) != 0o644 or st.st_size > _SPARE_BYTES:
                return False
            home = self._spare_folder()
            if home is None:
                return False
            with self._lock:
                self._spares_made += 1
                name = str(self._spares_made)
            os.rename(p.dst, name, dst_dir_fd=home)
        except OSError:
            return False
        with self._lock:
            self.spare_files.append(name)
        return True

    def _spare_folder(self) -> int | None:
        """The folder where spares wait, made once per engine and held open: nodes can reach the
        store's tmp folder (their own is in it) and put a link where a path was, so plx never makes
        the spare folder where one exists and renames and removes spares only relative to it."""
        with self._lock:
            if self._spare_home is None:
                path = self.store.tmp / f".spares-{os.getpid()}-{os.urandom(4).hex()}"
                try:
                    os.mkdir(path, 0o700)
                    self._spare_home = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
                    self._spare_home_path = path
                except OSError:
                    self._spare_home = -1
            return self._spare_home if self._spare_home >= 0 else None

    def take_spare(self) -> tuple[int, str] | None:
        """A spare (its folder, its name) for the next private copy, if one waits."""
        with self._lock:
            if not self.spare_files:  # there are spares only once the spare folder is open
                return None
            assert self._spare_home is not None
            return self._spare_home, self.spare_files.pop()

    def _emptied(self, record: _Inputs) -> bool:
        """Whether an input folder holds only its sub-folders, each empty but for its own, all with the
        usual mode: then the next node with the same inputs gets it renamed, as good as new."""
        children: dict[str, set[str]] = {"": set()}
        for sub in record.subdirs:
            parent, _, name = sub.rpartition("/")
            children.setdefault(parent, set()).add(name)
            children.setdefault(sub, set())
        uid = os.getuid()
        try:
            for rel, names in children.items():
                d = record.indir / rel if rel else record.indir
                with os.scandir(d) as entries:
                    found = {e.name for e in entries}
                if not rel and found - names:  # what a runner wrote beside the inputs (runners.prepare) goes
                    for name in found.intersection(_HELPERS):
                        _remove(d / name)
                        found.discard(name)
                if found != names:
                    return False
                st = os.lstat(d)
                if st.st_mode != self._workdir_mode or st.st_uid != uid:
                    return False
        except OSError:
            return False
        return True

    def retire_attempt(self, tid: str, n: int) -> None:
        """A failed attempt's folders become `<node>.attempt<n>` (and `.in`), removed at the end."""
        work = self.workdirs.pop(tid)
        old = work.with_name(f"{work.name}.attempt{n}")
        os.rename(work, old)
        self.done.append(old)
        record = self.inputs.pop(tid, None)
        if record is not None and os.path.lexists(record.indir):  # a failed placement removed it already
            old_in = old.with_name(old.name + ".in")
            os.rename(record.indir, old_in)
            self.done.append(old_in)

    def close(self, run_ids: list[str]) -> None:
        """Remove the finished folders (a few at a time: each removal mostly waits on the disk), then
        each run's folder unless a failed node's is kept in it."""
        folders = list(self.spare_workdirs)
        if self._spare_home is not None and self._spare_home >= 0:
            for name in self.spare_files:
                _unlink_at(self._spare_home, name)
            os.close(self._spare_home)
            folders.append(self._spare_home_path)  # type: ignore[arg-type]  # set with the descriptor
        self.spare_files, self._spare_home, self._spare_home_path = [], None, None
        for subdirs, spares in self.spare_indirs.items():
            for indir in spares:
                folders += [indir / s for s in reversed(subdirs)] + [indir]
        self.spare_workdirs, self.spare_indirs = [], {}
        _remove_all(folders + self.emptied, self.done)
        self.done, self.emptied = [], []
        for run_id in run_ids:
            _remove_empty_tree(self.store.tmp / run_id)

    def _reusable(self, work: Path) -> bool:
        """Whether a finished node's folder is exactly as a new one would be: empty, with the usual mode.

        Renaming it for the next node is as fresh as a mkdir and saves creating (and later deleting)
        a folder per node, which is what costs time on some filesystems."""
        try:
            with os.scandir(work) as entries:
                if next(entries, None) is not None:
                    return False
            st = os.lstat(work)
        except OSError:
            return False
        return st.st_mode == self._workdir_mode and st.st_uid == os.getuid()


class _Placer:
    """Places a node's inputs and sources (Workspace.placer); `quick` tells the executor it may do so
    where it starts the job rather than in a thread of its own."""

    def __init__(
        self, ws: Workspace, todo: list[Placement], sources: list[tuple[str, Path]], hashes: dict[str, str], work: Path, indir: Path, record: _Inputs | None, quick: bool
    ) -> None:
        self.ws, self.todo, self.sources, self.hashes, self.work, self.indir, self.record = ws, todo, sources, hashes, work, indir, record
        self.quick = quick

    def __call__(self) -> None:
        store = self.ws.store
        if self.record is not None and self.record.recycled and not _real_dirs(self.record):
            # Between the finished node's end and now, something (a process it left running) put a
            # link in place of a folder: nothing is written through it.
            raise RuntimeError(f"{self.indir} was changed after the node that used it before ended (a process it left?); run again")
        try:
            self.ws._make_subdirs(self.record)
            for p in self.todo:
                if linkable(p.avail, self.ws.link_inputs) and _link_input(store, p):
                    continue
                _place_input(store, p.avail, p.dst, self.ws)
            if self.sources:
                place_sources(self.sources, self.hashes, self.work)
        except BaseException as exc:
            _rmtree(self.indir)  # no partial copy is left behind (a full disk)
            if self.record is not None:
                self.record.ready = False
            if is_disk_full(exc):
                raise OSError(exc.errno if isinstance(exc, OSError) else None, disk_full_message(store.root)) from None
            raise


class StoreFailed(Exception):
    """An output could not be stored (the message says which and why)."""


def _list_names(items: list[Avail]) -> list[str]:
    """The file names of a list input's items, side by side in the input's folder: their own names
    when all differ, else each prefixed with its place in the list, zero-padded (`007-out.txt`), so
    a sorted listing is the list's order. A folder per item would cost a folder created and removed
    per item (a fan-in of 1,000: seconds on some disks)."""
    names = [a.art.filename for a in items]
    if len(set(names)) == len(names):
        return names
    width = len(str(len(names) - 1))
    return [f"{i:0{width}d}-{n}" for i, n in enumerate(names)]


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        _rmtree(path)
    except OSError:
        if path.is_dir() and not path.is_symlink():
            _rmtree(path)


def _rmdir(path: Path) -> None:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        _rmtree(path)


def _remove_all(empty: list[Path], trees: list[Path]) -> None:
    """Remove empty folders (deepest first) and trees, several at once: on some disks removing a
    folder waits about a millisecond on the disk, and those waits overlap."""
    if len(empty) + len(trees) < 8:
        for d in sorted(empty, key=lambda p: -len(p.parts)):
            _rmdir(d)
        for d in trees:
            _rmdir(d)
        return
    from concurrent.futures import ThreadPoolExecutor  # here: a run that removes little never imports it (~2 ms)

    with ThreadPoolExecutor(_REMOVERS, thread_name_prefix="plx-remove") as pool:
        list(pool.map(_rmdir, trees))
        by_depth: dict[int, list[Path]] = {}
        for d in empty:
            by_depth.setdefault(len(d.parts), []).append(d)
        for depth in sorted(by_depth, reverse=True):
            list(pool.map(_rmdir, by_depth[depth]))


def _link_input(store: Store, p: Placement) -> bool:
    """Give the node the stored object itself, as a hard link (read-only, like every object): True,
    or False where the filesystem refuses (then it gets a copy). release_inputs checks it afterwards."""
    obj = store.object_path(p.avail.art.hash)
    try:
        os.link(obj, p.dst)
        st = os.lstat(p.dst)
        p.inode, p.mtime_ns, p.linked = st.st_ino, st.st_mtime_ns, True
    except FileNotFoundError:
        if not os.path.lexists(obj):
            raise RuntimeError(f"input '{p.name}': its stored object {p.avail.art.hash[:12]} is missing (removed as damaged?); run again") from None
        raise
    except OSError:  # another filesystem, too many links, another user's object (protected_hardlinks)
        return False
    return True


def _real_dirs(record: _Inputs) -> bool:
    """Whether a node's input folder and its sub-folders are still folders: a node may have put a
    link to somewhere else in place of one, and plx removes nothing through a link."""
    try:
        return all(stat.S_ISDIR(os.lstat(d).st_mode) for d in (record.indir, *(record.indir / s for s in record.subdirs)))
    except OSError:
        return False


def _check_link(store: Store, p: Placement, remove: bool = True) -> bool:
    """After the node: whether the object it got as a link still holds its bytes; the link is removed.

    Re-hashed, not trusted by its stat signature: the link and its removal change the object's ctime,
    and another node may hold a link to it too. A damaged object is removed from the store."""
    obj = store.object_path(p.avail.art.hash)
    try:
        same = os.lstat(obj).st_ino == p.inode
    except OSError:
        same = False
    if not same:  # the object was removed (or stored anew) meanwhile: check the inode the node had
        try:
            ok = remove and os.lstat(p.dst).st_ino == p.inode and hash_file(p.dst) == p.avail.art.hash
        except OSError:
            ok = False
        if remove:
            _remove(p.dst)
        return ok
    if remove:
        _remove(p.dst)  # first: removing the link changes the object's ctime, and the check remembers its signature after
    if store.recheck(p.avail.art.hash, p.mtime_ns):
        return True
    store.drop_object(p.avail.art.hash)
    return False


def _rmtree(path: Path) -> None:
    """shutil.rmtree, errors ignored. shutil is imported here, not at the top: `plx run` imports it
    only when it removes a tree (deferred.py)."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _remove_empty_tree(top: Path) -> None:
    """Remove top and the folders below it, except those holding files (a failed node's, kept to look at)."""
    for dirpath, _dirs, _files in os.walk(top, topdown=False):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def _place_input(store: Store, a: Avail, dst: Path, ws: Workspace | None = None) -> None:
    """A node's private copy of one input: a user's file or folder, or an artifact of the store."""
    if a.path is None:
        store.materialize(a.art, dst)
        return
    if a.path.is_dir():
        import shutil  # here, not at the top: `plx run` never imports it (deferred.py)

        shutil.copytree(a.path, dst, symlinks=False, dirs_exist_ok=True)
        now = content_hash(dst)
    else:
        spare = ws.take_spare() if ws is not None and a.art.type != "executable" and a.art.size <= _SPARE_BYTES else None
        now = _copy_file(a.path, dst, 0o755 if a.art.type == "executable" else 0o644, spare)
    # The cache key used the hash taken when the run started: a file edited since must not be
    # run (and cached) under that key. The copy is what the node reads, so the copy is checked.
    if now != a.art.hash:
        raise RuntimeError(f"{a.path} changed after the run started (its hash was {a.art.hash[:12]}, it is {now[:12]}); run again")


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC  # never through a link, never over a file
_SMALL_COPY = 4 * 1024 * 1024  # below this a copy is read once, written, and hashed from the bytes written


def _copy_file(src: Path, dst: Path, mode: int, spare: tuple[int, str] | None = None) -> str:
    """Copy a user's file to dst (a new file with that mode); the hash of what dst holds.

    A small file is read once: the bytes written are the bytes hashed. A large one is cloned where
    the filesystem can (FICLONE), else copied in the kernel, then the copy is hashed."""
    fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fout = _reuse(spare, dst) if spare is not None else None
        reused = fout is not None
        if fout is None:
            try:
                fout = os.open(dst, _NEW_FILE, mode)
            except FileNotFoundError:
                dst.parent.mkdir(parents=True, exist_ok=True)
                fout = os.open(dst, _NEW_FILE, mode)
        try:
            os.fchmod(fout, mode)  # whatever the umask
            size = os.fstat(fin).st_size
            if size < _SMALL_COPY:
                data = _read_all(fin, size)
                view = memoryview(data)
                while view:
                    view = view[os.write(fout, view) :]
                if reused:
                    os.ftruncate(fout, len(data))  # a spare's bytes beyond these (see _reuse)
                return hash_bytes(data)
            if reused:
                os.ftruncate(fout, 0)
            try:
                fcntl.ioctl(fout, 0x40049409, fin)  # FICLONE: shares the blocks (btrfs, XFS)
            except OSError:
                _copy_fds(fin, fout)
        finally:
            os.close(fout)
    finally:
        os.close(fin)
    return hash_file(dst)


def _reuse(spare: tuple[int, str], dst: Path) -> int | None:
    """A spare file (see Workspace._keep_spare), renamed to dst, open for writing; None when it
    cannot be used (then dst gets a new file). Not emptied: the caller writes it from its start and
    cuts it to the new length. Emptied first, ext4 took it for a file being replaced and wrote it
    out at close (auto_da_alloc): 113 against 34 µs a file of 11 bytes, emptied against cut after.

    Only a file no process has open: a process left behind by the node that had it (one that left
    its process group, not stopped yet) could otherwise still write into the next node's input
    through a descriptor it kept. A write lease is granted only when no other descriptor (nor
    shared mapping) of the file exists anywhere; it is given back at once. Nor any extended
    attribute (an ACL another user could write through), other name, link or special file."""
    home, name = spare
    try:
        fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=home)  # NONBLOCK: a FIFO put there fails at once
    except OSError:
        _unlink_at(home, name)
        return None
    renamed = False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or os.listxattr(fd):
            raise OSError("not as plx made it")
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGWINCH)  # a lease break while held signals this (ignored by default), not SIGIO
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)  # refused (EAGAIN) if the file is open anywhere else
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        if os.path.lexists(dst):
            raise OSError("taken")
        os.rename(name, dst, src_dir_fd=home)
        renamed = True
    except OSError:
        os.close(fd)
        if renamed:
            _remove(dst)
        else:
            _unlink_at(home, name)
        return None
    return fd


def _unlink_at(home: int, name: str) -> None:
    """Remove a spare by its name in the spare folder (never through a link: only that entry)."""
    try:
        os.unlink(name, dir_fd=home)
    except OSError:
        pass


def _copy_fds(fin: int, fout: int) -> None:
    """Copy in the kernel (copy_file_range), or by reads and writes across filesystems that refuse it."""
    try:
        while os.copy_file_range(fin, fout, 1 << 30):
            pass
        return
    except OSError as exc:
        if is_disk_full(exc):
            raise
    os.lseek(fin, 0, os.SEEK_SET)
    os.lseek(fout, 0, os.SEEK_SET)
    os.ftruncate(fout, 0)
    while data := os.read(fin, 1 << 20):
        view = memoryview(data)
        while view:
            view = view[os.write(fout, view) :]


def _read_all(fd: int, size: int) -> bytes:
    """A file's bytes to its end (it may have grown since it was measured)."""
    chunks = [os.read(fd, size + 1)]
    while chunks[-1]:
        chunks.append(os.read(fd, 1 << 20))
    return b"".join(chunks)


def check_outputs(task: Task, work: Path, read: dict[str, bytes]) -> str | None:
    """Why the outputs of a finished node are unacceptable, or None; keeps the bytes it had to read."""
    for o in task.op.outputs:
        p = work / o.file_name
        try:
            mode = os.lstat(p).st_mode  # one call answers "exists", "link" and "folder"
        except FileNotFoundError:
            return f"output '{o.name}' was not written: expected {o.file_name} in the working directory"
        if stat.S_ISLNK(mode):
            return f"output '{o.name}' ({o.file_name}) is a symbolic link; write a real file inside the working directory"
        if o.type == "directory":
            if not stat.S_ISDIR(mode):
                return f"output '{o.name}' must be a directory, but {o.file_name} is a file"
            problem = _replace_links(o.name, work, p)
            if problem:
                return problem
            continue
        if stat.S_ISDIR(mode):
            return f"output '{o.name}' must be a file, but {o.file_name} is a directory"
        if o.type in ("json", "text", "csv"):
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
            try:
                data = read[o.name] = _read_all(fd, 1 << 16)
            finally:
                os.close(fd)
            try:
                if o.type == "json":
                    json.loads(data)
                else:
                    data.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"output '{o.name}' is not UTF-8 text (byte {exc.start})"
            except ValueError as exc:
                return f"output '{o.name}' is not valid JSON: {exc}"
    return None


def _replace_links(name: str, work: Path, top: Path) -> str | None:
    """A directory output is stored as files and folders, never links: each link to a file inside
    the work folder is replaced by a copy of that file; any other link fails the node (why, or None)."""
    from .store import reflink_or_copy

    root = work.resolve()
    for dirpath, dirnames, filenames in os.walk(top):
        for entry in dirnames + filenames:
            q = Path(dirpath) / entry
            rel = q.relative_to(work)
            mode = os.lstat(q).st_mode
            if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
                continue
            if not stat.S_ISLNK(mode):
                return f"output '{name}' holds {rel}, which is neither a file nor a folder (a pipe, socket or device)"
            try:
                target = q.resolve(strict=True)
            except (OSError, RuntimeError):
                return f"output '{name}' holds a link {rel} that points to nothing (or to itself); write the file itself"
            if root not in target.parents:
                return f"output '{name}' holds a link {rel} pointing outside the working directory ({os.readlink(q)}); copy the file instead"
            if not target.is_file():
                return f"output '{name}' holds a link {rel} to a folder; write the files themselves"
            copy = q.with_name(f".plx-link-{entry}")
            reflink_or_copy(target, copy)
            os.chmod(copy, 0o755 if target.stat().st_mode & stat.S_IXUSR else 0o644)
            os.replace(copy, q)  # the link itself becomes the content it pointed to
    return None
