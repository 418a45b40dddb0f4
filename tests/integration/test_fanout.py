"""Fan-out (`foreach`): expansion, chaining, gathering, ids everywhere, incremental re-runs,
plan-time expansion (-i, -p, --sweep), selection by template name and validation errors.
Every test drives the installed `plx` on a temporary git project."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time

from tests.conftest import PLX, REPO, Project, counting_op

GATHER_OP = """\
kind: operation
name: gather
runner: bash_jinja2
inputs:
  - {name: parts, type: text, min: 0, max: -1}
params:
  - {name: tag, type: str, default: gather}
outputs:
  - {name: out, type: text, filename: all.txt}
cmd: |
  mkdir -p {{ (env_root ~ '/counts') | q }}
  echo run >> {{ (env_root ~ '/counts/' ~ param.tag) | q }}
  : > {{ output.out }}
  {% for p in input.parts %}cat {{ p }} >> {{ output.out }}
  {% endfor %}
"""

PIPELINE = """\
kind: graph
name: pipeline
inputs:
  - {name: samples, type: text, max: -1, default: "data/samples/*.txt"}
nodes:
  map:
    operation: step
    foreach: inputs.samples
    inputs: {src: item}
    params: {tag: map}
  sort:
    operation: step
    foreach: map
    inputs: {src: item.out}
    params: {tag: sort, value: "${key}"}
  call:
    operation: gather
    inputs: {parts: "sort[*].out"}
  one:
    operation: step
    inputs: {src: "sort[B].out"}
    params: {tag: one, value: picked}
outputs:
  all: call.out
"""


def setup(project: Project, samples: tuple[str, ...] = ("A", "B", "C"), graph: str = PIPELINE) -> None:
    project.write("operations/step.yaml", counting_op(project.root))
    project.write("operations/gather.yaml", GATHER_OP.replace("env_root", repr(str(project.root))))
    project.write("graphs/g.yaml", graph)
    for s in samples:
        project.write(f"data/samples/{s}.txt", f"reads of {s}\n")


def test_files_are_expanded_chained_and_gathered_in_item_order(project: Project) -> None:
    setup(project, ("C", "A", "B"))  # written out of order: the glob is expanded sorted
    r = project.plx("run", "graphs/g.yaml", "--json")
    assert r.code == 0, r
    data = r.json()
    assert list(data["nodes"]) == ["map[A]", "map[B]", "map[C]", "sort[A]", "sort[B]", "sort[C]", "call", "one"]
    assert all(n["state"] == "success" for n in data["nodes"].values())
    # the gather reads every expansion's output, in item order; each sort got its own sample's map output
    assert project.plx("get", "last", "all", "-o", "-").out == "reads of A\nx\nA\nreads of B\nx\nB\nreads of C\nx\nC\n"
    assert project.plx("get", "last", "one.out", "-o", "-").out == "reads of B\nx\nB\npicked\n"
    assert project.plx("get", "last", "map[C].out", "-o", "-").out == "reads of C\nx\n"
    template = project.plx("log", "last", "map")
    assert template.code == 1 and "'map' is fanned out; name one expansion: map[A], map[B], map[C]" in template.err, template
    # progress and history name the expansions
    for node in ("map[A]", "sort[C]"):
        assert f"success  {node}" in r.err
    listing = project.plx("log", "last")
    assert listing.code == 0 and "sort[B]" in listing.out and "map[C]" in listing.out
    worker = project.plx("log", "last", "map[B]", "--worker")
    assert worker.code == 0 and "node map[B]: operation step" in worker.out
    assert project.plx("log", "--json").json()[0]["counts"] == {"success": 8}
    assert (project.counter("map"), project.counter("sort"), project.counter("gather")) == (3, 3, 1)


def test_adding_a_sample_runs_only_its_nodes_and_the_gathers(project: Project) -> None:
    setup(project, ("B", "C"))
    assert project.plx("run", "graphs/g.yaml").code == 0
    assert (project.counter("map"), project.counter("sort"), project.counter("gather"), project.counter("one")) == (2, 2, 1, 1)
    project.write("data/samples/A.txt", "reads of A\n")  # sorts first: every other item moves one place
    r = project.plx("run", "graphs/g.yaml", "--json")
    assert r.code == 0, r
    states = {k: v["state"] for k, v in r.json()["nodes"].items()}
    assert states == {
        "map[A]": "success",
        "map[B]": "cached",
        "map[C]": "cached",
        "sort[A]": "success",
        "sort[B]": "cached",
        "sort[C]": "cached",
        "call": "success",
        "one": "cached",
    }
    assert (project.counter("map"), project.counter("sort"), project.counter("gather"), project.counter("one")) == (3, 3, 2, 1)
    # a sample removed: nothing but the gather runs again
    (project.root / "data/samples/C.txt").unlink()
    r = project.plx("run", "graphs/g.yaml", "--json")
    assert r.code == 0, r
    assert [k for k, v in r.json()["nodes"].items() if v["state"] == "success"] == ["call"]
    assert (project.counter("map"), project.counter("sort"), project.counter("gather")) == (3, 3, 3)


VALUES = """\
kind: graph
name: values
params:
  - {name: words, type: list_str, default: [b, c]}
