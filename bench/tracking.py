"""Tracking at scale: `plx log` filtering and sorting 10,000 runs by metrics and params (target < 0.5 s),
and `plx report` over 100 runs of 50 nodes (target < 1 s).

Writes run records the way plx does (cloned from one real run, each with its own params, metrics,
tags, 50 timed nodes with dependencies), lets `plx log` build its index once, then times the
commands. Run: python bench/tracking.py [N_RUNS]
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import PLX, print_table, recorded_project, timed  # noqa: E402


def fake_runs(runs: Path, record: dict, n: int, nodes: int, prefix: str) -> list[str]:
    rnd = random.Random(7)
    ids = []
    for i in range(n):
        rid = f"{prefix}-{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}-{i % 1000:03d}-{i:04x}"
        lr = rnd.choice([0.001, 0.01, 0.1, 0.3, 1.0])
        depth = rnd.randint(1, 8)
        acc = round(min(0.99, 0.6 + 0.3 * rnd.random() - abs(lr - 0.1) * 0.1 + depth * 0.01), 4)
        names = [f"n{j:02d}" for j in range(nodes)]
        node_rec = {}
        t = 0.0
        for name in names:
            dur = round(rnd.uniform(0.05, 2.0), 3)
            node_rec[name] = {
                "state": "success",
                "duration": dur,
                "exit_code": 0,
                "started": f"2020-01-01T00:00:{t:06.3f}+00:00",
                "finished": f"2020-01-01T00:00:{t + dur:06.3f}+00:00",
            }
            t += dur / 4
        deps = {names[j]: sorted({names[rnd.randrange(j)] for _ in range(2)}) for j in range(1, nodes)}
        data = {
            **record,
            "id": rid,
            "status": "failed" if i % 10 == 0 else "success",
            "graph_params": {"lr": lr, "depth": depth},
            "params": {"lr": lr},
            "tags": ["bench", f"lr={lr}"] + (["baseline"] if i % 50 == 0 else []),
            "name": f"exp-{i % 7}",
            "note": None,
            "metrics": {"eval.accuracy": acc, "eval.loss.test": round(1 - acc, 4), "eval.n": 1000},
            "nodes": node_rec,
            "deps": deps,
            "started": "2020-01-01T00:00:00.000+00:00",
            "finished": f"2020-01-01T00:00:{t + 2:06.3f}+00:00",
            "duration": round(t + 2, 3),
        }
        d = runs / rid
        d.mkdir()
        (d / "run.json").write_text(json.dumps(data))
        ids.append(rid)
    return ids


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    root, record, template = recorded_project()
    runs = root / ".plx/runs"
    shutil.rmtree(template)
    (runs / "index.sqlite").unlink()
    fake_runs(runs, record, n, 3, "20200101")
    build = timed([PLX, "log", "-n", "5"], root)
    rows = [
        [f"first `plx log` ({n:,} records indexed once)", build],
        ["plx log (no filter)", timed([PLX, "log"], root, repeat=5)],
        ["plx log --where metrics.eval.accuracy>0.9", timed([PLX, "log", "--where", "metrics.eval.accuracy>0.9"], root, repeat=5)],
        [
            "plx log --tag bench --where params.lr=0.1 --where metrics.eval.accuracy>=0.7 --sort -metrics.eval.accuracy --columns params.lr,metrics.eval.accuracy",
            timed(
                [
                    PLX,
                    "log",
                    "--tag",
                    "bench",
                    "--where",
                    "params.lr=0.1",
                    "--where",
                    "metrics.eval.accuracy>=0.7",
                    "--sort",
                    "-metrics.eval.accuracy",
                    "--columns",
                    "params.lr,metrics.eval.accuracy",
                ],
                root,
                repeat=5,
            ),
        ],
        ["plx log --where tags~base --json -n 1000", timed([PLX, "log", "--where", "tags~base", "--json", "-n", "1000"], root, repeat=5)],
    ]
    print_table(f"filtering {n:,} runs (median wall seconds; target < 0.5 s)", rows, ["command", "seconds"])

    # The report: 100 runs of 50 nodes each.
    shutil.rmtree(runs)
    runs.mkdir()
    ids = fake_runs(runs, record, 100, 50, "20210101")
    cli = timed([PLX, "report", *ids, "-o", "report.html"], root, repeat=3)
    from plx.history import History
    from plx.report_html import build

    history = History(root / ".plx")
    records = [history.load(i) for i in ids]
    t0 = time.perf_counter()
    page = build(records, runs)
    inproc = time.perf_counter() - t0
    rows = [
        ["plx report: 100 runs x 50 nodes (whole command)", cli],
        ["  of which building the page (in process)", inproc],
    ]
    print_table(f"report ({len(page) / 1e6:.1f} MB page; median wall seconds; target < 1 s)", rows, ["command", "seconds"])
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
