"""Safe YAML reading that keeps the line and column of every key and value."""

from __future__ import annotations

import gc
import math
from pathlib import Path

from .errors import Diagnostic, ValidationError
from .structs import field, record

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any

    import yaml

    Path_ = tuple[Any, ...]

# PyYAML is imported by the first parse (_parser), not with this module: a run whose files all
# come from the parse cache never needs it (its import is ~9 ms, a twentieth of a no-op run).
_yaml: Any = None
_BaseLoader: Any = None


def _parser() -> Any:
    """PyYAML's safe loader class: the C one where PyYAML was built with it (several times faster)."""
    global _yaml, _BaseLoader
    if _BaseLoader is None:
        yaml = _import_yaml()
        _yaml = yaml
        _BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return _BaseLoader


# PyYAML's pure-Python Reader compiles, as it is imported, a pattern of every printable character:
# 3 ms, a third of the import, on the way to a cold run's first node. The C loader plx uses never
# reads it. So for the import only, `re`'s cache holds a stand-in that compiles it when first used
# (by the pure-Python loader, where PyYAML has no C one). Where `re` keeps no such cache (another
# Python), the import compiles it as usual.
_NON_PRINTABLE = "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"


class _CompiledOnUse:
    def __init__(self, source: str) -> None:
        self._source = source
        self._pattern: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._pattern is None:
            import re

            self._pattern = re.compile(self._source, re.UNICODE)  # the same pattern under another key than the stand-in's
        return getattr(self._pattern, name)


def _import_yaml() -> Any:
    import re

    key = (str, _NON_PRINTABLE, 0)
    cache = getattr(re, "_cache", None)
    if isinstance(cache, dict) and key not in cache:
        cache[key] = _CompiledOnUse(_NON_PRINTABLE)
        try:
            import yaml
        finally:
            for name in ("_cache", "_cache2"):  # 3.12 moves an entry found into its second cache
                held = getattr(re, name, None)
                if isinstance(held, dict) and isinstance(held.get(key), _CompiledOnUse):
                    del held[key]
    import yaml

    return yaml


# A document may reuse anchors, but expanding them must stay proportional to the
# file: this bounds the "billion laughs" attack long before memory or time runs out.
MAX_EXPANDED_NODES = 2_000_000
MAX_ALIAS_EXPANSION = 5_000
# Files at least this large are read without positions (a 100,000-node graph has a million of them);
# they are found again, by a second parse, only when a message needs one (Doc.where).
POSITIONS_LAZILY_FROM = 64 * 1024

_STR = "tag:yaml.org,2002:str"


@record
class Doc:
    """A parsed YAML file: plain Python data plus where each part came from."""

    file: str
    data: Any
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    block_scalars: set[Path_] = field(default_factory=set)  # `|` and `>` values: text starts a line below
    source: dict[Path_, str] = field(default_factory=dict)  # how non-string scalars were written (0123)
    lazy_marks: Any = None  # fills marks and key_marks when first needed (a second parse: a large file, or one read from the parse cache)
    json_safe: bool = True  # False when JSON would not give the same data back (a `null:` key)

    def where(self, path: Path_, key: bool = False) -> tuple[int | None, int | None]:
        """Line and column (1-based) of the value (or key) at path, or its nearest ancestor."""
        p = tuple(path)
        if not key and p in self.marks:  # known without parsing again (parsecache keeps the top level's)
            return self.marks[p]
        if self.lazy_marks is not None:
            self.lazy_marks, decode = None, self.lazy_marks
            decode(self)
        if key and p in self.key_marks:
            return self.key_marks[p]
        while True:
            if p in self.marks:
                return self.marks[p]
            if not p:
                return None, None
            p = p[:-1]

    def diag(self, path: Path_, message: str, hint: str | None = None, key: bool = False) -> Diagnostic:
        line, col = self.where(path, key)
        return Diagnostic(self.file, line, col, message, hint)


