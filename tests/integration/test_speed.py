"""Issue 16: plain progress scales with the graph (routine state changes summarized), and the bench scripts stay loadable."""

from __future__ import annotations

import io
import re
import shutil
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


def test_bench_suite_refuses_a_workload_or_tool_it_does_not_know(tmp_path: Path) -> None:
    """A typo ran nothing and wrote an empty table over the output (--only), or ended in a traceback."""
    out = tmp_path / "b.md"
    for args, says in ((["--only", "wdie"], "--only: wdie"), (["--tools", "make,mkae"], "--tools: mkae"), (["--repeat", "0"], "at least 1")):
        r = subprocess.run([sys.executable, str(ROOT / "bench/suite.py"), *args, "--out", str(out)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()


def test_bench_hop_latency_measures_both_tools_on_the_same_stamped_chain(tmp_path: Path) -> None:
    """The chain's hop latency (bench/suite.py hop_latency): both tools run the stamped steps, each
    gap is a step's last stamp to the next one's first, and the figures are real positive times."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import suite  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ROOT / "bench"))
    got = suite.hop_latency(4, 1, tmp_path)
    assert set(got) == {"make-bash", "plx"}
    for median, mean in got.values():
        assert 0 < median < 1000 and 0 < mean < 1000, got
    # Its projects stay until the suite ends (suite.py, KEPT): the template and one per tool and run.
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == ["make", "plx", "stamped"]


def test_large_graph_parse_cache_follows_the_bytes(project: Project) -> None:
    """A large YAML file's parsed form is kept under <store>/parsed/; it is used only for the same bytes."""
    import os

    project.write(
        "operations/e.yaml", "kind: operation\nname: e\nrunner: command\nparams: [{name: i, type: int}]\noutputs: [{name: out}]\ncmd: echo $PARAM_I > $OUTPUT_OUT\n"
    )
    nodes = "".join(f"  n{i:05d}: {{operation: e, params: {{i: {i}}}}}\n" for i in range(3000))  # > 64 KB
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n" + nodes)
    first = project.plx("validate", "graphs/g.yaml")
    assert first.code == 0, first
    from plx.parsecache import _entry

    entry = _entry(project.root / ".plx/parsed", (project.root / "graphs/g.yaml").resolve())
    assert entry.is_file() and len(list((project.root / ".plx/parsed").iterdir())) == 2  # the graph and its operation
    assert project.plx("validate", "graphs/g.yaml").code == 0
    # the same size and mtime, one byte different: an error on the right line, not the cached graph
    path = project.root / "graphs/g.yaml"
    st = path.stat()
    text = path.read_text().replace("n02999: {operation: e", "n02999: {operation: f", 1)
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    bad = project.plx("validate", "graphs/g.yaml")
    assert bad.code == 1 and "g.yaml:3003:23:" in bad.err and "'f'" in bad.err, bad
    again = project.plx("validate", "graphs/g.yaml")  # from the parsed cache now: the same position
    assert again.code == 1 and again.err == bad.err, again
    # a damaged cache entry is a miss, and is rewritten
    entry.write_text('{"format": "plx-parsed-2", "hash": ')
    path.write_text(text.replace("operation: f", "operation: e"))
    assert project.plx("validate", "graphs/g.yaml").code == 0
    assert len(list((project.root / ".plx/parsed").iterdir())) == 2 and entry.read_text().startswith('{"format"')
    r = project.plx("run", "graphs/g.yaml", "--dry-run")
    assert r.code == 0 and r.out.count("\n") == 3002, r.out[-500:]  # header, rule, 3,000 rows (the fast table)


def test_large_file_read_without_positions_still_places_every_message(project: Project) -> None:
    """A file of 64 KB or more is parsed without positions; a message finds them by a second parse:
    a duplicate key names both lines, a schema error inside an anyOf its own line and column."""
    project.write(
        "operations/e.yaml", "kind: operation\nname: e\nrunner: command\nparams: [{name: i, type: int}]\noutputs: [{name: out}]\ncmd: echo $PARAM_I > $OUTPUT_OUT\n"
    )
    nodes = "".join(f"  n{i:05d}: {{operation: e, params: {{i: {i}}}}}\n" for i in range(3000))  # > 64 KB
    path = project.root / "graphs/g.yaml"
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n" + nodes + "  n00007: {operation: e, params: {i: 1}}\n")
    dup = project.plx("validate", "graphs/g.yaml")
    assert dup.code == 1 and "g.yaml:3004:3: duplicate key 'n00007' (first defined on line 11)" in dup.err, dup
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n" + nodes + "  late: {operation: e, params: {i: 1}, retries: [1]}\n")
    for _ in range(2):  # parsed, then read back from the parsed-graph cache
        bad = project.plx("validate", "graphs/g.yaml")
        assert bad.code == 1 and re.search(r"g\.yaml:3004:\d+: .*retries", bad.err), bad
    assert path.read_text().endswith("retries: [1]}\n")


def test_fast_table_matches_tabulate() -> None:
    import random
    import string

    from tabulate import tabulate

    from plx.report import _plain_table

    rnd = random.Random(7)
    for _ in range(300):
        ncol = rnd.randint(1, 6)
        headers = ["".join(rnd.choice(string.ascii_letters + " ") for _ in range(rnd.randint(0, 8))) for _ in range(ncol)]
        cell = lambda: rnd.choice([None, "", " x ", "".join(rnd.choice(string.printable[:94] + " ") for _ in range(rnd.randint(0, 20)))])  # noqa: E731
        rows = [[cell() for _ in range(ncol)] for _ in range(rnd.randint(0, 30))]
        assert _plain_table(rows, headers) == tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)
    assert _plain_table([["é"]], ["h"]) is None and _plain_table([[1]], ["h"]) is None and _plain_table([["a\nb"]], ["h"]) is None


def test_files_read_back_from_the_parse_cache_need_no_yaml_parser_and_keep_their_positions(project: Project) -> None:
    """Small files are kept parsed too: a run that finds all of them there does not import PyYAML
    (~9 ms of its start); a message about an unchanged file still names its line and column."""
    project.write(
        "operations/e.yaml", "kind: operation\nname: e\nrunner: command\nparams: [{name: i, type: int}]\noutputs: [{name: out}]\ncmd: echo $PARAM_I > $OUTPUT_OUT\n"
    )
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  a: {operation: e, params: {i: 1}}\n  b: {operation: e, params: {i: 2}}\n")
    assert project.plx("run", "graphs/g.yaml").code == 0
    env = {"PYTHONPROFILEIMPORTTIME": "1"}  # the interpreter lists every import on stderr
    again = project.plx("run", "graphs/g.yaml", env=env)
    assert again.code == 0 and "| plx.engine" in again.err, again.err[-2000:]
    assert not [ln for ln in again.err.splitlines() if ln.rstrip().endswith("| yaml")], "PyYAML was imported"
    # The operation changes (a miss for its file); the graph's file is read back, without positions:
    # its message finds them by parsing it again.
    project.write("operations/e.yaml", "kind: operation\nname: e\nrunner: command\noutputs: [{name: out}]\ncmd: echo > $OUTPUT_OUT\n")
    bad = project.plx("validate", "graphs/g.yaml")
    assert bad.code == 1 and "g.yaml:4:30: node 'a'" in bad.err and "g.yaml:5:30: node 'b'" in bad.err, bad.err


def test_a_run_imports_none_of_what_it_does_without(project: Project) -> None:
    """plx's record classes are built by plx/structs.py: importing dataclasses (and inspect, ast, dis,
    tokenize with it) and building the classes with it took ~16 ms of every command. Annotations
    need no `typing` at run time (2.6 ms), and the PATH search no `shutil` (~2 ms with the zlib,
    bz2 and lzma it imports; plx.deferred): not for a direct start, a bash one, a warm shell's, nor
    for an input placed in a node (as a link, or as a copy)."""
    project.write("operations/e.yaml", "kind: operation\nname: e\nrunner: command\noutputs: [{name: out}]\ncmd: echo hi > $OUTPUT_OUT\n")
    project.write(
        "operations/then.yaml",
        "kind: operation\nname: then\nrunner: command\ninputs: [{name: src}]\noutputs: [{name: out}]\n"
        'cmd: cat "$INPUT_SRC" > "$OUTPUT_OUT" && echo more >> "$OUTPUT_OUT"\n',
    )
    project.write(  # one command: started without bash, its program found by plx (deferred.find_program)
        "operations/up.yaml",
        "kind: operation\nname: up\nrunner: command\ninputs: [{name: src}]\noutputs: [{name: out}]\n"
        'cmd: tr a-z A-Z < "$INPUT_SRC" > "$OUTPUT_OUT"\n',
    )
    nodes = "  a: {operation: e}\n  b: {operation: then, inputs: {src: a.out}}\n  c: {operation: then, inputs: {src: b.out}}\n"
    nodes += "  d: {operation: up, inputs: {src: c.out}}\n"
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n" + nodes)
    for links in ("1", "0"):  # a stored input reaches a node as a read-only link, or as a copy
        imported = _imports_of_a_cold_run(project, links)
        unwanted = {"dataclasses", "inspect", "typing", "shutil", "bz2", "lzma"}
        assert "plx.structs" in imported and not imported & unwanted, (links, sorted(imported & unwanted))
    assert project.plx("get", "last", "d.out", "-o", "d.txt").code == 0 and (project.root / "d.txt").read_text() == "HI\nMORE\nMORE\n"


def _imports_of_a_cold_run(project: Project, links: str) -> set[str]:
    """The modules a run imports, not counting site's; each run cold (the store removed first)."""
    shutil.rmtree(project.root / ".plx", ignore_errors=True)
    run = project.plx("run", "graphs/g.yaml", env={"PYTHONPROFILEIMPORTTIME": "1", "PLX_LINK_INPUTS": links})
    assert run.code == 0 and "| plx.engine" in run.err, run.err[-2000:]
    # The interpreter prints each import after those it caused, indented one level deeper. What `site`
    # imports is not plx's: under CI's coverage, its start-up hook (a .pth file) imports both.
    imported, pending = set(), []
    for ln in run.err.splitlines():
        if ln.startswith("import time:") and not ln.endswith("| imported package"):
            name = ln.rsplit("|", 1)[1]
            pending.append(name.strip())
            if not name.startswith("  "):  # a top-level import: what came since was its doing
                if name.strip() != "site":
                    imported.update(pending)
                pending = []
    return imported
