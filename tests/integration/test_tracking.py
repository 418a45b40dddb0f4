"""Experiment tracking: labels, metrics in records and the index, `plx log` filters, JSON, tag/note."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

from tests.conftest import PLX, Project

OP = """\
kind: operation
name: fit
runner: python
params:
  - {name: lr, type: float, default: 0.1}
  - {name: depth, type: int, default: 3}
  - {name: extra, type: str, default: "{}"}
outputs: [{name: m, type: json}]
cmd: |
  import json
  acc = round(1 - abs(param["lr"] - 0.3), 3)
  out = {"accuracy": acc, "loss": {"test": round(1 - acc, 3), "train": 0.5}, "ok": True, "name": "x", "per": [1, 2]}
  out.update(json.loads(param["extra"]))
  open(output["m"], "w").write(json.dumps(out))
"""
GRAPH = """\
kind: graph
name: fitting
params:
  - {name: lr, type: float, default: 0.1}
  - {name: extra, type: str, default: "{}"}
nodes:
  fit: {operation: fit, params: {lr: "${lr}", extra: "${extra}"}}
outputs: {m: fit.m}
"""


def setup(project: Project) -> str:
    project.write("operations/fit.yaml", OP)
    project.write("graphs/fit.yaml", GRAPH)
    project.git("add", "-A")
    project.git("commit", "-qm", "first")
    return "graphs/fit.yaml"


def test_labels_metrics_params_and_json(project: Project) -> None:
    g = setup(project)
    r = project.plx("run", g, "--name", "base", "--tag", "baseline", "--tag", "v1", "--note", "first try", "-p", "fit.depth=5", "--json")
    assert r.code == 0, r
    run = r.json()
    assert (run["name"], run["tags"], run["note"]) == ("base", ["baseline", "v1"], "first try")
    # every graph param as used (defaults included) and the node params given with -p
    assert run["params"] == {"lr": 0.1, "extra": "{}", "fit.depth": 5}
    assert run["overrides"] == {"fit.depth": 5}
    # numeric leaves only (no bools, no strings), keyed by the graph output's name first
    assert run["metrics"] == {"m.accuracy": 0.8, "m.loss.test": 0.2, "m.loss.train": 0.5, "m.per.0": 1, "m.per.1": 2}
    assert run["outputs"] == {"m": {"node": "fit", "output": "m", "hash": run["nodes"]["fit"]["outputs"]["m"]["hash"], "type": "json"}}
    listed = project.plx("log", "--json").json()[0]
    assert {k: listed[k] for k in ("name", "tags", "note", "params", "metrics")} == {k: run[k] for k in ("name", "tags", "note", "params", "metrics")}
    assert "overrides" not in listed and "outputs" not in listed
    assert project.plx("log", "last", "--json").json()["overrides"] == {"fit.depth": 5}
    shown = project.plx("log", "last").out
    assert "name: base" in shown and "tags: baseline, v1" in shown and "note: first try" in shown and "m.accuracy=0.8" in shown
    table = project.plx("log").out
    assert "base" in table and "baseline,v1" in table
    # the record keeps them too
    record = json.loads((project.root / ".plx/runs" / run["id"] / "run.json").read_text())
    assert record["metrics"]["m.accuracy"] == 0.8 and record["tags"] == ["baseline", "v1"]


def test_non_finite_numbers_are_not_metrics(project: Project) -> None:
    g = setup(project)
    r = project.plx("run", g, "-p", 'extra={"nan": NaN, "inf": Infinity, "fine": 1.5, "null": null}', "--json")
    assert r.code == 0, r
    m = r.json()["metrics"]
    assert m["m.fine"] == 1.5 and not {"m.nan", "m.inf", "m.null"} & set(m)


def test_a_sweep_shares_labels_and_tags_each_combination(project: Project) -> None:
    g = setup(project)
    r = project.plx("run", g, "--sweep", "lr=0.1,0.3,0.5", "--tag", "s1", "--name", "sweep", "--json")
    assert r.code == 0, r
    runs = r.json()
    assert [x["tags"] for x in runs] == [["s1", "lr=0.1"], ["s1", "lr=0.3"], ["s1", "lr=0.5"]]
    assert {x["name"] for x in runs} == {"sweep"}
    assert [x["params"]["lr"] for x in runs] == [0.1, 0.3, 0.5]


def test_log_filters_sort_and_columns(project: Project) -> None:
    g = setup(project)
    assert project.plx("run", g, "--sweep", "lr=0.1,0.2,0.3,0.5", "--tag", "grid").code == 0
    assert project.plx("run", g, "-p", "lr=0.9", "--name", "wild", "--tag", "base-line").code == 0

    def ids(*args: str) -> list[float]:
        r = project.plx("log", *args, "--json")
        assert r.code == 0, r
        return [x["params"]["lr"] for x in r.json()]

    assert ids("--where", "metrics.m.accuracy>0.85") == [0.3, 0.2]
    assert ids("--where", "metrics.m.accuracy>=0.8", "--sort", "-metrics.m.accuracy") == [0.3, 0.2, 0.5, 0.1]  # ties keep newest first
    assert ids("--sort", "metrics.m.accuracy", "-n", "2") == [0.9, 0.5]
    assert ids("--where", "params.lr=0.5") == [0.5]
    assert ids("--where", "params.lr!=0.5", "--tag", "grid") == [0.3, 0.2, 0.1]
    assert ids("--where", "tags~base") == [0.9]
    assert ids("--where", "tags=grid", "--where", "metrics.m.loss.test<0.15") == [0.3, 0.2]
    assert ids("--name", "wild") == [0.9]
    assert ids("--tag", "lr=0.2") == [0.2]
    assert ids("--where", "metrics.nope>1") == []
    assert ids("--where", "name~wil") == [0.9]
    out = project.plx("log", "--sort", "-params.lr", "--columns", "params.lr,metrics.m.accuracy").out
    lines = out.splitlines()
    assert lines[0].split()[-2:] == ["params.lr", "metrics.m.accuracy"], out
    assert lines[2].split()[-2:] == ["0.9", "0.4"], out
    for bad in ("metrics.m.accuracy>>1", "accuracy>1", "metrics.m.accuracy", "params.lr<", "=3", "metrics.>1"):
        r = project.plx("log", "--where", bad)
        assert r.code == 2, (bad, r)
        assert "FIELD OP VALUE" in r.err and "Traceback" not in r.err, r
    r = project.plx("log", "--sort", "bogus")
    assert r.code == 2 and "unknown field" in r.err, r
    assert project.plx("log", "--columns", "wat").code == 2


def test_tag_and_note_after_the_fact(project: Project) -> None:
    g = setup(project)
    first = project.plx("run", g, "--json").json()["id"]
    project.plx("run", g, "-p", "lr=0.2")
    r = project.plx("tag", first[:-2], "good", "keep")  # a unique prefix
    assert r.code == 0, r
    assert project.plx("tag", first, "keep", "--remove").code == 0
    assert project.plx("note", first, "multi\nline </b>").code == 0
    one = project.plx("log", first, "--json").json()
    assert one["tags"] == ["good"] and one["note"] == "multi\nline </b>"
    assert [x["id"] for x in project.plx("log", "--tag", "good", "--json").json()] == [first]
    # the record itself was rewritten (the index is derived from it)
    (project.root / ".plx/runs/index.sqlite").unlink()
    assert [x["id"] for x in project.plx("log", "--tag", "good", "--json").json()] == [first]
    assert project.plx("note", first, "").code == 0
    assert project.plx("log", first, "--json").json()["note"] is None
    r = project.plx("tag", first, "has space")
    assert r.code == 2 and "tag" in r.err
    r = project.plx("tag", "nosuchrun", "x")
    assert r.code == 1 and "no run" in r.err
    assert not list((project.root / ".plx/runs" / first).glob(".tmp-*"))


def test_rerun_takes_labels(project: Project) -> None:
    g = setup(project)
    first = project.plx("run", g, "-p", "lr=0.2", "--json").json()
    r = project.plx("rerun", first["id"], "--name", "again", "--tag", "re", "--json")
    assert r.code == 0, r
    assert (r.json()["name"], r.json()["tags"], r.json()["overrides"], r.json()["params"]["lr"]) == ("again", ["re"], {"lr": 0.2}, 0.2)


def test_an_index_of_an_older_version_is_rebuilt_with_metrics(project: Project) -> None:
    g = setup(project)
    run = project.plx("run", g, "--tag", "t", "--json").json()
    # what an older plx left: a version-0 index without the new fields, a record without metrics
    idx = project.root / ".plx/runs/index.sqlite"
    idx.unlink()
    db = sqlite3.connect(idx)
    db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, graph TEXT, status TEXT, summary TEXT NOT NULL)")
    db.execute("INSERT INTO runs VALUES (?, ?, ?, ?)", (run["id"], "fitting", "success", json.dumps({"id": run["id"], "status": "success", "counts": {}})))
    db.commit()
    db.close()
    rec = project.root / ".plx/runs" / run["id"] / "run.json"
    data = json.loads(rec.read_text())
    del data["metrics"]
    rec.write_text(json.dumps(data))
    listed = project.plx("log", "--where", "metrics.m.accuracy>0.5", "--json").json()
    assert [x["id"] for x in listed] == [run["id"]] and listed[0]["tags"] == ["t"]


def test_plx_log_does_not_import_networkx(project: Project) -> None:
    g = setup(project)
    project.plx("run", g)
    bindir = str(__import__("pathlib").Path(PLX).parent)
    for args in (["log"], ["log", "--where", "metrics.m.accuracy>0"], ["run", g]):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "plx", *args], cwd=project.root, capture_output=True, text=True, env={"PATH": bindir + ":/usr/bin:/bin"}
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "networkx" not in proc.stderr and "plx.report_html" not in proc.stderr, args
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "plx", "report", "-o", "r.html"], cwd=project.root, capture_output=True, text=True)
    assert proc.returncode == 0 and "networkx" in proc.stderr  # the check above can fail


def test_graph_as_svg_and_node_link_json(project: Project) -> None:
    project.write(
        "graphs/two.yaml",
        """\
        kind: graph
        name: two
        params: [{name: lr, type: float, default: 0.1}]
        nodes:
          a: {operation: fit, params: {lr: "${lr}"}}
          b: {operation: fit, params: {lr: "${lr}"}}
        outputs: {m: a.m}
        """,
    )
    project.write("operations/fit.yaml", OP)
    svg = project.plx("graph", "graphs/two.yaml", "--format", "svg")
    assert svg.code == 0 and svg.out.startswith("<?xml") and svg.out.count('class="node"') == 2 and "</svg>" in svg.out
    data = json.loads(project.plx("graph", "graphs/two.yaml", "--format", "json").out)
    assert data["directed"] is True and {n["id"] for n in data["nodes"]} == {"a", "b"} and data["links"] == []
    assert {n["op"] for n in data["nodes"]} == {"fit"}


def test_concurrent_tags_are_all_kept_and_a_running_run_is_refused(project: Project) -> None:
    g = setup(project)
    rid = project.plx("run", g, "--json").json()["id"]
    procs = [subprocess.Popen([PLX, "tag", rid, f"t{i}"], cwd=project.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(8)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    assert sorted(project.plx("log", rid, "--json").json()["tags"]) == sorted(f"t{i}" for i in range(8))
    # A crash mid-write leaves a temp file beside the record, never a half record: both still read.
    (project.root / ".plx/runs" / rid / ".tmp-crashed.json").write_text('{"id": "half')
    assert project.plx("note", rid, "still fine").code == 0
    assert project.plx("log", "--where", "note~fine", "--json").json()[0]["id"] == rid
    # a run still running is refused: its plx rewrites the record when it ends
    project.write("operations/wait.yaml", "kind: operation\nname: wait\nrunner: command\noutputs: [{name: o}]\ncmd: sleep 30; echo > $OUTPUT_O\n")
    project.write("graphs/wait.yaml", "kind: graph\nname: wait\nnodes:\n  w: {operation: wait}\n")
    live = project.popen("run", "graphs/wait.yaml")
    try:
        project.wait_running()
        r = project.plx("tag", "last", "x")
        assert r.code == 1 and "still running" in r.err, r
    finally:
        live.terminate()
        live.wait(timeout=30)
