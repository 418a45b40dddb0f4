"""Record classes: `@record` (or `@record(frozen=True)`), `field(default_factory=...)` and `replace`, the
part of the standard library's `dataclasses` plx uses, built without importing it.

Why not `dataclasses` itself: importing it (it imports `inspect`, and with it `ast`, `dis` and
`tokenize`) and building plx's record classes with it took ~16 ms of every plx command, ~40 % of what
`plx run` spent importing (5.6 ms the import, 10.8 ms the 34 classes: three `exec`s each, and an
`inspect.signature` for each class without a docstring). Here one `exec` per class builds what
dataclasses would: `__init__` (fields in annotation order, base records' first; a default is the class
attribute, a `field(default_factory=...)` is called per instance), `__repr__`, `__eq__` (same class and
equal fields; then unhashable, as with dataclasses) and, when frozen, `__setattr__` and `__delattr__`
that raise and a `__hash__` of the fields. Type checkers read `@record` as a dataclass (PEP 681).

Compiling that code is most of a build (5 ms of the 7.6 ms the 35 classes took at every plx command).
The compiled code is kept beside the package's .pyc files, as Python keeps those: one file of code
objects by source text (`record-code.<cache tag>.bin` in `plx/__pycache__`, or under PYTHONPYCACHEPREFIX),
read once (0.2 ms), written when a class's source is new, never where Python would write no .pyc
(PYTHONDONTWRITEBYTECODE), and ignored whenever it cannot be read or is not this Python's.
"""

from __future__ import annotations

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar, dataclass_transform, overload

    _T = TypeVar("_T")
    _C = TypeVar("_C", bound=type)
else:  # the decorators' work is the type checker's: here they leave what they decorate as it is

    def overload(fn):
        return fn

    def dataclass_transform(**_kwargs):
        return lambda fn: fn


class FrozenError(AttributeError):
    """Setting or deleting a field of a frozen record (dataclasses' FrozenInstanceError)."""


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], _T]) -> _T:
    """A field whose default is made anew for each instance (a list, a dict, another record)."""
    return _Factory(default_factory)  # type: ignore[return-value]  # stands in for the value, as dataclasses.field does


def _frozen_setattr(self: Any, name: str, _value: Any) -> None:
    raise FrozenError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")


_NONE = object()  # a field without a default


_OWN_NAMES = {"self", "other", "_MISSING", "_set"}  # names the generated code uses itself


def _spec(cls: type) -> dict[str, Any]:
    """Each field's name -> its default (_NONE, a value or a _Factory): a base record's fields first, as
    with dataclasses; a field's own placeholder is taken off the class (each instance gets its own)."""
    spec: dict[str, Any] = {}
    for base in reversed(cls.__mro__[1:]):
        spec.update(base.__dict__.get("__record_spec__", {}))
    for n, kind in cls.__dict__.get("__annotations__", {}).items():
        if str(kind).startswith(("ClassVar", "typing.ClassVar")):
            continue
        if not n.isidentifier() or n in _OWN_NAMES or n.startswith(("_make_", "_default_")):
            raise TypeError(f"{cls.__name__}: {n!r} cannot be a field name here")
        inherited = spec.get(n, _NONE)  # re-annotated without a default: keeps a plain one, as dataclasses does
        spec[n] = cls.__dict__.get(n, _NONE if isinstance(inherited, _Factory) else inherited)
        if isinstance(spec[n], _Factory) and n in cls.__dict__:
            delattr(cls, n)
    return spec


def _init_source(cls: type, spec: dict[str, Any], frozen: bool, env: dict[str, Any]) -> str:
    """The source of __init__; the defaults it names are put in env."""
    params, body, seen_default = [], [], False
    for n, value in spec.items():
        if value is _NONE:
            if seen_default:
                raise TypeError(f"{cls.__name__}: field {n!r} without a default follows one with a default")
            params.append(n)
            value_text = n
        elif isinstance(value, _Factory):
            env[f"_make_{n}"] = value.make
            params.append(f"{n}=_MISSING")
            value_text = f"_make_{n}() if {n} is _MISSING else {n}"
        else:
            if type(value).__hash__ is None:  # a list, a dict, a mutable record: one object every instance would share
                raise ValueError(f"{cls.__name__}: field {n!r} has a mutable default: use field(default_factory=...)")
            env[f"_default_{n}"] = value
            params.append(f"{n}=_default_{n}")
            value_text = n
        seen_default = seen_default or value is not _NONE
        body.append(f"_set(self, {n!r}, {value_text})" if frozen else f"self.{n} = {value_text}")
    return f"def __init__(self, {', '.join(params)}):\n    " + ("\n    ".join(body) or "pass") + "\n"


