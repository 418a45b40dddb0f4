"""How one node becomes a process: the script, argv and environment of each runner (docs/reference.md)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from .errors import RunError
from .model import Operation
from .structs import record

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any

# The python runner's bootstrap: values arrive as JSON data, the user's source from a file,
# so a param's value can never become code.
_PY_BOOT = """\
import json, linecache, sys, traceback
_v = json.load(open(sys.argv[1], encoding="utf-8"))
# Tracebacks name the operation file with the lines of the YAML file: `cmd` is compiled after as
# many empty lines as precede it in the file (argv[4]).
_src = "\\n" * int(sys.argv[4]) + open(sys.argv[2], encoding="utf-8").read()
linecache.cache[sys.argv[3]] = (len(_src), None, _src.splitlines(True), sys.argv[3])
sys.argv = [sys.argv[3]]
# The Python-level hook reads linecache (the C one reads files); tb_next drops this bootstrap's frame.
sys.excepthook = lambda t, v, tb: traceback.print_exception(t, v, tb.tb_next if tb else tb)
_g = {"__name__": "__main__", "__builtins__": __builtins__}
_g["param"] = _g["params"] = _v["param"]
_g["input"] = _g["inputs"] = _v["input"]
_g["output"] = _g["outputs"] = _v["output"]
del _v
exec(compile(_src, sys.argv[0], "exec"), _g)
"""


def cmd_location(op: Operation, line: int | None) -> str:
    """`file:line` of a line of op's cmd (line 1 is its first line), as far as known."""
    if line is None or op.cmd_offset is None:
        return f"{op.file} cmd" + (f" line {line}" if line is not None else "")
    return f"{op.file}:{op.cmd_offset + line}"


@record
class Prepared:
    argv: list[str]
    env: dict[str, str]  # only what plx adds; the process also inherits plx's environment
    script: str  # what `plx preview` shows and the worker log records


def env_value(value: Any) -> str:
    """A value as an environment variable: lists and dicts as JSON, scalars as templates show them."""
    from .templates import scalar_text

    return json.dumps(value) if isinstance(value, (list, dict)) else scalar_text(value)


def _values(op: Operation, params: dict[str, Any], inputs: dict[str, list[str]], outputs: dict[str, str]) -> dict[str, dict[str, Any]]:
    """param/input/output as a node sees them: lists for list inputs, None for an unwired optional one."""
    ins: dict[str, Any] = {}
    for spec in op.inputs:
        paths = inputs.get(spec.name, [])
        ins[spec.name] = paths if spec.is_list else (paths[0] if paths else None)
    return {"param": dict(params), "input": ins, "output": dict(outputs)}