nodes:
  x:
    operation: step
    foreach: params.words
    params: {tag: x, value: "${item}"}
  inline:
    operation: step
    foreach: [0.5, 2]
    params: {tag: inline, value: "v"}
  all:
    operation: gather
    inputs: {parts: ["x[*].out", "x[0].out"]}
"""


def test_an_expansion_key_does_not_depend_on_its_id(project: Project) -> None:
    setup(project, (), VALUES)
    r = project.plx("run", "graphs/g.yaml", "--json")
    assert r.code == 0, r
    assert list(r.json()["nodes"]) == ["x[0]", "x[1]", "inline[0]", "inline[1]", "all"]
    assert project.plx("get", "last", "all.out", "-o", "-").out == "b\nc\nb\n"
    # a value inserted first renames every expansion (x[0] is now 'a'), but the work of b and c is cached
    r = project.plx("run", "graphs/g.yaml", "-p", "words=a,b,c", "--json")
    assert r.code == 0, r
    states = {k: v["state"] for k, v in r.json()["nodes"].items()}
    assert states["x[0]"] == "success" and states["x[1]"] == "cached" and states["x[2]"] == "cached"
    assert project.counter("x") == 3
    assert project.plx("get", "last", "all.out", "-o", "-").out == "a\nb\nc\na\n"
    assert r.json()["nodes"]["x[1]"]["cache_key"] != r.json()["nodes"]["x[0]"]["cache_key"]


MATRIX = """\
kind: graph
name: matrix
params:
  - {name: seeds, type: list_int, default: [1, 2]}
nodes:
  train:
    operation: step
    foreach: {model: [lr, rf], seed: "${seeds}"}
    params: {tag: train, value: "${model}"}
  score:
    operation: step
    foreach: train
    inputs: {src: item.out}
    params: {tag: score, value: "${key}"}
  pick:
    operation: step
    inputs: {src: "score[seed=2,model=rf].out"}
    params: {tag: pick}
