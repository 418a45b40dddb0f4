"""Fan-out: `foreach` on a graph node, the keys of its expansions, and the references
`item`, `item.OUT`, `node[*].OUT` and `node[KEY].OUT`.

The loader validates a template node once (`classify`, `static_infos`, `check_binding`,
`check_fan_ref`); the planner expands it when the graph is planned (`expand`), so `-i`, `-p`
and `--sweep` change the expansion. No I/O here.
"""

from __future__ import annotations

import itertools
import json
import math
import re

from .errors import did_you_mean
from .model import ParamSpec, check_param_value
from .structs import field, record

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any, Callable

ITEM = "item"  # the item of a fanned-out node, in its inputs (`item`, `item.OUT`) and params (`${item}`)
KEY = "key"  # `${key}`: the expansion's key as text
GATHER = "*"
RESERVED_VARS = {ITEM, KEY}
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NODE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_BRACKET_REF = re.compile(r"^([^.\[\]]+)\[([^\[\]]*)\]\.([^.\[\]]+)$")
_BAD_KEY_CHARS = re.compile(r"[\[\],=/\x00-\x1f\x7f]")
_COMPRESSED = {".gz", ".bz2", ".xz", ".zst", ".lz4"}
MAX_EXPANSIONS = 1_000_000  # a matrix larger than this is a mistake, not a plan to build
_VAR_IN_KEY = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ELEMENT = {"list_int": "int", "list_float": "float", "list_str": "str"}


class FanError(Exception):
    """A problem with one fanned-out node, found while planning: (message, hint)."""

    def __init__(self, message: str, hint: str | None = None, where: tuple[Any, ...] = ("foreach",)):
        super().__init__(message)
        self.message, self.hint, self.where = message, hint, where


# ---- what a node fans out over -------------------------------------------------------------


@record
class Axis:
    """One key of a matrix: inline values, or a list graph param."""

    name: str
    values: list[Any] | None = None
    param: str | None = None


@record
class Foreach:
    """`foreach:` as written. kind: input (files of a list graph input), values (an inline list or a
    list graph param), node (the expansions of another fanned-out node), matrix (several keys)."""

    kind: str
    source: str | None = None  # the graph input, the graph param, or the upstream node
    values: list[Any] | None = None  # an inline list
    axes: list[Axis] = field(default_factory=list)


def _param_name(text: str) -> str | None:
    """'params.NAME' or '${NAME}' -> NAME."""
    if text.startswith("params.") and IDENT.match(text[7:]):
        return text[7:]
    if text.startswith("${") and text.endswith("}") and IDENT.match(text[2:-1]):
        return text[2:-1]
    return None


def classify(value: Any) -> Foreach | tuple[tuple[Any, ...], str, str | None]:  # noqa: C901 - above the threshold when it was set (issue 11)
    """What `foreach` names, or (path below 'foreach', message, hint) when it is malformed."""
    if isinstance(value, list):
        if not value:
            return (), "'foreach' is an empty list: the node would stand for no node at all", "list at least one item, or remove 'foreach'"
        return Foreach("values", values=list(value))
    if isinstance(value, str):
        if value.startswith("inputs.") and IDENT.match(value[7:]):
            return Foreach("input", source=value[7:])
        name = _param_name(value)
        if name is not None:
            return Foreach("values", source=name)
        if NODE_ID.match(value):
            return Foreach("node", source=value)
        return (
            (),
            f"'foreach: {value}' names nothing to fan out over",
            "write inputs.NAME (a list graph input), params.NAME (a list graph param), the id of a fanned-out node, a list, or a mapping of lists",
        )
    if isinstance(value, dict):
        if not value:
            return (), "'foreach' is an empty mapping", "give each matrix key a list: {model: [lr, rf], seed: [1, 2]}"
        axes = []
        for name, v in value.items():
            if not isinstance(name, str) or not IDENT.match(name):
                return (name,), f"matrix key {name!r} is not an identifier", "use letters, digits and '_'"
            if name in RESERVED_VARS:
                return (name,), f"'{name}' is reserved and cannot be a matrix key", "rename it; ${item} and ${key} have their own meaning"
            if isinstance(v, list):
                if not v:
                    return (name,), f"matrix key '{name}' has an empty list: the node would stand for no node at all", "list at least one value"
                axes.append(Axis(name, values=list(v)))
                continue
            pname = _param_name(v) if isinstance(v, str) else None
            if pname is None:
                return (name,), f"matrix key '{name}' must be a list of values or a list graph param ('${{NAME}}'), not {v!r}", None
            axes.append(Axis(name, param=pname))
        return Foreach("matrix", axes=axes)
    return (), f"'foreach' must be a string, a list or a mapping, not {type(value).__name__}", None


