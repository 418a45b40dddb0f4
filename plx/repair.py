"""Self-repair of plx's own files: what is in the way of a folder or lock file plx needs is set
aside (renamed `NAME.damaged-<time>-<pid>`, kept for a look, never deleted) with a warning."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import warn


def temp_file(folder: Path, prefix: str, suffix: str = "") -> tuple[int, str]:
    """A new file of this process's own in folder (mode 0600), open for writing: its descriptor and
    path. tempfile.mkstemp's work without importing tempfile and random (~1 ms of a run's start)."""
    for _ in range(100):
        path = os.path.join(folder, f"{prefix}{os.urandom(6).hex()}{suffix}")
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free name for a temporary file", str(folder))


def open_lock_file(path: Path) -> int:
    """A descriptor of one of plx's lock files; a folder (or anything else) in its place is set aside."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.EISDIR, errno.ELOOP, errno.ENXIO):
            raise
    aside = set_aside(path)
    warn(f"{path} was not a plain file (set aside as {aside.name}); plx made a new one")
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)


def ensure_dir(path: Path) -> None:
    """mkdir -p, where a file (or a dangling link) in the way of one of plx's folders is set aside."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        return
    except (FileExistsError, NotADirectoryError):
        if path.parent.is_dir() and path.is_dir():
            return
    if not path.parent.is_dir():
        ensure_dir(path.parent)
    if os.path.lexists(path) and not path.is_dir():
        aside = set_aside(path)
        warn(f"{path} was not a folder (set aside as {aside.name}); plx made a new one")
    path.mkdir(parents=True, exist_ok=True)


def set_aside(path: Path) -> Path:
    """Rename a damaged file or folder of the store out of the way (kept for a look, never deleted)."""
    import time

    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:  # another plx set it aside first
        pass
    return aside
