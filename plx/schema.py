"""JSON Schemas of operation and graph files, and a small fast validator for them.

The schemas are the single source of truth: `plx schema` prints them for editors,
and `check` walks a document against them to report structural errors with
positions and did-you-mean hints. `check` implements the subset of JSON Schema
used here (type, properties, required, additionalProperties, patternProperties,
enum, const, items, pattern, minimum, anyOf) — fast enough for 10,000-node graphs.
"""

from __future__ import annotations

import re

from .errors import Diagnostic, did_you_mean
from .yamldoc import Doc

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any

NAME_RE = r"^[A-Za-z0-9_-]+$"
IDENT_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
# An output's file name inside the node's work folder: one path component that stays inside it.
FILENAME_RE = r"^(?!\.\.?$)[^/\\\x00]+$"
ARTIFACT_TYPES = ["file", "text", "json", "csv", "executable", "directory", "cloud"]
PARAM_TYPES = ["str", "int", "float", "bool", "enum", "list_str", "list_int", "list_float", "code", "dict"]
RUNNERS = ["bash_jinja2", "command", "python"]

_text = {"type": "string"}
_name = {"type": "string", "pattern": NAME_RE, "x-what": "a name of letters, digits, '_' and '-'"}
_ident = {"type": "string", "pattern": IDENT_RE, "x-what": "an identifier (a letter or '_', then letters, digits, '_')"}
_timeout = {"type": "number", "exclusiveMinimum": 0, "description": "minutes"}
_max = {"type": "integer", "minimum": -1, "description": "1 for one file, >1 or -1 (unlimited) for a list"}
MEMORY_RE = r"^\s*[0-9]+(\.[0-9]+)?\s*([kKmMgGtT][iI]?)?[bB]?\s*$"
_resources = {
    "type": "object",
    "additionalProperties": False,
    "description": "what one node takes while it runs; the scheduler never exceeds -j slots, the machine's memory or its GPUs",
    "properties": {
        "cpus": {"type": "integer", "minimum": 1, "default": 1, "description": "slots of -j the node holds"},
        "memory": {
            "anyOf": [
                {"type": "string", "pattern": MEMORY_RE, "x-what": "a size such as 512MB, 4GB or 1.5GiB"},
                {"type": "integer", "minimum": 0, "description": "bytes"},
            ],
            "description": "memory budget, e.g. 4GB",
        },
        "gpus": {"type": "integer", "minimum": 0, "default": 0, "description": "GPUs; CUDA_VISIBLE_DEVICES names the ones assigned"},
    },
}
_retries = {"type": "integer", "minimum": 0, "description": "re-run a failed or timed-out attempt up to this many times"}

_input: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": _ident,
        "type": {"enum": ARTIFACT_TYPES, "default": "file"},
        "min": {"type": "integer", "minimum": 0, "default": 1},
        "max": _max,
        "title": _text,
        "description": _text,
    },
}
_param = {
    "type": "object",
    "required": ["name", "type"],
    "additionalProperties": False,
    "properties": {
        "name": _ident,
        "type": {"enum": PARAM_TYPES},
        "default": {},
        "values": {"type": "array", "description": "the allowed values of an enum param"},
        "title": _text,
        "description": _text,
    },
}
_output = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": _ident,
        "type": {"enum": ARTIFACT_TYPES, "default": "file"},
        "filename": {"type": "string", "pattern": FILENAME_RE, "x-what": "a plain file name: not empty, not '.' or '..', without '/'"},
        "title": _text,
        "description": _text,
    },
}