"""


def test_matrix_ids_bindings_and_picks_in_any_key_order(project: Project) -> None:
    setup(project, (), MATRIX)
    r = project.plx("run", "graphs/g.yaml", "--json")
    assert r.code == 0, r
    nodes = r.json()["nodes"]
    assert [n for n in nodes if n.startswith("train")] == ["train[model=lr,seed=1]", "train[model=lr,seed=2]", "train[model=rf,seed=1]", "train[model=rf,seed=2]"]
    assert "score[model=rf,seed=1]" in nodes
    # the chained node has the same keys (bound as ${key}); the pick reads the rf/2 expansion
    assert project.plx("get", "last", "pick.out", "-o", "-").out == "rf\nmodel=rf,seed=2\nx\n"
    # train's work does not depend on the seed (only ${model} is bound): identical work runs once
    assert project.counter("train") == 2 and project.counter("score") == 4


def test_param_input_and_sweep_overrides_change_the_expansion(project: Project) -> None:
    setup(project, ("A", "B", "C"), MATRIX)
    r = project.plx("run", "graphs/g.yaml", "-p", "seeds=[2,5]", "--json")
    assert r.code == 0, r
    assert [n for n in r.json()["nodes"] if n.startswith("score")] == [
        "score[model=lr,seed=2]",
        "score[model=lr,seed=5]",
        "score[model=rf,seed=2]",
        "score[model=rf,seed=5]",
    ]
    assert r.json()["params"] == {"seeds": [2, 5]}
    # --sweep: one run per value of the list param, planned as one DAG (shared work runs once)
    r = project.plx("run", "graphs/g.yaml", "--sweep", "seeds=[[2,9],[9,2]]", "--json")
    assert r.code == 0, r
    runs = r.json()
    assert [[n for n in run["nodes"] if n.startswith("score")] for run in runs] == [
        ["score[model=lr,seed=2]", "score[model=lr,seed=9]", "score[model=rf,seed=2]", "score[model=rf,seed=9]"],
        ["score[model=lr,seed=9]", "score[model=lr,seed=2]", "score[model=rf,seed=9]", "score[model=rf,seed=2]"],
    ]
    assert project.counter("score") == 4 + 2  # seed 2 came from the cache; seed 9 executed once for both runs
    # -i replaces a list input's files, and the expansion with it
    setup(project, ("A", "B", "C"))
    r = project.plx("run", "graphs/g.yaml", "-i", "samples=data/samples/B.txt", "-i", "samples=data/samples/A.txt", "call", "--json")
    assert r.code == 0, r
    assert list(r.json()["nodes"]) == ["map[B]", "map[A]", "sort[B]", "sort[A]", "call"]
    assert project.plx("get", "last", "all", "-o", "-").out.startswith("reads of B\n")
    # ... or a pattern (quoted: plx expands it, sorted, like a default)
    project.write("data/other/Z.txt", "reads of Z\n")
    project.write("data/other/B.txt", "other B\n")
    r = project.plx("run", "graphs/g.yaml", "-i", "samples=data/other/*.txt", "call", "--json")
    assert r.code == 0, r
    assert list(r.json()["nodes"]) == ["map[B]", "map[Z]", "sort[B]", "sort[Z]", "call"]
    assert [i["path"] for i in r.json()["inputs"]["samples"]] == [str(project.root / "data/other/B.txt"), str(project.root / "data/other/Z.txt")]
    r = project.plx("run", "graphs/g.yaml", "-i", "samples=data/none/*.txt")
    assert r.code == 2 and "-i samples=data/none/*.txt: the pattern matches no file" in r.err, r


def test_selection_by_template_name_or_expansion_id(project: Project) -> None:
    setup(project)
    r = project.plx("run", "graphs/g.yaml", "sort", "--json")
    assert r.code == 0, r
    assert sorted(r.json()["nodes"]) == ["map[A]", "map[B]", "map[C]", "sort[A]", "sort[B]", "sort[C]"]
    r = project.plx("run", "graphs/g.yaml", "sort[B]", "--json")
    assert r.code == 0, r
    assert sorted(r.json()["nodes"]) == ["map[B]", "sort[B]"]
    r = project.plx("run", "graphs/g.yaml", "sort[D]")
    assert r.code == 2 and "no node 'sort[D]'" in r.err and "did you mean 'sort[" in r.err, r


def test_preview_graph_and_per_expansion_params(project: Project) -> None:
    setup(project)
    r = project.plx("preview", "graphs/g.yaml", "map[B]")
    assert r.code == 0 and str(project.root / "data/samples/B.txt") in r.out, r
    r = project.plx("preview", "graphs/g.yaml", "map")
    assert r.code == 2 and "node 'map' is fanned out" in r.err and "map[A], map[B], map[C]" in r.err, r
    r = project.plx("graph", "graphs/g.yaml")
    assert r.code == 0 and "sort[B]  <- map[B] (out → src)" in r.out and "call  <- sort[A] (out → parts), sort[B]" in r.out, r
    # -p NODE.PARAM sets every expansion; -p 'NODE[KEY].PARAM' one of them
    r = project.plx("run", "graphs/g.yaml", "-p", "map.value=all", "-p", "map[B].value=bee", "map", "--json")
    assert r.code == 0, r
    assert project.plx("get", "last", "map[A].out", "-o", "-").out.endswith("all\n")
    assert project.plx("get", "last", "map[B].out", "-o", "-").out.endswith("bee\n")
    r = project.plx("run", "graphs/g.yaml", "-p", "map[Z].value=1")
    assert r.code == 1 and "no expansion 'map[Z]'" in r.err, r


def test_duplicate_keys_unknown_keys_and_empty_lists_are_clear_errors(project: Project) -> None:
    setup(project, ("A", "B"))
    project.write("data/samples/sub/B.txt", "another B\n")
    r = project.plx("run", "graphs/g.yaml", "-i", "samples=data/samples/A.txt", "-i", "samples=data/samples/B.txt", "-i", "samples=data/samples/sub/B.txt")
    assert r.code == 1, r
    assert "graphs/g.yaml:8:14: node 'map': the files 'data/samples/B.txt' and 'data/samples/sub/B.txt' of inputs.samples both give the key 'B'" in r.err, r
    assert "Traceback" not in r.err
    r = project.plx("run", "graphs/g.yaml", "-i", "samples=data/samples/A.txt")
    assert r.code == 1 and "graphs/g.yaml:21:19: node 'one' input 'src' reads 'sort[B].out', but node 'sort' has no expansion 'B'" in r.err, r
    # an empty list input (min: 0): no expansions; the gather gets an empty list
    project.write("graphs/empty.yaml", PIPELINE.replace('default: "data/samples/*.txt"}', 'min: 0, default: "data/none/*.txt"}').split("  one:")[0])
    r = project.plx("run", "graphs/empty.yaml", "--json")
    assert r.code == 0, r
    assert list(r.json()["nodes"]) == ["call"]
    assert project.plx("get", "last", "all", "-o", "-").out == ""
    # ... but an input that needs files says why it gets none
    project.write("operations/gather.yaml", GATHER_OP.replace("min: 0, max: -1", "min: 1, max: -1").replace("env_root", repr(str(project.root))))
    r = project.plx("run", "graphs/empty.yaml")
    assert r.code == 1 and "node 'call': input 'parts' needs at least 1 file(s), but its gather gives 0" in r.err, r
    assert "graphs/empty.yaml:" in r.err


def test_validation_errors_name_file_line_and_column(project: Project) -> None:
    setup(project)
    bad = PIPELINE.replace("foreach: map", "foreach: mapp").replace("sort[*].out", "sort[*].ou").replace("inputs: {src: item}", "inputs: {src: item.out}")
    project.write("graphs/bad.yaml", bad)
    r = project.plx("validate", "graphs/bad.yaml")
    assert r.code == 1, r
    assert "graphs/bad.yaml:9:19: node 'map' input 'src' reads 'item.out', but item is a file of inputs.samples here (write 'item')" in r.err
    assert "graphs/bad.yaml:13:14: node 'sort': fans out over 'mapp', but there is no node 'mapp' (did you mean 'map'?)" in r.err
    assert "graphs/bad.yaml:18:21: node 'call' input 'parts' reads 'sort[*].ou', but node 'sort' has no output 'ou' (did you mean 'out'?)" in r.err
    r = project.plx("run", "graphs/bad.yaml")
    assert r.code == 1 and r.err.count("plx: error: graphs/bad.yaml:") == 3 and "Traceback" not in r.err


SUB = """\
kind: graph
name: per_sample
inputs:
  - {name: reads, type: text}
