"""Every operation of the bundled library, run through plx on small data, including bad input."""

from __future__ import annotations

import csv
import io
import json
import shutil
import textwrap

import pytest

from tests.conftest import REPO, Project

PEOPLE = "name,city,age,score\nann,lyon,31,7.5\nbob,paris,25,6\ncid,lyon,40,9\ndee,nice,25,\n"
CITIES = "city,region\nlyon,south\nparis,north\n"
RAGGED = "name,city,age\nann,lyon\n"


@pytest.fixture
def lib(project: Project) -> Project:
    shutil.copytree(REPO / "operations", project.root / "operations")
    project.write("data/people.csv", PEOPLE)
    project.write("data/cities.csv", CITIES)
    project.write("data/ragged.csv", RAGGED)
    project.write("data/notes.txt", "alpha beta\nGamma delta\nalpha again\n")
    return project


def run_op(project: Project, op: str, params: dict[str, object] | None = None, inputs: dict[str, object] | None = None, out: str = "out") -> tuple[int, str, str]:
    """Run one operation as a one-node graph; returns (exit code, output text, the node's stderr)."""
    graph = {"kind": "graph", "name": "t", "nodes": {"n": {"operation": op, "params": params or {}, "inputs": inputs or {}}}}
    import yaml

    op_file = next(p for p in (project.root / "operations").rglob("*.yaml") if yaml.safe_load(p.read_text())["name"] == op)
    types = {i["name"]: i.get("type", "file") for i in yaml.safe_load(op_file.read_text()).get("inputs", [])}
    lines = ["kind: graph", "name: t", "inputs:"]
    files = {}
    for name, value in (inputs or {}).items():
        files[name] = value
        if isinstance(value, list):
            lines.append(f"  - {{name: {name}, max: -1, default: {json.dumps(value)}, type: {types[name]}}}")
        else:
            lines.append(f"  - {{name: {name}, type: {types[name]}, default: {value}}}")
    if not inputs:
        lines = lines[:-1]
    graph["nodes"]["n"]["inputs"] = {k: f"inputs.{k}" for k in files}
    lines.append("nodes:")
    lines.append("  n: " + json.dumps(graph["nodes"]["n"]))
    project.write("graphs/t.yaml", "\n".join(lines) + "\n")
    r = project.plx("run", "graphs/t.yaml", "--json")
    node = r.json()["nodes"]["n"] if r.out else {}
    text = project.plx("get", "last", f"n.{out}", "-o", "-").out if node.get("state") in ("success", "cached") else ""
    stderr = project.plx("log", "last", "n", "--stderr").out
    return r.code, text, stderr


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_head_sample_select_sort(lib: Project) -> None:
    code, text, _ = run_op(lib, "csv_head", {"n": 2}, {"table": "data/people.csv"}, "head")
    assert code == 0 and [r["name"] for r in rows(text)] == ["ann", "bob"]
    code, text, _ = run_op(lib, "csv_sample", {"n": 2, "seed": 3}, {"table": "data/people.csv"}, "sample")
    sample = [r["name"] for r in rows(text)]
    assert code == 0 and len(sample) == 2 and sample == sorted(sample, key=["ann", "bob", "cid", "dee"].index)
    assert run_op(lib, "csv_sample", {"n": 2, "seed": 3}, {"table": "data/people.csv"}, "sample")[1] == text
    code, text, _ = run_op(lib, "csv_select", {"columns": ["score", "name"]}, {"table": "data/people.csv"}, "selected")
    assert text.splitlines()[0] == "score,name"
    code, text, _ = run_op(lib, "csv_select", {"columns": ["age"], "drop": True}, {"table": "data/people.csv"}, "selected")
    assert text.splitlines()[0] == "name,city,score"
    code, text, _ = run_op(lib, "csv_sort", {"by": ["age", "name"], "descending": True}, {"table": "data/people.csv"}, "sorted")
    assert [r["name"] for r in rows(text)] == ["cid", "ann", "dee", "bob"]


def test_filter_numeric_and_text(lib: Project) -> None:
    code, text, _ = run_op(lib, "csv_filter", {"column": "age", "op": ">", "value": "26"}, {"table": "data/people.csv"}, "filtered")
    assert code == 0 and [r["name"] for r in rows(text)] == ["ann", "cid"]
    code, text, _ = run_op(lib, "csv_filter", {"column": "city", "op": "startswith", "value": "ly"}, {"table": "data/people.csv"}, "filtered")
    assert [r["name"] for r in rows(text)] == ["ann", "cid"]


