"""Warm shells: a bash started ahead of its node, waiting on a pipe for the node's script.

Starting bash costs ~0.8 ms (exec, dynamic linking, locale, environment). In a chain that start
sits between one node's end and the next one's first line, every hop. A warm shell pays it while
the previous node runs; when the node is ready, plx writes one message to the shell's pipe and the
node's first line runs ~0.15 ms later. The message makes the shell what `bash -e -o pipefail -c
SCRIPT NAME` would have been: `$0` is NAME (bash's messages read `NAME: line N: ...`), the working
folder is the node's (PWD physical, OLDPWD as bash left it), the node's variables are exported, and
the script starts on line 1 (the prelude shares that line and holds no newline). A shell that reads
end of file (plx gone, or closing) exits without running anything: a script is run only when it
arrived whole.

The message is a line of three lengths, then the name, the prelude and the script back to back, each
read with `read -N` (bash 5.1+ reads that in one system call: 706 bytes arrived, ran their first line
~0.35 ms after the write, against ~0.55 ms read a byte at a time). `read -N` counts characters in the
shell's locale: the lengths are bytes, so a message with a byte outside ASCII is sent as `D` and three
NUL-terminated parts, read with `read -d ''` (a byte at a time: bash cannot look past a delimiter).

The script runs under `eval`, and some things tell the two apart; a job where one could shows
gets a fresh bash instead (`message` returns None):
* bash -c runs the string's last command with `exec` when it is a simple command without
  redirections (its program then leads the node: its own exit code, TERM reaching it alone); eval
  forks it. Warm only when the last command is a builtin, a keyword, redirected, in a pipeline or
  in the background (`_ends_alike`).
* `set -x`/`-v` traces gain a level under eval (`++ cmd`); `$SECONDS`, `$_`, `$PIPESTATUS` and
  `$BASH_EXECUTION_STRING` differ at first: scripts naming these are not warm.
* Whatever bash reads only when it starts (PATH, locale, BASH_ENV, SHELLOPTS, LD_PRELOAD, ...) is
  read from plx's environment: only variables plx itself makes (PARAM_, INPUT_, OUTPUT_, PLX_,
  CUDA_VISIBLE_DEVICES) are sent; an operation with `env:` gets a fresh bash.
What stays different: a syntax error reads `NAME: eval: line N:` instead of `NAME: -c: line N:`,
and `ps` shows the loader.
"""

from __future__ import annotations

import os
import signal
import subprocess

from ..deferred import lazy_compile
from ..runners import BASH_OWN, shell_functions_possible

MAX_MESSAGE = 2048  # one write to the pipe (under PIPE_BUF); a `D` message is read a byte at a time


def loader(fd: int) -> str:
    """The shell's whole -c script: note OLDPWD as bash set it; read the node's name, the prelude and
    the script from fd (see the module's docstring), and close it (as in a fresh bash: `exec`, not
    `builtin exec`, makes that last); set $0 before the script is parsed (bash names a syntax error
    on its first line); run the prelude, then the script, each in an eval of its own (a syntax error
    shows the script's line). Any read cut short by end of file exits."""
    n = "__plx_n __plx_p __plx".split()
    by_size = " && ".join(f'IFS= builtin read -r -N "${v}" {v} <&{fd}' for v in n)
    by_nul = " && ".join(f"IFS= builtin read -r -d '' {v} <&{fd}" for v in n)
    return (
        f"__plx_o=${{OLDPWD+x}}${{OLDPWD-}}; IFS=' ' builtin read -r {' '.join(n)} <&{fd} || builtin exit 0; "
        f"if [[ $__plx_n == D ]]; then {by_nul}; else {by_size}; fi || builtin exit 0; "
        f'exec {fd}<&-; BASH_ARGV0=$__plx_n; builtin eval "$__plx_p"; builtin eval "$__plx"'
    )


