"""No tracebacks (docs/reliability.md): non-finite and huge numbers, templates that trip the sandbox or use an
unknown filter are messages with file:line, never a Python traceback."""

from __future__ import annotations

import re

import pytest

from tests.conftest import Project

OP = """\
kind: operation
name: p
runner: command
params:
  - {name: s, type: float, default: 1.0}
  - {name: n, type: int, default: 1}
  - {name: d, type: dict, default: {}}
  - {name: l, type: list_float, default: []}
outputs: [{name: out}]
cmd: echo $PARAM_S > $OUTPUT_OUT
"""
BIG = "9" * 5000


def _clean(r) -> None:  # type: ignore[no-untyped-def]
    assert "Traceback" not in r.err and r.err.startswith("plx: error:"), r


@pytest.mark.parametrize(
    "value",
    ["a.s=inf", "a.s=nan", "a.s=-inf", "a.s=1e999", "a.s=-1e400", 'a.d={"x": NaN}', 'a.d={"x": [1e999]}', "a.l=[1e999]", "a.l=1,inf", "a.l=[Infinity]"],
)
def test_non_finite_params_on_the_command_line(project: Project, value: str) -> None:
    project.write("operations/p.yaml", OP)
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  a: {operation: p}\n")
    r = project.plx("run", "graphs/g.yaml", "-p", value)
    assert r.code == 1
    _clean(r)
    assert "not a finite number" in r.err and "JSON" in r.err, r
    assert project.plx("log", "--json").json() == []  # refused before anything ran


def test_non_finite_sweep_values(project: Project) -> None:
    project.write("operations/p.yaml", OP)
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  a: {operation: p}\n")
    for sweep in ["a.s=1,inf", "a.s=[1, NaN]", "a.s=[1, 1e999]"]:
        r = project.plx("run", "graphs/g.yaml", "--sweep", sweep)
        assert r.code == 1 and "not a finite number" in r.err, r
        _clean(r)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
def test_non_finite_numbers_in_yaml_files(project: Project, value: str) -> None:
    project.write("operations/p.yaml", OP.replace("default: 1.0", f"default: {value}"))
    project.write("graphs/g.yaml", f"kind: graph\nname: g\nnodes:\n  a: {{operation: p, params: {{l: [1, {value}]}}}}\n")
    r = project.plx("validate")
    assert r.code == 1, r
    _clean(r)
    assert re.search(rf"operations/p.yaml:5:\d+: {re.escape(value)} is not a finite number", r.err), r
    assert re.search(rf"graphs/g.yaml:4:\d+: {re.escape(value)} is not a finite number", r.err), r
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 1 and "is not a finite number" in r.err
    _clean(r)


def test_an_int_of_5000_digits(project: Project) -> None:
    project.write("operations/p.yaml", OP)
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  a: {operation: p}\n")
    r = project.plx("run", "graphs/g.yaml", "-p", f"a.n={BIG}")
    assert r.code == 1 and "an integer of 5000 digits is too long (at most 4300)" in r.err, r
    _clean(r)
    assert len(r.err) < 400  # the value is shortened in the message
    r = project.plx("run", "graphs/g.yaml", "--sweep", f"a.n=1,{BIG}")
    assert r.code == 1 and "too long" in r.err, r
    _clean(r)
    project.write("graphs/g.yaml", f"kind: graph\nname: g\nnodes:\n  a: {{operation: p, params: {{n: {BIG}}}}}\n")
    r = project.plx("validate")
    assert r.code == 1 and "graphs/g.yaml:4:33: a number of 5000 digits is too long" in r.err, r
    _clean(r)


