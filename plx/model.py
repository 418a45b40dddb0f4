"""Operations, graphs and their typed interfaces: plain data, no I/O."""

from __future__ import annotations

import json

from .structs import field, record

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any, Union

FILE_LIKE_TEXT = {"text", "csv", "json"}


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def accepts(input_type: str, output_type: str) -> bool:
    """Whether an input of input_type may be fed an artifact of output_type (docs/reference.md)."""
    if input_type == output_type:
        return True
    if input_type == "file":
        return output_type != "directory"
    if input_type == "text":
        return output_type in FILE_LIKE_TEXT
    return False


@record
class InputSpec:
    name: str
    type: str = "file"
    min: int = 1
    max: int = 1
    default: Any = None  # graph inputs only: a path, a list of paths or a glob
    title: str | None = None
    description: str | None = None

    @property
    def is_list(self) -> bool:
        return self.max != 1

    @property
    def optional(self) -> bool:
        return self.min == 0


@record
class ParamSpec:
    name: str
    type: str
    default: Any = MISSING
    values: list[Any] | None = None
    title: str | None = None
    description: str | None = None

    @property
    def required(self) -> bool:
        return self.default is MISSING


@record
class OutputSpec:
    name: str
    type: str = "file"
    filename: str | None = None
    title: str | None = None
    description: str | None = None

    @property
    def file_name(self) -> str:
        return self.filename or self.name


@record
class Operation:
    name: str
    runner: str
    cmd: str
    inputs: list[InputSpec] = field(default_factory=list)
    params: list[ParamSpec] = field(default_factory=list)
    outputs: list[OutputSpec] = field(default_factory=list)
    cacheable: bool = True
    timeout: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    python: str | None = None
    title: str | None = None
    description: str | None = None
    file: str = ""
    raw: dict[str, Any] = field(default_factory=dict)  # the file's data, recorded with each run
    sources: list[str] = field(default_factory=list)  # project files, folders or globs the cmd runs
    resources: dict[str, Any] = field(default_factory=dict)  # cpus, memory, gpus as written
    retries: int = 0
    cmd_offset: int | None = None  # line N of cmd is line cmd_offset + N of the file (None: unknown)

    def input(self, name: str) -> InputSpec | None:
        return next((i for i in self.inputs if i.name == name), None)

    def param(self, name: str) -> ParamSpec | None:
        return next((p for p in self.params if p.name == name), None)

    def output(self, name: str) -> OutputSpec | None:
        return next((o for o in self.outputs if o.name == name), None)


