"""Warm shells: a bash started ahead of its node, waiting on a pipe for the node's script.

Starting bash costs ~0.8 ms (exec, dynamic linking, locale, environment). In a chain that start
sits between one node's end and the next one's first line, every hop. A warm shell pays it while
the previous node runs; when the node is ready, plx writes one message to the shell's pipe and the
node's first line runs ~0.15 ms later. The message makes the shell what `bash -e -o pipefail -c
SCRIPT NAME` would have been: `$0` is NAME (bash's messages read `NAME: line N: ...`), the working
folder is the node's (PWD physical, OLDPWD as bash left it), the node's variables are exported,
`$SECONDS` starts at 0, and the script starts on line 1 (the prelude shares that line and holds no
newline). A shell that reads end of file (plx gone, or closing) exits without running anything: a
script is run only when it arrived whole (`read -d ''` up to its NUL).

What stays different, and why it is fine: a syntax error reads `NAME: eval: line N:` instead of
`NAME: -c: line N:`; `$BASH_EXECUTION_STRING` and `ps` show the loader, not the script. Whatever
bash reads only when it starts (BASH_ENV, SHELLOPTS, locale, PATH for finding bash itself) is
never taken from the node's variables: a job that sets one starts a fresh bash (`message` returns None).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess

MAX_MESSAGE = 2048  # bash reads a pipe a byte at a time (~0.25 µs each): longer scripts start a fresh bash


def loader(fd: int) -> str:
    """The shell's whole -c script: note OLDPWD as bash set it, read the message from fd (closed
    before the script runs, as in a fresh bash), run it."""
    return f"__plx_o=${{OLDPWD+x}}${{OLDPWD-}}; IFS= builtin read -r -d '' __plx <&{fd} || builtin exit 0; builtin exec {fd}<&-; builtin eval \"$__plx\""


# Read by bash only when it starts, special to bash when assigned, or read-only: a node whose
# variables set one of these gets a fresh bash, which takes them from its environment as before.
_STARTUP = frozenset(
    "ENV SHELLOPTS POSIXLY_CORRECT PATH IFS LANG LANGUAGE SHLVL PWD OLDPWD UID EUID PPID GROUPS SECONDS RANDOM SRANDOM "
    "LINENO EPOCHSECONDS EPOCHREALTIME HISTCMD FUNCNAME DIRSTACK OPTIND OPTERR HOSTTYPE MACHTYPE OSTYPE PS4 TMOUT _".split()
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN = re.compile(r"[A-Za-z0-9_./,:@%+=-]+")  # no ~ (an assignment expands it after = or :)


def _exportable(name: str) -> bool:
    return _NAME.fullmatch(name) is not None and name not in _STARTUP and not name.startswith(("BASH", "LC_", "COMP_", "__plx"))


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


def script_of(argv: list[str]) -> tuple[str, str] | None:
    """(script, name) of a `bash -e -o pipefail -c SCRIPT NAME` job; None for any other argv."""
    if len(argv) == 7 and argv[0] == "bash" and argv[1:5] == ["-e", "-o", "pipefail", "-c"]:
        return argv[5], argv[6]
    return None


def message(argv: list[str], env: dict[str, str], cwd: str) -> bytes | None:
    """What a warm shell is sent to become this job's process; None when it cannot be one."""
    found = script_of(argv)
    if found is None or not all(_exportable(k) for k in env):
        return None
    script, name = found
    exports = " ".join(f"{k}={quote(v)}" for k, v in env.items())
    prelude = (
        f"builtin unset __plx; BASH_ARGV0={quote(name)}; builtin cd -P -- {quote(cwd)}; "
        "if [[ $__plx_o == x* ]]; then OLDPWD=${__plx_o#x}; else builtin unset OLDPWD; builtin export OLDPWD; fi; "
        f"builtin unset __plx_o; {'builtin export ' + exports + '; ' if exports else ''}SECONDS=0; "
    )
    try:
        data = (prelude + script).encode("utf-8", "surrogateescape") + b"\0"
    except UnicodeEncodeError:
        return None
    return data if len(data) <= MAX_MESSAGE and b"\0" not in data[:-1] else None


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