def upstream(value: Any) -> str | None:
    """The node a `foreach: NODE` follows, else None."""
    fe = classify(value) if value is not None else None
    return fe.source if isinstance(fe, Foreach) and fe.kind == "node" else None


# ---- what validation knows before planning -------------------------------------------------


@record
class Var:
    """A `${name}` a fanned-out node may bind: its values when written in the file, else its type."""

    values: list[Any] | None = None
    type: str | None = None


@record
class Static:
    """A fanned-out node as validation sees it."""

    item: str  # "file" (an input file), "node" (an upstream expansion), "value" (a value), "none" (a matrix)
    item_type: str | None = None  # the artifact type of a file item
    upstream: str | None = None  # kind node: the node it follows
    vars: dict[str, Var] = field(default_factory=dict)
    keys: list[str] | None = None  # the expansion keys, when the file fixes them
    axes: list[str] = field(default_factory=list)  # matrix key names (of the node it follows, too)


def element_type(list_type: str) -> str | None:
    return _ELEMENT.get(list_type)


def matrix_key(parts: list[tuple[str, str]]) -> str:
    return ",".join(f"{n}={t}" for n, t in parts)


def value_key(value: Any) -> str | None:
    """A matrix value as it is written in an id (`seed=2`, `lr=0.1`, `model=rf`), or None if it cannot be."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return json.dumps(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return value if good_key(value) else None
    return None


def good_key(text: str) -> bool:
    return bool(text) and text == text.strip() and not _BAD_KEY_CHARS.search(text) and text != GATHER


def file_key(name: str) -> str:
    """The key of a file: its name without its extension (`A.fastq` -> A, `A.fastq.gz` -> A)."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return name
    if f".{ext}" in _COMPRESSED:
        inner, dot2, _ = stem.rpartition(".")
        if dot2 and inner:
            return inner
    return stem


# ---- references ---------------------------------------------------------------------------


@record(frozen=True)
class FanRef:
    node: str  # a node id, or ITEM
    key: str | None  # None for item refs; GATHER; or one key as written
    output: str | None  # None for a bare `item`


def is_fan_ref(ref: Any) -> bool:
    return isinstance(ref, str) and (ref == ITEM or ref.startswith(ITEM + ".") or "[" in ref or "]" in ref)


def parse_fan_ref(ref: str) -> FanRef | None:
    """'item', 'item.OUT', 'node[*].OUT', 'node[KEY].OUT' -> FanRef, None if malformed."""
    if ref == ITEM:
        return FanRef(ITEM, None, None)
    if ref.startswith(ITEM + "."):
        tail = ref[len(ITEM) + 1 :]
        return FanRef(ITEM, None, tail) if tail and "." not in tail and "[" not in tail else None
    m = _BRACKET_REF.match(ref)
    if not m or not m.group(2):
        return None
    return FanRef(m.group(1), m.group(2), m.group(3))


def ref_node(ref: Any) -> str | None:
    """The node a reference reads from (None for graph inputs, `item` and malformed text)."""
    if not isinstance(ref, str):
        return None
    if is_fan_ref(ref):
        fr = parse_fan_ref(ref)
        return fr.node if fr and fr.node != ITEM else None
    head, dot, tail = ref.partition(".")
    if not dot or not head or not tail or "." in tail or head == "inputs":
        return None
    return head


def key_parts(text: str) -> dict[str, str] | None:
    """'model=rf,seed=2' -> {model: rf, seed: 2}; None if the text is not of that form."""
    if "=" not in text:
        return None
    out: dict[str, str] = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        if not eq or not name or name in out:
            return None
        out[name] = value
    return out


