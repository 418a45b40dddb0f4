"""Hostile values in bash_jinja2 templates execute nothing (README and docs/reliability.md), and `| raw` is warned about."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Project

OP = """\
kind: operation
name: echo_it
runner: bash_jinja2
inputs: [{name: f, type: text}]
params: [{name: v, type: str}]
outputs: [{name: out, type: text}]
cmd: |
  echo {{ param.v }} > {{ output.out }}
  basename {{ input.f }} >> {{ output.out }}
  cat {{ input.f }} >> {{ output.out }}
  printf '%s\\n' '{{ param.v }}' "{{ input.f }}" >> {{ output.out }}
"""


def _pwned(*roots: Path) -> list[Path]:
    return [p for root in roots for p in root.rglob("PWN*")]


def test_hostile_param_and_input_file_name_execute_nothing(project: Project, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    project.write("operations/echo_it.yaml", OP)
    name = "n$(cd;touch PWN).txt"
    project.write(f"data/{name}", "content\n")
    project.write(
        "graphs/g.yaml",
        """\
        kind: graph
        name: g
        inputs: [{name: f, type: text, default: "data/n$(cd;touch PWN).txt"}]
        nodes:
          e: {operation: echo_it, inputs: {f: inputs.f}, params: {v: "x; touch PWN"}}
        outputs: {out: e.out}
        """,
    )
    r = project.plx("run", "graphs/g.yaml", "-i", f"f=data/{name}", env={"HOME": str(home)})
    assert r.code == 0, r
    assert _pwned(project.root, home) == []
    out = project.plx("get", "last", "out", "-o", "-")
    lines = out.out.splitlines()
    assert lines[:3] == ["x; touch PWN", name, "content"] and lines[3] == "x; touch PWN" and lines[4].endswith("/" + name), out
    # The same through -p on the command line, and `plx preview` shows the quoted script.
    r = project.plx("run", "graphs/g.yaml", "-i", f"f=data/{name}", "-p", "e.v=$(touch PWN2)`touch PWN3`", env={"HOME": str(home)})
    assert r.code == 0, r
    assert _pwned(project.root, home) == []
    lines = project.plx("get", "last", "out", "-o", "-").out.splitlines()
    assert lines[0] == lines[3] == "$(touch PWN2)`touch PWN3`", lines
    pv = project.plx("preview", "graphs/g.yaml", "e", "-p", "e.v=a; b")
    assert pv.code == 0 and "echo 'a; b' > " in pv.out, pv


def test_validate_warns_about_raw_on_params_and_inputs(project: Project) -> None:
    project.write(
        "operations/flags.yaml",
        """\
        kind: operation
        name: flags
        runner: bash_jinja2
        inputs: [{name: f, min: 0}]
        params: [{name: flags, type: str, default: "-n 1"}]
        outputs: [{name: out}]
        cmd: |
          head {{ param.flags | raw }} /etc/hostname > {{ output.out | raw }}
          echo {{ input.f | raw }} {{ param.flags | q }}
        """,
    )
    r = project.plx("validate")
    assert r.code == 0, r
    warnings = [line for line in r.err.splitlines() if line.startswith("plx: warning:")]
    assert len(warnings) == 2, r  # output.out | raw is plx's own path: no warning
    assert "operations/flags.yaml:8" in warnings[0] and "param.flags | raw" in warnings[0]
    assert "operations/flags.yaml:9" in warnings[1] and "input.f | raw" in warnings[1]
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  a: {operation: flags}\n")
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 0, r  # raw still works as meant: head -n 1
