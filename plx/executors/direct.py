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
* the environment bash would give the program: what bash makes of plx's environment is asked of
  bash itself once per run (`probe`: `bash -c 'exec env -0'`; if bash says anything on stderr, a
  locale it cannot load say, nothing starts without bash), then PWD is set for the node's folder;
  the node's own variables must be ones plx makes (PARAM_, INPUT_, OUTPUT_, PLX_);
* redirection targets that are regular files (or /dev/null), not under /dev or /proc (plx's own
  /dev/stdout is not the node's), not links, with no `..` in their path; as root without CAP_DAC_OVERRIDE (plx keeps it, its
  nodes do not), a file written must be root's and writable by its owner, a new one made in a
  folder of root's: anything else, bash opens it, as the node.
A redirection that cannot be opened, a program that cannot be started (ENOEXEC: bash would run it
as a script), and every other case: the job goes to bash, which then says what it would have said.
"""

from __future__ import annotations

import functools
import os
import stat
import subprocess

from ..deferred import find_program, lazy_compile
from ..structs import record
from .warm import SENT, alters_bash

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Callable

_NAME = r"[A-Za-z_][A-Za-z0-9_]*+"
_EXPANSION = rf"\$(?:({_NAME})|\{{({_NAME})\}})"
_PART = lazy_compile(rf"""([A-Za-z0-9_./,:@%+=-]++)|'([^']*+)'|"((?:[^"\\$`]++|{_EXPANSION})*+)"|{_EXPANSION}""")
_INNER = lazy_compile(_EXPANSION)
_REDIRECT = lazy_compile(r"([0-2]?)>&([0-2])(?=[ \t]|$)|([0-2]?)(>>|>|<|&>)[ \t]*+")
_BLANK = lazy_compile(r"[ \t]++")
# bash's own values of these differ from the ones it exports to a program it execs.
_OWN = frozenset("SHLVL PWD OLDPWD _".split())
_RISKY = lazy_compile(r"[\s*?\[\\]")  # a value with one of these would be split or globbed unquoted


@record
class Direct:
    argv: list[str]
    program: str  # the resolved path bash would exec
    env: dict[str, str]
    opens: list[tuple[int, str, int]]  # (fd, path, flags) in the order bash opens them
    dups: list[tuple[int, int, int]]  # (position in opens, fd, source fd): an N>&M after that many opens


def _word(text: str, pos: int, lookup: Callable[[str], str | None]) -> tuple[str, int] | None:
    """One word from pos, expanded as bash would (lookup: a name's value, None when plx cannot know
    it), and where it ends; None where bash might differ."""
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
            value = _INNER.sub(lambda x: _or_nul(lookup(x.group(1) or x.group(2))), double)
            if "\0" in value:  # a name not in the environment: maybe one of bash's own variables
                return None
            out.append(value)
        else:
            found = lookup(name or braced or "")
            if not found or _RISKY.search(found):
                return None
            out.append(found)
        pos = m.end()
    return ("".join(out), pos) if out else None


def _or_nul(value: str | None) -> str:
    return "\0" if value is None else value


@functools.lru_cache(maxsize=256)
def which(word: str, path: str | None) -> str | None:
    """shutil.which (deferred.find_program), searched once per process for a word and a PATH, not per
    node (8 stats each for `tr` on a usual PATH). A program found here and gone later fails to start:
    a direct start then goes to bash, which searches again; a fresh one fails as Popen would have."""
    return find_program(word, path)


def _program(word: str, lookup: Callable[[str], str | None], cwd: str) -> str | None:
    if "/" in word:
        return os.path.join(cwd, word)
    path = lookup("PATH")
    if path is None or any(not os.path.isabs(d) for d in path.split(os.pathsep)):
        return None  # bash's own default PATH, or a folder relative to the node's: bash decides
    return which(word, path)


def real_path(path: str, known: dict[str, str] | None) -> str:
    """os.path.realpath of an absolute, normalized path. known: folders' real paths, found once (the
    folder of a run's node folders): below one of them, only the few components left are checked for
    links, not every component from / (os.path.realpath stats each one, three times a node)."""
    if known:
        head, below = path, []
        for _ in range(4):  # a node's folder, its inputs' folder and their files sit a few levels down
            head, tail = os.path.split(head)
            below.append(tail)
            base = known.get(head)
            if base is not None:
                for part in reversed(below):
                    head = os.path.join(head, part)
                    if os.path.islink(head):
                        return os.path.realpath(path)
                return os.path.join(base, *reversed(below))
    return os.path.realpath(path)


