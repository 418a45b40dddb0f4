"""A cache of parsed YAML files (a Doc's data and its top-level positions), keyed by the file's bytes.

Parsing a 100,000-node graph takes seconds; reading its Doc back from JSON takes a fraction of
that. For the usual small files the gain is not parsing but not importing PyYAML at all (~9 ms of
a run that finds every file here). Only the positions of top-level values are kept (the loader
needs an operation's `cmd` line each time): a message that needs another parses the file's text
again (Doc.where). One entry per file path (a new version replaces the old one),
under `<store>/parsed/`, at most about MAX_ENTRIES of them: paths come and go (`--rev` reads each
commit's files from a folder of its own), so the first write of a process (and every PRUNE_EVERY-th)
lists the folder and, past the limit, drops the entries least recently used (an entry read is marked
used at most once a day: its mtime). The entry holds the BLAKE3 hash of the
file's bytes and its display name: it is used only when both match what was just read, so an
edit, a `git checkout` or a copy with the same mtime can never serve a stale graph. The entry is
plain JSON (never unpickled); anything unreadable in it is a miss, and it is rewritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from .hashing import hash_bytes
from .yamldoc import Doc, fill_marks

FORMAT = "plx-parsed-4"  # a new one whenever yamldoc builds a Doc differently: every file is kept here
MAX_ENTRIES = 2000  # ~a few MB for usual files; a prune that finds more keeps the most recently used 3/4
PRUNE_EVERY = 256  # writes of one process between two listings of the folder (~1 ms each at the limit)
USED_EVERY = 86400  # seconds: an entry read is marked used (its mtime) when its mark is older than this
_writes = 0  # this process's writes so far


def _entry(cache_dir: Path, path: Path) -> Path:
    return cache_dir / (hash_bytes(os.fsencode(str(path)))[:32] + ".json")


def get(cache_dir: Path, path: Path, raw: bytes, file: str) -> Doc | None:
    try:
        digest = hash_bytes(raw)
        # put() writes these first: an entry of other bytes (the file was edited) is not read further
        head = f'{{"format":"{FORMAT}","hash":"{digest}"'.encode()
        entry = _entry(cache_dir, path)
        with open(entry, "rb") as f:
            if f.read(len(head)) != head:
                return None
            saved = json.loads(head + f.read())
            mark = os.fstat(f.fileno()).st_mtime
        if saved["format"] != FORMAT or saved["hash"] != digest or saved["file"] != file:
            return None
        if time.time() - mark > USED_EVERY:  # in use: not among the first a prune drops
            with contextlib.suppress(OSError):
                os.utime(entry)
        # The positions of the top-level values are kept (the loader needs the line of an operation's
        # cmd every time); the others are needed only to report a problem: found then, by parsing
        # these bytes again (Doc.where).
        marks = {(k,): (line, col) for k, line, col in saved["top"]}
        doc = Doc(file, saved["data"], marks, {}, {tuple(p) for p in saved["block_scalars"]}, {tuple(p): text for p, text in saved["source"]})
        doc.lazy_marks = lambda d: fill_marks(d, raw.decode("utf-8"))
        return doc
    except (OSError, ValueError, KeyError, TypeError):
        return None


def put(cache_dir: Path, path: Path, raw: bytes, doc: Doc) -> None:
    """Save doc for the next reading of the same bytes; silently nothing if that cannot be done."""
    if not doc.json_safe:  # e.g. a `null:` key, which JSON would turn into "null"
        return
    try:
        text = json.dumps(
            {
                "format": FORMAT,
                "hash": hash_bytes(raw),
                "file": doc.file,
                "data": doc.data,
                "block_scalars": [list(p) for p in doc.block_scalars],
                "source": [[list(p), t] for p, t in doc.source.items()],
                "top": [[p[0], *m] for p, m in doc.marks.items() if len(p) == 1 and isinstance(p[0], str)],
            },
            separators=(",", ":"),
        )
        cache_dir.mkdir(parents=True, exist_ok=True)
        dst = _entry(cache_dir, path)
        tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, dst)
        global _writes
        _writes += 1
        if (_writes - 1) % PRUNE_EVERY == 0:  # the first write of a process, then every PRUNE_EVERY-th
            _prune(cache_dir)
    except (OSError, ValueError, TypeError):
        pass


def _prune(cache_dir: Path) -> None:
    """Past MAX_ENTRIES, keep the 3/4 most recently used; remove what a killed writer left (a `.tmp`
    over an hour old). Another plx pruning at the same time, or reading an entry removed here,
    finds it missing: a miss, never an error."""
    with os.scandir(cache_dir) as it:
        found = list(it)
    stale = time.time() - 3600
    doomed = [e.path for e in found if e.name.endswith(".tmp") and _mtime(e) < stale]
    entries = [e for e in found if e.name.endswith(".json")]
    if len(entries) > MAX_ENTRIES:  # only then a stat of each
        by_use = sorted((_mtime(e), e.path) for e in entries)
        doomed += [path for _, path in by_use[: len(entries) - MAX_ENTRIES * 3 // 4]]
    for path in doomed:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _mtime(e: os.DirEntry[str]) -> float:
    try:
        return e.stat(follow_symlinks=False).st_mtime
    except OSError:  # removed meanwhile: nothing left to keep
        return 0.0


class ParseCache:
    """What yamldoc.load_file takes as its cache: the entries of one folder."""

    def __init__(self, cache_dir: Path):
        self.dir = cache_dir

    def get(self, path: Path, raw: bytes, file: str) -> Doc | None:
        return get(self.dir, path, raw, file)

    def put(self, path: Path, raw: bytes, doc: Doc) -> None:
        put(self.dir, path, raw, doc)