def test_join_inner_and_left(lib: Project) -> None:
    code, text, _ = run_op(lib, "csv_join", {"on": ["city"]}, {"left": "data/people.csv", "right": "data/cities.csv"}, "joined")
    assert code == 0 and [(r["name"], r["region"]) for r in rows(text)] == [("ann", "south"), ("bob", "north"), ("cid", "south")]
    code, text, _ = run_op(lib, "csv_join", {"on": ["city"], "how": "left"}, {"left": "data/people.csv", "right": "data/cities.csv"}, "joined")
    assert [r["region"] for r in rows(text)] == ["south", "north", "south", ""]


def test_aggregate_concat_describe(lib: Project) -> None:
    code, text, _ = run_op(
        lib, "csv_aggregate", {"group_by": ["age"], "aggregations": ["count", "sum:score", "mean:score", "max:score"]}, {"table": "data/people.csv"}, "aggregated"
    )
    assert code == 0
    assert rows(text) == [
        {"age": "25", "count": "2", "sum_score": "6", "mean_score": "6", "max_score": "6"},
        {"age": "31", "count": "1", "sum_score": "7.5", "mean_score": "7.5", "max_score": "7.5"},
        {"age": "40", "count": "1", "sum_score": "9", "mean_score": "9", "max_score": "9"},
    ]
    code, text, _ = run_op(lib, "csv_concat", {}, {"tables": ["data/people.csv", "data/people.csv"]}, "table")
    assert code == 0 and len(rows(text)) == 8
    code, text, _ = run_op(lib, "csv_describe", {}, {"table": "data/people.csv"}, "stats")
    stats = json.loads(text)
    assert stats["rows"] == 4 and stats["columns"]["age"]["mean"] == 30.25 and stats["columns"]["city"]["top"] == "lyon"
    assert stats["columns"]["score"]["count"] == 3


def test_split(lib: Project) -> None:
    code, text, _ = run_op(lib, "split_csv", {"test_ratio": 0.5, "seed": 1}, {"table": "data/people.csv"}, "test")
    assert code == 0 and len(rows(text)) == 2


@pytest.mark.parametrize(
    "op,params,inputs,message",
    [
        ("csv_filter", {"column": "colour", "value": "x"}, {"table": "data/people.csv"}, "people.csv has no column 'colour' (columns: name, city, age, score)"),
        ("csv_sort", {"by": ["age"]}, {"table": "data/ragged.csv"}, "ragged.csv is malformed: line 2 has 2 fields, the header has 3"),
        ("csv_join", {"on": ["town"]}, {"left": "data/people.csv", "right": "data/cities.csv"}, "has no column 'town'"),
        ("csv_aggregate", {"group_by": ["city"], "aggregations": ["median:age"]}, {"table": "data/people.csv"}, "bad aggregation 'median:age'"),
        ("csv_aggregate", {"group_by": ["age"], "aggregations": ["sum:city"]}, {"table": "data/people.csv"}, "column 'city' is not numeric"),
        ("csv_concat", {}, {"tables": ["data/people.csv", "data/cities.csv"]}, "cities.csv has columns"),
        ("csv_describe", {}, {"table": "data/ragged.csv"}, "malformed"),
        ("split_csv", {"stratify": "nope"}, {"table": "data/people.csv"}, "no column 'nope'"),
        ("json_pick", {"paths": ["a.b"]}, {"data": "data/people.csv"}, "Expecting value"),
        ("grep_lines", {"pattern": "(unclosed"}, {"text": "data/notes.txt"}, "grep"),
        ("unpack_archive", {}, {"archive": "data/notes.txt"}, "not a readable tar archive"),
    ],
)
def test_bad_input_fails_the_node_with_a_clear_message(lib: Project, op: str, params: dict[str, object], inputs: dict[str, object], message: str) -> None:
    code, _, stderr = run_op(lib, op, params, inputs)
    assert code == 1
    assert message in stderr, stderr


def test_text_operations(lib: Project) -> None:
    code, text, _ = run_op(lib, "grep_lines", {"pattern": "^alpha", "ignore_case": True}, {"text": "data/notes.txt"}, "matched")
    assert code == 0 and text == "alpha beta\nalpha again\n"
    code, text, _ = run_op(lib, "grep_lines", {"pattern": "zzz"}, {"text": "data/notes.txt"}, "matched")
    assert code == 0 and text == ""
    code, text, _ = run_op(lib, "text_stats", {}, {"text": "data/notes.txt"}, "stats")
    assert json.loads(text) == {"lines": 3, "words": 6, "chars": 35, "bytes": 35}
    code, text, _ = run_op(lib, "concat_files", {}, {"files": ["data/notes.txt", "data/cities.csv"]}, "joined")
    assert text == (lib.root / "data/notes.txt").read_text() + CITIES


