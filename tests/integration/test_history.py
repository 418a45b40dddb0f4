"""Run history: git facts, `log` filters and JSON, `compare`, `rerun`, `run --rev`, the summary index."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Project

OP = """\
kind: operation
name: score
runner: python
inputs: [{name: data, type: text}]
params:
  - {name: scale, type: float, default: 1.0}
  - {name: label, type: str, default: a}
outputs: [{name: metrics, type: json}]
cmd: |
  import json
  n = len(open(input["data"]).read().split())
  json.dump({"words": n, "score": n * param["scale"], "nested": {"ok": True, "vals": [1, n]}}, open(output["metrics"], "w"))
"""
GRAPH = """\
kind: graph
name: scoring
inputs: [{name: data, type: text, default: data/words.txt}]
params: [{name: scale, type: float, default: 1.0}]
nodes:
  s: {operation: score, inputs: {data: inputs.data}, params: {scale: "${scale}"}}
outputs: {metrics: s.metrics}
"""


def setup(project: Project) -> str:
    project.write("operations/score.yaml", OP)
    project.write("graphs/scoring.yaml", GRAPH)
    project.write("data/words.txt", "one two three\n")
    project.git("add", "-A")
    project.git("commit", "-qm", "first")
    return "graphs/scoring.yaml"


def test_git_facts_outside_git_and_before_the_first_commit(project: Project, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "plx.yaml").write_text("{}\n")
    (plain / "operations").mkdir()
    (plain / "operations/score.yaml").write_text(OP)
    (plain / "graphs").mkdir()
    (plain / "graphs/scoring.yaml").write_text(GRAPH)
    (plain / "data").mkdir()
    (plain / "data/words.txt").write_text("a b\n")
    r = project.plx("run", "graphs/scoring.yaml", "--json", cwd=plain)
    assert r.code == 0, r
    assert r.json()["git"] == {"commit": None, "branch": None, "dirty": None}
    project.write("operations/score.yaml", OP)
    project.write("graphs/scoring.yaml", GRAPH)
    project.write("data/words.txt", "a b\n")
    assert project.plx("run", "graphs/scoring.yaml", "--json").json()["git"] == {"commit": None, "branch": "main", "dirty": False}
    project.git("add", "data/words.txt")
    assert project.plx("run", "graphs/scoring.yaml", "--json").json()["git"]["dirty"] is True  # staged counts


def test_record_holds_git_facts_and_snapshot(project: Project) -> None:
    g = setup(project)
    head = project.git("rev-parse", "HEAD").strip()
    r = project.plx("run", g, "--json")
    assert r.json()["git"] == {"commit": head, "branch": "main", "dirty": False}
    (project.root / "untracked.txt").write_text("x")
    assert project.plx("run", g, "--json").json()["git"]["dirty"] is False  # untracked files do not count
    project.write("data/words.txt", "one two\n")
    assert project.plx("run", g, "--json").json()["git"]["dirty"] is True
    runs = project.plx("log", "--json").json()
    assert [set(r) for r in runs][0] == {"id", "graph", "status", "started", "finished", "duration", "git", "counts", "name", "tags", "note", "params", "metrics"}
    table = project.plx("log").out
    assert head[:8] + "*" in table, table
    assert head[:8] + "\n" in table, table
    record = json.loads((project.root / ".plx/runs" / runs[0]["id"] / "run.json").read_text())
    assert record["plx_version"] and record["argv"][:2] == ["run", g]
    assert "operations/score.yaml" in record["snapshot"]["files"]
    node = record["nodes"]["s"]
    assert node["logs"]["stderr"] == f"runs/{runs[0]['id']}/logs/s.stderr" and node["exit_code"] == 0
    assert node["recipe"]["params"] == {"scale": 1.0, "label": "a"} and node["duration"] >= 0


def test_log_filters_limit_and_prefixes(project: Project) -> None:
    g = setup(project)
    project.write("operations/bad.yaml", "kind: operation\nname: bad\nrunner: command\ncmd: exit 1\n")
    project.write("graphs/bad.yaml", "kind: graph\nname: bad\nnodes:\n  b: {operation: bad}\n")
    for _ in range(3):
        project.plx("run", g)
    project.plx("run", "graphs/bad.yaml")
    assert len(project.plx("log", "--json").json()) == 4
    assert len(project.plx("log", "-n", "2", "--json").json()) == 2
    assert {r["graph"] for r in project.plx("log", "--graph", "scoring", "--json").json()} == {"scoring"}
    failed = project.plx("log", "--status", "failed", "--json").json()
    assert [r["graph"] for r in failed] == ["bad"]
    ids = [r["id"] for r in project.plx("log", "--json").json()]
    assert project.plx("log", ids[1][:-2], "--json").json()["id"] == ids[1]
    assert project.plx("log", "last~1", "--json").json()["id"] == ids[1]
    ambiguous = project.plx("log", ids[0][:4])
    assert ambiguous.code == 1 and "matches 4 runs" in ambiguous.err
    # The summary index is rebuilt when it is lost.
    (project.root / ".plx/runs/index.sqlite").unlink()
    assert [r["id"] for r in project.plx("log", "--json").json()] == ids
    # Its commits are not synced to the disk (derived data): a run whose last commit a power loss took
    # is still `running` there; its record says what it is, for a filter too.
    import sqlite3

    db = sqlite3.connect(project.root / ".plx/runs/index.sqlite")
    (summary,) = db.execute("SELECT summary FROM runs WHERE id = ?", (failed[0]["id"],)).fetchone()
    db.execute("UPDATE runs SET status = 'running', summary = ? WHERE id = ?", (json.dumps({**json.loads(summary), "status": "running"}), failed[0]["id"]))
    db.commit()
    db.close()
    assert [r["id"] for r in project.plx("log", "--status", "failed", "--json").json()] == [failed[0]["id"]]
    assert len(project.plx("log", "--status", "success", "--json").json()) == len(ids) - 1


def test_compare_lines_up_params_inputs_and_metrics(project: Project) -> None:
    g = setup(project)
    project.plx("run", g)
    project.plx("run", g, "-p", "scale=2.5")
    project.write("data/words.txt", "one two three four\n")
    project.plx("run", g, "-p", "scale=2.5")
    r = project.plx("compare", "last~2", "last~1", "last", "--json")
    assert r.code == 0, r
    rows = {row["name"]: row for row in r.json()["rows"]}
    assert rows["param scale"]["values"] == [1.0, 2.5, 2.5]
    assert rows["param s.scale"]["values"] == [1.0, 2.5, 2.5]
    assert rows["s.metrics:score"]["values"] == [3.0, 7.5, 10.0]
    assert rows["s.metrics:score"]["deltas"] == [0.0, 4.5, 7.0]
    assert rows["s.metrics:nested.vals.1"]["values"] == [3, 3, 4]
    assert "s.metrics:nested.ok" not in rows  # booleans are not numbers
    assert rows["input data"]["values"][0] != rows["input data"]["values"][2]
    assert "s.metrics:nested.vals.0" not in rows  # equal everywhere
    everything = project.plx("compare", "last~2", "last", "--all", "--json").json()
    assert "s.metrics:nested.vals.0" in {row["name"] for row in everything["rows"]}
    text = project.plx("compare", "last~2", "last").out
    assert "s.metrics:score" in text and "(+7)" in text
    assert project.plx("compare", "last").code == 2


def test_rerun_uses_the_recorded_files(project: Project) -> None:
    g = setup(project)
    first = project.plx("run", g, "-p", "scale=3", "--json").json()
    project.write("operations/score.yaml", OP.replace('n * param["scale"]', 'n * param["scale"] * 100'))
    project.write("graphs/scoring.yaml", GRAPH.replace("default: 1.0", "default: 9.0"))
    r = project.plx("rerun", first["id"], "--no-cache", "--json")
    assert r.code == 0, r
    again = r.json()
    assert again["rerun_of"] == first["id"] and again["overrides"] == {"scale": 3.0}
    assert again["nodes"]["s"]["outputs"]["metrics"]["hash"] == first["nodes"]["s"]["outputs"]["metrics"]["hash"]
    assert json.loads(project.plx("get", "last", "metrics", "-o", "-").out)["score"] == 9.0
    # A changed input is read again and reported; a missing one is a clear error.
    project.write("data/words.txt", "a b c d e\n")
    r = project.plx("rerun", first["id"])
    assert r.code == 0 and "input data changed" in r.err
    (project.root / "data/words.txt").unlink()
    r = project.plx("rerun", first["id"])
    assert r.code == 1 and "no longer exist" in r.err and "data/words.txt" in r.err


def test_run_at_a_git_revision(project: Project) -> None:
    g = setup(project)
    first_commit = project.git("rev-parse", "HEAD").strip()
    project.write("operations/score.yaml", OP.replace('n * param["scale"]', 'n * param["scale"] + 1000'))
    project.write("data/words.txt", "just two\n")
    project.git("commit", "-qam", "second")
    r = project.plx("run", g, "--rev", first_commit[:10], "--json")
    assert r.code == 0, r
    assert r.json()["git"]["commit"] == first_commit
    metrics = json.loads(project.plx("get", "last", "metrics", "-o", "-").out)
    assert metrics == {"words": 3, "score": 3.0, "nested": {"ok": True, "vals": [1, 3]}}
    record = json.loads((project.root / ".plx/runs" / r.json()["id"] / "run.json").read_text())
    assert record["rev"] == {"rev": first_commit[:10], "commit": first_commit}
    r = project.plx("run", g, "--json")
    assert json.loads(project.plx("get", "last", "metrics", "-o", "-").out)["score"] == 1002.0
    assert project.plx("run", g, "--rev", "no-such-rev").code == 1
    # A sweep at that revision: every combination from the old files.
    r = project.plx("run", g, "--rev", first_commit, "--sweep", "scale=2,3", "--json")
    assert r.code == 0, r
    runs = r.json()
    assert [run["overrides"] for run in runs] == [{"scale": 2.0}, {"scale": 3.0}]
    assert {run["git"]["commit"] for run in runs} == {first_commit}
    scores = [json.loads(project.plx("get", run["id"], "metrics", "-o", "-").out)["score"] for run in runs]
    assert scores == [6.0, 9.0]
