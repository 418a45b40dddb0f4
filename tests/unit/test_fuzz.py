"""Hypothesis fuzz (issue 12): the loader, on arbitrary YAML-ish operation and graph files, and the
parsing of `-p`, `-i`, `--sweep` and node selections, only ever give a valid plan or a PlxError.

Bounded to run in a few seconds: a fixed number of examples, no deadline (the machine is shared)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plx.commands import plan_members
from plx.errors import PlxError
from plx.loader import Library
from plx.project import project_at

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], database=None)

# ---- values ---------------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "x", "lr", "out", "src", "data", "n", "inputs", "params", "1", "yes", "a-b", "a.b", "", " ", "${lr}", "é"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.just("BIGINT"),  # an integer longer than Python prints (written into the YAML text by _dump)
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["${lr}", "${nope}", "a.out", "inputs.data", "x.y.z", "{{ param.n }}", "{% if %}", "data/in.txt", "../../etc/passwd", "*.txt"]),
)
VALUES: Any = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(NAMES, inner, max_size=4)), max_leaves=12)
TYPES = st.sampled_from(
    [
        "str",
        "int",
        "float",
        "bool",
        "enum",
        "list_str",
        "list_int",
        "list_float",
        "code",
        "dict",
        "file",
        "text",
        "csv",
        "json",
        "directory",
        "executable",
        "cloud",
        "nope",
    ]
)
RUNNERS = st.sampled_from(["bash_jinja2", "command", "python", "nope"])
CMDS = st.one_of(
    st.sampled_from(
        [
            "echo {{ param.n }} > {{ output.out }}",
            "cat {{ input.src | raw }} > {{ output.out | q }}",
            "{{ param.n | nosuch }}",
            "{{ param.n.__class__ }}",
            "{% for x in input.src %}{{ x }}{% endfor %}",
            "{{ 1/0 }}",
            "print(param['n'])\nopen(output['out'], 'w')",
            "def f(:\n",
            "{% if %}",
        ]
    ),
    st.text(max_size=40),
)


def _spec(kind: str) -> Any:
    fields: dict[str, Any] = {"name": NAMES, "type": TYPES}
    if kind == "param":
        fields.update({"default": VALUES, "values": VALUES})
    elif kind == "input":
        fields.update({"min": VALUES, "max": st.one_of(st.sampled_from([0, 1, 2, -1, -2]), VALUES), "default": VALUES})
    else:
        fields.update({"filename": st.one_of(st.sampled_from([".", "..", "a/b", "out.txt", ""]), VALUES)})
    return st.fixed_dictionaries({}, optional=fields)


OPERATIONS = st.fixed_dictionaries(
    {"kind": st.just("operation")},
    optional={
        "name": st.sampled_from(["op", "other", "bad name", ""]),
        "runner": RUNNERS,
        "cmd": CMDS,
        "inputs": st.one_of(st.lists(_spec("input"), max_size=3), VALUES),
        "params": st.one_of(st.lists(_spec("param"), max_size=3), VALUES),
        "outputs": st.one_of(st.lists(_spec("output"), max_size=3), VALUES),
        "cacheable": VALUES,
        "timeout": VALUES,
        "env": VALUES,
        "python": VALUES,
        "unknown": VALUES,
    },
)
NODES = st.dictionaries(
    NAMES,
    st.fixed_dictionaries(
        {"operation": st.sampled_from(["op", "other", "operations/op.yaml", "graphs/g.yaml", "missing"])},
        optional={
            "inputs": st.dictionaries(NAMES, st.one_of(VALUES, st.lists(st.sampled_from(["a.out", "inputs.data", "b.x"]), max_size=3)), max_size=3),
            "params": st.dictionaries(NAMES, VALUES, max_size=3),
            "timeout": VALUES,
            "cacheable": VALUES,
        },
    ),
    max_size=4,
)
GRAPHS = st.fixed_dictionaries(
    {"kind": st.just("graph")},
    optional={
        "name": st.sampled_from(["g", ""]),
        "inputs": st.one_of(st.lists(_spec("input"), max_size=2), VALUES),
        "params": st.one_of(st.lists(_spec("param"), max_size=2), VALUES),
        "nodes": st.one_of(NODES, VALUES),
        "outputs": st.one_of(st.dictionaries(NAMES, st.sampled_from(["a.out", "b.x", "inputs.data", "nope"]), max_size=2), VALUES),
    },
)


def _dump(data: Any) -> str:
    """YAML text of data; floats that YAML spells specially (nan, inf) go through too."""
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False).replace("BIGINT", "9" * 5000)


def _check(project_root: Path, graph_text: str, op_text: str, params: list[str] = [], inputs: list[str] = [], sweeps: list[str] = [], targets: list[str] = []) -> None:  # noqa: B006
    (project_root / "operations" / "op.yaml").write_text(op_text, encoding="utf-8")
    (project_root / "graphs" / "g.yaml").write_text(graph_text, encoding="utf-8")
    project = project_at(project_root)
    lib = Library(project)
    try:
        lib.runnable(project_root / "operations" / "op.yaml")
    except PlxError:
        pass
    try:
        members, _ = plan_members(Library(project), project_root / "graphs" / "g.yaml", targets=targets, params=params, inputs=inputs, sweeps=sweeps)
    except PlxError:
        return
    for m in members:  # a valid plan: every task's params are JSON (the records and keys need it)
        for task in m.plan.tasks.values():
            json.dumps(task.params, allow_nan=False)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for d in ("operations", "graphs", "data"):
        (tmp_path / d).mkdir()
    (tmp_path / "data" / "in.txt").write_text("x\n")
    return tmp_path


@FUZZ
@given(graph=GRAPHS, op=OPERATIONS)
def test_loader_on_structured_documents(root: Path, graph: dict[str, Any], op: dict[str, Any]) -> None:
    _check(root, _dump(graph), _dump(op))


TOKENS = [*"kind: operation graph nodes\n  -{}[],:#&*!|>'\"%@`.$~=?\t\\0123456789", "{{", "}}", "<<: ", ".nan", ".inf", "9" * 5000, "\ufeff", "\x00", "é"]
TOKENS += [
    "name: ",
    "inputs: ",
    "params: ",
    "outputs: ",
    "nodes:\n  a: ",
    "operation: op",
    "runner: ",
    "cmd: ",
    "type: ",
    "default: ",
    "&a ",
    "*a ",
    "!!python/object ",
    "? ",
]
YAMLISH = st.lists(st.sampled_from(TOKENS), max_size=60).map("".join)


@FUZZ
@given(graph=YAMLISH, op=YAMLISH)
def test_loader_on_yamlish_text(root: Path, graph: str, op: str) -> None:
    _check(root, "kind: graph\nname: g\n" + graph, "kind: operation\n" + op)


VALID_OP = """\
kind: operation
name: op
runner: bash_jinja2
inputs: [{name: src, type: text, min: 0}, {name: many, max: -1, min: 0}]
params:
  - {name: n, type: int, default: 1}
  - {name: f, type: float, default: 0.5}
  - {name: b, type: bool, default: false}
  - {name: e, type: enum, values: [x, 1, true], default: x}
  - {name: ls, type: list_str, default: []}
  - {name: li, type: list_int, default: []}
  - {name: lf, type: list_float, default: []}
  - {name: d, type: dict, default: {}}
  - {name: s, type: str, default: ""}
