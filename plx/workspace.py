"""The workspace of a run: each node's work folder (a finished empty one recycled), its private copies
of inputs and sources, the checks of its outputs, and their storing.

Files are what a short node costs most on some disks (see docs/design.md, Executors), so per node
only what must exist is created, and finished folders are removed when the run ends.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import disk_full_message, is_disk_full
from .planner import Task
from .sources import place as place_sources
from .store import TREE_TYPE, Artifact, Store, content_hash

_REMOVE_AT_ONCE_BYTES = 64 * 1024 * 1024


@dataclass
class Avail:
    """An artifact a task can read: stored (path None) or a user's file read in place."""

    art: Artifact
    path: Path | None = None


class Workspace:
    """The work folders of one engine's nodes, by task id: made, filled, retired, removed at the end."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.workdirs: dict[str, Path] = {}
        self._run_tmp: dict[str, bool] = {}
        self.with_indir: set[str] = set()  # tasks that got a `.in` folder (to remove it, and only it)
        self.big_inputs: set[str] = set()  # tasks whose input copies are worth removing as soon as they end
        self.done_workdirs: list[tuple[Path, bool]] = []  # removed when the run ends (see finished)
        self.spare_workdirs: list[Path] = []  # finished work folders left empty: renamed for the next node
        self._workdir_mode: int | None = None

    def open(self, tid: str, run_id: str, node: str, ins: dict[str, list[Avail]], needs_in: bool) -> tuple[Path, Path]:
        """A fresh work folder for a node (and its `.in` folder when it has inputs or needs one)."""
        # Folders cost real time on some disks, so a node gets one (`work`), plus `.in` for its inputs.
        work = self.store.tmp / run_id / node
        indir = work.with_name(work.name + ".in")
        if "/" in node or not self._run_tmp.get(run_id):
            work.parent.mkdir(parents=True, exist_ok=True)
            self._run_tmp[run_id] = True
        if self.spare_workdirs:
            os.rename(self.spare_workdirs.pop(), work)
        else:
            work.mkdir()
            if self._workdir_mode is None:  # what a new folder looks like here (umask), before any node ran in it
                self._workdir_mode = os.lstat(work).st_mode
        if ins or needs_in:
            indir.mkdir()
            self.with_indir.add(tid)
            if sum(a.art.size for items in ins.values() for a in items) > _REMOVE_AT_ONCE_BYTES:
                self.big_inputs.add(tid)
        self.workdirs[tid] = work
        return work, indir

    def place(self, task: Task, ins: dict[str, list[Avail]], indir: Path, wlog: Callable[[str], None]) -> tuple[dict[str, list[str]], list[tuple[Avail, Path]]]:
        """Where each input goes (paths by input name) and the copies still to make; a `cloud`
        reference is placed at once, since the template reads the reference it holds."""
        paths: dict[str, list[str]] = {}
        copies: list[tuple[Avail, Path]] = []
        for name, items in ins.items():
            spec = task.op.input(name)
            placed = []
            for i, a in enumerate(items):
                dst = (indir / name / str(i) / a.art.filename) if spec and spec.is_list else (indir / name / a.art.filename)
                if spec is not None and spec.type == "cloud":
                    _place_input(self.store, a, dst)  # now: the template reads the reference it holds
                else:
                    copies.append((a, dst))
                placed.append(str(dst))
                wlog(f"input {name}: {dst} <- {a.path or 'store ' + a.art.hash[:16]} ({a.art.type}, {a.art.size} bytes)")
            paths[name] = placed
        return paths, copies

    def placer(self, copies: list[tuple[Avail, Path]], sources: list[tuple[str, Path]], hashes: dict[str, str], work: Path, indir: Path) -> Callable[[], None] | None:
        """What the executor runs first, in its own thread (a large copy must not hold up the loop)."""
        if not copies and not sources:
            return None
        store = self.store

        def place_inputs() -> None:
            try:
                for a, dst in copies:
                    _place_input(store, a, dst)
                if sources:
                    place_sources(sources, hashes, work)
            except BaseException as exc:
                shutil.rmtree(indir, ignore_errors=True)  # no partial copy is left behind (a full disk)
                if is_disk_full(exc):
                    raise OSError(exc.errno if isinstance(exc, OSError) else None, disk_full_message(store.root)) from None
                raise

        return place_inputs

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
        """A node succeeded: its folder is kept for reuse, or removed with the run.

        Finished folders are removed when the run ends, not now: on some filesystems (ext4 without
        a journal) every file created soon after a deletion scans the recently freed inodes, which
        made launches several times slower. Large input copies are removed at once for the disk's sake."""
        done = (self.workdirs.pop(tid), tid in self.with_indir)
        if tid in self.big_inputs:
            _remove_workdir(*done)
        elif not done[1] and self._reusable(done[0]):
            self.spare_workdirs.append(done[0])
        else:
            self.done_workdirs.append(done)

    def retire_attempt(self, tid: str, n: int) -> None:
        """A failed attempt's folders become `<node>.attempt<n>` (and `.in`), removed at the end."""
        work = self.workdirs.pop(tid)
        old = work.with_name(f"{work.name}.attempt{n}")
        os.rename(work, old)
        had_in = tid in self.with_indir
        if had_in:
            os.rename(work.with_name(work.name + ".in"), old.with_name(old.name + ".in"))
            self.with_indir.discard(tid)
        self.big_inputs.discard(tid)
        self.done_workdirs.append((old, had_in))

    def close(self, run_ids: list[str]) -> None:
        """Remove the finished folders, then each run's folder unless a failed node's is kept in it."""
        for done in [*self.done_workdirs, *((d, False) for d in self.spare_workdirs)]:
            _remove_workdir(*done)
        for run_id in run_ids:
            _remove_empty_tree(self.store.tmp / run_id)

    def _reusable(self, work: Path) -> bool:
        """Whether a finished work folder is exactly as a new one would be: empty, with the usual mode.

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


class StoreFailed(Exception):
    """An output could not be stored (the message says which and why)."""


def _remove_workdir(work: Path, with_indir: bool) -> None:
    """Remove a finished node's folders: usually empty once outputs moved, so rmdir is enough."""
    for d in (work, work.with_name(work.name + ".in")) if with_indir else (work,):
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError:
            shutil.rmtree(d, ignore_errors=True)


def _remove_empty_tree(top: Path) -> None:
    """Remove top and the folders below it, except those holding files (a failed node's, kept to look at)."""
    for dirpath, _dirs, _files in os.walk(top, topdown=False):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def _place_input(store: Store, a: Avail, dst: Path) -> None:
    """A node's private copy of one input: a user's file or folder, or an artifact of the store."""
    if a.path is None:
        store.materialize(a.art, dst)
        return
    _copy_user_input(a.path, dst, a.art.type)
    # The cache key used the hash taken when the run started: a file edited since must not be
    # run (and cached) under that key. The copy is what the node reads, so the copy is checked.
    now = content_hash(dst)
    if now != a.art.hash:
        raise RuntimeError(f"{a.path} changed after the run started (its hash was {a.art.hash[:12]}, it is {now[:12]}); run again")


def _copy_user_input(src: Path, dst: Path, type_: str) -> None:
    from .store import reflink_or_copy

    if src.is_dir():
        shutil.copytree(src, dst, symlinks=False, dirs_exist_ok=True)
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    reflink_or_copy(src, dst)
    os.chmod(dst, 0o755 if type_ == "executable" else 0o644)


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
            with open(p, "rb") as f:
                data = read[o.name] = f.read()
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