OPERATION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "plx operation",
    "type": "object",
    "required": ["kind", "name", "runner", "cmd"],
    "additionalProperties": False,
    "properties": {
        "kind": {"const": "operation"},
        "name": _name,
        "title": _text,
        "description": _text,
        "runner": {"enum": RUNNERS},
        "inputs": {"type": "array", "items": _input},
        "params": {"type": "array", "items": _param},
        "outputs": {"type": "array", "items": _output},
        "cacheable": {"type": "boolean", "default": True},
        "timeout": _timeout,
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "python": {"type": "string", "description": "the interpreter of a python operation"},
        "sources": {
            "type": "array",
            "items": {"type": "string", "x-what": "a project file, folder or glob"},
            "description": "project files, folders or globs the cmd runs: hashed into the cache key and copied into the work folder",
        },
        "resources": _resources,
        "retries": _retries,
        "cmd": {"type": "string"},
    },
}

_ref = {"type": "string", "x-what": "a reference '<node>.<output>' or 'inputs.<name>'"}
_graph_input = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        **_input["properties"],
        "default": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    },
}
_foreach = {
    "description": (
        "fan-out: one node per item. 'inputs.NAME' (the files of a list graph input, keyed by file name without extension), "
        "'params.NAME' or '${NAME}' (a list graph param, keyed 0, 1, ...), a list of values (keyed 0, 1, ...; bound as ${item}), "
        "the id of another fanned-out node (same keys; its outputs as item.OUTPUT), or a matrix {KEY: [values] or '${NAME}'} "
        "(the cartesian product, keyed KEY=VALUE,...; bound as ${KEY})"
    ),
    "anyOf": [
        {"type": "string", "x-what": "inputs.NAME, params.NAME, ${NAME} or a node id"},
        {"type": "array"},
        {"type": "object", "additionalProperties": {"anyOf": [{"type": "array"}, {"type": "string"}]}},
    ],
}
_node = {
    "type": "object",
    "required": ["operation"],
    "additionalProperties": False,
    "properties": {
        "operation": {"type": "string", "x-what": "an operation name or a path to an operation or graph file"},
        "title": _text,
        "description": _text,
        "inputs": {
            "type": "object",
            "additionalProperties": {"anyOf": [_ref, {"type": "array", "items": _ref}]},
        },
        "params": {"type": "object"},
        "timeout": _timeout,
        "cacheable": {"type": "boolean"},
        "foreach": _foreach,
        "resources": _resources,
        "retries": _retries,
    },
}

GRAPH_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "plx graph",
    "type": "object",
    "required": ["kind", "name", "nodes"],
    "additionalProperties": False,
    "properties": {
        "kind": {"const": "graph"},
        "name": _name,
        "title": _text,
        "description": _text,
        "inputs": {"type": "array", "items": _graph_input},
        "params": {"type": "array", "items": _param},
        "nodes": {"type": "object", "patternProperties": {NAME_RE: _node}, "additionalProperties": False},
        "outputs": {"type": "object", "additionalProperties": _ref},
    },
}

SCHEMAS = {"operation": OPERATION_SCHEMA, "graph": GRAPH_SCHEMA}

_JSON_TYPE = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "empty",
}


