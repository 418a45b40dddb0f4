"""The python runner's interpreter in the cache key and the record: fingerprinted once, re-read
after a package is installed, shown by `plx compare`; `python:` in plx.yaml and operations."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import Project

PY_OP = """\
kind: operation
name: py
runner: python
params: [{name: tag, type: str}]
outputs: [{name: out, type: text}]
cmd: |
  import os, sys
  os.makedirs(os.environ["PLX_PROJECT_ROOT"] + "/counts", exist_ok=True)
  open(os.environ["PLX_PROJECT_ROOT"] + "/counts/" + param["tag"], "a").write("run\\n")
  open(output["out"], "w").write(sys.prefix + "\\n")
"""

GRAPH = """\
kind: graph
name: g
nodes:
  a: {operation: py, params: {tag: a}}
  b: {operation: py, params: {tag: b}}
  c: {operation: py, params: {tag: c}}
"""


def make_venv(project: Project) -> Path:
    """A venv of the project (tools/pywrap runs it and counts how often plx lists its packages)."""
    venv = project.root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    wrap = project.write(
        "tools/pywrap",
        f"""\
        #!/bin/sh
        case "$2" in *importlib.metadata*) mkdir -p {project.root}/counts; echo probe >> {project.root}/counts/probe;; esac
        exec {venv}/bin/python "$@"
        """,
    )
    wrap.chmod(0o755)
    return next((venv / "lib").glob("python*/site-packages"))


def install(site: Path, name: str, version: str) -> None:
    """What pip leaves behind, as far as importlib.metadata is concerned."""
    for old in site.glob(f"{name}-*.dist-info"):
        shutil.rmtree(old)
    d = site / f"{name}-{version}.dist-info"
    d.mkdir()
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_the_interpreter_is_fingerprinted_once_and_again_after_an_install(project: Project) -> None:
    site = make_venv(project)
    install(site, "fakepkg", "1.0")
    project.write("plx.yaml", "python: tools/pywrap\n")
    project.write("operations/py.yaml", PY_OP)
    project.write("graphs/g.yaml", GRAPH)
    (project.root / "sub").mkdir()
    r = project.plx("run", "../graphs/g.yaml", "--json", cwd=project.root / "sub")  # plx.yaml's path is from the project root
    assert r.code == 0, r
    assert [project.counter(t) for t in ("probe", "a", "b", "c")] == [1, 1, 1, 1]
    assert project.plx("get", "last", "a.out", "-o", "-").out == f"{project.root / 'venv'}\n"
    record = next((project.root / ".plx/runs").glob("*/run.json")).read_text()
    assert '"fakepkg": "1.0"' in record and record.count('"fakepkg"') == 1  # the package list is kept once per run

    r = project.plx("run", "graphs/g.yaml", "--json")
    assert {n["state"] for n in r.json()["nodes"].values()} == {"cached"}
    assert project.counter("probe") == 1  # not looked at again: nothing was installed

    install(site, "fakepkg", "2.0")
    install(site, "newpkg", "0.1")
    dry = project.plx("run", "graphs/g.yaml", "--dry-run")
    assert "python environment changed: fakepkg 1.0 → 2.0, + newpkg 0.1" in dry.out, dry
    r = project.plx("run", "graphs/g.yaml", "--json")
    assert r.code == 0, r
    assert {n["state"] for n in r.json()["nodes"].values()} == {"success"}
    assert [project.counter(t) for t in ("probe", "a", "b", "c")] == [2, 2, 2, 2]  # once, by --dry-run: the run found it on disk

    cmp = project.plx("compare", "last~1", "last", "--json")
    assert cmp.code == 0, cmp
    rows = {row["name"]: row for row in cmp.json()["rows"] if row["kind"] == "environment"}
    assert rows["package fakepkg"]["values"] == ["1.0", "2.0"] and rows["package fakepkg"]["changes"] == [None, "changed"]
    assert rows["package newpkg"]["values"] == [None, "0.1"] and rows["package newpkg"]["changes"] == [None, "added"]
    assert "python" not in rows  # the same interpreter version
    text = project.plx("compare", "last~1", "last").out
    assert "package newpkg" in text and "0.1 (added)" in text and "2.0 (changed)" in text

    shutil.rmtree(next(site.glob("newpkg-*.dist-info")))
    assert project.plx("run", "graphs/g.yaml").code == 0
    assert [project.counter(t) for t in ("probe", "a")] == [3, 3]
    rows = {row["name"]: row for row in project.plx("compare", "last~1", "last", "--json").json()["rows"]}
    assert rows["package newpkg"]["changes"] == [None, "removed"]


def test_python_in_an_operation_overrides_plx_yaml_and_may_be_a_command_on_path(project: Project) -> None:
    make_venv(project)
    project.write("plx.yaml", "python: tools/pywrap\n")
    project.write("operations/py.yaml", PY_OP.replace("runner: python\n", "runner: python\npython: python3\n"))
    project.write("graphs/g.yaml", GRAPH)
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 0, r
    assert project.counter("probe") == 0
    prefix = subprocess.run(["python3", "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True).stdout
    assert project.plx("get", "last", "a.out", "-o", "-").out == prefix


def test_nodes_of_other_runners_need_no_fingerprint(project: Project) -> None:
    project.write("operations/c.yaml", "kind: operation\nname: c\nrunner: command\noutputs: [{name: out}]\ncmd: echo hi > $OUTPUT_OUT\n")
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  c: {operation: c}\n")
    assert project.plx("run", "graphs/g.yaml").code == 0
    assert not (project.root / ".plx/envs").exists()
    assert project.plx("log", "last", "--json").json()["nodes"]["c"]["state"] == "success"


def test_a_bad_python_setting_is_reported_with_its_line(project: Project) -> None:
    project.write("plx.yaml", "jobs: 2\npython: 3\n")
    project.write("operations/py.yaml", PY_OP)
    r = project.plx("validate")
    assert r.code == 1
    assert "plx.yaml:2:9: 'python' must be an interpreter" in r.err, r