def find_key(keys: dict[str, Any], by_parts: dict[frozenset[tuple[str, str]], str], text: str) -> str | None:
    """The expansion key that `text` names: exactly, or a matrix key with its parts in any order."""
    if text in keys:
        return text
    parts = key_parts(text)
    if parts is not None:
        return by_parts.get(frozenset(parts.items()))
    return None


def key_vars(text: str) -> list[str]:
    """The `${name}`s written in a key (`split[${key}].test`: the expansion of split with this node's key)."""
    return _VAR_IN_KEY.findall(text)


def fill_key(text: str, item: Item) -> str:
    """A key with this expansion's `${name}`s filled in."""

    def value(m: re.Match[str]) -> str:
        v = item.vars[m.group(1)]
        return v if isinstance(v, str) else (value_key(v) or str(v))

    return _VAR_IN_KEY.sub(value, text)


def missing_node_hint(node: str, ids: list[str] | dict[str, Any]) -> str | None:
    """For a node id that is not there: its expansions when it is a fanned-out node, else a did-you-mean."""
    expansions = [i for i in ids if i.startswith(node + "[") and "/" not in i[len(node) :]]
    if expansions:
        shown = ", ".join(expansions[:5]) + (f", ... ({len(expansions)} in all)" if len(expansions) > 5 else "")
        return f"'{node}' is fanned out; name one expansion: {shown}"
    return did_you_mean(node, list(ids))


def unknown_key_message(node: str, text: str, keys: list[str], axes: list[str]) -> tuple[str, str | None]:
    parts = key_parts(text)
    if axes and parts is not None:
        for name in parts:
            if name not in axes:
                return f"node '{node}' has no matrix key '{name}'", did_you_mean(name, axes) or f"its keys: {', '.join(axes)}"
    shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
    if not keys:
        return f"node '{node}' has no expansion '{text}': it has none at all", None
    return f"node '{node}' has no expansion '{text}'", did_you_mean(text, keys) or f"its keys: {shown}"


def check_binding(spec: ParamSpec, var: Var) -> str | None:
    """Why binding param spec to a fan-out variable cannot work, or None."""
    if var.values is not None:
        for v in var.values:
            problem = check_param_value(spec, v)
            if problem:
                return problem[0]
        return None
    t = var.type
    if t is None or spec.type == t or (spec.type == "float" and t == "int") or (spec.type in ("enum", "code") and t == "str"):
        return None
    return f"param '{spec.name}' is {spec.type}, but the value it is bound to is {t}"


# ---- expansion, when the graph is planned -----------------------------------------------------


@record
class Item:
    """One expansion of a fanned-out node."""

    key: str
    vars: dict[str, Any]  # ${name} -> value
    index: int = 0  # the position of a file item among the input's files
    parts: tuple[tuple[str, str], ...] = ()  # a matrix key's (name, value text) pairs