# The variables a warm shell is sent: the ones plx makes. Anything else could be one bash or the
# dynamic linker reads only at start (PATH, LANG, LD_PRELOAD, EXECIGNORE, GLOBIGNORE, PS1, ...).
SENT = lazy_compile(r"(?:(?:PARAM|INPUT|OUTPUT|PLX)_[A-Za-z0-9_]*|CUDA_VISIBLE_DEVICES)")
# Names whose value differs under eval, and the options whose output does.
_SAFE_OPTIONS = "errexit|pipefail|nounset|noclobber|noglob|allexport|errtrace"
_TELLS = lazy_compile(
    r"SECONDS|PIPESTATUS|BASH_EXECUTION_STRING|BASH_ARGV0|BASH_COMMAND|xtrace|verbose|\$\{?_\b|\bshopt\b[^\n;|&]*-o"
    rf"|\bset\b[^\n;|&]*(?:\s[-+][A-Za-z]*[xv]|[-+]o[ \t]++(?!(?:{_SAFE_OPTIONS})\b)[\w$]|\s[-+]?\$)"
)
# The last line of a script, as far as its last command goes: words of plain characters, quoted
# strings and $NAME expansions, redirections, and the separators of a list or a pipeline.
_NAMEREF = r"\$(?:[A-Za-z_][A-Za-z0-9_]*+|\{[^{}\"'`$\\]*+\}|[?#$!@*0-9-])"  # ${...}: no nesting, quote or escape
_WORD = rf"""(?:[A-Za-z0-9_./,:@%+=~*?\[\]-]++|'[^']*+'|"(?:[^"\\$`]++|{_NAMEREF})*+"|{_NAMEREF})++"""
_REDIR = rf"(?:[0-9]?(?:>>|>\||>&|<&|>|<)|&>>|&>)[ \t]*+{_WORD}|[0-9]?[<>]&[0-9-]"
_TOKEN = lazy_compile(rf"[ \t]*+(?:(?P<redir>{_REDIR})|(?P<op>&&|\|\||\|&|[;|&])|(?P<word>{_WORD})|(?P<comment>#.*+))")
# Builtins and keywords run in bash's own process either way (not `command`, `builtin`, `eval`,
# `source`: they may run a program, or a script whose last command counts). Of the words that open or
# end a compound command only `fi` and `done`: bash -c runs the last command of a `{ ...; }` at the
# end with exec (found by the tests, which ask bash itself).
_IN_SHELL = BASH_OWN - frozenset(". bind builtin command eval source if then else elif case esac for select while until do in function time { } coproc".split())
# In plx's environment, these change bash itself as it starts (options, a startup file, functions).
_ALTERING = frozenset("IFS PS4 SHELLOPTS BASHOPTS BASH_ENV ENV POSIXLY_CORRECT BASH_XTRACEFD".split())


def alters_bash(environ: dict[str, str]) -> bool:
    """Whether plx's environment makes bash, as it starts, something a warm shell or a start without
    bash cannot stand in for: options or functions it sets, a startup file it reads, or a relative
    OLDPWD (bash checks it in the folder it starts in, the node's). Then every node gets a fresh bash."""
    return shell_functions_possible(environ) or any(k in _ALTERING for k in environ) or not os.path.isabs(environ.get("OLDPWD", "/"))


def _ends_alike(script: str) -> bool:
    """Whether bash -c would fork the script's last command as eval does (or run it in its own
    process either way). Conservative: a shape it cannot read is taken as different."""
    lines = [ln for ln in script.split("\n") if ln.strip()]
    if not lines:
        return True
    if "<<" in script or (len(lines) > 1 and lines[-2].rstrip().endswith("\\")):
        return False  # the last line may be a here-document's or the end of a longer command
    commands: list[list[tuple[str, str]]] = [[]]
    last_op = ""
    pos, line = 0, lines[-1].rstrip()
    while pos < len(line):
        m = _TOKEN.match(line, pos)
        if m is None or m.end() == pos:
            return False
        pos = m.end()
        kind = m.lastgroup or ""
        if kind == "comment":
            break
        if kind == "op":
            last_op = m.group("op")
            commands.append([])
        else:
            commands[-1].append((kind, m.group(kind).strip()))
    last = commands[-1] or (commands[-2] if len(commands) > 1 else [])
    if not commands[-1] and last_op == "&":
        return True  # in the background: forked either way
    if len(commands) > 1 and commands[-1] and last_op in ("|", "|&"):
        return True  # a pipeline's last element: forked either way
    if not last:
        return not commands[-1] and last_op in ("", ";")  # a comment alone
    if any(kind == "redir" for kind, _ in last):
        return True  # bash -c forks a redirected command too
    first = next((text for kind, text in last if kind == "word"), "")
    return first in _IN_SHELL


