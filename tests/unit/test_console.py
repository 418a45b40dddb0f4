"""console.quick_run_args reads a plain `plx run` command line exactly as typer does (cli.run), or leaves it to typer."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main

from plx.cli import app
from plx.console import RUN_DEFAULTS, quick_run_args


def typer_reads(argv: list[str]) -> dict[str, Any]:
    """cli.run's parameters as typer's click command parses argv (no command runs)."""
    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    ctx = command.make_context("run", list(argv[1:]))
    params = dict(ctx.params)
    params["nodes"] = list(params["nodes"] or [])  # None when none are given: run_command reads `nodes or []`
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


PLAIN = [
    ["run", "g.yaml"],
    ["run", "graphs/g.yaml", "-j2"],
    ["run", "graphs/g.yaml", "-j", "2"],
    ["run", "-j", "12", "graphs/g.yaml"],
    ["run", "--jobs=3", "g.yaml", "a", "b[x]"],
    ["run", "--jobs", "3", "g.yaml", "--no-cache", "-k", "--json"],
    ["run", "g.yaml", "--keep-going", "node"],
    ["run", "-", "n"],
]
TO_TYPER = [
    ["run"],
    ["run", "-j", "2"],
    ["run", "g.yaml", "-j", "0"],
    ["run", "g.yaml", "-j", "x"],
    ["run", "g.yaml", "-j"],
    ["run", "g.yaml", "-j", "01"],
    ["run", "g.yaml", "-j", "²"],
    ["run", "g.yaml", "-j2", "-j3"],
    ["run", "g.yaml", "--json", "--json"],
    ["run", "g.yaml", "-p", "a=1"],
    ["run", "g.yaml", "--help"],
    ["run", "g.yaml", "--"],
    ["run", "g.yaml", "-kj2"],
    ["run", "g.yaml", "--dry-run"],
    ["run", "g.yaml", "--jobs2"],
    ["log", "g.yaml"],
    ["--version"],
    [],
]


@pytest.mark.parametrize("argv", PLAIN, ids=" ".join)
def test_a_plain_run_is_read_as_typer_reads_it(argv: list[str]) -> None:
    assert quick_run_args(argv) == typer_reads(argv)


@pytest.mark.parametrize("argv", TO_TYPER, ids=" ".join)
def test_anything_else_is_left_to_typer(argv: list[str]) -> None:
    assert quick_run_args(argv) is None


def test_the_defaults_are_those_of_cli_run() -> None:
    """A parameter added to `plx run` (or a default changed) must be added to RUN_DEFAULTS too."""
    assert typer_reads(["run", "g.yaml"]) == {**RUN_DEFAULTS, "graph": "g.yaml"}
