"""executors/direct.py: a lone `exec` started without bash does what bash would have done, or is left to bash."""

from __future__ import annotations

import os
import queue
from pathlib import Path

import pytest

from plx.executors import direct
from plx.executors.base import Finished, Job
from plx.executors.local import LocalExecutor


def _plan(script: str, job_env: dict[str, str], cwd: Path, environ: dict[str, str] | None = None) -> direct.Direct | None:
    environ = dict(os.environ) if environ is None else environ
    view = direct.probe("bash", environ)
    return None if view is None else direct.plan(script, job_env, environ, view, str(cwd))


ENV = {"PLX_RUN_ID": "r1", "PLX_NODE": "n", "INPUT_SRC": "in put.txt", "OUTPUT_OUT": "out.txt", "PARAM_WORD": "word", "PARAM_SPACED": "a b"}


def _run(tmp: Path, monkeypatch: pytest.MonkeyPatch, on: bool, script: str, env: dict[str, str] = ENV) -> tuple[int | None, str, str, str]:
    """Run `exec SCRIPT` as a node, without bash (on) or with it: exit code, stdout, stderr, out.txt."""
    monkeypatch.setenv("PLX_DIRECT_EXEC", "1" if on else "0")
    monkeypatch.setenv("PLX_WARM_SHELLS", "0")
    cwd = tmp / ("direct" if on else "bash")
    cwd.mkdir(exist_ok=True)
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
    if "\\" not in script:  # (a backslash is bash's: that one goes to bash, and must still behave)
        assert _plan("exec " + script, ENV, tmp_path) is not None
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
    got, want = _run(tmp_path, monkeypatch, True, "env"), _run(tmp_path, monkeypatch, False, "env")
    assert got == want and "SHLVL=" in got[1]


def test_an_environment_bash_would_change_leaves_the_start_to_bash(tmp_path: Path) -> None:
    for name in ("IFS", "PS4", "SHELLOPTS", "BASH_ENV", "BASH_FUNC_tr%%"):
        assert direct.probe("bash", {"PATH": "/usr/bin:/bin", name: "x"}) is None, name
    assert direct.probe("bash", {"PATH": "/usr/bin:/bin", "LC_ALL": "xx_NO.SUCH-LOCALE"}) is None  # bash warns on stderr
    assert direct.probe("bash", {"PATH": "/usr/bin:/bin", "OLDPWD": "relative"}) is None
    assert _plan("exec env", {}, tmp_path, {"PATH": "bin:/usr/bin"}) is None  # a relative PATH entry
    assert _plan("exec echo 12>f", {}, tmp_path) is None  # fd 12, for bash
    assert _plan("exec env", {"LANG": "C"}, tmp_path) is None  # a variable plx does not make
    assert _plan("exec env", {"PARAM_X": "1"}, tmp_path) is not None


