"""executors/warm.py: a node run by a warm shell sees what a fresh `bash -e -o pipefail -c` shows it."""

from __future__ import annotations

import os
import queue
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plx.executors import warm
from plx.executors.base import Finished, Job
from plx.executors.local import LocalExecutor

# Everything a script can see of its shell and its environment, in one output.
PROBE = """echo "0=$0 line=$LINENO flags=$- shlvl=$SHLVL fds=$(ls /proc/$$/fd | tr '\\n' ' ')"
echo "pwd=$PWD phys=$(pwd -P)"
declare -p OLDPWD PARAM_TEXT INPUT_LIST
set -o | grep -E '^(errexit|pipefail|nounset)'
compgen -v | grep -v -E '^(BASH_EXEC.*|BASHPID|BASH_SUBSHELL|EPOCH.*|RANDOM|SRANDOM|SECOND.|_)$' | tr '\\n' ' '; echo
for v in $(compgen -v); do [[ $v == _* ]] && echo "var $v"; done
env -0 | LC_ALL=C sort -z | tr '\\0' '\\n' | grep -v -E '^(_|PLX_WARM_SHELLS)='
no_such_command_here || echo "status $? on line $LINENO"
f() { caller 0 || echo "caller: $?"; }; f
echo "last"
exit 3
"""
ENV = {
    "PLX_RUN_ID": "r1",
    "PLX_NODE": "probe",
    "PARAM_TEXT": 'it\'s "quoted"\n$(touch pwned) `x` \\ ~/tilde é \t end',
    "INPUT_LIST": "/a b/one.txt\n/c/two.txt",
    "PARAM_EMPTY": "",
    "PLX_PROJECT_ROOT": "a:~/b",
}


def _run(tmp: Path, monkeypatch: pytest.MonkeyPatch, on: bool, script: str, env: dict[str, str] = ENV) -> tuple[Finished, str, str, bool]:
    """One job after a first one (the warm shell is started after a bash job): its result and logs,
    and whether a warm shell ran it."""
    monkeypatch.setenv("PLX_WARM_SHELLS", "1" if on else "0")
    monkeypatch.setenv("OLDPWD", str(tmp))
    results: queue.Queue[Finished] = queue.Queue()
    ex = LocalExecutor(results, jobs=2)
    try:
        cwd = tmp / ("warm" if on else "fresh")
        cwd.mkdir()
        first = Job("first", ["bash", "-e", "-o", "pipefail", "-c", "true", "first"], {"PLX_RUN_ID": "r1"}, cwd, cwd / "f.out", cwd / "f.err", None)
        ex.submit(first)
        assert results.get(timeout=20).exit_code == 0
        ex.idle()  # as the engine does while it waits: the warm shell is started after the first job
        shell = None
        for _ in range(200):
            if ex._warm:
                shell = ex._warm[0]
                break
            time.sleep(0.01)
        job = Job("probe", ["bash", "-e", "-o", "pipefail", "-c", script, "probe_op"], env, cwd, cwd / "out", cwd / "err", None)
        ex.submit(job)
        done = results.get(timeout=20)
        used = shell is not None and shell.proc.returncode is not None and shell not in ex._warm
        read = lambda p: p.read_text() if p.exists() else ""  # noqa: E731
        return done, read(cwd / "out").replace(str(cwd), "CWD"), read(cwd / "err"), used
    finally:
        ex.close()


def test_a_warm_shell_runs_the_script_as_a_fresh_bash_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = _run(tmp_path, monkeypatch, False, PROBE)
    warm_ = _run(tmp_path, monkeypatch, True, PROBE)
    assert not fresh[3] and warm_[3], "the second job must have been run by the warm shell, the first by a fresh bash"
    assert fresh[0].exit_code == warm_[0].exit_code == 3
    assert "0=probe_op line=1 " in warm_[1] and "phys=CWD" in warm_[1]
    assert "PARAM_TEXT" in warm_[1] and not (tmp_path / "warm" / "pwned").exists()
    assert warm_[1] == fresh[1]
    assert warm_[2] == fresh[2] == "probe_op: line 8: no_such_command_here: command not found\n"


def test_the_shells_own_errors_read_as_a_fresh_bash_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = "echo one\nset -u\necho $UNSET_VARIABLE_HERE\necho never"
    fresh = _run(tmp_path, monkeypatch, False, script)
    warm_ = _run(tmp_path, monkeypatch, True, script)
    assert warm_[3]
    expected = (1, "one\n", "probe_op: line 3: UNSET_VARIABLE_HERE: unbound variable\n")
    assert (warm_[0].exit_code, warm_[1], warm_[2]) == (fresh[0].exit_code, fresh[1], fresh[2]) == expected


