"""Jinja2 for bash_jinja2 commands: a sandbox, shell quoting by default (`raw`, `q`), static name checks."""

from __future__ import annotations

import json
import shlex
from functools import lru_cache
from typing import Any

ROOTS = ("param", "input", "output", "cloud_input")


def scalar_text(value: Any) -> str:
    """A scalar as plx writes it for bash: bools as true/false, None as nothing."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


def _text(value: Any) -> str:
    """A value verbatim (`| raw`): lists as their items joined by spaces, dicts as JSON."""
    if isinstance(value, (list, tuple)):
        return " ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return scalar_text(value)


class ShellSafe(str):
    """Text already safe to paste into bash (like markupsafe's Markup for HTML): written as is."""

    __slots__ = ()


def shell_quote(value: Any) -> ShellSafe:
    """A value as one shell word (SPEC §2); a list becomes its items, each quoted, joined by spaces.

    Text that needs no quotes (`5`, `/abs/path.txt`) stays as it is; a value already quoted (a
    ShellSafe) is never quoted twice; booleans are true/false and None (an absent optional input)
    is nothing."""
    if isinstance(value, ShellSafe):
        return value
    if value is None:
        return ShellSafe("")
    if isinstance(value, (list, tuple)):
        return ShellSafe(" ".join(shell_quote(v) for v in value if v is not None))
    if isinstance(value, bool):
        return ShellSafe(scalar_text(value))
    return ShellSafe(shlex.quote(_text(value)))


def raw(value: Any) -> ShellSafe:
    """The `raw` filter: the value verbatim, for a template that means to build shell syntax."""
    return value if isinstance(value, ShellSafe) else ShellSafe(_text(value))


class Namespace:
    """`param`, `input`, ... in a template: item and attribute access both work."""

    def __init__(self, kind: str, values: dict[str, Any]):
        self._kind = kind
        self._values = values

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"{self._kind} has no '{name}'") from None

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values


@lru_cache(maxsize=1)
def environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # Every {{ }} value goes through shell_quote (the finalize hook, applied to expression results
    # only, never to the template's own text), as Jinja2's autoescape does for HTML: `raw` and `q`
    # return ShellSafe text, which finalize writes unchanged.
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, finalize=shell_quote, keep_trailing_newline=True, autoescape=False)
    env.filters["q"] = shell_quote
    env.filters["raw"] = raw
    env.filters["_in_context"] = _in_context  # inserted by _contextualize, never written by hand
    return env


def check(cmd: str, declared: dict[str, set[str]]) -> list[tuple[int, str, str | None]]:
    """Static problems of a template as (line within cmd, message, hint)."""
    from jinja2 import TemplateSyntaxError, meta, nodes

    from .errors import did_you_mean

    env = environment()
    try:
        ast = env.parse(cmd)
    except TemplateSyntaxError as exc:
        return [(exc.lineno or 1, f"template syntax error: {exc.message}", None)]
    problems: list[tuple[int, str, str | None]] = []
    for f in ast.find_all((nodes.Filter, nodes.Test)):
        table, what = (env.filters, "filter") if isinstance(f, nodes.Filter) else (env.tests, "test")
        if f.name not in table:
            hint = did_you_mean(f.name, list(table)) or ("quoting is the default; `raw` opts out" if what == "filter" else None)
            problems.append((f.lineno, f"the template uses an unknown {what} '{f.name}'", hint))
    for a in ast.find_all(nodes.Getattr):
        if a.attr.startswith("_"):
            problems.append((a.lineno, f"the template reads '{a.attr}': names starting with '_' are not allowed in templates", "templates see data only (sandbox)"))
    if problems:
        return problems  # find_undeclared_variables compiles the template, which fails on these
    known = set(ROOTS) | set(env.globals)
    try:
        undeclared = meta.find_undeclared_variables(ast)
    except TemplateSyntaxError as exc:
        return [(exc.lineno or 1, f"template error: {exc.message}", None)]
    for name in sorted(undeclared - known):
        line = next((n.lineno for n in ast.find_all(nodes.Name) if n.name == name), 1)
        problems.append(
            (line, f"the template uses '{name}', which is not defined", did_you_mean(name, list(ROOTS)) or "use param.NAME, input.NAME, output.NAME or cloud_input.NAME")
        )
    assigned = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        base = node.node
        if not isinstance(base, nodes.Name) or base.name not in ROOTS or base.name in assigned:
            continue
        if isinstance(node, nodes.Getattr):
            attr = node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            attr = node.arg.value
        else:
            continue
        names = declared.get(base.name, set())
        if attr not in names:
            kind = {"param": "param", "input": "input", "output": "output", "cloud_input": "cloud input"}[base.name]
            hint = did_you_mean(attr, names) or (f"declared: {', '.join(sorted(names))}" if names else f"the operation declares no {kind}s")
            problems.append((node.lineno, f"the template uses {base.name}.{attr}, but the operation declares no {kind} '{attr}'", hint))
    return problems