def _cloud_refs(op: Operation, ins: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in op.inputs:
        if spec.type != "cloud":
            continue

        def ref(p: str | None) -> str | None:
            if not p:
                return None
            try:
                return str(json.loads(Path(p).read_text()).get("path", ""))
            except (OSError, ValueError, AttributeError):
                return None

        v = ins[spec.name]
        out[spec.name] = [ref(x) for x in v] if isinstance(v, list) else ref(v)
    return out


def prepare(
    op: Operation, params: dict[str, Any], inputs: dict[str, list[str]], outputs: dict[str, str], scratch: Path | None, python: str | None = None, exec_ok: bool = True
) -> Prepared:
    """Build what to execute; writes helper files into scratch when given (None: preview only).
    python: the interpreter of a python op as resolved (environment.resolve_python). exec_ok: the
    node runs in plx's own environment, and no bash function can come from it
    (`not shell_functions_possible(os.environ)`): a lone command may then be exec'd (_exec_form)."""
    v = _values(op, params, inputs, outputs)
    env = dict(op.env)
    for kind, values in v.items():
        for name, value in values.items():
            if kind == "input" and isinstance(value, list):
                env[f"INPUT_{name.upper()}"] = "\n".join(value)
            else:
                env[f"{kind.upper()}_{name.upper()}"] = env_value(value)
    if op.runner == "python":
        interpreter = python or op.python or sys.executable
        script = op.cmd
        if scratch is not None:
            (scratch / "values.json").write_text(json.dumps(v), encoding="utf-8")
            (scratch / "script.py").write_text(op.cmd, encoding="utf-8")
        where = (op.file, op.cmd_offset) if op.cmd_offset is not None else (f"{op.file} cmd", 0)
        argv = [interpreter, "-c", _PY_BOOT, str((scratch or Path(".")) / "values.json"), str((scratch or Path(".")) / "script.py"), where[0], str(where[1])]
        return Prepared(argv, env, "# python: param/input/output are predefined\n" + "\n".join(f"{k} = {json.dumps(val)}" for k, val in v.items()) + "\n" + script)
    if op.runner == "bash_jinja2":
        from . import templates

        try:
            script = templates.render(op.cmd, {**v, "cloud_input": _cloud_refs(op, v["input"])})
        except templates.RenderError as exc:
            raise RunError(f"{cmd_location(op, exc.line)}: cannot render the command: {exc}") from None
    else:
        script = op.cmd
    if len(script) < _INLINE_LIMIT:
        # Passed inline: one file less per node. $0 names the operation in bash's own messages.
        return Prepared(["bash", "-e", "-o", "pipefail", "-c", _exec_form(script, env) if exec_ok else script, op.name], env, script)
    if scratch is not None:
        (scratch / "script.sh").write_text(script, encoding="utf-8")
    return Prepared(["bash", "-e", "-o", "pipefail", str((scratch or Path(".")) / "script.sh")], env, script)


_INLINE_LIMIT = 64 * 1024  # well under Linux's 128 KiB limit on one argument

# bash -c runs a lone simple command in its own process (an exec, no fork) only when it has no
# redirections; `tr a-z A-Z < "$INPUT_SRC" > "$OUTPUT_OUT"` costs bash a fork. For a script that
# is one such command, plx writes the `exec` bash leaves out: one process less per node (~0.3 ms),
# and the node behaves as a lone command without redirections always has (README: the program is
# the node's leader, gets TERM itself, and a program not found reads "exec: NAME: not found").
# Only for one command of plain words, quoted strings and $NAME expansions (no ; & | ( ) ` $( or
# newline) whose program is no bash builtin or keyword (exec would skip the builtin), no option
# of exec (a leading -) and no assignment; on the local executor only (the environment checked
# for BASH_ENV and exported functions is plx's).
# Possessive quantifiers (Python 3.11) and alternatives that never start alike: a script is
# matched in linear time, whatever it holds (backtracking made long scripts take forever).
_NAME = r"\$(?:[A-Za-z_][A-Za-z0-9_]*+|\{[A-Za-z_][A-Za-z0-9_]*+\})"  # $NAME or ${NAME}
_PART = rf"""(?:[A-Za-z0-9_./,:@%+=~-]++|'[^']*+'|"(?:[^"\\$`]++|{_NAME})*+"|{_NAME})"""
_WORD = rf"(?:{_PART})++"
_REDIRECT = rf"(?:[0-9]?(?:>>|>|<)|&>)[ \t]*+{_WORD}|[0-9]?>&[0-9]"
_SIMPLE = rf"[ \t]*+([A-Za-z0-9_./+][A-Za-z0-9_./+-]*+)(?:[ \t]++(?:{_REDIRECT}|{_WORD}))*+[ \t]*+\n?"
BASH_OWN = frozenset(
    ". : [ alias bg bind break builtin caller cd command compgen complete compopt continue declare dirs disown echo enable eval exec exit "
    "export false fc fg getopts hash help history jobs kill let local logout mapfile popd printf pushd pwd read readarray readonly return "
    "set shift shopt source suspend test times trap true type typeset ulimit umask unalias unset wait if then else elif fi case esac for "
    "select while until do done in function time { } ! [[ ]] coproc".split()
)


def shell_functions_possible(environ: Mapping[str, str]) -> bool:
    """Whether BASH_ENV or an exported function in environ could define a bash function of any name:
    then no script gets `exec` (it would skip that function). Asked of plx's environment once per run
    (its keys are decoded at each pass, ~20 µs a node), of an operation's env for each node."""
    return any(k == "BASH_ENV" or k.startswith("BASH_FUNC_") for k in environ)


# What a simple command (_SIMPLE) holds outside quotes: a script with anything else there (`;`,
# `&&`, `|`, `(`, a newline before its end, ...) is not one, seen without the pattern (compiling it
# is ~0.7 ms of a run's start, at its first node). Quotes are set aside first: a simple command has
# no backslash outside single quotes, so its quotes open and close exactly where _QUOTED sees them.
_IN_SIMPLE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./,:@%+=~-${}<>& \t")
_QUOTED = "'[^']*'|\"[^\"]*\""


def _surely_not_simple(script: str) -> bool:
    """True only for a script _SIMPLE cannot match (False says nothing)."""
    rest = re.sub(_QUOTED, "q", script) if "'" in script or '"' in script else script
    rest = rest[:-1] if rest.endswith("\n") else rest
    # `&` is part of a redirection in a simple command: `&>` or `N>&M`, never `&&` or a lone `&`
    return not _IN_SIMPLE.issuperset(rest) or "&" in rest.replace("&>", "").replace(">&", "")


def _exec_form(script: str, env: dict[str, str]) -> str:
    """The script with `exec ` before it when it is one simple command that bash would fork for (env:
    what the operation adds to plx's environment, which the caller checked: see prepare's exec_ok)."""
    if _surely_not_simple(script):
        return script
    m = re.fullmatch(_SIMPLE, script)  # compiled on first use (~0.5 ms), by re's cache: a no-op run never needs it
    if m is None or m.group(1) in BASH_OWN or shell_functions_possible(env):
        return script
    return "exec " + script