outputs: [{name: out, type: text}]
cmd: echo {{ param.n }} > {{ output.out }}
"""
VALID_GRAPH = """\
kind: graph
name: g
inputs: [{name: data, type: text, default: data/in.txt}, {name: more, max: -1, default: "data/*.txt"}]
params: [{name: lr, type: float, default: 0.1}, {name: k, type: int, default: 2}]
nodes:
  a: {operation: op, inputs: {src: inputs.data, many: inputs.more}, params: {f: "${lr}", n: "${k}"}}
  b: {operation: op, inputs: {src: a.out}}
outputs: {final: b.out}
"""
PARAM_NAMES = st.sampled_from(["lr", "k", "a.n", "a.f", "a.b", "a.e", "a.ls", "a.li", "a.lf", "a.d", "a.s", "b.n", "b.lf", "c.n", "a.zz", "a", ".n", "a.", "a/b.n", ""])
SPECIAL = st.sampled_from(
    ["inf", "-inf", "nan", "1e999", "NaN", "[1e999]", '{"x": NaN}', '{"x": [1e999]}', "[Infinity]", "9" * 5000, "[" + "9" * 5000 + "]", "1," + "9" * 5000]
    + ["1,2", "[1,", "[]", "{}", "true", "x", "1.5", "0x10", "1_000", "[1, 2.5]", '["a", 1]', '{"a": 1}', "", " ", "yes"]
)
TEXTS = st.one_of(SPECIAL, SPECIAL, SPECIAL, st.text(max_size=20))  # mostly the values that once broke something
ASSIGN = st.builds(lambda n, eq, v: f"{n}{eq}{v}", PARAM_NAMES, st.sampled_from(["=", "=", "=", "=", "", "=="]), TEXTS)


@FUZZ
@given(
    params=st.lists(ASSIGN, max_size=3),
    inputs=st.lists(
        st.builds(lambda n, v: f"{n}={v}", st.sampled_from(["data", "more", "nope", ""]), st.sampled_from(["data/in.txt", "missing.txt", "", "data", "~/nowhere"])),
        max_size=2,
    ),
    sweeps=st.lists(ASSIGN, max_size=2),
    targets=st.lists(st.sampled_from(["a", "b", "c", "", "a[0]", "inputs"]), max_size=2),
)
def test_command_line_parsing(root: Path, params: list[str], inputs: list[str], sweeps: list[str], targets: list[str]) -> None:
    _check(root, VALID_GRAPH, VALID_OP, params=params, inputs=inputs, sweeps=sweeps, targets=targets)


def test_the_fuzzed_space_reaches_valid_plans(root: Path) -> None:
    """The fixed project is valid, so the fuzz above explores values, not only broken files."""
    _check(root, VALID_GRAPH, VALID_OP)
    project = project_at(root)
    members, _ = plan_members(Library(project), root / "graphs" / "g.yaml", targets=[], params=["a.lf=[1.5, 2]"], inputs=[], sweeps=["lr=0.1,0.2"])
    assert len(members) == 2 and all(math.isfinite(m.plan.tasks["a"].params["f"]) for m in members)


MUTANTS = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, "BIGINT", None, "", [], {}, "${lr}", "${k}", "a.out", "inputs.more", 0, -1, 1.5, True, "x y"]),
    st.sampled_from([[math.nan], {"k": math.inf}, ["BIGINT"], [1, "a"], {"name": "n", "type": "int"}]),
    VALUES,
)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside a document: keys of mappings and items of lists, depth first."""
    out = []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