def _fail(file: str, line: int | None, col: int | None, message: str, hint: str | None = None) -> ValidationError:
    return ValidationError([Diagnostic(file, line, col, message, hint)])


def _yaml_error(file: str, exc: yaml.YAMLError, text: str = "") -> ValidationError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    col = mark.column + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None and 0 <= mark.index < len(text) and text[mark.index] == "\t":
        return _fail(file, line, col, "a tab character is used for indentation", "YAML indents with spaces only")
    context = getattr(exc, "context", None)
    message = f"malformed YAML: {problem}" + (f" ({context})" if context else "")
    return _fail(file, line, col, message)


def load_text(text: str, file: str, positions: bool = True) -> Doc:
    """Parse YAML text into a Doc, rejecting anything but plain data.

    positions=False skips recording where each key and value is (most of the cost of a large file);
    Doc.where then parses the text again, once, when a message needs a position."""
    collect = gc.isenabled()
    gc.disable()  # millions of nodes that all live until the end: collecting while building them only costs time
    try:
        doc = _load(text, file, positions)
    finally:
        if collect:
            gc.enable()
    if not positions:
        doc.lazy_marks = lambda d: fill_marks(d, text)
    return doc


def _load(text: str, file: str, positions: bool, doc: Doc | None = None) -> Doc:
    loader = _parser()(text)
    try:
        try:
            root = loader.get_single_node()
        except _yaml.YAMLError as exc:
            raise _yaml_error(file, exc, text) from None
        if root is None:
            raise _fail(file, 1, 1, "the file is empty", "an operation starts with 'kind: operation', a graph with 'kind: graph'")
        if doc is None:
            doc = Doc(file, None)
        doc.data = _Builder(doc, loader, positions).build(root, ())
        return doc
    finally:
        loader.dispose()


def fill_marks(doc: Doc, text: str) -> None:
    """The positions of a Doc read without them: the same text parsed again, recording them."""
    try:
        _load(text, doc.file, True, Doc(doc.file, None, doc.marks, doc.key_marks))
    except ValidationError:  # cannot happen for text that parsed once; messages then go without positions
        pass


