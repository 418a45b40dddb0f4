"""`resources` (cpus as slots of -j, memory, gpus) and `retries`, through the installed command."""

from __future__ import annotations

import json
import os
import subprocess
import time

from tests.conftest import PLX, Project

# Writes the times it started and ended (and its CUDA_VISIBLE_DEVICES) to its output.
SPAN = """\
kind: operation
name: span
runner: command
resources: {resources}
params: [{{name: tag, type: str}}]
outputs: [{{name: out, type: text}}]
cmd: |
  date +%s.%N > $OUTPUT_OUT
  sleep {sleep}
  date +%s.%N >> $OUTPUT_OUT
  echo "${{CUDA_VISIBLE_DEVICES-unset}}" >> $OUTPUT_OUT
"""


def spans(project: Project, resources: str, nodes: str, sleep: float = 1) -> str:
    project.write("operations/span.yaml", SPAN.format(resources=resources, sleep=sleep))
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n" + nodes)
    return "graphs/g.yaml"


def span_of(project: Project, node: str) -> tuple[float, float, str]:
    start, end, gpus = project.plx("get", "last", f"{node}.out", "-o", "-").out.split()
    return float(start), float(end), gpus


def overlap(a: tuple[float, float, str], b: tuple[float, float, str]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


TWO = "  a: {operation: span, params: {tag: a}}\n  b: {operation: span, params: {tag: b}}\n"


def test_two_nodes_of_two_cpus_take_turns_on_two_slots(project: Project) -> None:
    g = spans(project, "{cpus: 2}", TWO)
    t0 = time.monotonic()
    r = project.plx("run", g, "-j", "2")
    assert r.code == 0, r
    assert time.monotonic() - t0 >= 2  # one after the other
    assert not overlap(span_of(project, "a"), span_of(project, "b"))
    # The node overrides the operation: one slot each, so they run side by side.
    spans(
        project,
        "{cpus: 2}",
        TWO.replace("params: {tag: a}", "params: {tag: a2}, resources: {cpus: 1}").replace("params: {tag: b}", "params: {tag: b2}, resources: {cpus: 1}"),
    )
    r = project.plx("run", g, "-j", "2")
    assert r.code == 0, r
    assert overlap(span_of(project, "a"), span_of(project, "b"))


def test_a_node_of_two_cpus_lets_one_cpu_nodes_use_the_free_slot(project: Project) -> None:
    g = spans(
        project,
        "{cpus: 1}",
        "  big: {operation: span, params: {tag: big}, resources: {cpus: 2}}\n  s1: {operation: span, params: {tag: s1}}\n  s2: {operation: span, params: {tag: s2}}\n",
    )
    r = project.plx("run", g, "-j", "3")
    assert r.code == 0, r
    big, s1, s2 = (span_of(project, n) for n in ("big", "s1", "s2"))
    assert overlap(big, s1) or overlap(big, s2)  # the free slot is used next to the big node
    assert not max(big[0], s1[0], s2[0]) < min(big[1], s1[1], s2[1])  # never all three: 4 slots of 3


def test_requests_larger_than_the_slots_or_the_machine_fail_before_anything_runs(project: Project) -> None:
    g = spans(project, "{cpus: 3}", TWO)
    r = project.plx("run", g, "-j", "2", timeout=30)
    assert r.code == 1, r
    assert "node 'a' asks for 3 cpus, but -j is 2: run with -j 3 or more" in r.err and "node 'b'" in r.err
    assert "Traceback" not in r.err
    assert project.plx("log", "--json").json() == []  # nothing ran, nothing recorded

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    spans(project, f"{{memory: {total * 2}}}", TWO)
    r = project.plx("run", g, timeout=30)
    assert r.code == 1 and "node 'a' asks for" in r.err and "of memory, but this machine has" in r.err, r

    spans(project, "{gpus: 1}", TWO)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    r = project.plx("run", g, timeout=30, env={**env, "PATH": "/usr/bin:/bin"})  # no nvidia-smi: no GPU here
    assert r.code == 1, r
    assert "node 'a' asks for 1 GPU, but this machine has 0 GPUs" in r.err

    project.write("operations/span.yaml", SPAN.format(resources="{cpus: 0, memory: lots, gpu: 1}", sleep=0))
    r = project.plx("validate", "operations/span.yaml")
    errors = [line for line in r.err.splitlines() if line.startswith("plx: error:")]
    assert errors == [
        "plx: error: operations/span.yaml:4:19: 'cpus' must be at least 1, not 0",
        "plx: error: operations/span.yaml:4:30: 'memory' 'lots' is not a size such as 512MB, 4GB or 1.5GiB",
        "plx: error: operations/span.yaml:4:36: unknown key 'gpu' (did you mean 'gpus'?)",
    ], r.err


def test_memory_is_a_budget_of_the_machine(project: Project) -> None:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    g = spans(project, f"{{memory: {int(total * 0.6)}}}", TWO)
    r = project.plx("run", g, "-j", "2")
    assert r.code == 0, r
    assert not overlap(span_of(project, "a"), span_of(project, "b"))  # 60% + 60% > 100%: one at a time
    spans(project, "{memory: 1GB}" if total > 3 * 10**9 else "{memory: 1MB}", TWO.replace("tag: a", "tag: a3").replace("tag: b", "tag: b3"))
    assert project.plx("run", g, "-j", "2").code == 0
    assert overlap(span_of(project, "a"), span_of(project, "b"))


def test_gpus_are_handed_out_from_cuda_visible_devices(project: Project) -> None:
    g = spans(
        project,
        "{gpus: 1}",
        TWO + "  both: {operation: span, params: {tag: both}, resources: {gpus: 2}}\n  none: {operation: span, params: {tag: none}, resources: {gpus: 0}}\n",
    )
    r = project.plx("run", g, "-j", "4", env={"CUDA_VISIBLE_DEVICES": "3,5"})
    assert r.code == 0, r
    a, b, both, none = (span_of(project, n) for n in ("a", "b", "both", "none"))
    assert {a[2], b[2]} == {"3", "5"} or (a[2] == b[2] and a[2] in ("3", "5") and not overlap(a, b))
    assert both[2] == "3,5" and not overlap(both, a) and not overlap(both, b)
    assert none[2] == "3,5"  # a node that asks for no GPU is left as it is
    spans(project, "{gpus: 3}", TWO)
    r = project.plx("run", g, env={"CUDA_VISIBLE_DEVICES": "3,5"}, timeout=30)
    assert r.code == 1 and "asks for 3 GPUs, but this machine has 2 GPUs (3,5)" in r.err, r


# ---- retries ------------------------------------------------------------------------------------

FLAKY = """\
kind: operation
name: flaky
runner: command
retries: {retries}
timeout: {timeout}
params: [{{name: fail_first, type: int, default: 1}}]
outputs: [{{name: out, type: text}}]
cmd: |
  mkdir -p "$PLX_PROJECT_ROOT/counts"
  n=$( (cat "$PLX_PROJECT_ROOT/counts/flaky" 2>/dev/null || true) | wc -l)
  echo run >> "$PLX_PROJECT_ROOT/counts/flaky"
  echo "attempt $((n + 1)) (PLX_ATTEMPT=$PLX_ATTEMPT) says hello"
  echo bad > $OUTPUT_OUT
  if [ "$n" -lt "$PARAM_FAIL_FIRST" ]; then {fail}; fi
  echo good > $OUTPUT_OUT
"""
CONSUMER = "kind: operation\nname: consume\nrunner: command\ninputs: [{name: x, type: text}]\noutputs: [{name: y, type: text}]\ncmd: cat $INPUT_X > $OUTPUT_Y\n"


def flaky(project: Project, retries: int = 1, timeout: float = 10, fail: str = 'echo "attempt failed on purpose" >&2; exit 3', node: str = "") -> str:
    project.write("operations/flaky.yaml", FLAKY.format(retries=retries, timeout=timeout, fail=fail))
    project.write("operations/consume.yaml", CONSUMER)
    project.write("graphs/g.yaml", f"kind: graph\nname: g\nnodes:\n  f: {{operation: flaky{node}}}\n  c: {{operation: consume, inputs: {{x: f.out}}}}\n")
    return "graphs/g.yaml"


def test_a_flaky_node_succeeds_on_its_second_attempt(project: Project) -> None:
    g = flaky(project)
    r = project.plx("run", g, "--json")
    assert r.code == 0, r
    assert project.counter("flaky") == 2
    assert "running  f (attempt 2)" in r.err  # the progress says so
    nodes = r.json()["nodes"]
    assert nodes["f"]["state"] == "success" and nodes["f"]["attempts"] == 2 and nodes["c"]["attempts"] == 1
    assert project.plx("get", "last", "c.y", "-o", "-").out == "good\n"  # only the successful attempt's output

    assert project.plx("log", "last", "f").out == "attempt 2 (PLX_ATTEMPT=2) says hello\n"
    assert project.plx("log", "last", "f", "--attempt", "2").out == "attempt 2 (PLX_ATTEMPT=2) says hello\n"
    assert project.plx("log", "last", "f", "--attempt", "1").out == "attempt 1 (PLX_ATTEMPT=1) says hello\n"
    assert project.plx("log", "last", "f", "--attempt", "1", "--stderr").out == "attempt failed on purpose\n"
    r3 = project.plx("log", "last", "f", "--attempt", "3")
    assert r3.code == 1 and "ran 2 attempts" in r3.err, r3
    worker = project.plx("log", "last", "f", "--worker").out
    assert "attempt 1 of 2 failed: trying again" in worker and "attempt 2 of 2" in worker

    table = project.plx("log", "last").out
    assert "attempts" in table.splitlines()[1]
    f_row = next(line for line in table.splitlines() if line.split()[:1] == ["f"])
    assert f_row.split()[:2] == ["f", "success"] and "2" in f_row.split()

    record = project.plx("log", "last", "--json").json()
    assert record["nodes"]["f"]["attempts"] == 2
    raw = next((project.root / ".plx/runs").glob("*/run.json")).read_text()
    assert '"exit_code": 3' in raw and "attempt failed on purpose" in raw  # the failed attempt's exit code and reason

    r = project.plx("run", g, "--json")  # the successful attempt is in the cache
    assert r.json()["nodes"]["f"]["state"] == "cached" and r.json()["nodes"]["f"]["attempts"] == 0
    assert project.counter("flaky") == 2


def test_retries_run_out_and_a_node_can_turn_them_off(project: Project) -> None:
    g = flaky(project, retries=2, node=", params: {fail_first: 5}")
    r = project.plx("run", g, "--json")
    assert r.code == 1, r
    f = r.json()["nodes"]["f"]
    assert f["state"] == "failed" and f["attempts"] == 3 and f["exit_code"] == 3
    assert r.json()["nodes"]["c"]["state"] == "skipped"
    assert project.counter("flaky") == 3
    assert project.plx("log", "last", "f", "--attempt", "2").out.startswith("attempt 2 ")

    flaky(project, retries=2, node=", params: {fail_first: 5}, retries: 0")
    r = project.plx("run", g, "--json")
    assert r.code == 1, r
    assert r.json()["nodes"]["f"]["attempts"] == 1
    assert project.counter("flaky") == 4


def test_a_timed_out_attempt_is_retried(project: Project) -> None:
    g = flaky(project, timeout=0.02, fail="sleep 30")
    t0 = time.monotonic()
    r = project.plx("run", g, "--json")
    assert r.code == 0, r
    assert time.monotonic() - t0 < 25  # the first attempt was killed at its timeout, not waited for
    assert r.json()["nodes"]["f"]["attempts"] == 2
    raw = next((project.root / ".plx/runs").glob("*/run.json")).read_text()
    assert '"state": "timeout"' in raw
    assert project.plx("get", "last", "c.y", "-o", "-").out == "good\n"


def test_schema_lists_the_new_keys(project: Project) -> None:
    op = project.plx("schema", "operation").json()
    assert {"sources", "resources", "retries"} <= set(op["properties"])
    assert set(op["properties"]["resources"]["properties"]) == {"cpus", "memory", "gpus"}
    node = project.plx("schema", "graph").json()["properties"]["nodes"]["patternProperties"]
    assert {"resources", "retries"} <= set(next(iter(node.values()))["properties"])


def test_python_api_nodes_take_resources_and_retries(project: Project) -> None:
    import subprocess
    import sys
    import textwrap

    flaky(project, retries=0)
    script = textwrap.dedent("""\
        import plx
        from plx import Graph, Operation, run

        g = Graph("api")
        f = g.node("f", Operation.load("operations/flaky.yaml"), resources={"cpus": 2, "memory": "1MB"}, retries=1)
        path = g.save("graphs/api.yaml")
        assert plx.load(path) == g
        r = run(g, jobs=2)
        print(r.status)
        """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=project.root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "success\n"
    saved = (project.root / "graphs/api.yaml").read_text()
    assert "resources:" in saved and "cpus: 2" in saved and "retries: 1" in saved
    assert project.counter("flaky") == 2  # the node's retries: 1 overrode the operation's 0


def test_following_a_retried_node_shows_every_attempt(project: Project) -> None:
    gate = project.root / "go"  # attempt 1 fails only once the follower has shown its line
    g = flaky(project, fail=f'for i in $(seq 2400); do [ -e {gate} ] && break; sleep 0.05; done; echo "attempt failed on purpose" >&2; exit 3')
    run = project.popen("run", g)
    try:
        project.wait_started()
        follower = subprocess.Popen([PLX, "log", "last", "f", "-f"], cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = follower.stdout.readline()  # type: ignore[union-attr]
        gate.touch()
        out = first + follower.stdout.read()  # type: ignore[union-attr]  # one buffer: communicate() would lose what readline() read ahead
        err = follower.stderr.read()  # type: ignore[union-attr]
        follower.wait(timeout=60)
    finally:
        gate.touch()
        run.communicate(timeout=60)
    assert run.returncode == 0
    assert out == "attempt 1 (PLX_ATTEMPT=1) says hello\nattempt 2 (PLX_ATTEMPT=2) says hello\n", (out, err)
    assert "--- attempt 2 ---" in err


def test_resources_and_retries_belong_to_operation_nodes(project: Project) -> None:
    flaky(project)
    project.write("graphs/sub.yaml", "kind: graph\nname: sub\nnodes:\n  f: {operation: flaky}\n")
    project.write("graphs/top.yaml", "kind: graph\nname: top\nnodes:\n  s: {operation: graphs/sub.yaml, retries: 2, resources: {cpus: 2}}\n")
    r = project.plx("validate", "graphs/top.yaml")
    assert r.code == 1, r
    assert "graphs/top.yaml:4:35: node 's' runs the graph 'graphs/sub.yaml': 'retries' applies to operation nodes (set it on the nodes of graphs/sub.yaml)" in r.err
    assert "graphs/top.yaml:4:47: node 's' runs the graph 'graphs/sub.yaml': 'resources' applies to operation nodes" in r.err


def test_expansions_of_a_fanned_out_node_take_its_resources_and_retries(project: Project) -> None:
    g = spans(project, "{cpus: 1}", "  m:\n    operation: span\n    foreach: [a, b]\n    params: {tag: '${item}'}\n    resources: {cpus: 2}\n")
    r = project.plx("run", g, "-j", "2", "--json")
    assert r.code == 0, r
    assert list(r.json()["nodes"]) == ["m[0]", "m[1]"]
    assert not overlap(span_of(project, "m[0]"), span_of(project, "m[1]"))

    flaky(project, retries=0)
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  f:\n    operation: flaky\n    foreach: [0, 2]\n    params: {fail_first: '${item}'}\n    retries: 1\n")
    r = project.plx("run", g, "-j", "1", "--json")
    assert r.code == 0, r
    assert {n: d["attempts"] for n, d in r.json()["nodes"].items()} == {"f[0]": 1, "f[1]": 2}
    assert "(PLX_ATTEMPT=1)" in project.plx("log", "last", "f[1]", "--attempt", "1").out


def test_a_retried_node_whose_inputs_cannot_be_placed_fails_with_its_reason(project: Project) -> None:
    """Found by review: a failed placement removed the node's input folder, and retiring the attempt
    renamed the folder that was gone: a Python traceback and a run left `running`."""
    go = project.root / "go"
    project.write("data/d.txt", "one\n")
    project.write(
        "operations/gate.yaml",
        f"kind: operation\nname: gate\nrunner: command\noutputs: [{{name: out}}]\ncmd: for i in $(seq 2400); do [ -e {go} ] && break; sleep 0.05; done; echo s > $OUTPUT_OUT\n",
    )
    project.write(
        "operations/both.yaml",
        "kind: operation\nname: both\nrunner: command\ninputs: [{name: a}, {name: d}]\noutputs: [{name: out}]\nretries: 1\ncmd: cat $INPUT_A $INPUT_D > $OUTPUT_OUT\n",
    )
    project.write(
        "graphs/g.yaml",
        "kind: graph\nname: g\ninputs: [{name: d, type: text, default: data/d.txt}]\nnodes:\n  s: {operation: gate}\n  t: {operation: both, inputs: {a: s.out, d: inputs.d}}\n",
    )
    run = project.popen("run", "graphs/g.yaml", "--json")
    try:
        project.wait_started()
        project.write("data/d.txt", "two\n")  # after it was hashed, before t's inputs are placed
    finally:
        go.touch()
    out, err = run.communicate(timeout=60)
    assert run.returncode == 1, err
    assert "Traceback" not in err, err
    t = json.loads(out)["nodes"]["t"]
    assert t["state"] == "failed" and "data/d.txt changed after the run started" in t["reason"], t
