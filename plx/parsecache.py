"""A cache of parsed large YAML files (a Doc with every mark), keyed by the file's bytes.

Parsing a 100,000-node graph with positions takes seconds; reading its Doc back from JSON takes a
fraction of that. Only files of at least MIN_BYTES are cached, one entry per file path (a new
version replaces the old one), under `<store>/parsed/`. The entry holds the BLAKE3 hash of the
file's bytes and its display name: it is used only when both match what was just read, so an
edit, a `git checkout` or a copy with the same mtime can never serve a stale graph. The entry is
plain JSON (never unpickled); anything unreadable in it is a miss, and it is rewritten.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .hashing import hash_bytes
from .yamldoc import Doc

MIN_BYTES = 64 * 1024
FORMAT = "plx-parsed-2"


def _entry(cache_dir: Path, path: Path) -> Path:
    return cache_dir / (hash_bytes(os.fsencode(str(path)))[:32] + ".json")


def get(cache_dir: Path, path: Path, raw: bytes, file: str) -> Doc | None:
    try:
        saved = json.loads(_entry(cache_dir, path).read_bytes())
        if saved["format"] != FORMAT or saved["hash"] != hash_bytes(raw) or saved["file"] != file:
            return None
        marks, key_marks = saved["marks"], saved["key_marks"]
        if not isinstance(marks, str) or not isinstance(key_marks, str):
            return None
        doc = Doc(file, saved["data"], {}, {}, {tuple(p) for p in saved["block_scalars"]}, {tuple(p): text for p, text in saved["source"]})
        # Positions are needed only to report a problem: decoded then (a JSON text inside the entry
        # costs little to skip; decoding every mark of a 100,000-node graph costs a second).
        doc.lazy_marks = lambda d: _decode_marks(d, marks, key_marks)
        return doc
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _decode_marks(doc: Doc, marks: str, key_marks: str) -> None:
    try:
        doc.marks.update((tuple(p), (line, col)) for p, line, col in json.loads(marks))
        doc.key_marks.update((tuple(p), (line, col)) for p, line, col in json.loads(key_marks))
    except (ValueError, TypeError):  # a damaged entry: messages without positions rather than a traceback
        pass


def put(cache_dir: Path, path: Path, raw: bytes, doc: Doc) -> None:
    """Save doc for the next reading of the same bytes; silently nothing if that cannot be done."""
    try:
        text = json.dumps(
            {
                "format": FORMAT,
                "hash": hash_bytes(raw),
                "file": doc.file,
                "data": doc.data,
                "marks": json.dumps([[list(p), *m] for p, m in doc.marks.items()], separators=(",", ":")),
                "key_marks": json.dumps([[list(p), *m] for p, m in doc.key_marks.items()], separators=(",", ":")),
                "block_scalars": [list(p) for p in doc.block_scalars],
                "source": [[list(p), t] for p, t in doc.source.items()],
            },
            separators=(",", ":"),
        )
        if json.loads(text)["data"] != doc.data:  # e.g. a `null:` key, which JSON would turn into "null"
            return
        cache_dir.mkdir(parents=True, exist_ok=True)
        dst = _entry(cache_dir, path)
        tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, dst)
    except (OSError, ValueError, TypeError):
        pass


class ParseCache:
    """What yamldoc.load_file takes as its cache: the entries of one folder."""

    min_bytes = MIN_BYTES

    def __init__(self, cache_dir: Path):
        self.dir = cache_dir

    def get(self, path: Path, raw: bytes, file: str) -> Doc | None:
        return get(self.dir, path, raw, file)

    def put(self, path: Path, raw: bytes, doc: Doc) -> None:
        put(self.dir, path, raw, doc)
