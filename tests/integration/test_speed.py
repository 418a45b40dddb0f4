"""Issue 16: plain progress scales with the graph (routine state changes summarized), and the bench scripts stay loadable."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

from plx.report import PlainReporter
from tests.conftest import Project

ROOT = Path(__file__).resolve().parents[2]


def _counts(err: str, state: str) -> tuple[int, int]:
    """(lines about `state`, nodes those lines stand for)."""
    lines = [line for line in err.splitlines() if re.match(rf"\[ *[\d.]+s\] {state} ", line)]
    nodes = 0
    for line in lines:
        m = re.search(rf"{state} +(\d+) nodes \(", line)
        nodes += int(m.group(1)) if m else 1
    return len(lines), nodes


def test_plain_progress_summarizes_routine_nodes_and_names_failures(project: Project) -> None:
    n = 1001  # a large run (over PlainReporter.LARGE nodes): routine changes are summarized every 10 s
    project.write(
        "operations/e.yaml", "kind: operation\nname: e\nrunner: command\nparams: [{name: i, type: int}]\noutputs: [{name: out}]\ncmd: echo $PARAM_I > $OUTPUT_OUT\n"
    )
    project.write("operations/bad.yaml", "kind: operation\nname: bad\nrunner: command\noutputs: [{name: out}]\ncmd: exit 3\n")
    body = "kind: graph\nname: g\nnodes:\n" + "".join(f"  n{i}: {{operation: e, params: {{i: {i}}}}}\n" for i in range(n))
    project.write("graphs/g.yaml", body)
    cold = project.plx("run", "graphs/g.yaml", "-j", "2")
    assert cold.code == 0, cold
    run_lines, ran = _counts(cold.err, "running")
    ok_lines, succeeded = _counts(cold.err, "success")
    assert ran == n and succeeded == n, cold.err  # every node is accounted for
    assert run_lines + ok_lines < 50, cold.err  # but not one line each
    noop = project.plx("run", "graphs/g.yaml", "-j", "2")
    lines, cached = _counts(noop.err, "cached")
    assert cached == n and lines <= 2, noop.err
    assert f"{n} cached" in noop.err
    project.write("graphs/g.yaml", body + "  boom: {operation: bad}\n")
    failing = project.plx("run", "graphs/g.yaml", "-j", "2")
    assert failing.code == 1
    assert re.search(r"\] failed +boom \(", failing.err), failing.err  # a failure keeps its own line
    assert _counts(failing.err, "cached")[1] == n


def test_plain_reporter_batches_keep_failures_and_slow_nodes() -> None:
    out = io.StringIO()
    r = PlainReporter(out=out)
    r.EVERY, r.BATCH = 0.0, 5  # a summary at each flush, of more than 5 nodes
    for i in range(1000):
        r.node_state(f"n{i}", "cached", {})
    r.node_state("x", "failed", {"reason": "exit code 1"})
    r.node_state("a", "running", {})
    r.node_state("b", "running", {})
    r.flush()
    text = out.getvalue()
    assert "cached   1000 nodes (n0 … n999)" in text and text.count("cached") == 1
    assert "failed   x (exit code 1)" in text and "running  a" in text and "running  b" in text  # few: named
    out.truncate(0)
    out.seek(0)
    r.SLOW = 0.0  # the nodes started within a summary that run long get their own line
    for i in range(10):
        r.node_state(f"s{i}", "running", {})
    r.flush()
    assert "running  10 nodes (s0 … s9)" in out.getvalue()
    r.flush()
    assert "running  s3 (0 s so far)" in out.getvalue()
    r.node_state("late", "success", {"duration": 7.0})
    r.flush()
    assert "success  late (7.00 s)" in out.getvalue()


def test_bench_suite_loads_and_has_help() -> None:
    r = subprocess.run([sys.executable, str(ROOT / "bench/suite.py"), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "make bench" in r.stdout, r.stderr
