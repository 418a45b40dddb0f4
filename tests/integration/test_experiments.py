"""Overrides, graph params, sub-graphs, sweeps and the Python API."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import Project, counting_op

ECHO = """\
kind: operation
name: echo_params
runner: python
params:
  - {name: s, type: str, default: "x"}
  - {name: i, type: int, default: 1}
  - {name: f, type: float, default: 0.5}
  - {name: b, type: bool, default: false}
  - {name: e, type: enum, values: [red, green], default: red}
  - {name: ls, type: list_str, default: []}
  - {name: li, type: list_int, default: []}
  - {name: lf, type: list_float, default: []}
  - {name: d, type: dict, default: {}}
  - {name: c, type: code, default: ""}
outputs: [{name: out, type: json}]
cmd: |
  import json
  json.dump(param, open(output["out"], "w"))
"""


def setup(project: Project) -> str:
    project.write("operations/echo_params.yaml", ECHO)
    project.write(
        "graphs/g.yaml",
        """\
        kind: graph
        name: g
        params: [{name: level, type: int, default: 3}]
        nodes:
          n: {operation: echo_params, params: {i: "${level}"}}
        outputs: {out: n.out}
        """,
    )
    return "graphs/g.yaml"


def test_overrides_of_every_type(project: Project) -> None:
    g = setup(project)
    r = project.plx(
        "run",
        g,
        "-p",
        "n.s=0123",
        "-p",
        "n.f=1e-3",
        "-p",
        "n.b=yes",
        "-p",
        "n.e=green",
        "-p",
        "n.ls=a,b",
        "-p",
        "n.li=[1, 2]",
        "-p",
        "n.lf=0.5,2",
        "-p",
        'n.d={"k": [1]}',
        "-p",
        "n.c=print(1)\nprint(2)",
        "-p",
        "level=7",
        "--json",
    )
    assert r.code == 0, r
    got = json.loads(project.plx("get", "last", "out", "-o", "-").out)
    assert got == {"s": "0123", "i": 7, "f": 0.001, "b": True, "e": "green", "ls": ["a", "b"], "li": [1, 2], "lf": [0.5, 2.0], "d": {"k": [1]}, "c": "print(1)\nprint(2)"}
    assert r.json()["overrides"]["level"] == 7 and r.json()["overrides"]["n.b"] is True
    # A node param given directly wins over its graph-param binding.
    project.plx("run", g, "-p", "n.i=11")
    assert json.loads(project.plx("get", "last", "out", "-o", "-").out)["i"] == 11


@pytest.mark.parametrize(
    "arg,message",
    [
        ("n.i=1.5", "bad value '1.5' for int param 'i'"),
        ("n.b=maybe", "bad value 'maybe' for bool param 'b'"),
        ("n.e=blue", "must be one of red, green"),
        ("n.d=[1]", "bad value '[1]' for dict param 'd'"),
        ("n.nope=1", "node 'n' has no param 'nope'"),
        ("m.i=1", "there is no node 'm'; nodes: n"),
        ("levl=1", "has no param 'levl' (did you mean 'level'?)"),
        ("n.i", "write NAME=VALUE"),
        ("n.s=a\udcffb", "byte 0xff at position 5 is not UTF-8 text"),
    ],
)
def test_bad_overrides_run_nothing(project: Project, arg: str, message: str) -> None:
    g = setup(project)
    r = project.plx("run", g, "-p", arg)
    assert r.code in (1, 2) and message in r.err, r
    assert "Traceback" not in r.err
    assert project.plx("log", "--json").json() == []


def test_sweep_shares_upstream_and_records_each_combination(project: Project) -> None:
    project.write("operations/step.yaml", counting_op(project.root))
    project.write(
        "graphs/s.yaml",
        """\
        kind: graph
        name: s
        params: [{name: v, type: str, default: a}]
        nodes:
          up: {operation: step, params: {tag: up}}
          down: {operation: step, inputs: {src: up.out}, params: {tag: down, value: "${v}"}}
          score: {operation: score, inputs: {src: down.out}}
        outputs: {m: score.m}
        """,
    )
    project.write(
        "operations/score.yaml",
        """\
        kind: operation
        name: score
        runner: python
        inputs: [{name: src, type: text}]
        outputs: [{name: m, type: json}]
        cmd: |
          import json
          json.dump({"len": len(open(input["src"]).read())}, open(output["m"], "w"))
        """,
    )
    r = project.plx("run", "graphs/s.yaml", "--sweep", "v=a,bb,ccc", "--sweep", 'up.value=["p", "q,r"]', "-j", "4", "--json")
    assert r.code == 0, r
    runs = r.json()
    assert len(runs) == 6
    assert project.counter("up") == 2  # one per distinct up.value, shared by the three v's
    assert project.counter("down") == 6
    assert sorted(json.dumps(x["overrides"], sort_keys=True) for x in runs)[0] == '{"up.value": "p", "v": "a"}'
    assert len(project.plx("log", "--json").json()) == 6
    table = project.plx("run", "graphs/s.yaml", "--sweep", "v=a,bb", "-p", "up.value=p").out
    assert "m.len" in table and "v=a" in table and "v=bb" in table
    assert project.counter("down") == 6 and project.counter("up") == 2  # all cached now
    bad = project.plx("run", "graphs/s.yaml", "--sweep", "w=1,2")
    assert bad.code == 1 and "has no param 'w'" in bad.err


def test_subgraphs_nest_and_share_the_cache(project: Project) -> None:
    project.write("operations/step.yaml", counting_op(project.root))
    project.write(
        "graphs/inner.yaml",
        """\
        kind: graph
        name: inner
        inputs: [{name: src, type: text, min: 0}]
        params: [{name: word, type: str, default: w}]
        nodes:
          a: {operation: step, inputs: {src: inputs.src}, params: {tag: a, value: "${word}"}}
        outputs: {out: a.out}
        """,
    )
    project.write(
        "graphs/middle.yaml",
        """\
        kind: graph
        name: middle
        nodes:
          first: {operation: graphs/inner.yaml, params: {word: one}}
          second: {operation: graphs/inner.yaml, inputs: {src: first.out}, params: {word: two}}
        outputs: {out: second.out}
        """,
    )
    project.write(
        "graphs/outer.yaml",
        """\
        kind: graph
        name: outer
        nodes:
          m: {operation: graphs/middle.yaml}
          last: {operation: step, inputs: {src: m.out}, params: {tag: last}}
        outputs: {final: last.out}
        """,
    )
    r = project.plx("run", "graphs/outer.yaml", "--json")
    assert r.code == 0, r
    assert set(r.json()["nodes"]) == {"m/first/a", "m/second/a", "last"}
    assert project.plx("get", "last", "final", "-o", "-").out == "one\ntwo\nx\n"
    assert project.counter("a") == 2
    # The same work outside any sub-graph is a cache hit: keys do not depend on nesting.
    r = project.plx("run", "graphs/inner.yaml", "-p", "word=one", "--json")
    assert r.json()["nodes"]["a"]["state"] == "cached"
    r = project.plx("run", "graphs/outer.yaml", "-p", "m/second.word=deux", "--json")
    assert r.code == 0, r
    assert r.json()["nodes"]["m/first/a"]["state"] == "cached" and r.json()["nodes"]["m/second/a"]["state"] == "success"
    worker = project.plx("log", "last", "m/second/a", "--worker").out
    assert "node m/second/a: operation step" in worker and "m/first/a" not in worker
    assert "m/second/a" in project.plx("graph", "graphs/outer.yaml").out
    assert list((project.root / ".plx" / "tmp").iterdir()) == []  # nested work folders are all removed


def test_python_api_round_trip_and_run(project: Project) -> None:
    project.write("operations/step.yaml", counting_op(project.root))
    project.write("data/seed.txt", "seed\n")
    script = textwrap.dedent("""\
        import json
        import sys
        import plx
        from plx import Graph, Operation, run

        step = Operation.load("operations/step.yaml")
        g = Graph("api", description="built in Python")
        seed = g.input("seed", type="text", default="data/seed.txt")
        word = g.param("word", type="str", default="hello")
        a = g.node("a", step, inputs={"src": seed}, params={"tag": "a", "value": word})
        for i in range(2):
            g.node(f"b{i}", step, inputs={"src": a.out}, params={"tag": "b", "value": str(i)})
        g.output("final", "b1.out")
        path = g.save("graphs/api.yaml")
        again = plx.load(path)
        assert again == g, (again.to_dict(), g.to_dict())
        sys.setswitchinterval(0.003)  # the program's own: plx shortens it for a run (engine.run_all), then gives it back
        r = run(g, jobs=2, params={"word": "bye"})
        assert sys.getswitchinterval() == 0.003, sys.getswitchinterval()
        print(json.dumps({"id": r.id, "status": r.status, "nodes": r.nodes, "final": open(r.outputs["final"]).read()}))
        """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=project.root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "success" and out["final"] == "seed\nbye\n1\n"
    assert out["nodes"] == {"a": "success", "b0": "success", "b1": "success"}
    saved = (project.root / "graphs/api.yaml").read_text()
    assert "operation: step" in saved and "value: ${word}" in saved
    assert project.plx("validate", "graphs/api.yaml").code == 0
    assert project.plx("log", out["id"], "--json").json()["status"] == "success"


def test_python_api_records_each_runs_own_git_facts(project: Project) -> None:
    """Two runs in one Python process, across an edit and a commit: each records the commit and
    dirty flag of its own moment (git facts are read per run, never cached across runs)."""
    project.write("operations/step.yaml", counting_op(project.root))
    project.write(
        "graphs/g.yaml",
        """\
        kind: graph
        name: g
        params:
          - {name: value, type: str, default: x}
        nodes:
          a:
            operation: step
            params: {tag: a, value: "${value}"}
        """,
    )
    project.git("add", "-A")
    project.git("commit", "-qm", "first")
    first = project.git("rev-parse", "HEAD").strip()
    script = textwrap.dedent("""\
        import json, subprocess
        from plx import run

        def facts(value):
            r = run("graphs/g.yaml", params={"value": value})
            return r.record["git"]

        out = [facts("one")]
        open("notes.txt", "w").write("tracked and edited")
        subprocess.run(["git", "add", "notes.txt"], check=True)
        out.append(facts("two"))
        subprocess.run(["git", "commit", "-qm", "second"], check=True)
        out.append(facts("three"))
        print(json.dumps(out))
        """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=project.root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    one, two, three = json.loads(proc.stdout)
    second = project.git("rev-parse", "HEAD").strip()
    assert second != first
    assert (one["commit"], one["dirty"]) == (first, False)
    assert (two["commit"], two["dirty"]) == (first, True)
    assert (three["commit"], three["dirty"]) == (second, False)