def expand(  # noqa: C901 - above the threshold when it was set (issue 11)
    fe: Foreach, node: str, params: dict[str, Any], files: list[str] | None, upstream_items: list[Item] | None, describe: Callable[[int], str] = str
) -> list[Item]:
    """The items of a fanned-out node, in order; raises FanError (duplicate or unusable keys).
    files: the key of each file of the input a `foreach: inputs.NAME` fans out over (describe(i)
    names the i-th file in messages)."""
    items: list[Item] = []
    if fe.kind == "input":
        assert files is not None
        seen: dict[str, int] = {}
        for i, key in enumerate(files):
            if not good_key(key):
                raise FanError(
                    f"node '{node}': the file '{describe(i)}' of inputs.{fe.source} cannot give an expansion key ('{key}')",
                    "rename it: a key has no '[', ']', ',', '=', '/' or control characters",
                )
            if key in seen:
                raise FanError(
                    f"node '{node}': the files '{describe(seen[key])}' and '{describe(i)}' of inputs.{fe.source} both give the key '{key}'",
                    "each file of a fan-out needs its own name without extension; rename one",
                )
            seen[key] = i
            items.append(Item(key, {KEY: key}, i))
        return items
    if fe.kind == "values":
        values = fe.values if fe.values is not None else params.get(fe.source or "")
        if not isinstance(values, list):
            raise FanError(f"node '{node}': params.{fe.source} is not a list ({values!r})")
        return [Item(str(i), {ITEM: v, KEY: str(i)}) for i, v in enumerate(values)]
    if fe.kind == "node":
        assert upstream_items is not None
        return [Item(u.key, dict(u.vars), u.index, u.parts) for u in upstream_items]
    axes: list[tuple[str, list[tuple[Any, str]]]] = []
    for axis in fe.axes:
        values = axis.values if axis.values is not None else params.get(axis.param or "")
        if not isinstance(values, list):
            raise FanError(f"node '{node}': matrix key '{axis.name}' takes params.{axis.param}, which is not a list ({values!r})", where=("foreach", axis.name))
        texts: list[tuple[Any, str]] = []
        seen_v: set[str] = set()
        for v in values:
            text = value_key(v)
            if text is None:
                raise FanError(
                    f"node '{node}': matrix key '{axis.name}' has the value {v!r}, which cannot be part of an id",
                    "matrix values are numbers, booleans or strings without '[', ']', ',', '=', '/' or spaces at their ends",
                    where=("foreach", axis.name),
                )
            if text in seen_v:
                raise FanError(
                    f"node '{node}': matrix key '{axis.name}' lists the value {text} twice", "each value gives one expansion; list it once", where=("foreach", axis.name)
                )
            seen_v.add(text)
            texts.append((v, text))
        axes.append((axis.name, texts))
    total = math.prod(len(a[1]) for a in axes)
    if total > MAX_EXPANSIONS:
        raise FanError(f"node '{node}': the matrix would stand for {total:,} nodes (more than {MAX_EXPANSIONS:,})", "fan out over fewer values")
    for combo in itertools.product(*(a[1] for a in axes)):
        parts = tuple((name, text) for (name, _), (_, text) in zip(axes, combo, strict=True))
        key = matrix_key(list(parts))
        vars_ = {name: value for (name, _), (value, _) in zip(axes, combo, strict=True)}
        vars_[KEY] = key
        items.append(Item(key, vars_, 0, parts))
    return items


# ---- validation of a graph's fanned-out nodes (called by the loader) ---------------------------


