"""`plx log` with 10,000 runs in the history (target, issue 5: < 0.5 s), and the cost of one record.

Writes 10,000 run records the way plx does (cloned from one real run), lets `plx log` build its
index once, then times `plx log`, `plx log --status failed` and `plx log RUN`. Run: python bench/history.py [N]
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import PLX, print_table, recorded_project, timed  # noqa: E402


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    root, record, _ = recorded_project("a b")
    runs = root / ".plx/runs"
    for i in range(n - 1):
        rid = f"20200101-{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}-{i % 1000:03d}-{i:04x}"
        d = runs / rid
        d.mkdir()
        record["id"] = rid
        record["status"] = "failed" if i % 10 == 0 else "success"
        (d / "run.json").write_text(json.dumps(record))
    build = timed([PLX, "log", "-n", "5"], root)
    rows = [
        ["first `plx log` (indexes the records once)", build],
        ["plx log", timed([PLX, "log"], root, repeat=5)],
        ["plx log --status failed -n 50", timed([PLX, "log", "--status", "failed", "-n", "50"], root, repeat=5)],
        ["plx log --json -n 100", timed([PLX, "log", "--json", "-n", "100"], root, repeat=5)],
        ["plx log last", timed([PLX, "log", "last"], root, repeat=5)],
    ]
    print_table(f"history with {n:,} runs (median wall seconds; target < 0.5 s)", rows, ["command", "seconds"])
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
