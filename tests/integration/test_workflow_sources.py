"""`sources:` (scripts in the cache key, copied into the work folder) and PLX_PROJECT_ROOT, through the installed command."""

from __future__ import annotations

import os
import time

from tests.conftest import Project

# A command op that runs a project script by its relative path, and counts its executions.
TRAIN = """\
kind: operation
name: {name}
runner: command
sources: {sources}
params:
  - {{name: tag, type: str}}
outputs:
  - {{name: out, type: text, filename: out.txt}}
cmd: |
  mkdir -p "$PLX_PROJECT_ROOT/counts" && echo run >> "$PLX_PROJECT_ROOT/counts/$PARAM_TAG"
  {cmd} > "$OUTPUT_OUT"
"""


def op(project: Project, name: str, sources: str, cmd: str) -> None:
    project.write(f"operations/{name}.yaml", TRAIN.format(name=name, sources=sources, cmd=cmd))


def setup_two(project: Project) -> str:
    project.write("scripts/train.py", "print('train v1')\n")
    project.write("scripts/evaluate.py", "print('evaluate v1')\n")
    op(project, "train", "[scripts/train.py]", "python3 scripts/train.py")
    op(project, "evaluate", "[scripts/evaluate.py]", "python3 scripts/evaluate.py")
    project.write(
        "graphs/g.yaml",
        """\
        kind: graph
        name: g
        nodes:
          train: {operation: train, params: {tag: train}}
          evaluate: {operation: evaluate, params: {tag: evaluate}}
        outputs: {model: train.out, report: evaluate.out}
        """,
    )
    return "graphs/g.yaml"


def test_editing_a_script_reruns_only_the_nodes_that_use_it(project: Project) -> None:
    g = setup_two(project)
    r = project.plx("run", g, "--json")
    assert r.code == 0, r
    assert (project.counter("train"), project.counter("evaluate")) == (1, 1)
    assert project.plx("get", "last", "train.out", "-o", "-").out == "train v1\n"
    assert project.plx("run", g).code == 0
    assert (project.counter("train"), project.counter("evaluate")) == (1, 1)  # nothing changed: all cached

    project.write("scripts/evaluate.py", "print('evaluate v2')\n")
    r = project.plx("run", g, "--json")
    assert r.code == 0, r
    assert (project.counter("train"), project.counter("evaluate")) == (1, 2)
    assert r.json()["nodes"]["train"]["state"] == "cached"
    assert project.plx("get", "last", "evaluate.out", "-o", "-").out == "evaluate v2\n"

    # Touched, or rewritten with the same bytes: not a change.
    script = project.root / "scripts/evaluate.py"
    os.utime(script, (time.time() + 5, time.time() + 5))
    script.write_text("print('evaluate v2')\n")
    assert project.plx("run", g).code == 0
    assert (project.counter("train"), project.counter("evaluate")) == (1, 2)

    # --dry-run says why.
    project.write("scripts/train.py", "print('train v2')\n")
    dry = project.plx("run", g, "--dry-run")
    assert "source scripts/train.py changed" in dry.out, dry
    assert project.plx("run", g).code == 0
    assert (project.counter("train"), project.counter("evaluate")) == (2, 2)
    # A rerun finds the sources in the project, and its nodes get the project's root.
    r = project.plx("rerun", "last", "--no-cache")
    assert r.code == 0, r
    assert (project.counter("train"), project.counter("evaluate")) == (3, 3)