def json_type(value: Any) -> str:
    """The JSON Schema type name of a Python value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def describe_type(value: Any) -> str:
    """'a list', 'a string', ... for messages."""
    return _JSON_TYPE.get(json_type(value), json_type(value))


def _type_ok(value: Any, expected: str) -> bool:
    actual = json_type(value)
    return actual == expected or (expected == "number" and actual == "integer")


def _label(path: tuple[Any, ...]) -> str:
    for part in reversed(path):
        if isinstance(part, str):
            return f"'{part}'"
    return "the value"


def check(doc: Doc, schema: dict[str, Any]) -> list[Diagnostic]:
    """Every structural error of doc.data against schema, each with its position."""
    out: list[Diagnostic] = []
    _walk(doc, doc.data, schema, (), out)
    return out


def _errors_of(doc: Doc, value: Any, schema: dict[str, Any], path: tuple[Any, ...]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    _walk(doc, value, schema, path, out)
    return out


class _Trial:
    """The Doc of an anyOf branch tried: its messages without positions (a large file's positions
    cost a second parse); the branch reported is walked again with the real Doc."""

    def __init__(self, file: str) -> None:
        self.file = file

    def diag(self, path: tuple[Any, ...], message: str, hint: str | None = None, key: bool = False) -> Diagnostic:  # noqa: ARG002 - Doc.diag's signature
        return Diagnostic(self.file, None, None, message, hint)


def _walk(doc: Doc, value: Any, schema: dict[str, Any], path: tuple[Any, ...], out: list[Diagnostic]) -> None:  # noqa: C901 - above the threshold when it was set (issue 11)
    if "anyOf" in schema:
        trial: Any = _Trial(doc.file)
        tries = [_errors_of(trial, value, s, path) for s in schema["anyOf"]]
        if all(tries):
            # Report the branch whose type matched, else a combined type message.
            for s in schema["anyOf"]:
                if "type" in s and _type_ok(value, s["type"]):
                    out.extend(_errors_of(doc, value, s, path))
                    return
            wanted = " or ".join(_JSON_TYPE[s["type"]] for s in schema["anyOf"] if "type" in s)
            out.append(doc.diag(path, f"{_label(path)} must be {wanted}, not {_JSON_TYPE.get(json_type(value), json_type(value))}"))
        return
    if "const" in schema and value != schema["const"]:
        out.append(doc.diag(path, f"{_label(path)} must be '{schema['const']}', not {value!r}"))
        return
    if "enum" in schema and value not in schema["enum"]:
        choices = schema["enum"]
        hint = did_you_mean(str(value), choices) if isinstance(value, str) else None
        out.append(doc.diag(path, f"{_label(path)} must be one of {', '.join(choices)}; got {value!r}", hint))
        return
    expected = schema.get("type")
    if expected and not _type_ok(value, expected):
        got = _JSON_TYPE.get(json_type(value), json_type(value))
        hint = None
        if expected == "string" and json_type(value) in ("integer", "number", "boolean"):
            hint = "quote it to make it a string"
        what = schema.get("x-what")
        must = f"{_JSON_TYPE[expected]}" + (f" ({what})" if what else "")
        out.append(doc.diag(path, f"{_label(path)} must be {must}, not {got}", hint))
        return
    if isinstance(value, str) and "pattern" in schema and not re.match(schema["pattern"], value):
        out.append(doc.diag(path, f"{_label(path)} {value!r} is not {schema.get('x-what', 'valid')}"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(doc.diag(path, f"{_label(path)} must be at least {schema['minimum']}, not {value}"))
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            out.append(doc.diag(path, f"{_label(path)} must be greater than {schema['exclusiveMinimum']}, not {value}"))
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _walk(doc, item, schema["items"], path + (i,), out)
    if isinstance(value, dict):
        _walk_object(doc, value, schema, path, out)


def _walk_object(doc: Doc, value: dict[Any, Any], schema: dict[str, Any], path: tuple[Any, ...], out: list[Diagnostic]) -> None:
    props = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extra = schema.get("additionalProperties", True)
    for key in schema.get("required", []):
        if key not in value:
            where = "the file" if not path else _label(path)
            out.append(doc.diag(path, f"{where} is missing the required key '{key}'"))
    for key, item in value.items():
        if key in props:
            _walk(doc, item, props[key], path + (key,), out)
            continue
        matched = False
        for pattern, sub in patterns.items():
            if isinstance(key, str) and re.match(pattern, key):
                _walk(doc, item, sub, path + (key,), out)
                matched = True
        if matched:
            continue
        if extra is False:
            if patterns:
                out.append(doc.diag(path + (key,), f"'{key}' is not a valid id (use letters, digits, '_' and '-')", key=True))
            else:
                hint = did_you_mean(str(key), list(props))
                allowed = ", ".join(props)
                out.append(doc.diag(path + (key,), f"unknown key '{key}'", hint or f"allowed keys: {allowed}", key=True))
        elif isinstance(extra, dict):
            _walk(doc, item, extra, path + (key,), out)