params:
  - {name: label, type: str}
nodes:
  inner:
    operation: step
    inputs: {src: inputs.reads}
    params: {tag: inner, value: "${label}"}
outputs:
  out: inner.out
"""


def test_a_sub_graph_fans_out_and_a_rerun_replays_the_expansion(project: Project) -> None:
    setup(project, ("A", "B"))
    project.write("graphs/lib/per_sample.yaml", SUB)
    project.write(
        "graphs/top.yaml",
        """\
        kind: graph
        name: top
        inputs:
          - {name: samples, type: text, max: -1, default: "data/samples/*.txt"}
        nodes:
          each:
            operation: graphs/lib/per_sample.yaml
            foreach: inputs.samples
            inputs: {reads: item}
            params: {label: "${key}"}
          all:
            operation: gather
            inputs: {parts: "each[*].out"}
        outputs:
          all: all.out
        """,
    )
    r = project.plx("run", "graphs/top.yaml", "--json")
    assert r.code == 0, r
    assert list(r.json()["nodes"]) == ["each[A]/inner", "each[B]/inner", "all"]
    assert project.plx("get", "last", "all", "-o", "-").out == "reads of A\nA\nreads of B\nB\n"
    assert project.plx("log", "last", "each[B]/inner", "--worker").code == 0
    r = project.plx("run", "graphs/top.yaml", "-p", "each/inner.value=zz", "-p", "each[B]/inner.value=bb", "--json")
    assert r.code == 0, r
    assert project.plx("get", "last", "all", "-o", "-").out == "reads of A\nzz\nreads of B\nbb\n"
    r = project.plx("rerun", "last", "--json")
    assert r.code == 0, r
    assert {k: v["state"] for k, v in r.json()["nodes"].items()} == {"each[A]/inner": "cached", "each[B]/inner": "cached", "all": "cached"}


def test_the_schema_knows_foreach(project: Project) -> None:
    r = project.plx("schema", "graph")
    assert r.code == 0
    node = json.loads(r.out)["properties"]["nodes"]["patternProperties"]
    foreach = next(iter(node.values()))["properties"]["foreach"]
    assert [s["type"] for s in foreach["anyOf"]] == ["string", "array", "object"]
    import jsonschema  # a test dependency (the test extra)
    import yaml

    schema = json.loads(r.out)
    for name in ("cross_validation", "shops", "seeds"):
        jsonschema.validate(yaml.safe_load((REPO / "graphs" / f"{name}.yaml").read_text()), schema)
    bad = yaml.safe_load((REPO / "tests/data/invalid/fanout_foreach_type.yaml").read_text())
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("foreach: 3 passed the schema")


def test_planning_ten_thousand_expansions_is_fast(project: Project) -> None:
    project.write("operations/step.yaml", counting_op(project.root))
    project.write("operations/gather.yaml", GATHER_OP.replace("env_root", repr(str(project.root))))
    project.write(
        "graphs/big.yaml",
        """\
        kind: graph
        name: big
        params:
          - {name: n, type: list_int, default: []}
        nodes:
          a:
            operation: step
            foreach: {i: "${n}"}
            params: {tag: a, value: "${key}"}
          b:
            operation: step
            foreach: a
            inputs: {src: item.out}
            params: {tag: b}
          all:
            operation: gather
            inputs: {parts: "b[*].out"}
        """,
    )
    values = json.dumps(list(range(5000)))
    t0 = time.monotonic()
    r = project.plx("graph", "graphs/big.yaml", "--format", "dot")
    assert r.code == 0, r
    r = project.plx("run", "graphs/big.yaml", "-p", f"n={values}", "all", "--dry-run")
    elapsed = time.monotonic() - t0
    assert r.code == 0, r
    assert r.out.count("\nb[i=") == 5000 and r.out.count("\na[i=") == 5000
    assert elapsed < 30  # a generous guard; bench/fanout.py measures the planning itself


def test_live_progress_on_a_terminal_shows_expansion_ids(project: Project) -> None:
    """On a terminal, progress is drawn with rich: `train[model=rf,seed=2]` must not be read as markup."""
    setup(project, (), MATRIX)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [PLX, "run", "graphs/g.yaml"], cwd=project.root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env={**os.environ, "TERM": "xterm"}
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    shown = b"".join(chunks).decode(errors="replace")
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert proc.returncode == 0, plain
    assert "score[model=rf,seed=2]" in plain and "train[model=lr,seed=1]" in plain, plain


def test_python_api_writes_and_runs_a_fan_out(project: Project) -> None:
    setup(project, ("A", "B"))
    script = """\
