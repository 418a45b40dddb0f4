"""Issue 12, item 10: the failure hint names the log that explains it, a sweep's --dry-run counts
shared work once, python tracebacks carry the YAML file's lines, `plx log RUN -f` follows a run."""

from __future__ import annotations

import json
import subprocess
import threading
import time

from tests.conftest import PLX, Project

OP = """\
kind: operation
name: c
runner: command
inputs: [{name: src, min: 0}]
params: [{name: v, type: int, default: 0}, {name: t, type: float, default: 0}]
outputs: [{name: out}]
cmd: sleep $PARAM_T; echo $PARAM_V > $OUTPUT_OUT
"""


def test_the_failure_hint_names_the_log_that_explains_it(project: Project) -> None:
    project.write("operations/c.yaml", OP)
    project.write("operations/quiet.yaml", "kind: operation\nname: quiet\nrunner: command\noutputs: [{name: out}]\ncmd: 'true'\n")
    project.write("operations/loud.yaml", "kind: operation\nname: loud\nrunner: command\noutputs: [{name: out}]\ncmd: echo broken >&2; exit 2\n")
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  q: {operation: quiet}\n  l: {operation: loud}\n")
    r = project.plx("run", "graphs/g.yaml", "--keep-going")
    assert r.code == 1
    rid = project.last_run()["id"]
    assert f"failed: q: output 'out' was not written: expected out in the working directory; see `plx log {rid} q --worker`" in r.err, r
    assert f"failed: l: exit code 2: broken; see `plx log {rid} l --stderr`" in r.err, r
    record = json.loads((project.root / ".plx" / "runs" / rid / "run.json").read_text())
    assert record["nodes"]["q"]["log"] == "worker" and record["nodes"]["l"]["log"] == "stderr"
    assert "output 'out' was not written" in project.plx("log", rid, "q", "--worker").out


def test_dry_run_of_a_sweep_counts_shared_work_once(project: Project) -> None:
    project.write("operations/c.yaml", OP)
    project.write(
        "graphs/s.yaml",
        """\
        kind: graph
        name: s
        params: [{name: lr, type: int, default: 1}]
        nodes:
          prep: {operation: c, params: {v: 5}}
          prep2: {operation: c, inputs: {src: prep.out}, params: {v: 6}}
          train: {operation: c, inputs: {src: prep2.out}, params: {v: "${lr}"}}
        """,
    )
    r = project.plx("run", "graphs/s.yaml", "--dry-run", "--sweep", "lr=1,2,3")
    assert r.code == 0, r
    assert "5 would run, 0 cached (4 more shared between combinations, run once)" in r.err, r
    rows = project.plx("run", "graphs/s.yaml", "--dry-run", "--sweep", "lr=1,2,3", "--json").json()
    assert sum(1 for row in rows if row["action"] == "run" and not row.get("shared")) == 5
    # What the run then does: shared nodes execute once.
    r = project.plx("run", "graphs/s.yaml", "--sweep", "lr=1,2,3", "--json")
    assert r.code == 0, r
    assert sum(run["counts"].get("success", 0) for run in r.json()) == 5


def test_python_tracebacks_carry_the_lines_of_the_yaml_file(project: Project) -> None:
    project.write(
        "operations/boom.yaml",
        """\
        kind: operation
        name: boom
        title: Fails two calls deep
        runner: python
        outputs: [{name: out}]
        cmd: |
          def inner(x):
              return 1 / x

          def outer():
              return inner(0)

          outer()
        """,
    )
    project.write("operations/inline.yaml", "kind: operation\nname: inline\nrunner: python\noutputs: [{name: out}]\ncmd: \"import sys; sys.exit(int('x'))\"\n")
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  b: {operation: boom}\n  i: {operation: inline}\n")
    assert project.plx("run", "graphs/g.yaml", "--keep-going").code == 1
    tb = project.plx("log", "last", "b", "--stderr").out
    assert 'File "operations/boom.yaml", line 13, in <module>' in tb, tb
    assert 'File "operations/boom.yaml", line 11, in outer' in tb and "return inner(0)" in tb, tb
    assert 'File "operations/boom.yaml", line 8, in inner' in tb and "return 1 / x" in tb, tb
    tb = project.plx("log", "last", "i", "--stderr").out
    assert 'File "operations/inline.yaml", line 5, in <module>' in tb, tb


GATED_OP = """\
kind: operation
name: gated
runner: command
inputs: [{name: src, min: 0}]
params: [{name: gate, type: str, default: ""}]
outputs: [{name: out}]
cmd: for i in $(seq 2400); do [ -z "$PARAM_GATE" ] || [ -e "$PARAM_GATE" ] && break; sleep 0.05; done; echo x > $OUTPUT_OUT
"""


def test_log_follow_without_a_node_follows_the_run(project: Project) -> None:
    # Node a waits for a file the test creates once the follower has shown it running: no timing
    # assumption, however loaded the machine (CI once started the follower after a had ended).
    gate = project.root / "gate"
    project.write("operations/gated.yaml", GATED_OP)
    nodes = f"  a: {{operation: gated, params: {{gate: '{gate}'}}}}\n  b: {{operation: gated, inputs: {{src: a.out}}}}\n"
    project.write("graphs/f.yaml", "kind: graph\nname: f\nnodes:\n" + nodes)
    run = project.popen("run", "graphs/f.yaml")
    try:
        project.wait_running(1)
        follower = subprocess.Popen([PLX, "log", "last", "-f"], cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        watchdog = threading.Timer(120, follower.kill)
        watchdog.start()
        first = follower.stdout.readline()  # type: ignore[union-attr]
        assert first.split()[1:] == ["running", "a"], first
        assert follower.poll() is None  # still following while the run goes on
        gate.write_text("go")
        # Read the rest through the same buffered stream: communicate() would read the pipe directly
        # and lose whatever readline() had already buffered.
        out = follower.stdout.read()  # type: ignore[union-attr]
        err = follower.stderr.read()  # type: ignore[union-attr]
        follower.wait(timeout=60)
        watchdog.cancel()
    finally:
        gate.write_text("go")
        run.communicate(timeout=60)
    assert follower.returncode == 0, err
    states = [line.split()[1:3] for line in out.splitlines()[:-1]]
    assert states == [["success", "a"], ["running", "b"], ["success", "b"]], out
    assert out.splitlines()[-1].endswith("success: 2 success"), out
    start = time.monotonic()
    done = project.plx("log", "last", "-f")  # a finished run: its changes, then at once the end
    assert done.code == 0 and len(done.out.splitlines()) == 5 and time.monotonic() - start < 30