def static_infos(g: Any, doc: Any, errors: list[Any]) -> dict[str, Static | None]:  # noqa: C901 - above the threshold when it was set (issue 11)
    """What validation knows of each fanned-out node of graph g (None where `foreach` is wrong);
    problems of the `foreach` values themselves go to errors."""
    infos: dict[str, Static | None] = {}

    def err(nid: str, path: tuple[Any, ...], message: str, hint: str | None = None) -> None:
        errors.append(doc.diag(("nodes", nid, "foreach") + path, f"node '{nid}': {message}", hint))

    def list_param(nid: str, name: str, path: tuple[Any, ...]) -> Var:
        gp = g.param(name)
        if gp is None:
            err(
                nid,
                path,
                f"fans out over params.{name}, but the graph declares no param '{name}'",
                did_you_mean(name, [p.name for p in g.params]) or "declare it under the graph's params",
            )
            return Var()
        elem = element_type(gp.type)
        if elem is None:
            err(nid, path, f"fans out over params.{name}, which is {gp.type}, not a list", "declare it as list_str, list_int or list_float")
        return Var(type=elem)

    def info(nid: str) -> Static | None:  # noqa: C901 - above the threshold when it was set (issue 11)
        if nid in infos:
            return infos[nid]
        infos[nid] = None  # a guard: a cycle through foreach is reported by the cycle check
        fe = classify(g.nodes[nid].foreach)
        if not isinstance(fe, Foreach):
            err(nid, *fe)
            return None
        st: Static
        if fe.kind == "input":
            gi = g.input(fe.source)
            if gi is None:
                err(
                    nid,
                    (),
                    f"fans out over inputs.{fe.source}, but the graph has no input '{fe.source}'",
                    did_you_mean(fe.source or "", [i.name for i in g.inputs]) or "declare it under the graph's inputs with max: -1",
                )
            elif not gi.is_list:
                err(nid, (), f"fans out over inputs.{fe.source}, which is one file", "declare the input with 'max: -1' to make it a list of files")
            st = Static("file", gi.type if gi else None, vars={KEY: Var(type="str")})
        elif fe.kind == "values":
            if fe.values is not None:
                st = Static("value", vars={ITEM: Var(values=fe.values), KEY: Var(type="str")}, keys=[str(i) for i in range(len(fe.values))])
            else:
                st = Static("value", vars={ITEM: list_param(nid, fe.source or "", ()), KEY: Var(type="str")})
        elif fe.kind == "node":
            up = fe.source or ""
            if up not in g.nodes:
                fanned = [n for n, x in g.nodes.items() if x.foreach is not None and n != nid]
                err(
                    nid,
                    (),
                    f"fans out over '{up}', but there is no node '{up}'",
                    did_you_mean(up, list(g.nodes)) or (f"fanned-out nodes: {', '.join(fanned)}" if fanned else None),
                )
                return None
            if g.nodes[up].foreach is None:
                err(
                    nid,
                    (),
                    f"fans out over '{up}', which is not fanned out",
                    f"'foreach: {up}' follows a node that has foreach itself; to read its outputs, wire them: inputs: {{x: {up}.<output>}}",
                )
                return None
            ui = info(up)
            st = Static("node", upstream=up, vars=dict(ui.vars) if ui else {}, keys=ui.keys if ui else None, axes=ui.axes if ui else [])
        else:
            vars_: dict[str, Var] = {KEY: Var(type="str")}
            texts: list[list[str]] | None = []
            for axis in fe.axes:
                if axis.values is None:
                    vars_[axis.name] = list_param(nid, axis.param or "", (axis.name,))
                    texts = None
                    continue
                shown = [value_key(v) for v in axis.values]
                bad = [v for v, t in zip(axis.values, shown, strict=True) if t is None]
                if bad:
                    err(
                        nid,
                        (axis.name,),
                        f"matrix key '{axis.name}' has the value {bad[0]!r}, which cannot be part of an id",
                        "matrix values are numbers, booleans or strings without '[', ']', ',', '=', '/' or spaces at their ends",
                    )
                elif len(set(shown)) != len(shown):
                    dup = next(t for t in shown if shown.count(t) > 1)
                    err(nid, (axis.name,), f"matrix key '{axis.name}' lists the value {dup} twice", "each value gives one expansion; list it once")
                vars_[axis.name] = Var(values=axis.values)
                if texts is not None:
                    texts.append([t or "?" for t in shown])
            names = [a.name for a in fe.axes]
            if texts is not None and math.prod(len(t) for t in texts) > MAX_EXPANSIONS:
                err(nid, (), f"the matrix would stand for {math.prod(len(t) for t in texts):,} nodes (more than {MAX_EXPANSIONS:,})", "fan out over fewer values")
                texts = None
            keys = [matrix_key(list(zip(names, combo, strict=True))) for combo in itertools.product(*texts)] if texts is not None else None
            st = Static("none", vars=vars_, keys=keys, axes=names)
        infos[nid] = st
        return st

    for nid, node in g.nodes.items():
        if node.foreach is not None:
            info(nid)
    return infos


