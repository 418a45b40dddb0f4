"""The parsed-file cache stays bounded: paths come and go (`--rev` reads each commit from a new folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plx import parsecache
from plx.yamldoc import load_text


def _put(cache: Path, tmp_path: Path, i: int) -> tuple[Path, bytes]:
    path = tmp_path / f"src{i}" / "g.yaml"
    raw = f"kind: graph\nname: g{i}\nnodes: {{}}\n".encode()
    parsecache.put(cache, path, raw, load_text(raw.decode(), f"g{i}.yaml"))
    return path, raw


def test_a_write_past_the_limit_drops_the_oldest_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsecache, "MAX_ENTRIES", 8)
    cache = tmp_path / "parsed"
    written = []
    for i in range(8):
        written.append(_put(cache, tmp_path, i))
        entry = parsecache._entry(cache, written[-1][0])
        os.utime(entry, ns=(i * 10**9, i * 10**9))  # entry i written at second i: the order is known
    assert len(list(cache.iterdir())) == 8  # at the limit: nothing dropped yet
    for i, (path, raw) in enumerate(written):
        assert parsecache.get(cache, path, raw, f"g{i}.yaml") is not None

    newest = _put(cache, tmp_path, 8)  # one past the limit: the 6 newest are kept
    names = {p.name for p in cache.iterdir()}
    assert len(names) == 6
    kept = [i for i, (path, _) in enumerate(written) if parsecache._entry(cache, path).name in names]
    assert kept == [3, 4, 5, 6, 7]
    assert parsecache._entry(cache, newest[0]).name in names
    # a dropped entry is a miss (the file is parsed again), a kept one still a hit
    assert parsecache.get(cache, written[0][0], written[0][1], "g0.yaml") is None
    doc = parsecache.get(cache, written[7][0], written[7][1], "g7.yaml")
    assert doc is not None and doc.data["name"] == "g7"


def test_pruning_counts_entries_only_and_leaves_other_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsecache, "MAX_ENTRIES", 2)
    cache = tmp_path / "parsed"
    for i in range(3):
        _put(cache, tmp_path, i)
    (cache / "stray.json.123.tmp").write_text("half written")  # another process's write in flight: not counted, kept
    _put(cache, tmp_path, 3)
    assert (cache / "stray.json.123.tmp").exists()
    assert len([p for p in cache.iterdir() if p.name.endswith(".json")]) <= 2
    parsecache._prune(cache)  # nothing over the limit: nothing to do