def probe(bash: str, environ: dict[str, str]) -> dict[str, str] | None:
    """The environment bash gives a program it execs, started with plx's environment (in /); None
    when bash says anything as it starts, or this cannot be asked (then nothing starts without bash)."""
    if alters_bash(environ):
        return None
    try:
        done = subprocess.run([bash, "-e", "-o", "pipefail", "-c", "exec env -0", "plx"], env=environ, cwd="/", capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0 or done.stderr:
        return None
    view = dict(item.split("=", 1) for item in os.fsdecode(done.stdout).split("\0") if "=" in item)
    return view


def plan(script: str, job_env: dict[str, str], environ: dict[str, str], view: dict[str, str], cwd: str, known: dict[str, str] | None = None) -> Direct | None:
    """How to start `exec SCRIPT` without bash, or None. job_env: the node's variables; environ:
    plx's environment; view: what bash makes of it (probe); known: as for real_path."""
    if not script.startswith("exec ") or "~" in script or not all(SENT.fullmatch(k) for k in job_env):
        return None

    def lookup(name: str) -> str | None:  # bash's value of $NAME, where plx knows it
        if name in job_env:
            return job_env[name]
        value = environ.get(name)
        return value if name not in _OWN and value is not None and view.get(name) == value else None

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
            got = _word(text, r.end(), lookup)
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
        got = _word(text, pos, lookup)
        if got is None:
            return None
        if got[1] < len(text) and text[got[1]] in "<>" and text[pos : got[1]].isdigit():
            return None  # `12>f`: bash reads 12 as the fd
        word, pos = got
        argv.append(word)
    if not argv:
        return None
    program = _program(argv[0], lookup, cwd)
    if program is None:
        return None
    out = {**view, **job_env}
    # PWD as bash sets it in the node's folder: plx's own if it names that folder, else the physical path.
    pwd = environ.get("PWD")
    try:
        same = pwd is not None and os.path.isabs(pwd) and os.path.samefile(pwd, cwd)
    except OSError:
        same = False
    out["PWD"] = pwd if same and pwd is not None else real_path(cwd, known)
    return Direct(argv, program, out, opens, dups)


def _check_target(path: str, write: bool, as_owner: bool, known: dict[str, str] | None = None) -> None:
    """Raise OSError unless plx may open path for the node (see the module's docstring)."""
    if ".." in path.split("/"):  # the kernel follows a link before its `..`, normpath drops both: bash's
        raise OSError(f"{path}: bash opens it")
    norm = os.path.normpath(path)
    if norm == "/dev/null":
        return
    if norm.startswith(("/dev/", "/proc/")) or os.path.islink(norm) or real_path(norm, known).startswith(("/dev/", "/proc/")):
        raise OSError(f"{path}: bash opens it")
    try:
        st = os.stat(norm)
    except FileNotFoundError:
        if not write:
            raise
        if as_owner:
            parent = os.stat(os.path.dirname(norm))
            if parent.st_uid != os.geteuid() or parent.st_mode & 0o300 != 0o300:
                raise OSError(f"{path}: bash creates it") from None
        return
    if not stat.S_ISREG(st.st_mode):
        raise OSError(f"{path}: not a regular file")  # a FIFO would block plx; a device is bash's
    if write and as_owner and (st.st_uid != os.geteuid() or not st.st_mode & 0o200):
        raise OSError(f"{path}: bash opens it")


def open_all(d: Direct, base: dict[int, int], as_owner: bool, known: dict[str, str] | None = None) -> tuple[dict[int, int], list[int]]:
    """The fds 0-2 the program gets (base: plx's own for each, the node's pipes), and the fds
    opened here, for the caller to close after the start. OSError: the job goes to bash. as_owner:
    plx has CAP_DAC_OVERRIDE and the node would not (root). known: as for real_path."""
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
            _check_target(path, flags != os.O_RDONLY, as_owner, known)
            new = os.open(path, flags | os.O_CLOEXEC | os.O_NONBLOCK, 0o666)
            os.set_blocking(new, True)
            opened.append(new)
            for target in (1, 2) if fd == -1 else (fd,):
                fds[target] = new
    except OSError:
        for fd in opened:
            os.close(fd)
        raise
    return fds, opened
