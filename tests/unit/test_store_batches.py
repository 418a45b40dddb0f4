"""The store's batched reads (a no-op run or `--dry-run` of many nodes) answer as the one-key reads do:
same hits, and nothing damaged, missing or changed is ever taken for intact, by probing or by scan."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plx import texttable
from plx.hashing import hash_bytes
from plx.store import Artifact, Store


def _filled(root: Path, n: int) -> tuple[Store, list[str], list[str]]:
    """A store with n cache entries of one stored object each; (store, keys, object hashes)."""
    s = Store(root / ".plx")
    keys, hashes = [], []
    for i in range(n):
        h = s.put_bytes(f"output {i}\n".encode())
        key = hash_bytes(f"key {i}".encode())
        s.record(key, {"out": Artifact(h, 9, "text", "out.txt")}, "run")
        keys.append(key)
        hashes.append(h)
    s.close()
    return Store(root / ".plx"), keys, hashes


def _damage(s: Store, h: str, mode: str) -> None:
    p = s.object_path(h)
    if mode == "missing":
        p.unlink()
        return
    st = p.stat()
    os.chmod(p, 0o644)
    data = bytearray(p.read_bytes())
    data[0] ^= 0xFF
    p.write_bytes(bytes(data))  # same size
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime: only the ctime tells


@pytest.mark.parametrize("n", [10, texttable.SCAN_FROM + 5])  # probes per key, then the scans
def test_lookup_many_agrees_with_lookup_and_never_takes_damage_for_intact(tmp_path: Path, n: int) -> None:
    s, keys, hashes = _filled(tmp_path, n)
    unknown = hash_bytes(b"never recorded")
    found = s.lookup_many([*keys, unknown])
    assert found[unknown] is None
    assert all(found[k] == {"out": Artifact(h, 9, "text", "out.txt")} for k, h in zip(keys, hashes, strict=True))
    _damage(s, hashes[1], "bytes")
    _damage(s, hashes[2], "missing")
    s.close()
    s = Store(tmp_path / ".plx")
    found = s.lookup_many(keys)
    assert found[keys[1]] is None and found[keys[2]] is None
    assert found[keys[0]] is not None and found[keys[-1]] is not None
    assert [k for k in keys if (found[k] is None) != (s.lookup(k) is None)] == []
    s.close()


@pytest.mark.parametrize("n", [10, texttable.SCAN_FROM + 5])
def test_hash_inputs_reads_a_file_again_when_its_signature_changed(tmp_path: Path, n: int) -> None:
    data = tmp_path / "data"
    data.mkdir()
    files = []
    for i in range(n):
        f = data / f"{i:05d}.txt"
        f.write_text(f"sample {i}\n")
        files.append(f)
    s = Store(tmp_path / ".plx")
    first = s.hash_inputs(files, "text")
    s.close()
    st = files[3].stat()
    files[3].write_text("SAMPLE 3\n")  # same size
    os.utime(files[3], ns=(st.st_atime_ns, st.st_mtime_ns))
    s = Store(tmp_path / ".plx")
    again = s.hash_inputs(files, "text")
    s.close()
    assert again[3].hash == hash_bytes(b"SAMPLE 3\n") != first[3].hash
    assert [a.hash for i, a in enumerate(again) if i != 3] == [a.hash for i, a in enumerate(first) if i != 3]


def test_lookup_many_takes_a_key_asked_twice_across_its_batches(tmp_path: Path) -> None:
    """Identical nodes share a cache key: a `--dry-run` asks for it once per node, and the two asks
    can fall into different batches of the entry query (a KeyError ended --dry-run)."""
    s, keys, hashes = _filled(tmp_path, 510)
    found = s.lookup_many([keys[0], *keys[1:505], keys[0]])
    assert found[keys[0]] == {"out": Artifact(hashes[0], 9, "text", "out.txt")}
    assert all(found[k] is not None for k in keys[1:505])
    s.close()


def test_databases_opened_ahead_serve_the_first_use(tmp_path: Path) -> None:
    """Store.open_ahead: the thread's connections are the ones used (one each), and what is there is read."""
    s, keys, _ = _filled(tmp_path, 3)
    s.open_ahead()
    index = s.index
    assert s._opening is None and s.index is index and s.stats is s.stats
    assert s.lookup(keys[0]) is not None
    closing = s.close(wait=False)
    assert closing is not None
    closing.join()
    assert s._index is None and s._stats is None


def test_a_damaged_database_opened_ahead_is_set_aside_at_first_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s, keys, _ = _filled(tmp_path, 2)
    s.close()
    (tmp_path / ".plx/index/cache.db").write_bytes(b"this is not a database" * 100)
    s = Store(tmp_path / ".plx")
    s.open_ahead()  # fails in its thread, quietly
    assert s.lookup(keys[0]) is None  # a miss, not an error: the index started afresh
    assert "was damaged" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / ".plx").iterdir() if p.name.startswith("index.")], "the damaged index was not set aside"
    s.close()


def test_a_prefetched_miss_is_told_once_and_an_entry_written_since_is_still_found(tmp_path: Path) -> None:
    """surely_missing: what prefetch found no entry for, told once (CacheGate's first look); the
    entry another plx writes after the prefetch is found by the look made once the key is locked."""
    s, keys, _hashes = _filled(tmp_path, 2)
    missing = [hash_bytes(f"absent {i}".encode()) for i in range(3)]
    s.prefetch([*keys, *missing])
    assert [s.surely_missing(k) for k in keys] == [False, False]  # entries: looked up as always
    assert [s.surely_missing(k) for k in missing] == [True, True, True]
    assert [s.surely_missing(k) for k in missing] == [False, False, False]  # told once
    other = Store(tmp_path / ".plx")  # another plx writes the second one now
    h = other.put_bytes(b"late\n")
    other.record(missing[1], {"out": Artifact(h, 5, "text", "out.txt")}, "run2")
    other.commit_entries()
    other.close()
    assert s.lookup(missing[1]) is not None and s.lookup(missing[0]) is None
    s.close()