SANDBOX_OP = """\
kind: operation
name: s
runner: bash_jinja2
params: [{name: x, type: str, default: a}, {name: d, type: dict, default: {}}, {name: l, type: list_str, default: []}]
outputs: [{name: out}]
cmd: |
  echo start
  echo {{ BODY }} > {{ output.out }}
"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("param.x.upper.mro", "has no attribute 'mro'"),
        ("param.l.append(1)", "not allowed in a template (sandbox)"),
        ("param.d.missing", "has no attribute 'missing'"),
        ("range(10**9) | list", "sandbox"),
        ("1 / 0", "ZeroDivisionError"),
    ],
)
def test_templates_failing_at_render_time(project: Project, body: str, message: str) -> None:
    project.write("operations/s.yaml", SANDBOX_OP.replace("BODY", body))
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  a: {operation: s}\n")
    r = project.plx("preview", "graphs/g.yaml", "a")
    assert r.code == 1 and "operations/s.yaml:8: cannot render the command" in r.err and message in r.err, r
    _clean(r)
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 1 and "Traceback" not in r.err, r
    node = project.last_run()["nodes"]["a"]
    assert node["state"] == "failed" and node["reason"].startswith("operations/s.yaml:8: cannot render the command") and message in node["reason"], node


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("param.x | nosuch", "unknown filter 'nosuch'"),
        ("param.x | quote", "unknown filter 'quote'"),
        ("param.x is nosuch", "unknown test 'nosuch'"),
        ("param.x.__class__", "names starting with '_' are not allowed"),
        ("param.x.upper.__globals__", "names starting with '_' are not allowed"),
    ],
)
def test_templates_refused_at_validation(project: Project, body: str, message: str) -> None:
    project.write("operations/s.yaml", SANDBOX_OP.replace("BODY", "{% if param.x %}{{ " + body + " }}{% endif %}").replace("{{ {%", "{%").replace("%} }}", "%}"))
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  a: {operation: s}\n")
    for args in (["validate"], ["preview", "graphs/g.yaml", "a"], ["run", "graphs/g.yaml"]):
        r = project.plx(*args)
        assert r.code == 1 and f"operations/s.yaml:8: the template {'reads' if '_' in message else 'uses'}" in r.err and message in r.err, r
        _clean(r)


def test_a_graph_param_without_default_or_value(project: Project) -> None:
    """Found by the fuzz: a required graph param given no value was a TypeError from json."""
    project.write("operations/p.yaml", OP)
    project.write("graphs/g.yaml", 'kind: graph\nname: g\nparams: [{name: lr, type: float}]\nnodes:\n  a: {operation: p, params: {s: "${lr}"}}\n')
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 1 and "the graph param 'lr' of graphs/g.yaml has no default; give it with -p lr=VALUE" in r.err, r
    _clean(r)
    assert project.plx("graph", "graphs/g.yaml").code == 0  # showing the graph needs no value
    assert project.plx("run", "graphs/g.yaml", "-p", "lr=0.5").code == 0


@pytest.mark.parametrize(
    ("redirect", "code", "message"),
    [
        (">&-", 0, ""),  # stdout closed: nothing to print to, nothing wrong
        ("> /dev/full", 1, "plx: error: "),  # a full disk: said, and not exit 0
        ("| head -c 1 > /dev/null", 0, ""),  # a reader that stops early
    ],
)
@pytest.mark.parametrize("args", ["--version", "log -n 5", "--help"])
def test_output_that_cannot_be_written_is_a_message_and_the_right_exit_code(project: Project, redirect: str, code: int, message: str, args: str) -> None:
    """plx ends without Python's teardown once a command is done; what is still to be written must be
    written, and a failure to write it reported, not lost (exit 0) nor a traceback."""
    import subprocess

    from tests.conftest import PLX

    project.write("operations/p.yaml", OP)
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  a: {operation: p}\n")
    assert project.plx("run", "graphs/g.yaml").code == 0
    r = subprocess.run(["bash", "-c", f'"$0" {args} {redirect}; echo "rc=${{PIPESTATUS[0]}}" >&2', PLX], cwd=project.root, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().endswith(f"rc={code}"), r.stderr
    assert message in r.stderr, r.stderr


def test_a_store_plx_cannot_write_is_named_with_what_to_do(project: Project) -> None:
    """A read-only store (here a read-only tmpfs over .plx/): the path and the reason, and what to do,
    not "cannot write the output" (the output was fine) nor a traceback; exit 1."""
    import subprocess

    project.write("operations/p.yaml", OP)
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  a: {operation: p}\n")
    store = project.root / ".plx"
    store.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(store)], capture_output=True, text=True)
    if mounted.returncode != 0:
        print(f"cannot mount a read-only tmpfs here: {mounted.stderr.strip()}")
        pytest.skip(f"this machine forbids mount: {mounted.stderr.strip()}")
    try:
        for args in (("run", "graphs/g.yaml"), ("run", "graphs/g.yaml", "--dry-run"), ("cache", "stats")):
            r = project.plx(*args)
            assert r.code == 1, r
            _clean(r)
            assert f"{store}/objects: Read-only file system" in r.err and "set PLX_STORE to a folder you can write" in r.err, r
            assert "cannot write the output" not in r.err, r
    finally:
        subprocess.run(["umount", str(store)], check=True)
    assert project.plx("run", "graphs/g.yaml").code == 0  # writable again: nothing was left half-made


def test_a_store_with_runs_made_read_only_is_named_and_its_history_still_read(project: Project) -> None:
    """The same store, full of runs, bind-mounted read-only: what must write says so with what to do
    (no traceback from SQLite, which opens its files for writing); `plx log` lists the runs from
    their records."""
    import subprocess

    project.write("operations/p.yaml", OP)
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  a: {operation: p}\n")
    assert project.plx("run", "graphs/g.yaml").code == 0
    store = project.root / ".plx"
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(store), str(store)], capture_output=True, text=True)
    if mounted.returncode != 0:
        print(f"cannot bind-mount read-only here: {mounted.stderr.strip()}")
        pytest.skip(f"this machine forbids mount: {mounted.stderr.strip()}")
    try:
        for args in (("run", "graphs/g.yaml", "--dry-run"), ("cache", "stats")):
            r = project.plx(*args)
            assert r.code == 1, r
            _clean(r)
            assert f"{store}/index/cache.db:" in r.err and "set PLX_STORE to a folder you can write" in r.err, r
        r = project.plx("log")
        assert r.code == 0 and "Traceback" not in r.err and "listing the runs from their records" in r.err, r
        assert "success" in r.out, r
        assert project.plx("log", "last").code == 0
    finally:
        subprocess.run(["umount", str(store)], check=True)