def test_folders_and_globs_are_copied_under_their_relative_paths(project: Project) -> None:
    project.write("pkg/mylib/__init__.py", "VALUE = 'one'\n")
    project.write("pkg/mylib/sub/helpers.py", "def double(x):\n    return x * 2\n")
    project.write("pkg/mylib/__pycache__/junk.pyc", "not part of the key\n")
    project.write("conf/a.cfg", "a\n")
    project.write("conf/b.cfg", "b\n")
    project.write("conf/notes.txt", "not matched\n")
    op(
        project,
        "uses",
        "[pkg/mylib, 'conf/*.cfg']",
        "{ PYTHONPATH=pkg python3 -c 'import mylib; from mylib.sub.helpers import double; print(mylib.VALUE, double(2))'; cat conf/*.cfg; ls conf; pwd; }",
    )
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  u: {operation: uses, params: {tag: u}}\noutputs: {out: u.out}\n")
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 0, r
    lines = project.plx("get", "last", "u.out", "-o", "-").out.splitlines()
    assert lines[:5] == ["one 4", "a", "b", "a.cfg", "b.cfg"]  # notes.txt is not a source
    assert lines[5] != str(project.root)  # the node's cwd is its own work folder, not the project
    assert project.counter("u") == 1

    project.write("pkg/mylib/__pycache__/junk.pyc", "changed: still not part of the key\n")
    project.write("conf/notes.txt", "changed, not matched\n")
    assert project.plx("run", "graphs/g.yaml").code == 0
    assert project.counter("u") == 1

    project.write("conf/c.cfg", "c\n")  # a new file matching the glob
    assert project.plx("run", "graphs/g.yaml").code == 0
    assert project.counter("u") == 2
    project.write("pkg/mylib/sub/helpers.py", "def double(x):\n    return x * 3\n")  # a file deep in the folder
    assert project.plx("run", "graphs/g.yaml").code == 0
    assert project.counter("u") == 3
    assert project.plx("get", "last", "u.out", "-o", "-").out.splitlines()[0] == "one 6"
    # The record keeps each source's hash in the node's recipe.
    recipe = (project.root / ".plx/runs").glob("*/run.json")
    assert any("pkg/mylib/sub/helpers.py" in p.read_text() for p in recipe)


def test_a_script_edited_while_the_run_waits_fails_the_node(project: Project) -> None:
    """The key used the hash taken when the run started: the copy is checked against it."""
    project.write("scripts/s.sh", "echo one\n")
    op(project, "slow", "[scripts/s.sh]", "bash scripts/s.sh")
    project.write("operations/nap.yaml", f"kind: operation\nname: nap\nrunner: command\noutputs: [{{name: out}}]\ncmd: for i in $(seq 2400); do [ -e {project.root}/go ] && break; sleep 0.05; done; touch $OUTPUT_OUT\n")
    project.write(
        "operations/after.yaml", TRAIN.format(name="after", sources="[scripts/s.sh]", cmd="bash scripts/s.sh").replace("params:", "inputs: [{name: x}]\nparams:")
    )
    project.write(
        "graphs/g.yaml",
        "kind: graph\nname: g\nnodes:\n  nap: {operation: nap}\n  after: {operation: after, inputs: {x: nap.out}, params: {tag: after}}\n",
    )
    p = project.popen("run", "graphs/g.yaml")
    project.wait_started()
    project.write("scripts/s.sh", "echo two\n")
    (project.root / "go").touch()  # nap ends only now: after starts after the edit, however loaded the machine
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1, err
    assert "source scripts/s.sh changed after the run started" in err
    assert project.counter("after") == 0