def check_fan_ref(  # noqa: C901 - above the threshold when it was set (issue 11)
    lib: Any,
    g: Any,
    doc: Any,
    path: tuple[Any, ...],
    ref: str,
    node_id: str | None,
    statics: dict[str, Static | None],
    targets: dict[str, Any],
    spec: Any,
    who: str,
    errors: list[Any],
) -> str | None:
    """Check `item`, `item.OUT`, `node[*].OUT` or `node[KEY].OUT`; returns the artifact type it reads
    (None when unknown or wrong: the problem is in errors)."""

    def err(message: str, hint: str | None = None) -> None:
        errors.append(doc.diag(path, message, hint))

    def outputs_hint(outs: dict[str, Any], tail: str) -> str:
        return did_you_mean(tail, list(outs)) or (f"its outputs: {', '.join(outs)}" if outs else "it has no outputs")

    fr = parse_fan_ref(ref)
    if fr is None:
        err(f"{who}: '{ref}' is not a reference", "write '<node>[*].<output>' (every expansion), '<node>[KEY].<output>' (one), 'item' or 'item.<output>'")
        return None
    if fr.node == ITEM:
        node = g.nodes.get(node_id) if node_id else None
        if node is None or node.foreach is None:
            err(
                f"{who} reads '{ref}', but 'item' is only defined in a node with foreach",
                "add 'foreach: ...' to the node, or read '<node>.<output>'" if node else "a graph output reads '<node>.<output>' or '<node>[KEY].<output>'",
            )
            return None
        st = statics.get(node.id)
        if st is None:
            return None  # foreach itself is wrong: reported there
        if st.item == "file":
            if fr.output is not None:
                err(f"{who} reads '{ref}', but item is a file of inputs.{classify(node.foreach).source} here", "write 'item'")  # type: ignore[union-attr]
                return None
            return st.item_type
        if st.item == "node":
            up = st.upstream or ""
            outs = lib.outputs_of(targets[up]) if up in targets else None
            if outs is None:
                return None
            if fr.output is None:
                err(f"{who} reads 'item', but item is an expansion of '{up}' here", f"write 'item.<output>'; its outputs: {', '.join(outs) or 'none'}")
                return None
            if fr.output not in outs:
                err(f"{who} reads '{ref}', but node '{up}' has no output '{fr.output}'", outputs_hint(outs, fr.output))
                return None
            return str(outs[fr.output].type)
        err(f"{who} reads '{ref}', but item is a value here, not a file", "bind values in params: '${item}', or '${NAME}' for a matrix key")
        return None
    head = fr.node
    if head not in g.nodes:
        err(f"{who} reads '{ref}', but there is no node '{head}'", did_you_mean(head, list(g.nodes)))
        return None
    if head not in targets:
        return None  # its operation is already reported
    if g.nodes[head].foreach is None:
        err(f"{who} reads '{ref}', but node '{head}' is not fanned out", f"write '{head}.{fr.output}'")
        return None
    outs = lib.outputs_of(targets[head])
    if fr.output not in outs:
        err(f"{who} reads '{ref}', but node '{head}' has no output '{fr.output}'", outputs_hint(outs, fr.output or ""))
        return None
    st = statics.get(head)
    if fr.key is not None and "$" in fr.key:
        mine = statics.get(node_id or "")
        names = key_vars(fr.key)
        if node_id is None or g.nodes[node_id].foreach is None:
            err(f"{who} reads '{ref}', but '${{...}}' in a key is only defined in a node with foreach", f"write the key itself: '{head}[KEY].{fr.output}'")
            return None
        if mine is not None:
            unknown = [n for n in names if n not in mine.vars]
            if unknown or not names or fr.key.count("$") != len(names):
                bad = unknown[0] if unknown else fr.key
                err(
                    f"{who} reads '{ref}', but '{bad}' is not a name this node's foreach binds",
                    did_you_mean(bad, list(mine.vars)) or f"it binds: {', '.join('${' + v + '}' for v in mine.vars)}",
                )
                return None
    elif fr.key == GATHER:
        if spec is None:
            err(
                f"{who} reads '{ref}', every expansion of '{head}', but a graph output is one artifact",
                f"pick one, '{head}[KEY].{fr.output}', or gather them with a node and output its result",
            )
            return None
        if not spec.is_list:
            err(f"{who} takes one file, but '{ref}' gathers every expansion of '{head}'", f"declare the input with 'max: -1', or pick one: '{head}[KEY].{fr.output}'")
            return None
    elif st is not None and fr.key is not None:
        if st.keys is not None:
            known = dict.fromkeys(st.keys)
            by_parts = {frozenset((key_parts(k) or {}).items()): k for k in st.keys} if st.axes else {}
            if find_key(known, by_parts, fr.key) is None:
                message, hint = unknown_key_message(head, fr.key, st.keys, st.axes)
                err(f"{who} reads '{ref}', but {message}", hint)
                return None
        elif st.axes and key_parts(fr.key) is not None:
            message, hint = unknown_key_message(head, fr.key, [], st.axes)
            if "matrix key" in message:
                err(f"{who} reads '{ref}', but {message}", hint)
                return None
    return str(outs[fr.output].type)