@record
class Node:
    id: str
    operation: str  # as written: a name or a path
    inputs: dict[str, Union[str, list[str]]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    cacheable: bool | None = None
    title: str | None = None
    description: str | None = None
    foreach: Any = None  # fan-out (see fanout.py): one node per item when planned
    resources: dict[str, Any] | None = None  # overrides the operation's, key by key
    retries: int | None = None


@record
class Graph:
    name: str
    inputs: list[InputSpec] = field(default_factory=list)
    params: list[ParamSpec] = field(default_factory=list)
    nodes: dict[str, Node] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    title: str | None = None
    description: str | None = None
    file: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    def input(self, name: str) -> InputSpec | None:
        return next((i for i in self.inputs if i.name == name), None)

    def param(self, name: str) -> ParamSpec | None:
        return next((p for p in self.params if p.name == name), None)


if TYPE_CHECKING:
    Runnable = Union[Operation, Graph]


def parse_ref(ref: str) -> tuple[str, str] | None:
    """Split '<node>.<output>' or 'inputs.<name>' into its two parts; None if malformed."""
    head, dot, tail = ref.partition(".")
    if not dot or not head or not tail or "." in tail:
        return None
    return head, tail


def binding(value: Any) -> str | None:
    """The graph param named by a value that is exactly "${name}", else None."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}") and len(value) > 3:
        return value[2:-1]
    return None


# ---- parameter values -------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _list_item(x: Any, integer: bool) -> Any:
    """An item of a list_int or list_float `-p` value: text as written (`1,2`), or a JSON number of
    that kind, as the YAML check takes (no bool, list or dict; no float for an int: `[1e999]` is no int)."""
    if isinstance(x, str):
        return int(x) if integer else float(x)
    if _is_int(x) or (not integer and _is_num(x)):
        return x if integer else float(x)
    raise ValueError


# Python refuses to convert integers longer than this to text (sys.get_int_max_str_digits()), and
# every param value is written as JSON (records, cache keys): longer ones are refused up front.
INT_MAX_DIGITS = 4300
NOT_FINITE_HINT = "JSON, in which plx records params and computes cache keys, cannot hold inf or nan; give a finite number"


def unrepresentable(value: Any) -> str | None:
    """Why a value cannot be a param value (a non-finite float, an integer too long for text), or None."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    if _is_int(value) and value.bit_length() > INT_MAX_DIGITS * 3.32:  # about INT_MAX_DIGITS decimal digits
        return f"an integer of about {int(value.bit_length() / 3.3219)} digits is too long (at most {INT_MAX_DIGITS})"
    if isinstance(value, list):
        return next((why for v in value if (why := unrepresentable(v))), None)
    if isinstance(value, dict):
        return next((why for v in value.values() if (why := unrepresentable(v))), None)
    return None


def check_param_value(spec: ParamSpec, value: Any, written: str | None = None) -> tuple[str, str | None] | None:  # noqa: C901 - above the threshold when it was set (issue 11)
    """Why value does not fit spec as (message, hint), or None when it does. Nothing is converted."""
    t = spec.type
    ok: bool
    why = unrepresentable(value)
    if why is not None:
        return (f"param '{spec.name}': {why}", NOT_FINITE_HINT if "finite" in why else None)
    if t in ("str", "code"):
        ok = isinstance(value, str)
        if not ok and (_is_num(value) or isinstance(value, bool)):
            text = written if written is not None else str(value)
            return (f"param '{spec.name}' is {t}, but YAML reads {text} as the {type(value).__name__} {value!r}", f"quote it to keep it text: '{text}'")
    elif t == "int":
        ok = _is_int(value)
    elif t == "float":
        ok = _is_num(value)
    elif t == "bool":
        ok = isinstance(value, bool)
    elif t == "enum":
        if value not in (spec.values or []):
            return (f"param '{spec.name}' must be one of {', '.join(map(str, spec.values or []))}; got {value!r}", None)
        ok = True
    elif t == "list_str":
        ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
    elif t == "list_int":
        ok = isinstance(value, list) and all(_is_int(x) for x in value)
    elif t == "list_float":
        ok = isinstance(value, list) and all(_is_num(x) for x in value)
    elif t == "dict":
        ok = isinstance(value, dict)
    else:  # pragma: no cover - the schema rejects other types
        ok = False
    if ok:
        return None
    return (f"param '{spec.name}' must be {_TYPE_WORDS.get(t, t)}, not {value!r}", None)


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list_str": "a list of strings",
    "list_int": "a list of integers",
    "list_float": "a list of numbers",
    "dict": "a mapping",
}

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number; {NOT_FINITE_HINT}")


def _json(text: str) -> Any:
    """JSON as plx takes it: NaN and Infinity refused, numbers as long as Python can print."""
    return json.loads(text, parse_constant=_no_constant)


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 60 else repr(text[:40]) + f"… ({len(text)} characters)"


def parse_param_text(spec: ParamSpec, text: str) -> Any:
    """Parse a command-line value by the param's type; raises ValueError with a clear message."""
    value = _parse_param_text(spec, text)
    why = unrepresentable(value)
    if why is not None:
        hint = f"; {NOT_FINITE_HINT}" if "finite" in why else ""
        raise ValueError(f"bad value {_shown(text)} for {spec.type} param '{spec.name}': {why}{hint}")
    return value


def _parse_param_text(spec: ParamSpec, text: str) -> Any:  # noqa: C901 - above the threshold when it was set (issue 11)
    t = spec.type
    try:
        if t in ("str", "code"):
            return text
        if t == "int":
            digits = len(text.strip().lstrip("+-").replace("_", ""))
            if digits > INT_MAX_DIGITS:
                raise ValueError(f"an integer of {digits} digits is too long (at most {INT_MAX_DIGITS})")
            return int(text)
        if t == "float":
            return float(text)
        if t == "bool":
            low = text.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if t == "enum":
            for v in spec.values or []:
                if str(v) == text:
                    return v
            raise ValueError(f"must be one of {', '.join(map(str, spec.values or []))}")
        if t.startswith("list_"):
            text_s = text.strip()
            items: list[Any]
            if text_s.startswith("["):
                items = _json(text_s)
                if not isinstance(items, list):
                    raise ValueError
            else:
                items = [x.strip() for x in text_s.split(",")] if text_s else []
            if t == "list_str":
                return [x if isinstance(x, str) else json.dumps(x) for x in items]
            return [_list_item(x, t == "list_int") for x in items]
        if t == "dict":
            value = _json(text)
            if not isinstance(value, dict):
                raise ValueError
            return value
    except ValueError as exc:
        known = ("must be", "finite", "too long")
        detail = str(exc) if any(k in str(exc) for k in known) else f"expected {_TYPE_WORDS.get(t, t)}"
        raise ValueError(f"bad value {_shown(text)} for {t} param '{spec.name}': {detail}") from None
    raise ValueError(f"unknown param type {t}")  # pragma: no cover