def test_a_job_whose_variables_bash_reads_at_start_gets_a_fresh_bash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BASH_ENV", "PATH", "LC_ALL", "SHELLOPTS", "SHLVL", "FOO-BAR", "UID", "LD_PRELOAD", "EXECIGNORE", "GLOBIGNORE", "MY_OWN"):
        assert warm.message(["bash", "-e", "-o", "pipefail", "-c", "true", "op"], {name: "x"}, "/") is None, name
    assert warm.message(["bash", "-e", "-o", "pipefail", "-c", "x" * warm.MAX_MESSAGE, "op"], {}, "/") is None
    assert warm.message(["bash", "-e", "-o", "pipefail", "/tmp/script.sh"], {}, "/") is None
    env = {**ENV, "SHLVL": "7"}
    done, out, _, used = _run(tmp_path, monkeypatch, True, 'echo "shlvl=$SHLVL"', env)
    assert not used and done.exit_code == 0 and out == "shlvl=8\n"


def test_a_shell_that_reads_end_of_file_runs_nothing(tmp_path: Path) -> None:
    """plx gone (or closing) while the shell waits, even half-way through a message: nothing runs."""
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        whole = warm.message(["bash", "-e", "-o", "pipefail", "-c", f"touch {tmp_path}/ran; true", "op"], {}, str(tmp_path))
        assert whole is not None and whole.startswith(b"2 ")  # by size: the parts' lengths lead
        head, body = whole.split(b"\n", 1)
        a, b = (int(n) for n in head.split()[:2])
        by_nul = b"D\n" + body[:a] + b"\0" + body[a : a + b] + b"\0" + body[a + b :]
        cuts = (b"", b"2 2", whole[:-1], by_nul)
        for data in cuts:  # nothing, half the header, one byte short, a message by NUL without its last NUL
            shell = warm.start("bash", dict(os.environ), "r1", null)
            if data:
                os.write(shell.trigger, data)
            os.close(shell.trigger)
            assert shell.proc.wait(timeout=10) == 0
            os.close(shell.out_r)
            os.close(shell.err_r)
        assert not (tmp_path / "ran").exists()
    finally:
        os.close(null)


def test_a_script_beyond_ascii_is_sent_by_nul_and_runs_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """read -N counts characters in the shell's locale, the lengths are bytes: such a message goes by NUL."""
    script = 'echo "héllo wörld ${#PARAM_TEXT}" 日本\necho "$PARAM_TEXT" | wc -c'
    data = warm.message(["bash", "-e", "-o", "pipefail", "-c", script, "op"], ENV, str(tmp_path))
    assert data is not None and data.startswith(b"D\n") and data.count(b"\0") == 3
    monkeypatch.setenv("LANG", "C.UTF-8")
    fresh = _run(tmp_path, monkeypatch, False, script)
    warm_ = _run(tmp_path, monkeypatch, True, script)
    assert warm_[3] and warm_[0].exit_code == fresh[0].exit_code == 0
    assert warm_[1] == fresh[1] and warm_[1].startswith("héllo wörld 50 日本\n")


def test_a_killed_warm_shell_is_replaced_by_a_fresh_bash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLX_WARM_SHELLS", "1")
    results: queue.Queue[Finished] = queue.Queue()
    ex = LocalExecutor(results, jobs=1)
    try:
        argv = ["bash", "-e", "-o", "pipefail", "-c", "echo $PARAM_I", "op"]
        job = lambda i: Job(str(i), argv, {"PLX_RUN_ID": "r1", "PARAM_I": str(i)}, tmp_path, tmp_path / f"{i}.out", tmp_path / f"{i}.err", None)  # noqa: E731
        ex.submit(job(1))
        assert results.get(timeout=20).exit_code == 0
        ex.idle()
        assert len(ex._warm) == 1
        ex._warm[0].proc.kill()
        ex._warm[0].proc.wait()
        ex.submit(job(2))
        assert results.get(timeout=20).exit_code == 0
        assert (tmp_path / "2.out").read_text() == "2\n"
    finally:
        ex.close()
    assert ex._warm == []


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=40))
def test_quote_gives_bash_the_same_value_on_one_line(value: str) -> None:
    word = warm.quote(value)
    assert "\n" not in word
    got = subprocess.run(["bash", "-c", f'V={word}; printf %s "$V"'], capture_output=True, env={"LANG": "C.UTF-8"}, check=True).stdout
    assert got == value.encode()


