"""The pure parts of fan-out: keys of files and values, references, expansion."""

from __future__ import annotations

import pytest

from plx import fanout
from plx.fanout import FanError, FanRef, Foreach, classify, expand, file_key, find_key, parse_fan_ref, ref_node, value_key


@pytest.mark.parametrize(
    "name,key",
    [("A.fastq", "A"), ("A.fastq.gz", "A"), ("A.R1.fastq", "A.R1"), ("x.tar.gz", "x"), ("sample.gz", "sample"), ("README", "README"), (".hidden", ".hidden")],
)
def test_file_key_drops_the_extension_and_a_compression_suffix(name: str, key: str) -> None:
    assert file_key(name) == key


def test_value_keys() -> None:
    assert [value_key(v) for v in (2, 0.1, True, "rf", "a b", "a,b", "x]", [1], None, float("inf"))] == ["2", "0.1", "true", "rf", "a b", None, None, None, None, None]


def test_references() -> None:
    assert parse_fan_ref("item") == FanRef("item", None, None)
    assert parse_fan_ref("item.bam") == FanRef("item", None, "bam")
    assert parse_fan_ref("sort[*].sorted") == FanRef("sort", "*", "sorted")
    assert parse_fan_ref("train[model=rf,seed=0.1].metrics") == FanRef("train", "model=rf,seed=0.1", "metrics")
    assert parse_fan_ref("map[A.R1].bam") == FanRef("map", "A.R1", "bam")
    for bad in ("map[].bam", "map[A]", "map[A].b.c", "map[A]x.bam", "item.a.b"):
        assert parse_fan_ref(bad) is None, bad
    assert [ref_node(r) for r in ("map[A].bam", "item.bam", "inputs.x", "split.train", "sort[*].out")] == ["map", None, None, "split", "sort"]


def test_matrix_keys_are_found_in_any_order() -> None:
    items = expand(classify({"model": ["lr", "rf"], "seed": [1, 2]}), "train", {}, None, None)  # type: ignore[arg-type]
    keys = {it.key: it for it in items}
    assert list(keys) == ["model=lr,seed=1", "model=lr,seed=2", "model=rf,seed=1", "model=rf,seed=2"]
    by_parts = {frozenset(it.parts): it.key for it in items}
    assert find_key(keys, by_parts, "seed=2,model=rf") == "model=rf,seed=2"
    assert find_key(keys, by_parts, "seed=3,model=rf") is None
    assert keys["model=rf,seed=1"].vars == {"model": "rf", "seed": 1, "key": "model=rf,seed=1"}


def test_expansion_of_files_values_and_chains() -> None:
    files = expand(Foreach("input", source="samples"), "map", {}, ["B", "A"], None)
    assert [(it.key, it.index) for it in files] == [("B", 0), ("A", 1)]
    with pytest.raises(FanError, match="both give the key 'A'"):
        expand(Foreach("input", source="samples"), "map", {}, ["A", "A"], None, lambda i: f"f{i}")
    values = expand(Foreach("values", source="lrs"), "x", {"lrs": [0.1, 0.5]}, None, None)
    assert [(it.key, it.vars["item"]) for it in values] == [("0", 0.1), ("1", 0.5)]
    chained = expand(Foreach("node", source="x"), "y", {}, None, values)
    assert [it.key for it in chained] == ["0", "1"] and chained[1].vars["item"] == 0.5
    assert expand(Foreach("values", source="lrs"), "x", {"lrs": []}, None, None) == []


def test_classify_rejects_what_names_nothing() -> None:
    assert isinstance(classify("inputs.samples"), Foreach) and classify("${seeds}") == Foreach("values", source="seeds")
    for bad in ([], {}, "a.b.c", {"item": [1]}, {"x": []}, {"x": 3}, 3):
        assert not isinstance(classify(bad), Foreach), bad
    (seven,) = expand(Foreach("values", values=[7]), "x", {}, None, None)
    assert fanout.fill_key("${key}/${item}", seven) == "0/7"
