"""Hashing a large input: first hash (BLAKE3, all cores, memory-mapped) and the no-op re-check (stat cache).

Targets (issue 4): first hash >= 3 GB/s; re-check of an unchanged file < 10 ms. Run: python bench/hashing.py [GiB]
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import print_table, temp_project  # noqa: E402

from plx.store import Store  # noqa: E402


def main() -> None:
    gib = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    root = temp_project()
    big = root / "big.bin"
    chunk = os.urandom(1 << 20)
    with open(big, "wb") as f:
        for _ in range(int(gib * 1024)):
            f.write(chunk)
    size = big.stat().st_size
    with open(big, "rb") as f:  # warm the page cache so both rows measure hashing, not the disk
        while f.read(1 << 24):
            pass
    store = Store(root / ".plx")
    t0 = time.perf_counter()
    store.hash_path(big)
    first = time.perf_counter() - t0
    store.flush()
    t0 = time.perf_counter()
    store.hash_path(big)
    again = time.perf_counter() - t0
    t0 = time.perf_counter()
    with open(big, "rb") as f:
        hashlib.file_digest(f, "sha256")
    sha = time.perf_counter() - t0
    os.utime(big)  # touch: new mtime, same bytes
    t0 = time.perf_counter()
    store.hash_path(big)
    touched = time.perf_counter() - t0
    store.close()
    rows = [
        ["first hash, BLAKE3 (plx)", first, size / first / 1e9, ">= 3 GB/s"],
        ["re-check, unchanged (stat cache)", again, None, "< 0.010 s"],
        ["after touch (re-hash, same key)", touched, size / touched / 1e9, ""],
        ["sha256 for comparison (hashlib)", sha, size / sha / 1e9, ""],
    ]
    print_table(f"hashing a {size / 2**30:.1f} GiB file ({os.cpu_count()} cores)", rows, ["what", "seconds", "GB/s", "target"])
    big.unlink()


if __name__ == "__main__":
    main()