# Scripts whose last command bash -c runs in a process of its own (forked, as eval does): a warm
# shell may run them. Each ends with a program that writes its parent's pid to OUT.
ALIKE = [
    "sh -c 'echo $PPID' > OUT",
    "echo x | sh -c 'echo $PPID > OUT'",
    "if true; then sh -c 'echo $PPID > OUT'; fi",
    "sh -c 'echo $PPID > OUT'\n# a comment after the last command",
    "true && sh -c 'echo $PPID' >> OUT",
    "command sh -c 'echo $PPID > OUT' > /dev/null",
    "for i in 1; do sh -c 'echo $PPID > OUT'; done",
    'echo "${HOME/[.,]/}" > /dev/null; sh -c \'echo $PPID\' >> "OUT"',
]
# Scripts whose last command bash -c runs with exec, or that the check cannot read: fresh bash.
DIFFERENT = [
    "echo x; sh -c 'echo $PPID > OUT'",
    "echo x\nsh -c 'echo $PPID > OUT'\n",
    "true && sh -c 'echo $PPID > OUT'",
    "sh -c 'echo $PPID > OUT' # a comment on its line",
    "X=1 sh -c 'echo $PPID > OUT'",
    "f() { :; }; f",
    "cat <<EOF\nx\nEOF",
    "python3 train.py \\\n  > log.txt",
    "{ sh -c 'echo $PPID > OUT'; }",
    "( sh -c 'echo $PPID > OUT' )",
    "case x in x) sh -c 'echo $PPID > OUT';; esac",
]


@pytest.mark.parametrize("script", ALIKE)
def test_what_a_warm_shell_runs_bash_c_forks_too(script: str, tmp_path: Path) -> None:
    """The check against bash itself: its last program's parent is bash (forked), not bash's parent."""
    assert warm.message(["bash", "-e", "-o", "pipefail", "-c", script, "op"], {}, "/") is not None
    out = tmp_path / "OUT"
    proc = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", script.replace("OUT", str(out)), "op"], stdout=subprocess.DEVNULL)
    assert proc.wait(timeout=20) == 0
    assert out.read_text().split()[-1] == str(proc.pid)


@pytest.mark.parametrize("script", DIFFERENT)
def test_a_script_bash_c_could_run_otherwise_gets_a_fresh_bash(script: str) -> None:
    assert warm.message(["bash", "-e", "-o", "pipefail", "-c", script, "op"], {}, "/") is None


@pytest.mark.parametrize(
    "script",
    [
        "set -x\necho hi",
        "set -o xtrace; echo",
        "shopt -o -s xtrace; echo",
        "set -o ${o}trace; echo",
        "set -$flags; echo",
        "echo $SECONDS",
        "echo $_",
        'echo "${PIPESTATUS[@]}"',
        "set -ev; echo",
        "trap 'echo \"[$BASH_COMMAND]\"' EXIT\nfalse",
    ],
)
def test_a_script_naming_what_eval_changes_gets_a_fresh_bash(script: str) -> None:
    assert warm.message(["bash", "-e", "-o", "pipefail", "-c", script, "op"], {}, "/") is None


def test_a_syntax_error_on_the_first_line_names_the_operation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = "echo start; fi"
    fresh = _run(tmp_path, monkeypatch, False, script)
    warm_ = _run(tmp_path, monkeypatch, True, script)
    assert warm_[3] and fresh[0].exit_code == warm_[0].exit_code == 2 and fresh[1] == warm_[1] == ""  # bash reads the whole line first
    assert fresh[2] == "probe_op: -c: line 1: syntax error near unexpected token `fi'\n"
    assert warm_[2] == "probe_op: eval: line 1: syntax error near unexpected token `fi'\n", warm_[2]


def test_a_subshell_of_a_warm_shell_lives_as_long_as_its_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bash subshell (forked, no exec) keeps the warm shell's first environment, without PLX_NODE:
    the reaper knows it by its session, and lets it run while its node runs (here in a process group
    of its own, which `set -m` gives it)."""
    script = 'set -m\n( sleep 0.8; echo "job done" ) &\nwait $!\necho "waited: $?"'
    fresh = _run(tmp_path, monkeypatch, False, script)
    warm_ = _run(tmp_path, monkeypatch, True, script)
    assert warm_[3]
    assert (warm_[0].exit_code, warm_[1]) == (fresh[0].exit_code, fresh[1]) == (0, "job done\nwaited: 0\n")


@pytest.mark.parametrize("name", ["SHELLOPTS", "BASHOPTS", "POSIXLY_CORRECT", "BASH_ENV", "BASH_FUNC_cd%%", "OLDPWD"])
def test_plx_environment_that_would_show_the_loader_turns_warm_shells_off(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """(A relative OLDPWD: bash checks it in the node's folder, which a warm shell does not know yet.)"""
    monkeypatch.setenv("PLX_WARM_SHELLS", "1")
    monkeypatch.setenv(name, "xtrace" if name == "SHELLOPTS" else "() { :; }" if name.startswith("BASH_FUNC") else "data" if name == "OLDPWD" else "")
    ex = LocalExecutor(queue.Queue(), jobs=1)
    try:
        assert not ex._warm_ok
    finally:
        ex.close()