# ---- where in the shell script a value lands ----------------------------------------------
#
# Quoting for a bare word (shlex.quote) is wrong inside quotes the template writes itself:
# `echo '{{ v }}'` with v = `a; b` would become `echo ''a; b''`, and `"{{ v }}"` would let `$(..)`
# in v run. So, as HTML template engines escape by context, the template's own text is read with a
# small bash lexer, and each {{ }} is escaped for where it stands: a bare word, inside '...',
# "...", $'...', `...`, a comment, or a here-document.

NONE, SQ, DQ, ANSI, BT, SUB, BRACE, DQBRACE, COMMENT, HEREDOC, HEREDOC_LITERAL = "none sq dq ansi bt sub brace dqbrace comment heredoc heredoc_literal".split()


class ShellLexer:
    """Tracks bash's quoting state across the template's literal text, fed in order."""

    def __init__(self) -> None:
        self.stack: list[str] = [NONE]
        self.depth: list[int] = [0]  # open parentheses inside each $( )
        self.pending: list[tuple[str, bool, bool]] = []  # here-documents to start at the next newline
        self.heredoc: tuple[str, bool] | None = None  # (delimiter, strip tabs) of the current one
        self.line = ""  # the current line of a here-document, to find its delimiter
        self.prev = "\n"  # the previous character (`#` starts a comment only at a word's start)
        self.escape = False

    @property
    def context(self) -> str:
        return self.stack[-1]

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            c = text[i]
            nxt = text[i + 1] if i + 1 < len(text) else ""
            top = self.stack[-1]
            if self.escape:
                self.escape = False
            elif top in (HEREDOC, HEREDOC_LITERAL):
                if c == "\n":
                    delim, strip = self.heredoc or ("", False)
                    if (self.line.lstrip("\t") if strip else self.line) == delim:
                        self.stack.pop()
                        self.heredoc = None
                    self.line = ""
                else:
                    self.line += c
                    if top == HEREDOC:
                        i += self._expansion(c, nxt)
            elif top == SQ:
                if c == "'":
                    self.stack.pop()
            elif top == ANSI:
                if c == "\\":
                    self.escape = True
                elif c == "'":
                    self.stack.pop()
            elif top == COMMENT:
                if c == "\n":
                    self.stack.pop()
                    self._newline()
            elif top in (DQ, DQBRACE):  # ${...} inside "...": quotes in it are taken as text here
                if c == "\\":
                    self.escape = True
                elif (c == '"' and top == DQ) or (c == "}" and top == DQBRACE):
                    self.stack.pop()
                else:
                    i += self._expansion(c, nxt)
            else:  # NONE, SUB, BRACE, BT: shell words
                if c == "\\":
                    self.escape = True
                elif c == "'":
                    self.stack.append(SQ)
                elif c == '"':
                    self.stack.append(DQ)
                elif c == "$" and nxt == "'":
                    self.stack.append(ANSI)
                    i += 1
                elif c == "#" and (self.prev.isspace() or self.prev in ";&|()"):
                    self.stack.append(COMMENT)
                elif c == "`" and top == BT:
                    self.stack.pop()
                elif c == "}" and top == BRACE:
                    self.stack.pop()
                elif c == ")" and top == SUB:
                    if self.depth[-1]:
                        self.depth[-1] -= 1
                    else:
                        self.stack.pop()
                        self.depth.pop()
                elif c == "(" and top == SUB:
                    self.depth[-1] += 1
                elif c == "<" and nxt == "<" and text[i + 2 : i + 3] != "<" and self.prev != "<":  # not <<<
                    i += self._heredoc_start(text, i)
                elif c == "\n" and top == NONE:
                    self._newline()
                else:
                    i += self._expansion(c, nxt)
            self.prev = c
            i += 1

    def _expansion(self, c: str, nxt: str) -> int:
        """`$(`, `${` and backquotes open a context of their own; returns characters consumed beyond c."""
        if c == "$" and nxt == "(":
            self.stack.append(SUB)
            self.depth.append(0)
            return 1
        if c == "$" and nxt == "{":
            self.stack.append(BRACE if self.stack[-1] in (NONE, SUB, BT, BRACE) else DQBRACE)
            return 1
        if c == "`":
            self.stack.append(BT)
        return 0

    def _heredoc_start(self, text: str, i: int) -> int:
        import re

        m = re.compile(r"<<(-?)[ \t]*(?:'([^'\n]*)'|\"([^\"\n]*)\"|\\?([^\s;&|<>()'\"]+))").match(text, i)
        if not m:
            return 1
        delim = next(g for g in (m.group(2), m.group(3), m.group(4)) if g is not None)
        self.pending.append((delim, bool(m.group(1)), m.group(4) is None or m.group(0)[2:].lstrip("- \t").startswith("\\")))
        return m.end() - i - 1

    def _newline(self) -> None:
        if self.pending:
            delim, strip, literal = self.pending.pop(0)
            self.heredoc = (delim, strip)
            self.stack.append(HEREDOC_LITERAL if literal else HEREDOC)


