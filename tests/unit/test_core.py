"""Fast checks of the pure parts: YAML positions, param parsing, cycles, cache-key recipes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plx.dag import find_cycle
from plx.errors import ValidationError
from plx.hashing import explain, key_of, task_recipe
from plx.model import Operation, OutputSpec, ParamSpec, check_param_value, parse_param_text
from plx.yamldoc import load_text


def test_positions_of_keys_and_values() -> None:
    doc = load_text("a: 1\nnodes:\n  x:\n    operation: op\n", "f.yaml")
    assert doc.where(("nodes", "x", "operation")) == (4, 16)
    assert doc.where(("nodes", "x", "operation"), key=True) == (4, 5)
    assert doc.where(("nodes", "x", "missing")) == (4, 5)  # nearest known ancestor


def test_numeric_keys_stay_names() -> None:
    assert load_text("nodes:\n  1: a\n  yes: b\n", "f").data == {"nodes": {"1": "a", "yes": "b"}}


@pytest.mark.parametrize(
    "text,needle",
    [
        ("a: !!python/name:os.system x\n", "!!python/name:os.system"),
        ("a: !!binary aGVsbG8=\n", "not allowed"),
        ("a: [1, 2\n", "malformed YAML"),
    ],
)
def test_rejected_yaml(text: str, needle: str) -> None:
    with pytest.raises(ValidationError) as exc:
        load_text(text, "f.yaml")
    assert needle in str(exc.value)


def spec(t: str, values: list[object] | None = None) -> ParamSpec:
    return ParamSpec("p", t, values=values)


@pytest.mark.parametrize(
    "t,text,value",
    [
        ("int", "42", 42),
        ("float", "0.01", 0.01),
        ("bool", "yes", True),
        ("bool", "0", False),
        ("str", "0123", "0123"),
        ("list_int", "1,2,3", [1, 2, 3]),
        ("list_int", "[1, 2]", [1, 2]),
        ("list_str", "a, b", ["a", "b"]),
        ("list_float", "[0.5]", [0.5]),
        ("dict", '{"a": 1}', {"a": 1}),
    ],
)
def test_parse_param_text(t: str, text: str, value: object) -> None:
    assert parse_param_text(spec(t), text) == value


@pytest.mark.parametrize("t,text", [("int", "1.5"), ("float", "abc"), ("bool", "maybe"), ("list_int", "1,x"), ("dict", "[1]")])
def test_bad_param_text(t: str, text: str) -> None:
    with pytest.raises(ValueError, match="bad value"):
        parse_param_text(spec(t), text)


def test_enum_param_text() -> None:
    s = spec("enum", ["fast", 3])
    assert parse_param_text(s, "3") == 3
    with pytest.raises(ValueError, match="must be one of fast, 3"):
        parse_param_text(s, "slow")


@given(st.lists(st.integers(min_value=-(10**6), max_value=10**6)))
def test_list_int_round_trip(values: list[int]) -> None:
    s = spec("list_int")
    assert parse_param_text(s, ",".join(map(str, values))) == values
    assert check_param_value(s, values) is None


def test_no_silent_conversion() -> None:
    assert check_param_value(spec("str"), 123) is not None
    assert check_param_value(spec("int"), True) is not None
    assert check_param_value(spec("float"), 1) is None


def test_find_cycle() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": []}) is None
    cycle = find_cycle({"a": ["c"], "b": ["a"], "c": ["b"], "d": []})
    assert cycle is not None and sorted(cycle) == ["a", "b", "c"]
    assert find_cycle({"a": ["a"]}) == ["a"]


OP = Operation("op", "command", "echo", outputs=[OutputSpec("out")], title="T")


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), max_size=6))
def test_key_ignores_dict_order(params: dict[str, int]) -> None:
    reordered = dict(reversed(list(params.items())))
    assert key_of(task_recipe(OP, params, {})) == key_of(task_recipe(OP, reordered, {}))


def test_key_ignores_titles_and_timeouts_but_not_code() -> None:
    base = key_of(task_recipe(OP, {"a": 1}, {}))
    other = Operation("renamed", "command", "echo", outputs=[OutputSpec("out")], title="other", timeout=5, file="x.yaml")
    assert key_of(task_recipe(other, {"a": 1}, {})) == base
    changed = Operation("op", "command", "echo hi", outputs=[OutputSpec("out")])
    assert key_of(task_recipe(changed, {"a": 1}, {})) != base
    assert key_of(task_recipe(OP, {"a": 2}, {})) != base
    assert key_of(task_recipe(OP, {"a": 1}, {"x": [{"hash": "h", "name": "a.csv"}]})) != base


def test_explain_names_the_difference() -> None:
    old = task_recipe(OP, {"lr": 0.1}, {"x": [{"hash": "aaaa", "name": "a"}]})
    new = task_recipe(OP, {"lr": 0.01}, {"x": [{"hash": "bbbb", "name": "a"}]})
    assert explain(old, new) == ["param lr 0.1 → 0.01", "input x changed (aaaa → bbbb)"]
    assert explain(None, new) == ["no cache entry yet"]


def test_run_ids_of_one_process_sort_in_the_order_they_were_made() -> None:
    """A sweep's members start within a millisecond: their ids must still list newest first."""
    from plx.history import new_run_id

    ids = [new_run_id() for _ in range(500)]
    assert ids == sorted(ids) and len({i.rsplit("-", 1)[0] for i in ids}) == 500


@pytest.mark.parametrize("kind, text", [("list_int", "[1e999]"), ("list_int", "[1.5]"), ("list_int", "[true]"), ("list_int", "[[1]]"), ("list_float", "[[1]]"), ("list_float", "[true]"), ("list_float", '[{"a": 1}]')])
def test_a_list_param_item_of_another_kind_is_a_message(kind: str, text: str) -> None:
    """`-p x=[1e999]` for a list_int was an OverflowError traceback (found by the fuzz), `[1.5]` became [1]
    and `[[1]]` a TypeError: each is now the same message as any other bad value."""
    with pytest.raises(ValueError, match=f"bad value .* for {kind} param 'x'"):
        parse_param_text(ParamSpec("x", kind), text)
    assert parse_param_text(ParamSpec("x", kind), "[1, 2]") == [1, 2]
