"""Fan-out planning: graphs whose `foreach` nodes stand for N expansions each (default N = 10,000).

Times, in this process (best of 3), loading + validating the graph and planning it (expansion,
wiring, the gather), for: a fan-out over the N files of a list graph input, a chained fan-out
(`foreach: map`, `item.out`) gathered by one node (2N + 1 tasks), and a 100 x (N/100) matrix.
Then `plx run --dry-run` and `plx graph` on the chained graph as a user runs them.
Run: python bench/fanout.py [N]
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from common import PLX, print_table, temp_project, timed  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000

STEP = """\
kind: operation
name: step
runner: bash_jinja2
inputs: [{name: src, type: text, min: 0}]
params: [{name: value, type: str, default: x}]
outputs: [{name: out, type: text}]
cmd: cat {{ input.src }} > {{ output.out }}; echo {{ param.value }} >> {{ output.out }}
"""
GATHER = """\
kind: operation
name: gather
runner: command
inputs: [{name: parts, type: text, max: -1}]
outputs: [{name: all, type: text}]
cmd: printf '%s\\n' "$INPUT_PARTS" | tr '\\n' '\\0' | xargs -0 cat > "$OUTPUT_ALL"
"""
GRAPHS = {
    "files": """\
kind: graph
name: files
inputs: [{name: samples, type: text, max: -1, default: "data/samples/*.txt"}]
nodes:
  map: {operation: step, foreach: inputs.samples, inputs: {src: item}, params: {value: "${key}"}}
""",
    "chained": """\
kind: graph
name: chained
inputs: [{name: samples, type: text, max: -1, default: "data/samples/*.txt"}]
nodes:
  map: {operation: step, foreach: inputs.samples, inputs: {src: item}}
  sort: {operation: step, foreach: map, inputs: {src: item.out}, params: {value: "${key}"}}
  all: {operation: gather, inputs: {parts: "sort[*].out"}}
""",
    "matrix": f"""\
kind: graph
name: matrix
params: [{{name: seeds, type: list_int, default: {list(range(N // 100))}}}]
nodes:
  train: {{operation: step, foreach: {{model: {[f"m{i}" for i in range(100)]}, seed: "${{seeds}}"}}, params: {{value: "${{model}}"}}}}
""",
}


def main() -> None:
    from plx.commands import open_project
    from plx.planner import plan

    root = temp_project()
    try:
        (root / "operations").mkdir()
        (root / "graphs").mkdir()
        (root / "operations/step.yaml").write_text(STEP)
        (root / "operations/gather.yaml").write_text(GATHER)
        samples = root / "data/samples"
        samples.mkdir(parents=True)
        for i in range(N):
            (samples / f"s{i:05d}.txt").write_text(f"{i}\n")
        for name, text in GRAPHS.items():
            (root / f"graphs/{name}.yaml").write_text(text)
        rows = []
        for name in GRAPHS:
            best_load, best_plan, tasks = float("inf"), float("inf"), 0
            for _ in range(3):
                project, lib = open_project(root)
                t0 = time.perf_counter()
                graph = lib.runnable(root / f"graphs/{name}.yaml")
                t1 = time.perf_counter()
                p = plan(lib, graph)
                t2 = time.perf_counter()
                best_load, best_plan, tasks = min(best_load, t1 - t0), min(best_plan, t2 - t1), len(p.tasks)
            rows.append([name, tasks, best_load, best_plan])
        print_table(f"planning fan-outs of {N:,} expansions (in process, best of 3)", rows, ["graph", "tasks", "load + validate (s)", "plan (s)"])
        cmd_rows = [
            ["plx graph graphs/chained.yaml", timed([PLX, "graph", "graphs/chained.yaml"], root, repeat=3)],
            ["plx run graphs/chained.yaml --dry-run", timed([PLX, "run", "graphs/chained.yaml", "--dry-run"], root, repeat=3)],
        ]
        print_table("the same as a user runs it (median of 3, whole command)", cmd_rows, ["command", "seconds"])
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
