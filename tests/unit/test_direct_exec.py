"""executors/direct.py: a lone `exec` started without bash does what bash would have done, or is left to bash."""

from __future__ import annotations

import os
import queue
from pathlib import Path

import pytest

from plx.executors import direct
from plx.executors.base import Finished, Job
from plx.executors.local import LocalExecutor

ENV = {"PLX_RUN_ID": "r1", "PLX_NODE": "n", "INPUT_SRC": "in put.txt", "OUTPUT_OUT": "out.txt", "PARAM_WORD": "word", "PARAM_SPACED": "a b"}


def _run(tmp: Path, monkeypatch: pytest.MonkeyPatch, on: bool, script: str, env: dict[str, str] = ENV) -> tuple[int | None, str, str, str]:
    """Run `exec SCRIPT` as a node, without bash (on) or with it: exit code, stdout, stderr, out.txt."""
    monkeypatch.setenv("PLX_DIRECT_EXEC", "1" if on else "0")
    monkeypatch.setenv("PLX_WARM_SHELLS", "0")
    cwd = tmp / ("direct" if on else "bash")
    cwd.mkdir()
    (cwd / "in put.txt").write_text("one\ntwo\n")
    (cwd / "script-without-shebang").write_text("echo run by bash as a script\n")
    (cwd / "script-without-shebang").chmod(0o755)
    (cwd / "not-executable").write_text("#!/bin/sh\necho no\n")
    results: queue.Queue[Finished] = queue.Queue()
    ex = LocalExecutor(results, jobs=1)
    try:
        ex.submit(Job("n", ["bash", "-e", "-o", "pipefail", "-c", "exec " + script, "op"], env, cwd, cwd / "stdout", cwd / "stderr", None))
        done = results.get(timeout=20)
    finally:
        ex.close()
    read = lambda p: p.read_text().replace(str(cwd), "CWD") if p.exists() else "-"  # noqa: E731
    out = read(cwd / "stdout")
    if script == "env":  # the same variables; bash lists them in an order of its own
        out = "".join(sorted(line + "\n" for line in out.splitlines() if not line.startswith("PLX_DIRECT_EXEC=")))
    return done.exit_code, out, read(cwd / "stderr"), read(cwd / "out.txt")


STARTED_DIRECT = [
    'tr a-z A-Z < "$INPUT_SRC" > "$OUTPUT_OUT"',
    "env",
    "sh -c 'echo \"$0 $# $PWD $SHLVL\"; exit 7' \"${PARAM_WORD}\" 'x y' >> $OUTPUT_OUT",
    "sh -c 'echo out; echo err >&2' > out.txt 2>&1",
    "sh -c 'echo out; echo err >&2' 2>&1 > out.txt",
    "sh -c 'echo out; echo err >&2' &> out.txt",
    "sh -c 'cat; echo err >&2' < \"$INPUT_SRC\" 2> out.txt",
    'cat -n "$INPUT_SRC" in\\ put.txt',
]


@pytest.mark.parametrize("script", STARTED_DIRECT)
def test_a_program_started_without_bash_behaves_as_bash_would_start_it(script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, **ENV}
    if "\\" not in script:  # (a backslash is bash's: that one goes to bash, and must still behave)
        assert direct.plan("exec " + script, env, str(tmp_path)) is not None
    assert _run(tmp_path, monkeypatch, True, script) == _run(tmp_path, monkeypatch, False, script)


LEFT_TO_BASH = [
    "cat missing.txt > out.txt",  # no such input: bash's message
    "cat < missing.txt",  # a redirection that cannot be opened: bash's message
    "no-such-program-here",
    "./not-executable",
    "./script-without-shebang",  # ENOEXEC: bash runs it as a script
    "echo $PARAM_SPACED > out.txt",  # word splitting
    "echo $UNSET_ONE > out.txt",
    "echo ~ > out.txt",
    "echo $HOSTTYPE > out.txt",  # a variable of bash's own
    "sh -c 'echo $1' x 1>&2 2>out.txt",
]


@pytest.mark.parametrize("script", LEFT_TO_BASH)
def test_what_plx_cannot_do_exactly_is_left_to_bash(script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(tmp_path, monkeypatch, True, script) == _run(tmp_path, monkeypatch, False, script)


@pytest.mark.parametrize(
    "env",
    [
        {"SHLVL": "4", "OLDPWD": "/"},
        {"SHLVL": "007", "OLDPWD": "/no/such/folder"},
        {"SHLVL": "abc", "OLDPWD": "relative"},
        {"PWD": "/"},
    ],
)
def test_pwd_oldpwd_and_shlvl_are_what_bash_gives_the_program(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in {"SHLVL", "OLDPWD"} - set(env):
        monkeypatch.delenv(k, raising=False)
    assert direct.plan("exec env", {**os.environ, **ENV}, str(tmp_path)) is not None
    got, want = _run(tmp_path, monkeypatch, True, "env"), _run(tmp_path, monkeypatch, False, "env")
    assert got == want and "SHLVL=" in got[1]


def test_an_environment_bash_would_change_leaves_the_start_to_bash(tmp_path: Path) -> None:
    for name in ("IFS", "PS4", "SHELLOPTS", "BASH_ENV", "BASH_FUNC_tr%%"):
        assert direct.plan("exec env", {"PATH": "/usr/bin", name: "x"}, str(tmp_path)) is None, name
    assert direct.plan("exec env", {"PATH": "bin:/usr/bin"}, str(tmp_path)) is None  # a relative PATH entry
    assert direct.plan("exec echo 12>f", {"PATH": "/usr/bin"}, str(tmp_path)) is None  # fd 12, for bash