def _mutate(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> None:
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


@FUZZ
@given(data=st.data())
def test_loader_on_mutated_valid_files(root: Path, data: st.DataObject) -> None:
    """One to three changes to a valid project (a value replaced or removed anywhere): deep
    semantics are reached, not only the first structural check."""
    docs = {"op": yaml.safe_load(VALID_OP), "graph": yaml.safe_load(VALID_GRAPH)}
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        doc = docs[data.draw(st.sampled_from(["op", "graph"]))]
        paths = _paths(doc)
        if not paths:
            continue
        hot = [p for p in paths if "default" in p or (len(p) >= 2 and p[-2] == "params")]  # values reach plans and records
        path = data.draw(st.one_of(st.sampled_from(hot), st.sampled_from(paths)) if hot else st.sampled_from(paths))
        _mutate(doc, path, copy.deepcopy(data.draw(MUTANTS)), data.draw(st.booleans()))  # sampled values are shared
    _check(root, _dump(docs["graph"]), _dump(docs["op"]))


SHELL_PLACES = [
    ('printf "%s" {{ param.v }}', "{v}"),
    ("printf '%s' '{{ param.v }}'", "{v}"),
    ('printf "%s" "<{{ param.v }}>"', "<{v}>"),
    ("printf '%s' $'{{ param.v }}'", "{v}"),
    ('printf "%s" "$(printf "%s" {{ param.v }})"', "{v_}"),
    ('printf "%s" "`printf "%s" {{ param.v }}`"', "{v_}"),
    ("cat <<X | head -c -1\n{{ param.v }}\nX", "{v}"),
]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None)
@given(place=st.sampled_from(SHELL_PLACES), value=st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12))
def test_a_value_anywhere_in_a_template_reaches_bash_as_text(tmp_path: Path, place: tuple[str, str], value: str) -> None:
    """Shell quoting by context: whatever the value, bash gets exactly its text and runs nothing."""
    import subprocess

    from plx.templates import RenderError, render

    template, expected = place
    try:
        script = render(template, {"param": {"v": value}, "input": {}, "output": {}, "cloud_input": {}})
    except RenderError:
        assert "X" in value.split("\n")  # only a line equal to the here-document's delimiter is refused
        return
    work = tmp_path / "w"
    work.mkdir(exist_ok=True)
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=work, capture_output=True, env={"PATH": "/usr/bin:/bin", "HOME": str(work)})
    assert done.returncode == 0, (script, done.stderr)
    assert done.stdout.decode("utf-8", "surrogateescape") == expected.format(v=value, v_=value.rstrip("\n")), script
    assert list(work.iterdir()) == []