def _build(cls: _C, frozen: bool) -> _C:
    if "__post_init__" in cls.__dict__:
        raise TypeError(f"{cls.__name__}: __post_init__ is not supported by @record")
    bases = [b for b in cls.__mro__[1:] if "__record_spec__" in b.__dict__]
    if any(b.__dict__["__record_frozen__"] != frozen for b in bases):
        raise TypeError(f"{cls.__name__}: a frozen record and a mutable one cannot inherit from each other")
    spec = _spec(cls)
    env: dict[str, Any] = {"_MISSING": _NONE, "_set": object.__setattr__, "__name__": cls.__module__}
    init = _init_source(cls, spec, frozen, env)
    names = list(spec)
    fields = "".join(f"self.{n}, " for n in names)
    others = "".join(f"other.{n}, " for n in names)
    shown = ", ".join(f"{n}={{self.{n}!r}}" for n in names)
    source = (
        init + f"def __repr__(self):\n    return f'{{self.__class__.__qualname__}}({shown})'\n"
        f"def __eq__(self, other):\n    if other.__class__ is self.__class__:\n        return ({fields}) == ({others})\n    return NotImplemented\n"
        f"def __hash__(self):\n    return hash(({fields}))\n"
    )
    made: dict[str, Any] = {}
    exec(_compiled(source), env, made)  # noqa: S102  # code made above from the class's own field names
    for name, fn in made.items():
        fn.__qualname__ = f"{cls.__qualname__}.{name}"
    members = {name: made[name] for name in ("__init__", "__repr__", "__eq__")}
    if frozen:
        members.update(__setattr__=_frozen_setattr, __delattr__=_frozen_delattr, __hash__=made["__hash__"])
    else:
        members["__hash__"] = None  # mutable and compared by value: unhashable, as with dataclasses
    members.update(__record_spec__=spec, __record_frozen__=frozen, __match_args__=tuple(names))
    for name, value in members.items():
        setattr(cls, name, value)
    return cls


_code: dict[str, Any] | None = None  # source text -> its code object (the cache file's, then this process's)
_CODE_TYPE = type(_frozen_setattr.__code__)
_CACHE_LIMIT = 400  # entries at most in the file (an editable install gathers old classes' sources)


def _cache_file() -> str:
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    folder = os.path.join(sys.pycache_prefix, here.lstrip(os.sep)) if sys.pycache_prefix else os.path.join(here, "__pycache__")
    return os.path.join(folder, f"record-code.{sys.implementation.cache_tag}.bin")


def _magic() -> bytes:
    from importlib._bootstrap_external import MAGIC_NUMBER  # loaded with the interpreter: bytecode's version

    return bytes(MAGIC_NUMBER)


def _compiled(source: str) -> Any:
    """The code of source: from the cache file when it holds it, else compiled (and the file updated)."""
    global _code
    if _code is None:
        _code = {}
        try:
            import marshal

            with open(_cache_file(), "rb") as f:
                data = f.read()
            magic = _magic()
            if data.startswith(magic):
                loaded = marshal.loads(data[len(magic) :])
                if isinstance(loaded, dict):
                    _code = loaded
        except Exception:  # missing, unreadable, another Python's, damaged: compiled here instead
            _code = {}
    code = _code.get(source)
    if not isinstance(code, _CODE_TYPE):  # not there, or not code (a file of another making)
        code = _code[source] = compile(source, "<record>", "exec")
        _save()
    return code


def _save() -> None:
    """Write the cache file (atomically), as Python writes a .pyc: not when told not to, quietly on failure."""
    import sys

    if sys.dont_write_bytecode or _code is None:
        return
    import marshal
    import os

    path = _cache_file()
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        entries = _code if len(_code) <= _CACHE_LIMIT else dict(list(_code.items())[-_CACHE_LIMIT:])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(_magic() + marshal.dumps(entries))
        os.replace(tmp, path)
    except Exception:  # a read-only install, a full disk: the classes are built all the same
        try:
            os.unlink(tmp)
        except OSError:
            pass


@overload
def record(cls: _C, /) -> _C: ...
@overload
def record(*, frozen: bool = False) -> Callable[[_C], _C]: ...  # noqa: F811 - overloads (ruff does not see through the stand-in above)
@dataclass_transform(field_specifiers=(field,))
def record(cls: Any = None, /, *, frozen: bool = False) -> Any:  # noqa: F811
    """Make cls a record class (see the module's docstring); `@record` or `@record(frozen=True)`."""
    if cls is None:
        return lambda c: _build(c, frozen)
    return _build(cls, frozen)


def replace(obj: _T, **changes: Any) -> _T:
    """A copy of the record obj with the fields named in changes set to their new values."""
    values = {n: getattr(obj, n) for n in type(obj).__record_spec__}  # type: ignore[attr-defined]
    values.update(changes)
    return obj.__class__(**values)
