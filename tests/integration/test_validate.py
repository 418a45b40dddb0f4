"""`plx validate`, `schema`, `graph`, `ops`, `init` and the CLI basics, through the installed command."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import DATA, PLX, Project

CASES = sorted(p.stem for p in (DATA / "invalid").glob("*.yaml"))


def run_in_data(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PLX, *args], cwd=DATA, capture_output=True, text=True, timeout=60)


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES)
def test_invalid_file_reports_exactly_its_errors(case: str) -> None:
    proc = run_in_data("validate", f"invalid/{case}.yaml")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    got = [line.removeprefix("plx: error: ") for line in proc.stderr.splitlines() if line.startswith("plx: error: ")]
    expected = (DATA / "invalid" / f"{case}.expected").read_text().splitlines()
    assert got == expected


def test_every_error_names_file_and_line() -> None:
    for case in CASES:
        for line in (DATA / "invalid" / f"{case}.expected").read_text().splitlines():
            assert line.startswith(f"invalid/{case}.yaml:"), line


def test_valid_project_validates() -> None:
    proc = run_in_data("validate")
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stderr


def test_all_errors_of_many_files_are_reported() -> None:
    proc = run_in_data("validate", "invalid/unknown_key.yaml", "invalid/cycle.yaml", "invalid/bad_param_value.yaml")
    assert proc.returncode == 1
    assert "6 errors in 3 files" in proc.stderr


def test_alias_bomb_fails_fast() -> None:
    t0 = time.monotonic()
    proc = run_in_data("validate", "invalid/alias_bomb.yaml")
    assert proc.returncode == 1
    assert time.monotonic() - t0 < 30  # generous guard (plx starts under coverage on a loaded machine); the bench measures the real figure


def test_an_alias_inside_the_value_it_names_is_an_error_not_a_traceback(project: Project) -> None:
    """`a: &x {b: [*x]}` is a value that holds itself: PyYAML builds it; plx must say where, not recurse."""
    project.write("operations/e.yaml", "kind: operation\nname: e\nrunner: command\noutputs: [{name: out}]\ncmd: echo > $OUTPUT_OUT\n")
    project.write("graphs/self.yaml", "kind: graph\nname: g\nnodes:\n  a: &x {operation: e, extra: [*x]}\n")
    project.write("graphs/list.yaml", "kind: graph\nname: g\nnodes:\n  a: {operation: e}\nx: &l [1, *l]\n")
    project.write("graphs/shared.yaml", "kind: graph\nname: g\nnodes:\n  a: &s {operation: e}\n  b: *s\n")  # reused, not inside itself
    for name, where in (("self", "self.yaml:4:6:"), ("list", "list.yaml:5:4:")):
        r = project.plx("validate", f"graphs/{name}.yaml")
        assert r.code == 1 and "Traceback" not in r.err, r
        assert where in r.err and "refers to the value itself" in r.err, r.err
    assert project.plx("validate", "graphs/shared.yaml").code == 0


def test_missing_file_is_usage_error() -> None:
    proc = run_in_data("validate", "nope.yaml")
    assert proc.returncode == 2
    assert "nope.yaml: no such file" in proc.stderr


def test_unknown_option_is_usage_error(project: Project) -> None:
    r = project.plx("run", "--frobnicate")
    assert r.code == 2


def test_version_and_help() -> None:
    proc = subprocess.run([PLX, "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("plx ")
    helptext = subprocess.run([PLX, "--help"], capture_output=True, text=True).stdout
    for cmd in ("init", "validate", "run", "preview", "graph", "ops", "log", "get", "cache", "schema"):
        assert f"  {cmd} " in helptext, cmd
    module = subprocess.run([Path(PLX).parent / "python", "-m", "plx", "--version"], capture_output=True, text=True)
    assert module.stdout == proc.stdout


def test_each_command_is_found_alone() -> None:
    """plx builds only the command a command line names (cli._only_the_invoked_command): every command
    and the `cache` group still answer, and a name that is no command still gets click's message."""
    helptext = subprocess.run([PLX, "--help"], capture_output=True, text=True).stdout
    names = [line.split()[0] for line in helptext.split("Commands:")[1].splitlines() if line.startswith("  ") and line.split()]
    assert {"run", "log", "cache", "validate"} <= set(names)
    for name in names:
        proc = subprocess.run([PLX, name, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and f"Usage: plx {name} " in proc.stdout, (name, proc.stdout, proc.stderr)
    stats = subprocess.run([PLX, "cache", "--help"], capture_output=True, text=True).stdout
    assert "stats" in stats and "gc" in stats
    typo = subprocess.run([PLX, "rnu", "graphs/x.yaml"], capture_output=True, text=True)
    assert typo.returncode == 2 and "No such command 'rnu'" in typo.stderr


@pytest.mark.parametrize("kind", ["operation", "graph"])
def test_schema_validates_real_files(kind: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")  # a test dependency: installed by the test extra
    schema = json.loads(run_in_data("schema", kind).stdout)
    import yaml

    files = (DATA / "ops").glob("*.yaml") if kind == "operation" else (DATA / "valid").glob("*.yaml")
    for f in files:
        jsonschema.validate(yaml.safe_load(f.read_text()), schema)
    bad = yaml.safe_load((DATA / "invalid" / ("unknown_key.yaml" if kind == "operation" else "wrong_kind.yaml")).read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_graph_formats() -> None:
    text = run_in_data("graph", "valid/nested.yaml").stdout
    assert "again  <- inner/join (joined → lines)" in text
    dot = run_in_data("graph", "valid/nested.yaml", "--format", "dot").stdout
    assert '"inner/sort" -> "inner/join"' in dot and dot.startswith('digraph "nested"')
    mermaid = run_in_data("graph", "valid/nested.yaml", "--format", "mermaid").stdout
    assert mermaid.startswith("graph LR") and "-->" in mermaid


def test_ops_table() -> None:
    out = run_in_data("ops").stdout
    header = out.splitlines()[0].split()
    assert header == ["name", "runner", "inputs", "params", "outputs", "title"]
    assert "sort_lines" in out and "bash_jinja2" in out and "Sort lines" in out
    rows = json.loads(run_in_data("ops", "--json").stdout)
    concat = next(r for r in rows if r["name"] == "concat")
    assert concat["inputs"] == ["parts[]", "header?"]


def test_init_creates_a_runnable_project_and_keeps_files(project: Project) -> None:
    project.write("operations/word_count.yaml", "kind: operation\nname: word_count\nrunner: command\ncmd: echo mine\n")
    r = project.plx("init")
    assert r.code == 0, r
    assert "kept (exists)" in r.err
    assert "echo mine" in (project.root / "operations/word_count.yaml").read_text()
    assert ".plx/" in (project.root / ".gitignore").read_text()
    # A fresh folder gets the full example, which validates and runs.
    fresh = Project(project.root / "sub")
    fresh.root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=fresh.root, check=True)
    assert fresh.plx("init").code == 0
    assert fresh.plx("validate").code == 0
    r = fresh.plx("run", "graphs/example.yaml")
    assert r.code == 0, r
    assert fresh.plx("init").code == 0
    assert (fresh.root / ".gitignore").read_text().count(".plx/") == 1


def test_project_root_is_found_from_a_subfolder(project: Project) -> None:
    project.plx("init")
    sub = project.root / "data"
    r = project.plx("validate", cwd=sub)
    assert r.code == 0, r
    assert "2 files valid" in r.err


def test_bad_plx_yaml(project: Project) -> None:
    project.write("plx.yaml", "operatons: [ops]\njobs: zero\n")
    r = project.plx("validate")
    assert r.code == 1
    assert "plx.yaml:1:1: unknown setting 'operatons' (did you mean 'operations'?)" in r.err
    assert "plx.yaml:2:7: 'jobs' must be a positive integer" in r.err
    assert "Traceback" not in r.err


def test_large_generated_graph_validates(tmp_path: Path) -> None:
    proj = Project(tmp_path)
    proj.write("operations/noop.yaml", 'kind: operation\nname: noop\nrunner: command\ninputs: [{name: src, min: 0}]\noutputs: [{name: out}]\ncmd: touch "$OUTPUT_OUT"\n')
    lines = ["kind: graph", "name: big", "nodes:"]
    for i in range(2000):
        lines += [f"  n{i}:", "    operation: noop"] + ([f"    inputs: {{src: n{i - 1}.out}}"] if i else [])
    proj.write("graphs/big.yaml", "\n".join(lines) + "\n")
    r = proj.plx("validate", "graphs/big.yaml")
    assert r.code == 0, r