class QuotingError(ValueError):
    """A value that no escaping can keep inert where the template writes it."""


def _escape_for(context: str, value: Any, heredoc: tuple[str, bool] | None) -> ShellSafe:
    """A value written where the template put it (see ShellLexer)."""
    if isinstance(value, ShellSafe):  # raw, or q: what the template asked for
        return value
    if context in (NONE, SUB, BRACE):
        return shell_quote(value)
    if context == BT:  # inside `...`, backslash, backquote and $ are taken once more before parsing
        return ShellSafe(shell_quote(value).replace("\\", "\\\\").replace("`", "\\`").replace("$", "\\$"))
    text = _text(value)
    if context == SQ:
        return ShellSafe(text.replace("'", "'\\''"))
    if context == ANSI:
        return ShellSafe(text.replace("\\", "\\\\").replace("'", "\\'"))
    if context in (HEREDOC, HEREDOC_LITERAL):
        delim, strip = heredoc or ("", False)
        if any((line.lstrip("\t") if strip else line) == delim for line in text.split("\n")):
            raise QuotingError(f"a value holds the line {delim!r}, which would end the here-document it is written in")
        if context == HEREDOC_LITERAL:
            return ShellSafe(text)
    if context == DQBRACE and "'" in text:  # bash pairs single quotes even there; no escape keeps one
        raise QuotingError('a value with a single quote cannot be written inside "${...}"; use $PARAM_NAME there instead')
    if context in (DQ, DQBRACE, HEREDOC):
        extra = {DQ: ('"',), DQBRACE: ('"', "}"), HEREDOC: ()}[context]
        for ch in ("\\", "$", "`", *extra):
            text = text.replace(ch, "\\" + ch)
        return ShellSafe(text)
    if context == COMMENT:  # a newline would end the comment and make the rest a command
        return ShellSafe(text.replace("\r", " ").replace("\n", " "))
    return shell_quote(value)  # pragma: no cover