@pytest.mark.parametrize("shlvl", [" 3", "+3", "3 ", "1000", "\u0663"])
def test_shlvl_as_bash_reads_it(shlvl: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHLVL", shlvl)
    got, want = _run(tmp_path, monkeypatch, True, "env"), _run(tmp_path, monkeypatch, False, "env")
    assert got == want


@pytest.mark.parametrize("target", ["/dev/stderr", "/dev/stdout", "/dev/fd/2", "/proc/self/fd/1"])
def test_a_redirection_to_plxs_own_descriptors_reaches_the_nodes(target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = f"sh -c 'echo to-the-node' > {target}"
    got, want = _run(tmp_path, monkeypatch, True, script), _run(tmp_path, monkeypatch, False, script)
    assert got == want and "to-the-node" in got[1] + got[2]


def test_a_fifo_is_left_to_bash_and_the_timeout_stops_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening a FIFO blocks until a writer comes: in plx's thread it would hang plx itself."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    monkeypatch.setenv("PLX_DIRECT_EXEC", "1")
    results: queue.Queue[Finished] = queue.Queue()
    ex = LocalExecutor(results, jobs=1)
    try:
        ex.submit(Job("n", ["bash", "-e", "-o", "pipefail", "-c", f"exec cat < {fifo}", "op"], ENV, tmp_path, tmp_path / "o", tmp_path / "e", 0.3))
        done = results.get(timeout=20)
    finally:
        ex.close()
    assert done.timed_out


@pytest.mark.skipif(os.geteuid() != 0, reason="the check is for root: plx keeps CAP_DAC_OVERRIDE, its nodes do not")
def test_as_root_a_node_cannot_write_through_plxs_capability(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLX_LINK_INPUTS", "")
    results: queue.Queue[Finished] = queue.Queue()
    monkeypatch.setenv("PLX_DIRECT_EXEC", "1")
    locked = tmp_path / "stored.txt"
    locked.write_text("keep me\n")
    locked.chmod(0o444)
    ex = LocalExecutor(results, jobs=1)
    try:
        if not ex._drop:
            pytest.skip("this machine cannot drop CAP_DAC_OVERRIDE for nodes")
        script = f"exec date > {locked}"
        ex.submit(Job("n", ["bash", "-e", "-o", "pipefail", "-c", script, "op"], ENV, tmp_path, tmp_path / "o", tmp_path / "e", None))
        done = results.get(timeout=20)
    finally:
        ex.close()
    assert done.exit_code == 1 and "Permission denied" in (tmp_path / "e").read_text()
    assert locked.read_text() == "keep me\n"


def test_real_path_below_a_known_folder_is_os_realpath(tmp_path: Path) -> None:
    """The shortcut (components below a folder whose real path is known checked for links, not all
    from /) gives what os.path.realpath gives, links or not, and for files not made yet."""
    real = tmp_path / "real"
    run = real / "run"
    (run / "n.in" / "src").mkdir(parents=True)
    (run / "n").mkdir()
    (run / "n.in" / "src" / "a.txt").write_text("a")
    (run / "n.in" / "linked").symlink_to(run / "n")
    (run / "n.in" / "src" / "b.txt").symlink_to("a.txt")
    (run / "n.in" / "fds").symlink_to("/proc/self/fd")
    (run / "n.in" / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "via").symlink_to(real)  # the run's folder as the executor sees it, through a link
    seen = str(tmp_path / "via" / "run")
    known = {seen: os.path.realpath(seen)}
    for rel in ["n", "n/out", "n.in/src/a.txt", "n.in/src/b.txt", "n.in/linked/out", "n.in/fds/1", "n.in/dangling", "n.in/dangling/x", "n.in/src/new.txt"]:
        path = os.path.join(seen, rel)
        assert direct.real_path(path, known) == os.path.realpath(path), rel
    assert direct.real_path("/dev/stdout", known) == os.path.realpath("/dev/stdout")


def test_a_redirection_through_a_link_in_the_nodes_folder_is_left_to_bash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`> fds/1` with fds a link to /proc/self/fd, in the node's own folder (below the folder whose
    real path plx keeps): the node's stdout, as bash opens it, not plx's."""
    for on in (True, False):
        cwd = tmp_path / ("direct" if on else "bash")
        cwd.mkdir()
        (cwd / "fds").symlink_to("/proc/self/fd")
    script = "sh -c 'echo to-the-node' > fds/1"
    got, want = _run(tmp_path, monkeypatch, True, script), _run(tmp_path, monkeypatch, False, script)
    assert got == want and "to-the-node" in got[1]


def test_a_redirection_with_dot_dot_after_a_link_is_left_to_bash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`> d/../fd/1` with d a link to /proc/self/task: the kernel follows d before its `..` (the
    node's /proc/<pid>/fd/1), where the path's text says ./fd/1 (found in review)."""
    for on in (True, False):
        cwd = tmp_path / ("direct" if on else "bash")
        cwd.mkdir()
        (cwd / "d").symlink_to("/proc/self/task")
        (cwd / "fd").mkdir()
        (cwd / "fd" / "1").write_text("")
    script = "sh -c 'echo to-the-node' > d/../fd/1"
    got, want = _run(tmp_path, monkeypatch, True, script), _run(tmp_path, monkeypatch, False, script)
    assert got == want