# Templates made of bash's quoting and expansion syntax around a value, run by bash: whatever the
# template's shape, a hostile value never runs (a value no escaping can keep inert is an error).
SHELL_BITS = [*"'\"`)};#\n \\|(", "$'", "$(", "${x:-", "<<EOF\n", "\nEOF\n", "<<'EOF'\n", "<<-EOF\n", "<<\\EOF\n", '<<"EOF"\n', "EOF", "\tEOF\n"]
SHELL_BITS += ["echo ", "printf %s ", "cat <<< ", "$((", "))", "((", "$[", "]", "a[", "x=", "[[ ", " ]]", "case a in a) ", ";; esac", "{ ", " }", "&&", ">/dev/null"]
SHELL_BITS += ["\\\n", "<<A <<B\n", "\nA\n", "\nB\n", "{{ param.v }}", "{{ param.v | q }}", "{{ [param.v, 'a b'] }}"]
HOSTILE_VALUES = ["$(touch PWN)", "`touch PWN`", "x; touch PWN", "'; touch PWN; '", '"; touch PWN; "', "\ntouch PWN\n", "EOF\ntouch PWN", "E", "}; touch PWN; {"]
HOSTILE_VALUES += [")$(touch PWN)(", "\\'$(touch PWN)", "x'\"`$(touch PWN)`\"'", "a[$(touch PWN)]", "5"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], database=None)
@given(bits=st.lists(st.sampled_from(SHELL_BITS), min_size=1, max_size=12), value=st.sampled_from(HOSTILE_VALUES))
def test_no_template_shape_lets_a_value_run(tmp_path: Path, bits: list[str], value: str) -> None:
    import subprocess

    from plx.templates import RenderError, render

    template = "".join(bits) if "{{" in "".join(bits) else "".join(bits) + "{{ param.v }}"
    try:  # the property is about scripts: a template that is not valid bash with a harmless value is none
        neutral = render(template, {"param": {"v": "5"}, "input": {}, "output": {}, "cloud_input": {}})
    except RenderError:
        return
    if subprocess.run(["bash", "-n", "-c", neutral], capture_output=True).returncode != 0:
        return
    try:
        script = render(template, {"param": {"v": value}, "input": {}, "output": {}, "cloud_input": {}})
    except RenderError as exc:  # a value no escaping keeps inert where it stands: refused, and said why
        assert any(k in str(exc) for k in ("here-document", "single quote", "must be a number")), exc
        return
    work = tmp_path / "w"
    work.mkdir(exist_ok=True)
    subprocess.run(["bash", "-c", script], cwd=work, capture_output=True, env={"PATH": "/usr/bin:/bin", "HOME": str(work)}, timeout=10)
    made = sorted(p.name for p in work.iterdir())
    for p in work.iterdir():
        p.unlink() if p.is_file() else None
    assert "PWN" not in made, (template, value, script)
