"""plx's record classes (plx/structs.py) behave as the standard library's dataclasses do for what plx
uses: the same constructor (positional and keyword, defaults, per-instance factories, base fields
first), repr, equality, hashing and frozenness, and `replace`."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any, ClassVar  # noqa: F401  # ClassVar: dataclasses reads a string annotation through this module's names

import pytest

from plx.structs import FrozenError, field, record, replace


def _pair(frozen: bool) -> tuple[type, type]:
    """The same class, once as a record and once as a dataclass."""

    def body() -> dict[str, Any]:
        return {"__annotations__": {"a": "int", "b": "str", "c": "list[int]", "d": "ClassVar[int]"}, "b": "x", "d": 5, "__doc__": "doc"}

    ours = record(frozen=frozen)(type("R", (), {**body(), "c": field(default_factory=list)}))
    theirs = dataclasses.dataclass(frozen=frozen)(type("R", (), {**body(), "c": dataclasses.field(default_factory=list)}))
    return ours, theirs


def _hash(obj: Any) -> int | str:
    try:
        return hash(obj)
    except TypeError as exc:
        return str(exc)


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize("args,kwargs", [((1,), {}), ((1, "y"), {}), ((1, "y", [2]), {}), ((), {"a": 3, "c": [4]}), ((2,), {"b": "z"}), ((1, "y", ()), {})])
def test_a_record_is_built_shown_and_compared_as_a_dataclass(frozen: bool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    ours, theirs = _pair(frozen)
    x, y = ours(*args, **kwargs), theirs(*args, **kwargs)
    assert repr(x) == repr(y) and vars(x) == vars(y)
    assert x == ours(*args, **kwargs) and x != ours(99) and x != y  # another class is never equal
    assert ours(1, "y", [2]) != ours(1, "y", [3]) and ours(1, "y", [2]) != ours(1, "z", [2])  # every field counts
    assert ours.d == 5 and "d" not in vars(x)  # a ClassVar is not a field
    if frozen:
        assert _hash(x) == _hash(y)  # the hash of the fields' tuple, or TypeError for a list among them
        with pytest.raises(FrozenError):
            x.a = 2
        with pytest.raises(AttributeError):  # as dataclasses' FrozenInstanceError
            del x.b
    else:
        with pytest.raises(TypeError):
            hash(x)  # compared by value and mutable: unhashable, as a dataclass
        x.a = 7
        assert x.a == 7


def test_each_instance_gets_its_own_factory_value_and_bad_calls_fail_as_with_dataclasses() -> None:
    ours, theirs = _pair(False)
    assert ours(1).c is not ours(1).c and not hasattr(ours, "c")
    for cls in (ours, theirs):
        with pytest.raises(TypeError):
            cls()
        with pytest.raises(TypeError):
            cls(1, nope=2)


def test_a_base_records_fields_come_first_and_replace_copies() -> None:
    @record
    class Base:
        a: int
        b: list[int] = field(default_factory=list)

    @record
    class Child(Base):
        c: str = "c"

    child = Child(1, [2], "z")
    assert repr(child) == "test_a_base_records_fields_come_first_and_replace_copies.<locals>.Child(a=1, b=[2], c='z')"
    assert Child(1).b == [] and Child(1).c == "c"
    other = replace(child, c="q")
    assert other == Child(1, [2], "q") and child.c == "z"
    assert replace(Child(5), a=6).a == 6


def test_mistakes_in_a_record_class_are_refused_as_dataclasses_refuses_them() -> None:
    with pytest.raises(TypeError):

        @record
        class NoDefaultAfterDefault:
            a: int = 1
            b: int

    with pytest.raises(ValueError):

        @record
        class SharedList:
            a: list[int] = []  # noqa: RUF012


@record
class _Picklable:
    a: int
    b: list[int] = field(default_factory=list)


@record(frozen=True)
class _FrozenPicklable:
    a: int
    b: str = "b"


@pytest.mark.parametrize("obj", [_Picklable(1, [2]), _FrozenPicklable(1, "x")])
def test_records_pickle_and_copy(obj: Any) -> None:
    for protocol in (0, pickle.HIGHEST_PROTOCOL):
        again = pickle.loads(pickle.dumps(obj, protocol))
        assert again == obj and type(again) is type(obj)
    assert copy.copy(obj) == obj and copy.deepcopy(obj) == obj
    frozen = replace(_FrozenPicklable(1), b="c")
    assert frozen == _FrozenPicklable(1, "c") and hash(frozen) == hash(_FrozenPicklable(1, "c"))


def test_a_subclass_record_never_equals_its_base_and_keeps_an_inherited_default() -> None:
    @record
    class Base:
        a: int
        b: int = 2

    @record
    class Child(Base):
        b: int  # re-annotated without a default: keeps Base's, as dataclasses does

    assert Child(1) != Base(1) and Base(1) != Child(1) and Child(1).b == 2
    assert Child.__match_args__ == ("a", "b")


def test_what_dataclasses_refuses_is_refused() -> None:
    @record
    class Mutable:
        a: int = 0

    for default in ([], {}, set(), Mutable()):  # one object every instance would share
        with pytest.raises(ValueError):
            record(type("Shared", (), {"__annotations__": {"a": "Any"}, "a": default}))

    @record(frozen=True)
    class Frozen:
        a: int

    with pytest.raises(TypeError):  # a mutable record under a frozen one, as dataclasses refuses it

        @record
        class Thawed(Frozen):
            b: int = 0

    with pytest.raises(TypeError):

        @record
        class WithPostInit:
            a: int

            def __post_init__(self) -> None:
                pass

    with pytest.raises(TypeError):  # a name the generated code uses itself
        record(type("Odd", (), {"__annotations__": {"self": "int"}}))


def _fresh_class(tag: str) -> type:
    return record(frozen=True)(type("Kept", (), {"__annotations__": {"x": "int", tag: "str"}, tag: "d"}))


def test_the_code_of_a_record_class_is_kept_and_read_back_without_compiling(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """structs keeps each class's compiled code in a file beside the .pyc files (5 ms of every plx
    command): a later process builds the same class from it without compiling, and a damaged file or
    PYTHONDONTWRITEBYTECODE only means compiling."""
    import sys

    from plx import structs

    cache = tmp_path / "__pycache__" / "record-code.bin"
    monkeypatch.setattr(structs, "_cache_file", lambda: str(cache))
    monkeypatch.setattr(structs, "_code", None)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    first = _fresh_class("kept_field")
    assert cache.is_file()

    def no_compile(*_: Any) -> Any:
        raise AssertionError("compiled although the cache file holds the code")

    monkeypatch.setattr(structs, "_code", None)  # as in a new process: read from the file
    monkeypatch.setattr(structs, "compile", no_compile, raising=False)
    again = _fresh_class("kept_field")
    assert again(1) == again(1, "d") and repr(again(2)) == repr(first(2)) and hash(again(1)) == hash(again(1))
    with pytest.raises(FrozenError):
        again(1).x = 2  # type: ignore[attr-defined]
    monkeypatch.delattr(structs, "compile")

    import marshal

    cache.write_bytes(structs._magic() + marshal.dumps({k: "not code" for k in (structs._code or {})}))  # values of another kind: compiled
    monkeypatch.setattr(structs, "_code", None)
    assert _fresh_class("kept_field")(5).x == 5  # type: ignore[attr-defined]
    cache.write_bytes(b"not a cache file")  # damaged: ignored, and written anew
    monkeypatch.setattr(structs, "_code", None)
    assert _fresh_class("other_field")(3).other_field == "d"  # type: ignore[attr-defined]
    assert cache.read_bytes().startswith(structs._magic())

    cache.unlink()
    monkeypatch.setattr(structs, "_code", None)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # as Python writes no .pyc then, nothing is written
    assert _fresh_class("third_field")(4).x == 4  # type: ignore[attr-defined]
    assert not cache.exists()
