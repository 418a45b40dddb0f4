"""The parsed-file cache stays bounded: paths come and go (`--rev` reads each commit from a folder of its own)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from plx import parsecache
from plx.yamldoc import load_text


def _put(cache: Path, tmp_path: Path, i: int) -> tuple[Path, bytes]:
    path = tmp_path / f"src{i}" / "g.yaml"
    raw = f"kind: graph\nname: g{i}\nnodes: {{}}\n".encode()
    parsecache.put(cache, path, raw, load_text(raw.decode(), f"g{i}.yaml"))
    return path, raw


def _age(path: Path, seconds_ago: float) -> None:
    t = time.time() - seconds_ago
    os.utime(path, (t, t))


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsecache, "MAX_ENTRIES", 8)
    monkeypatch.setattr(parsecache, "PRUNE_EVERY", 1)  # every write prunes: the order below is the test's
    monkeypatch.setattr(parsecache, "_writes", 0)


@pytest.mark.usefixtures("small")
def test_a_prune_past_the_limit_drops_the_least_recently_used(tmp_path: Path) -> None:
    cache = tmp_path / "parsed"
    written = []
    for i in range(8):
        written.append(_put(cache, tmp_path, i))
        _age(parsecache._entry(cache, written[-1][0]), 10 * 86400 - i * 60)  # entry i written i minutes after entry 0
    assert len(list(cache.iterdir())) == 8  # at the limit: nothing dropped yet
    # entry 0 is read again: marked used now, so it is kept; the next oldest go
    assert parsecache.get(cache, written[0][0], written[0][1], "g0.yaml") is not None
    newest = _put(cache, tmp_path, 8)  # one past the limit: the 6 most recently used are kept
    names = {p.name for p in cache.iterdir()}
    assert len(names) == 6
    kept = [i for i, (path, _) in enumerate(written) if parsecache._entry(cache, path).name in names]
    assert kept == [0, 4, 5, 6, 7]
    assert parsecache._entry(cache, newest[0]).name in names
    # a dropped entry is a miss (the file is parsed again), a kept one still a hit
    assert parsecache.get(cache, written[1][0], written[1][1], "g1.yaml") is None
    doc = parsecache.get(cache, written[7][0], written[7][1], "g7.yaml")
    assert doc is not None and doc.data["name"] == "g7"


def test_a_hit_marks_an_entry_used_at_most_once_a_day(tmp_path: Path) -> None:
    cache = tmp_path / "parsed"
    path, raw = _put(cache, tmp_path, 0)
    entry = parsecache._entry(cache, path)
    _age(entry, 3600)  # read an hour ago: left as it is (no write per hit)
    before = entry.stat().st_mtime
    assert parsecache.get(cache, path, raw, "g0.yaml") is not None
    assert entry.stat().st_mtime == before
    _age(entry, 2 * 86400)
    assert parsecache.get(cache, path, raw, "g0.yaml") is not None
    assert time.time() - entry.stat().st_mtime < 60


def test_only_the_first_write_of_a_process_and_every_nth_lists_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsecache, "PRUNE_EVERY", 3)
    monkeypatch.setattr(parsecache, "_writes", 0)
    listed: list[Path] = []
    monkeypatch.setattr(parsecache, "_prune", listed.append)
    for i in range(7):
        _put(tmp_path / "parsed", tmp_path, i)
    assert len(listed) == 3  # writes 1, 4 and 7


@pytest.mark.usefixtures("small")
def test_what_a_killed_writer_left_goes_once_stale_and_nothing_else(tmp_path: Path) -> None:
    cache = tmp_path / "parsed"
    _put(cache, tmp_path, 0)
    stale, fresh = cache / "x.json.123.tmp", cache / "y.json.456.tmp"  # another process's write in flight: kept
    stale.write_text("half written")
    fresh.write_text("being written")
    _age(stale, 7200)
    _put(cache, tmp_path, 1)
    assert not stale.exists() and fresh.exists()
    assert len([p for p in cache.iterdir() if p.name.endswith(".json")]) == 2