def test_pack_and_unpack_round_trip(lib: Project) -> None:
    lib.write(
        "graphs/pack.yaml",
        """\
        kind: graph
        name: pack
        inputs: [{name: folder, type: directory, default: data}]
        nodes:
          pack: {operation: pack_dir, inputs: {folder: inputs.folder}}
          unpack: {operation: unpack_archive, inputs: {archive: pack.archive}}
          again: {operation: pack_dir, inputs: {folder: unpack.folder}}
        """,
    )
    r = lib.plx("run", "graphs/pack.yaml", "--json")
    assert r.code == 0, r
    nodes = r.json()["nodes"]
    assert nodes["pack"]["outputs"]["archive"]["hash"] == nodes["again"]["outputs"]["archive"]["hash"]  # reproducible bytes
    assert lib.plx("get", "last", "unpack.folder", "-o", str(lib.root / "copy")).code == 0
    assert (lib.root / "copy/people.csv").read_text() == PEOPLE


def test_metrics_operations(lib: Project) -> None:
    lib.write("data/m1.json", '{"accuracy": 0.9, "per_class": {"a": {"recall": 0.5}}, "ok": true, "vals": [1, 2]}')
    lib.write("data/m2.json", '{"accuracy": 0.8, "loss": 0.3}')
    code, text, _ = run_op(lib, "json_pick", {"paths": ["accuracy", "per_class.a.recall", "vals.1"]}, {"data": "data/m1.json"}, "picked")
    assert json.loads(text) == {"accuracy": 0.9, "per_class.a.recall": 0.5, "vals.1": 2}
    code, _, stderr = run_op(lib, "json_pick", {"paths": ["per_class.b"]}, {"data": "data/m1.json"}, "picked")
    assert code == 1 and "no 'b' in path 'per_class.b' (there: a)" in stderr
    code, text, _ = run_op(lib, "merge_metrics", {}, {"metrics": ["data/m1.json", "data/m2.json"]}, "table")
    assert rows(text) == [
        {"source": "0:m1.json", "accuracy": "0.9", "per_class.a.recall": "0.5", "vals.0": "1", "vals.1": "2", "loss": ""},
        {"source": "1:m2.json", "accuracy": "0.8", "per_class.a.recall": "", "vals.0": "", "vals.1": "", "loss": "0.3"},
    ]


def test_git_build_and_run_executable(lib: Project) -> None:
    (lib.root / "graphs").mkdir(exist_ok=True)
    shutil.copy(REPO / "graphs/build_and_run.yaml", lib.root / "graphs/build_and_run.yaml")
    r = lib.plx("run", "graphs/build_and_run.yaml")
    assert r.code == 0, r
    assert lib.plx("get", "last", "greeting", "-o", "-").out == "Hello, plx\n"
    r = lib.plx("run", "graphs/build_and_run.yaml", "-p", "build.commit=HEAD~1", "-p", "args=you,me", "--json")
    assert r.json()["nodes"]["repo"]["state"] == "cached"
    assert lib.plx("get", "last", "greeting", "-o", "-").out == "first, you\n"
    r = lib.plx("run", "graphs/build_and_run.yaml", "-p", "build.commit=nosuch")
    assert r.code == 1
    assert "commit nosuch not found" in lib.plx("log", "last", "build", "--stderr").out


def test_every_operation_is_documented_and_listed(lib: Project) -> None:
    listed = {r["name"]: r for r in lib.plx("ops", "--json").json()}
    assert len(listed) >= 20
    for path in (REPO / "operations").rglob("*.yaml"):
        text = path.read_text()
        assert "\ntitle: " in text and "\ndescription: " in text, path
    assert textwrap.dedent("x") == "x"


def test_kfold_split_and_add_column(lib: Project) -> None:
    tests = []
    for fold in range(2):
        code, text, _ = run_op(lib, "kfold_split", {"fold": fold, "folds": 2, "seed": 3}, {"table": "data/people.csv"}, "test")
        assert code == 0
        tests += [r["name"] for r in rows(text)]
    assert sorted(tests) == ["ann", "bob", "cid", "dee"]  # every row is in exactly one test fold
    code, text, _ = run_op(lib, "kfold_split", {"fold": 0, "folds": 2, "seed": 3}, {"table": "data/people.csv"}, "train")
    assert code == 0 and len(rows(text)) == 2
    code, _, stderr = run_op(lib, "kfold_split", {"fold": 2, "folds": 2}, {"table": "data/people.csv"})
    assert code == 1 and "fold must be between 0 and 1, got 2" in stderr
    code, text, _ = run_op(lib, "csv_add_column", {"column": "source", "value": "people"}, {"table": "data/people.csv"}, "tagged")
    assert code == 0 and [r["source"] for r in rows(text)] == ["people"] * 4 and list(rows(text)[0])[-1] == "source"
    code, _, stderr = run_op(lib, "csv_add_column", {"column": "city", "value": "x"}, {"table": "data/people.csv"}, "tagged")
    assert code == 1 and "already has a column 'city'" in stderr