def _in_context(value: Any, context: str, delim: str = "", strip: bool = False) -> ShellSafe:
    return _escape_for(context, value, (delim, strip))


def _contextualize(ast: Any) -> Any:
    """Wrap each {{ }} that is not a bare shell word in the `_in_context` filter for where it stands."""
    from jinja2 import nodes

    lexer = ShellLexer()

    def visit(node: Any) -> None:
        if isinstance(node, nodes.Output):
            out = []
            for n in node.nodes:
                if isinstance(n, nodes.TemplateData):
                    lexer.feed(n.data)
                else:
                    if lexer.context != NONE:
                        delim, strip = lexer.heredoc or ("", False)
                        args = [nodes.Const(lexer.context), nodes.Const(delim), nodes.Const(strip)]
                        n = nodes.Filter(n, "_in_context", args, [], None, None, lineno=n.lineno)
                    lexer.prev = "_"  # the value is part of a word: a `#` right after it starts no comment
                out.append(n)
            node.nodes = out
            return
        for child in node.iter_child_nodes():
            visit(child)

    visit(ast)
    return ast


@lru_cache(maxsize=256)
def _compiled(cmd: str) -> Any:
    env = environment()
    return env.from_string(_contextualize(env.parse(cmd)))


class RenderError(Exception):
    """The template could not be rendered; `line` is the line within cmd, when known."""

    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.line = line


def render(cmd: str, context: dict[str, dict[str, Any]]) -> str:
    """Render cmd with param/input/output/cloud_input; raises RenderError on a mistake."""
    from jinja2 import TemplateError, TemplateSyntaxError
    from jinja2.exceptions import SecurityError

    ns = {k: Namespace(k, v) for k, v in context.items()}
    try:
        return str(_compiled(cmd).render(**ns))
    except TemplateSyntaxError as exc:  # also an unknown filter, found when compiling
        raise RenderError(exc.message or str(exc), exc.lineno) from None
    except SecurityError as exc:
        raise RenderError(f"not allowed in a template (sandbox): {exc}", _template_line(exc)) from None
    except QuotingError as exc:
        raise RenderError(str(exc), _template_line(exc)) from None
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError, AttributeError, RecursionError, OverflowError) as exc:
        raise RenderError(f"{type(exc).__name__}: {exc}" if not isinstance(exc, TemplateError) else str(exc), _template_line(exc)) from None


def _template_line(exc: BaseException) -> int | None:
    """The template line an error happened on: Jinja2 rewrites tracebacks to frames of the template."""
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def raw_uses(cmd: str) -> list[tuple[int, str]]:
    """Every `| raw` applied to a param or an input, as (line within cmd, what it is applied to):
    `plx validate` warns about each, since such a value reaches bash unquoted."""
    from jinja2 import TemplateSyntaxError, nodes

    try:
        ast = environment().parse(cmd)
    except TemplateSyntaxError:
        return []  # reported by check()
    out: list[tuple[int, str]] = []
    for f in ast.find_all(nodes.Filter):
        if f.name != "raw" or f.node is None:
            continue
        names = []
        for n in [f.node, *f.node.find_all((nodes.Getattr, nodes.Getitem, nodes.Name))]:
            if isinstance(n, (nodes.Getattr, nodes.Getitem)) and isinstance(n.node, nodes.Name) and n.node.name in ("param", "input"):
                key = n.attr if isinstance(n, nodes.Getattr) else getattr(n.arg, "value", "?")
                names.append(f"{n.node.name}.{key}")
            elif isinstance(n, nodes.Name) and n.name in ("param", "input"):
                names.append(n.name)
        if names:
            out.append((f.lineno, names[0]))
    return sorted(set(out))