def test_missing_escaping_and_empty_sources_are_validation_errors(project: Project) -> None:
    project.write("scripts/ok.py", "")
    project.write(
        "operations/bad.yaml",
        """\
        kind: operation
        name: bad
        runner: command
        sources:
          - scripts/ok.py
          - scripts/missing.py
          - "scripts/*.R"
          - ../outside.py
          - /etc/hostname
        outputs: [{name: out}]
        cmd: touch $OUTPUT_OUT
        """,
    )
    r = project.plx("validate", "operations/bad.yaml")
    assert r.code == 1, r
    errors = [line for line in r.err.splitlines() if line.startswith("plx: error:")]
    assert errors == [
        "plx: error: operations/bad.yaml:6:5: source 'scripts/missing.py': no such file or folder (sources are looked up from the project root)",
        "plx: error: operations/bad.yaml:7:5: source 'scripts/*.R': the pattern matches no file (sources are looked up from the project root)",
        "plx: error: operations/bad.yaml:8:5: source '../outside.py' is outside the project (sources are project files, written relative to the project root)",
        "plx: error: operations/bad.yaml:9:5: source '/etc/hostname' is outside the project (sources are project files, written relative to the project root)",
    ]
    # ... and the same before a run, which then does not start.
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  b: {operation: bad}\n")
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 1 and "operations/bad.yaml:6:5: source 'scripts/missing.py'" in r.err, r
    assert project.plx("log", "--json").json() == []
    # A source where an output is written, and a source that is not a string.
    project.write("operations/clash.yaml", "kind: operation\nname: clash\nrunner: command\nsources: [out]\noutputs: [{name: out}]\ncmd: touch $OUTPUT_OUT\n")
    project.write("out", "x")
    r = project.plx("validate", "operations/clash.yaml")
    assert "operations/clash.yaml:4:11: source 'out' would be copied where output 'out' is written (out)" in r.err, r
    project.write("operations/num.yaml", "kind: operation\nname: num\nrunner: command\nsources: [12]\ncmd: 'true'\n")
    r = project.plx("validate", "operations/num.yaml")
    assert r.code == 1 and "operations/num.yaml:4:11: 'sources' must be a string" in r.err, r


def test_an_absolute_source_inside_the_project_keeps_its_relative_path(project: Project) -> None:
    project.write("scripts/abs.sh", "echo absolute\n")
    op(project, "absop", f"['{project.root}/scripts/abs.sh']", "bash scripts/abs.sh")
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  a: {operation: absop, params: {tag: a}}\n")
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 0, r
    assert project.plx("get", "last", "a.out", "-o", "-").out == "absolute\n"


def test_every_runner_gets_the_project_root(project: Project) -> None:
    project.write("operations/c.yaml", 'kind: operation\nname: c\nrunner: command\noutputs: [{name: out}]\ncmd: echo "$PLX_PROJECT_ROOT" > $OUTPUT_OUT\n')
    project.write("operations/t.yaml", 'kind: operation\nname: t\nrunner: bash_jinja2\noutputs: [{name: out}]\ncmd: echo "$PLX_PROJECT_ROOT" > {{ output.out }}\n')
    project.write(
        "operations/p.yaml",
        "kind: operation\nname: p\nrunner: python\noutputs: [{name: out}]\n"
        "cmd: |\n  import os\n  open(output['out'], 'w').write(os.environ['PLX_PROJECT_ROOT'] + '\\n')\n",
    )
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  c: {operation: c}\n  t: {operation: t}\n  p: {operation: p}\n")
    (project.root / "sub").mkdir()
    r = project.plx("run", "../graphs/g.yaml", cwd=project.root / "sub")
    assert r.code == 0, r
    for n in "ctp":
        assert project.plx("get", "last", f"{n}.out", "-o", "-").out == f"{project.root}\n"


def test_with_rev_the_sources_come_from_that_commit(project: Project) -> None:
    g = setup_two(project)
    project.git("add", "-A")
    project.git("commit", "-qm", "v1")
    project.write("scripts/train.py", "print('train v2')\n")
    r = project.plx("run", g, "--rev", "HEAD")
    assert r.code == 0, r
    assert project.plx("get", "last", "train.out", "-o", "-").out == "train v1\n"
    assert project.plx("run", g).code == 0
    assert project.plx("get", "last", "train.out", "-o", "-").out == "train v2\n"
    # With --rev, PLX_PROJECT_ROOT is the revision's tree (the counts went there); evaluate's script
    # is the same in both, so its result was reused.
    assert (project.counter("train"), project.counter("evaluate")) == (1, 0)
