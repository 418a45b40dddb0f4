"""Jinja2 for bash_jinja2 commands: a sandbox, shell quoting by default (`raw`, `q`), static name checks."""

from __future__ import annotations

from functools import lru_cache

from .shellquote import (
    AFTER_BACKSLASH,
    AFTER_BACKSLASH_MESSAGE,
    DELIMITER_LINE,
    DELIMITER_LINE_MESSAGE,
    QuotingError,
    ShellSafe,
    _contextualize,
    _in_context,
    _text,
    scalar_text,
    shell_quote,
)

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ShellSafe", "scalar_text", "shell_quote", "render", "check", "raw_uses", "RenderError"]

ROOTS = ("param", "input", "output", "cloud_input")


def q(value: Any) -> Any:
    """The `q` filter of older templates: every value is quoted (for where it stands) anyway, so
    `q` returns it unchanged and quoting never happens twice."""
    return value


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
    # only, never to the template's own text), as Jinja2's autoescape does for HTML: `raw` returns
    # ShellSafe text, which finalize writes unchanged. A value inside quotes or other shell syntax
    # of the template is escaped for that place instead (shellquote._contextualize).
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, finalize=shell_quote, keep_trailing_newline=True, autoescape=False)
    env.filters["q"] = q
    env.filters["raw"] = raw
    env.filters["_in_context"] = _in_context  # inserted by _contextualize, never written by hand
    return env


def check(cmd: str, declared: dict[str, set[str]]) -> list[tuple[int, str, str | None]]:  # noqa: C901 - above the threshold when it was set (issue 11)
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
    for f in _contextualize(env.parse(cmd)).find_all(nodes.Filter):
        if f.name == "_in_context" and f.args and getattr(f.args[0], "value", None) in (AFTER_BACKSLASH, DELIMITER_LINE):
            problems.append((f.lineno, AFTER_BACKSLASH_MESSAGE if f.args[0].value == AFTER_BACKSLASH else DELIMITER_LINE_MESSAGE, None))
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