def load_file(path: Path, display: str | None = None, cache: Any = None) -> Doc:
    """Read and parse one YAML file; every problem becomes a ValidationError naming it.
    With a cache (parsecache.ParseCache), the file's Doc is kept and read back while its bytes are the same."""
    file = display or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _fail(file, None, None, "no such file") from None
    except IsADirectoryError:
        raise _fail(file, None, None, "is a directory, not a YAML file") from None
    except OSError as exc:
        raise _fail(file, None, None, f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _fail(file, line, col, "the file is not UTF-8 text", "is it a binary file? save YAML as UTF-8") from None
    if "\x00" in text:
        raise _fail(file, 1, 1, "the file holds NUL bytes: it is binary, not YAML")
    positions = len(raw) < POSITIONS_LAZILY_FROM
    if cache is None:
        return load_text(text, file, positions)
    doc = cache.get(path, raw, file)
    if doc is None:
        doc = load_text(text, file, positions)
        cache.put(path, raw, doc)
    return doc


_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null")}


def _short_tag(tag: str) -> str:
    return "!!" + tag[len("tag:yaml.org,2002:") :] if tag.startswith("tag:yaml.org,2002:") else tag


class _Builder:
    """Turns a composed node tree into plain data, recording marks on the way."""

    def __init__(self, doc: Doc, loader: Any, positions: bool = True):
        self.doc = doc
        self.loader = loader
        self.positions = positions
        self.count = 0
        self.alias_uses = 0
        self.seen: set[int] = set()
        self.open: set[int] = set()  # the collections being built, from the root to here

    def _check_budget(self, node: yaml.Node) -> None:
        self.count += 1
        if isinstance(node, _yaml.ScalarNode):  # only collections count as alias uses
            pass
        elif id(node) in self.seen:
            self.alias_uses += 1
        else:
            self.seen.add(id(node))
        if self.count > MAX_EXPANDED_NODES or self.alias_uses > MAX_ALIAS_EXPANSION:
            raise self._at(node, "YAML aliases expand to far too much data (an alias bomb?)", "write the values out instead of nesting anchors")

    def _at(self, node: yaml.Node, message: str, hint: str | None = None) -> ValidationError:
        """The error for a problem with node, at its line and column."""
        m = node.start_mark
        return _fail(self.doc.file, m.line + 1, m.column + 1, message, hint)

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self._check_budget(node)
        if self.positions:
            m = node.start_mark
            self.doc.marks[path] = (m.line + 1, m.column + 1)
        if isinstance(node, (_yaml.MappingNode, _yaml.SequenceNode)):
            if id(node) in self.open:  # `a: &x {b: [*x]}`: the value holds itself, without end
                raise self._at(node, "a YAML alias inside this value refers to the value itself: it would never end", "write the inner value out instead of the alias")
            self.open.add(id(node))
            try:
                if isinstance(node, _yaml.MappingNode):
                    return self._mapping(node, path)
                if node.tag not in ("tag:yaml.org,2002:seq",):
                    raise self._bad_tag(node)
                return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
            finally:
                self.open.discard(id(node))
        if getattr(node, "style", None) in ("|", ">"):
            self.doc.block_scalars.add(path)
        value = self._scalar(node)
        if not isinstance(value, str):
            self.doc.source[path] = node.value
        return value

    def _bad_tag(self, node: yaml.Node) -> ValidationError:
        return self._at(node, f"the YAML tag {_short_tag(node.tag)} is not allowed", "plx files hold plain data: strings, numbers, booleans, lists and mappings")

    def _scalar(self, node: yaml.Node) -> Any:
        if node.tag == _STR:
            return node.value  # what the constructor would return, without its dispatch
        if node.tag == "tag:yaml.org,2002:timestamp":
            return node.value  # a date written unquoted stays the text the user wrote
        if node.tag not in _PLAIN_TAGS:
            raise self._bad_tag(node)
        try:
            value = self.loader.construct_object(node, deep=True)
        except _yaml.YAMLError as exc:
            raise _yaml_error(self.doc.file, exc) from None
        except ValueError:  # an integer longer than Python converts from text (4300 digits)
            raise self._at(node, f"a number of {len(node.value)} digits is too long", "plx takes integers up to 4300 digits") from None
        if isinstance(value, float) and not math.isfinite(value):
            hint = "plx records values as JSON, which cannot hold inf or nan; write a finite number, or quote it to make it text"
            raise self._at(node, f"{node.value} is not a finite number", hint)
        return value

    def _key(self, key_node: yaml.Node) -> Any:
        key = self._scalar(key_node)
        if isinstance(key, (int, float, bool)) and not isinstance(key, str):
            key = key_node.value  # node ids like `1` or `yes` are names, not numbers
        return key

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        if node.tag != "tag:yaml.org,2002:map":
            raise self._bad_tag(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise self._at(key_node, "YAML merge keys ('<<') are not supported", "write the keys out")
            if not isinstance(key_node, _yaml.ScalarNode):
                raise self._at(key_node, "a mapping key must be a plain scalar")
            key = self._key(key_node)
            if key in out:
                km = key_node.start_mark
                first = next((k.start_mark for k, _ in node.value if self._key(k) == key), km)
                message = f"duplicate key '{key}' (first defined on line {first.line + 1})"
                raise _fail(self.doc.file, km.line + 1, km.column + 1, message, "each key may appear once in a mapping")
            if key is None:
                self.doc.json_safe = False  # JSON would give the key back as "null"
            if self.positions:
                km = key_node.start_mark
                self.doc.key_marks[path + (key,)] = (km.line + 1, km.column + 1)
            out[key] = self.build(value_node, path + (key,))
        return out