import json
import plx
from plx import Graph, Operation, run

step = Operation.load("operations/step.yaml")
g = Graph("api_fan")
samples = g.input("samples", type="text", max=-1, default="data/samples/*.txt")
g.node("map", step, inputs={"src": "item"}, params={"tag": "map", "value": "${key}"}, foreach=samples)
g.node("all", "gather", inputs={"parts": "map[*].out"})
path = g.save("graphs/api.yaml")
assert plx.load(path) == g
r = run(g)
print(json.dumps(r.nodes))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=project.root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"map[A]": "success", "map[B]": "success", "all": "success"}
    assert "foreach: inputs.samples" in (project.root / "graphs/api.yaml").read_text()


def test_a_failed_expansion_stops_only_its_own_chain_with_keep_going(project: Project) -> None:
    setup(project, ("A", "B", "C"))
    project.write("data/samples/B.txt", "")  # sort fails on an empty input below
    fail_on_empty = counting_op(project.root).replace(
        "cmd: |\n", "cmd: |\n  {% if input.src %}test -s {{ input.src | q }} || { echo 'empty input' >&2; exit 3; }{% endif %}\n"
    )
    project.write("operations/step.yaml", fail_on_empty)
    r = project.plx("run", "graphs/g.yaml", "--keep-going", "--json")
    assert r.code == 1, r
    states = {k: v["state"] for k, v in r.json()["nodes"].items()}
    assert states["map[B]"] == "failed" and states["sort[B]"] == "skipped" and states["call"] == "skipped" and states["one"] == "skipped"
    assert states["map[A]"] == states["sort[A]"] == states["map[C]"] == states["sort[C]"] == "success"
    assert f"see `plx log {r.json()['id']} 'map[B]' --stderr`" in r.err, r
    assert project.plx("log", "last", "map[B]", "--stderr").out == "empty input\n"
