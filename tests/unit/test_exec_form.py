"""runners._exec_form: which scripts get `exec` written before them, and that bash then does the same."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plx.runners import _exec_form, shell_functions_possible

EXEC = [
    'tr a-z A-Z < "$INPUT_SRC" > "$OUTPUT_OUT"',
    "python3 train.py --lr=0.1 'a b;c' \"$PARAM_X-${PARAM_Y}\" 2>&1 >> log.txt\n",
    "  ./run.sh >&2",
    "cat missing.txt 2>/dev/null",
    "cat < missing.txt",
]
KEEP = [
    "echo hi > out",  # a builtin: exec would run /bin/echo instead
    "printf x > out",
    "x=1 cat in > out",  # an assignment
    "cat in | tr a b > out",
    "cat in > out; true",
    "cat in > out && true",
    "cat in > out &",
    "cat $(echo in) > out",
    "cat `echo in` > out",
    'cat "$(echo in)" > out',
    "cat in > out # a comment",
    "cat in\ncat in",
    "cat <<EOF\nx\nEOF",
    "cat <<< word",
    "if true; then cat in; fi",
    "{ cat in; } > out",
    "(cat in) > out",
    "cat *.txt > out",
    "cat in>out",
    " -l /bin/true > out",  # an option of exec, not a program
    "-- > out",
    "",
]


@pytest.mark.parametrize("script", EXEC)
def test_one_simple_command_with_redirections_is_execed(script: str) -> None:
    assert _exec_form(script, {}) == "exec " + script


@pytest.mark.parametrize("script", KEEP)
def test_anything_else_is_left_as_it_is(script: str) -> None:
    assert _exec_form(script, {}) == script


def test_a_bash_function_in_the_environment_keeps_the_script() -> None:
    assert _exec_form(EXEC[0], {"BASH_ENV": "/x"}) == EXEC[0]
    assert _exec_form(EXEC[0], {"BASH_FUNC_tr%%": "() { :; }"}) == EXEC[0]
    assert shell_functions_possible({"BASH_FUNC_tr%%": "() { :; }"}) and shell_functions_possible({"BASH_ENV": ""})
    assert not shell_functions_possible({"PATH": "/bin", "BASH": "/bin/bash"})


@pytest.mark.parametrize("script", EXEC + ["cat in.txt > out.txt", "nosuch-program > out.txt", "cat < missing.txt > out.txt", "sh -c 'exit 3' > out.txt"])
def test_bash_gives_the_same_output_exit_code_and_files_either_way(script: str, tmp_path: Path) -> None:
    seen = []
    for form in (script, _exec_form(script, {})):
        work = tmp_path / "work"  # one path for both: messages may name it
        if work.exists():
            shutil.rmtree(work)
        work.mkdir()
        (work / "in.txt").write_text("hello\n")
        (work / "run.sh").write_text("#!/bin/sh\necho ran\n")
        (work / "run.sh").chmod(0o755)
        env = {"PATH": "/usr/bin:/bin", "INPUT_SRC": "in.txt", "OUTPUT_OUT": "out.txt", "PARAM_X": "x", "PARAM_Y": "y"}
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", form, "op"], cwd=work, capture_output=True, text=True, env=env)
        files = {p.name: p.read_text() for p in sorted(work.iterdir())}
        # A program that is not found is told in other words ("exec: NAME: not found"): the one difference
        seen.append((done.returncode, done.stdout, done.stderr if done.returncode != 127 else "", files))
    assert seen[0] == seen[1]


def test_a_long_script_is_read_in_linear_time() -> None:
    """Nested quantifiers once made a 3-line script of quoted words hang plx (regex backtracking):
    in a subprocess, so that such a hang fails the test instead of holding the suite."""
    code = (
        "from plx.runners import _exec_form\n"
        "words = ' '.join(f'\"$A{i}x${{B}}y\" \\'q\\' a{i}-b' for i in range(2000))\n"
        "for script in (f'cmd {words};', f'cmd {words} > out\\nmore', f'cmd {words} 2>&1'):\n"
        "    print(_exec_form(script, {}).split()[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.split() == ["cmd", "cmd", "exec"], done


TOKENS = [
    *["a", "b.txt", "$X", "${Y}", "'q;q'", '"d|d"', "&>f", ">&2", "2>&1", "> o", "<i", ">>o", ";", "|", "(", ")", "`", "&", "&&", "{", "x=1", "\n", "\\"],
    *["'a&&b'", '"x;y"', '"$A"', '"a\\"b"', "'", '"', "*", "?", "#", "!", "\t", "$(x)", ">&", "&>", ">&>", "~", "}", '"\n"', "'\n'", "2>&1&", "a\\;"],
]


@settings(max_examples=500, deadline=None, database=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=8), st.sampled_from([" ", ""]))
def test_the_quick_refusal_agrees_with_the_pattern(tokens: list[str], sep: str) -> None:
    """A script refused without the pattern (runners._surely_not_simple: outside quotes, a character no
    simple command has there) is one the pattern refuses too; and the pattern decides all others."""
    import re

    from plx.runners import _SIMPLE

    script = "tr " + sep.join(tokens)
    matched = re.fullmatch(_SIMPLE, script) is not None
    assert (_exec_form(script, {}) != script) == matched, script


def test_usual_scripts_of_several_commands_are_refused_without_compiling_the_pattern() -> None:
    """Compiling the pattern is ~0.7 ms of a run's first node: not for the scripts that cannot match it.
    In a fresh interpreter, whose `re` cache is empty."""
    code = (
        "import re\n"
        "from plx.runners import _SIMPLE, _exec_form\n"
        "scripts = ['cat \"$INPUT_SRC\" > \"$OUTPUT_OUT\" && echo $PARAM_I >> \"$OUTPUT_OUT\"',\n"
        "           'echo \"start\" >> \"$LOG\"; sleep 0.5', 'python train.py\\npython eval.py\\n', \"grep -c 'a;b' x | wc -l\"]\n"
        "print(all(_exec_form(s, {}) == s for s in scripts), any(k[1] == _SIMPLE for k in re._cache))\n"
        "print(_exec_form('tr a-z A-Z < in > out', {}), any(k[1] == _SIMPLE for k in re._cache))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.splitlines() == ["True False", "exec tr a-z A-Z < in > out True"], done