def message(argv: list[str], env: dict[str, str], cwd: str) -> bytes | None:
    """What a warm shell is sent to become this job's process; None when it cannot be one."""
    if not is_bash_job(argv):
        return None
    script, name = argv[5], argv[6]
    if not all(SENT.fullmatch(k) for k in env) or _TELLS.search(script) or not _ends_alike(script):
        return None
    exports = " ".join(f"{k}={quote(v)}" for k, v in env.items())
    prelude = (
        f"builtin unset __plx_n __plx_p; builtin cd -P -- {quote(cwd)}; "
        "if [[ $__plx_o == x* ]]; then OLDPWD=${__plx_o#x}; else builtin unset OLDPWD; builtin export OLDPWD; fi; "
        f"builtin unset __plx_o{'; builtin export ' + exports if exports else ''}"
    )
    try:
        parts = [p.encode("utf-8", "surrogateescape") for p in (name, prelude, "builtin unset __plx; " + script)]  # the script's first line: no newline before it
    except UnicodeEncodeError:
        return None
    if any(b"\0" in p for p in parts):
        return None
    if all(p.isascii() for p in parts):  # lengths in bytes are lengths in characters
        data = b"%d %d %d\n" % tuple(len(p) for p in parts) + b"".join(parts)
    else:
        data = b"D\n" + b"".join(p + b"\0" for p in parts)
    return data if len(data) <= MAX_MESSAGE else None


_PLAIN = lazy_compile(r"[A-Za-z0-9_./,:@%+=-]+")  # no ~ (an assignment expands it after = or :)


def quote(value: str) -> str:
    """One shell word on one line: plain text as is, anything else in $'...' with every byte outside
    printable ASCII escaped (a newline in a value must not move the script's line numbers)."""
    if _PLAIN.fullmatch(value):
        return value
    out = ["$'"]
    for ch in value:
        if ch in "\\'":
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in os.fsencode(ch))
    out.append("'")
    return "".join(out)


def is_bash_job(argv: list[str]) -> bool:
    """Whether the job is `bash -e -o pipefail -c SCRIPT NAME` (what a warm shell can become)."""
    return len(argv) == 7 and argv[0] == "bash" and argv[1:5] == ["-e", "-o", "pipefail", "-c"]


class WarmShell:
    """One bash waiting for its script, with the read ends of its output pipes."""

    def __init__(self, proc: subprocess.Popen[bytes], trigger: int, out_r: int, err_r: int, run_id: str) -> None:
        self.proc, self.trigger, self.out_r, self.err_r, self.run_id = proc, trigger, out_r, err_r, run_id

    def send(self, data: bytes) -> bool:
        """Hand the shell its script (one write: the pipe is empty and the message under PIPE_BUF);
        False if the shell is gone (killed while it waited), which is then discarded."""
        try:
            if self.proc.poll() is None and os.write(self.trigger, data) == len(data):
                os.close(self.trigger)
                return True
        except OSError:
            pass
        self.discard()
        return False

    def discard(self) -> None:
        """Stop an unused shell: it never ran anything."""
        for fd in (self.trigger, self.out_r, self.err_r):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait()


def start(bash: str, environ: dict[str, str], run_id: str, stdin: int) -> WarmShell:
    """Start a warm shell for run_id's nodes: plx's environment and the run's marker (procs.MARKER,
    so that the guardian stops it with the run), in a session of its own like every node."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    trig_r, trig_w = os.pipe()
    os.set_inheritable(trig_w, False)
    try:
        proc = subprocess.Popen(
            [bash, "-e", "-o", "pipefail", "-c", loader(trig_r), "plx-warm-shell"],
            env={**environ, "PLX_RUN_ID": run_id},
            stdin=stdin,
            stdout=out_w,
            stderr=err_w,
            start_new_session=True,
            pass_fds=(trig_r,),
        )
    except BaseException:
        for fd in (out_r, err_r, trig_w):
            os.close(fd)
        raise
    finally:
        for fd in (out_w, err_w, trig_r):
            os.close(fd)
    return WarmShell(proc, trig_w, out_r, err_r, run_id)
