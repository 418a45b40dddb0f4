"""Direct starts: a node whose script is one `exec` of a program (runners._exec_form) started as bash would start it, without bash.

bash's part in `bash -e -o pipefail -c 'exec tr a-z A-Z < "$INPUT_SRC" > "$OUTPUT_OUT"'` is to expand
the words, open the redirections and exec `tr`: ~0.8 ms of CPU a node, as much as everything else
plx does for it. make does the same for its simplest recipes. Here plx does bash's part itself, for
the scripts where it can do exactly what bash does, and leaves every other one to bash:
* words of plain characters, '...' and "..." with $NAME or ${NAME} inside, and $NAME outside quotes
  whose value needs no word splitting or globbing (not empty, no blank, `*?[\\`); every NAME in the
  node's environment (anything else could be one of bash's own variables); no `~`;
* redirections `<`, `>`, `>>`, `&>` to such a word, and `N>&M`, on fds 0-2;
* a program found on an absolute PATH entry (bash prints its own "not found"), or a path;
* an environment without what bash changes when it starts (IFS, PS4, SHELLOPTS, ...): PWD, OLDPWD
  and SHLVL are set as bash sets them for the program it execs.
A redirection that cannot be opened, a program that cannot be started (ENOEXEC: bash would run it
as a script), and every other case: the job goes to bash, which then says what it would have said.
"""

from __future__ import annotations

import os
import re
import shutil

from ..structs import record

_NAME = r"[A-Za-z_][A-Za-z0-9_]*+"
_EXPANSION = rf"\$(?:({_NAME})|\{{({_NAME})\}})"
_PART = re.compile(rf"""([A-Za-z0-9_./,:@%+=-]++)|'([^']*+)'|"((?:[^"\\$`]++|{_EXPANSION})*+)"|{_EXPANSION}""")
_INNER = re.compile(_EXPANSION)
_REDIRECT = re.compile(r"([0-2]?)>&([0-2])(?=[ \t]|$)|([0-2]?)(>>|>|<|&>)[ \t]*+")
_BLANK = re.compile(r"[ \t]++")
# What bash changes or drops when it starts, that would then differ in the program's environment.
_BASH_SETS = frozenset("IFS PS4 SHELLOPTS BASHOPTS BASH_ENV ENV POSIXLY_CORRECT BASH_XTRACEFD".split())
_RISKY = re.compile(r"[\s*?\[\\]")  # a value with one of these would be split or globbed unquoted


@record
class Direct:
    argv: list[str]
    program: str  # the resolved path bash would exec
    env: dict[str, str]
    opens: list[tuple[int, str, int]]  # (fd, path, flags) in the order bash opens them
    dups: list[tuple[int, int, int]]  # (position in opens, fd, source fd): an N>&M after that many opens


def _word(text: str, pos: int, env: dict[str, str]) -> tuple[str, int] | None:
    """One word from pos, expanded as bash would, and where it ends; None where bash might differ."""
    out: list[str] = []
    while pos < len(text) and text[pos] not in " \t<>&":
        m = _PART.match(text, pos)
        if m is None:
            return None
        plain, single, double, name, braced = m.group(1), m.group(2), m.group(3), m.group(6), m.group(7)
        if plain is not None:
            out.append(plain)
        elif single is not None:
            out.append(single)
        elif double is not None:
            value = _INNER.sub(lambda x: env.get(x.group(1) or x.group(2), "\0"), double)
            if "\0" in value:  # a name not in the environment: maybe one of bash's own variables
                return None
            out.append(value)
        else:
            found = env.get(name or braced or "")
            if not found or _RISKY.search(found):
                return None
            out.append(found)
        pos = m.end()
    return ("".join(out), pos) if out else None


def _program(word: str, env: dict[str, str], cwd: str) -> str | None:
    if "/" in word:
        return os.path.join(cwd, word)
    path = env.get("PATH")
    if path is None or any(not os.path.isabs(d) for d in path.split(os.pathsep)):
        return None  # bash's own default PATH, or a folder relative to the node's: bash decides
    return shutil.which(word, path=path)


def plan(script: str, env: dict[str, str], cwd: str) -> Direct | None:
    """How to start `exec SCRIPT` without bash (env: the node's whole environment), or None."""
    if not script.startswith("exec ") or "~" in script or any(k in _BASH_SETS or k.startswith("BASH_FUNC_") for k in env):
        return None
    text = script[5:].rstrip("\n")
    argv: list[str] = []
    opens: list[tuple[int, str, int]] = []
    dups: list[tuple[int, int, int]] = []
    pos = 0
    while pos < len(text):
        blank = _BLANK.match(text, pos)
        if blank is not None:
            pos = blank.end()
            continue
        r = _REDIRECT.match(text, pos)
        if r is not None and r.group(2) is not None:
            dups.append((len(opens), int(r.group(1) or 1), int(r.group(2))))
            pos = r.end()
            continue
        if r is not None:
            op = r.group(4)
            got = _word(text, r.end(), env)
            if got is None:
                return None
            target, pos = got
            path = os.path.join(cwd, target)
            if op == "<":
                opens.append((int(r.group(3) or 0), path, os.O_RDONLY))
            else:
                if op == "&>" and r.group(3):
                    return None
                flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if op == ">>" else os.O_TRUNC)
                opens.append((-1 if op == "&>" else int(r.group(3) or 1), path, flags))
            continue
        got = _word(text, pos, env)
        if got is None:
            return None
        if got[1] < len(text) and text[got[1]] in "<>" and text[pos : got[1]].isdigit():
            return None  # `12>f`: bash reads 12 as the fd
        word, pos = got
        argv.append(word)
    if not argv:
        return None
    program = _program(argv[0], env, cwd)
    if program is None:
        return None
    return Direct(argv, program, _bash_env(env, cwd), opens, dups)


def _bash_env(env: dict[str, str], cwd: str) -> dict[str, str]:
    """The environment bash gives the program it execs: PWD the folder (bash's own if it names it),
    OLDPWD only if it is a folder, SHLVL as read (`exec` takes back the level bash added)."""
    out = dict(env)
    pwd = env.get("PWD")
    try:
        same = pwd is not None and os.path.isabs(pwd) and os.path.samefile(pwd, cwd)
    except OSError:
        same = False
    out["PWD"] = pwd if same and pwd is not None else os.path.realpath(cwd)
    old = env.get("OLDPWD")
    if old is not None and not os.path.isdir(os.path.join(cwd, old)):
        del out["OLDPWD"]
    level = env.get("SHLVL", "")
    out["SHLVL"] = str(int(level)) if level.isdigit() and int(level) < 999 else "0"
    return out


def open_all(d: Direct, base: dict[int, int]) -> tuple[dict[int, int], list[int]]:
    """The fds 0-2 the program gets (base: plx's own for each, the node's pipes), and the fds
    opened here, for the caller to close after the start. OSError: the job goes to bash."""
    fds = dict(base)
    opened: list[int] = []
    try:
        for i in range(len(d.opens) + 1):
            for at, fd, source in d.dups:
                if at == i:
                    fds[fd] = fds[source]
            if i == len(d.opens):
                break
            fd, path, flags = d.opens[i]
            new = os.open(path, flags | os.O_CLOEXEC, 0o666)
            opened.append(new)
            for target in (1, 2) if fd == -1 else (fd,):
                fds[target] = new
    except OSError:
        for fd in opened:
            os.close(fd)
        raise
    return fds, opened
