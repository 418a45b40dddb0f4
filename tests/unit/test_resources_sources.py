"""Pure pieces of sources, environments and resources: sizes, escapes, the pool, fingerprint differences."""

from __future__ import annotations

from pathlib import Path

import pytest

from plx.environment import differences
from plx.hashing import explain, task_recipe
from plx.model import Operation
from plx.resources import Pool, Request, check_requests, parse_memory, request_of
from plx.sources import escapes


@pytest.mark.parametrize(
    ("text", "size"),
    [("4GB", 4 * 10**9), ("512MB", 512 * 10**6), ("1.5GiB", int(1.5 * 2**30)), ("100", 100), (2048, 2048), ("2 gb", 2 * 10**9), ("1k", 1000), ("3Mi", 3 * 2**20)],
)
def test_memory_sizes(text: object, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["lots", "4 GBs", "-1GB", "", True])
def test_bad_memory_sizes(text: object) -> None:
    with pytest.raises(ValueError):
        parse_memory(text)


def test_the_node_overrides_the_operation_key_by_key() -> None:
    assert request_of({"cpus": 2, "memory": "1GB"}, {"cpus": 1, "gpus": 1}) == Request(1, 10**9, 1)
    assert request_of(None, None) == Request() and not Request().declared


def test_the_pool_holds_and_gives_back() -> None:
    pool = Pool(4, 10, ["0", "1", "2"])
    assert pool.take("a", Request(2, 6, 2)) == ["0", "1"]
    assert not pool.fits(Request(1, 5, 0)) and not pool.fits(Request(3, 0, 0)) and not pool.fits(Request(1, 0, 2))
    assert pool.fits(Request(2, 4, 1))
    pool.give("a")
    assert (pool.slots, pool.memory, pool.gpus) == (4, 10, ["0", "1", "2"])
    pool.give("a")  # twice is harmless
    assert pool.slots == 4


def test_impossible_requests_are_named() -> None:
    problems = check_requests({"a": Request(3), "b": Request(1, 2 * 10**9), "c": Request(1, 0, 1), "d": Request()}, 2, 10**9, [])
    assert [p.split("'")[1] for p in problems] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("written", "out"),
    [("scripts/x.py", False), ("../x", True), ("a/../../x", True), ("a/../b", False), ("/etc/passwd", True), ("/proj/sub/x", False), ("..", True), ("..x", False)],
)
def test_sources_that_escape_the_project(written: str, out: bool) -> None:
    assert escapes(written, Path("/proj")) is out


def test_fingerprint_differences_in_words() -> None:
    old = {"python": "3.11.7", "packages": {"numpy": "1.26.4", "rich": "13.0", "gone": "1"}}
    new = {"python": "3.12.1", "packages": {"numpy": "2.0.0", "rich": "13.0", "new": "0.1"}}
    assert differences(old, new) == ["python 3.11.7 → 3.12.1", "- gone 1", "+ new 0.1", "numpy 1.26.4 → 2.0.0"]


def test_sources_and_environment_are_in_the_key_and_explained() -> None:
    op = Operation("o", "python", "pass")
    base = task_recipe(op, {}, {}, extra={"sources": {"s.py": "aa"}, "environment": "e1"})
    assert explain(base, task_recipe(op, {}, {}, extra={"sources": {"s.py": "bb", "t.py": "cc"}, "environment": "e2"})) == [
        "source s.py changed",
        "source t.py added",
        "python environment changed (`plx compare` shows the packages)",
    ]
    assert base["format"] == "plx-key-2"


def test_sources_are_hashed_through_the_stat_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import plx.store
    from plx.extras import Extras
    from plx.project import Project
    from plx.store import Store

    project = Project(tmp_path)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts/a.py").write_text("print(1)\n")
    op = Operation("o", "command", "python scripts/a.py", sources=["scripts"])
    store = Store(project.store)
    first = Extras(project, store).of(op)
    store.close()
    assert list(first["sources"]) == ["scripts/a.py"]

    def no_reading(path: object) -> str:
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(plx.store, "hash_file", no_reading)
    store = Store(project.store)  # another run: a new process would open the same stat cache
    assert Extras(project, store).of(op) == first
    (tmp_path / "scripts/a.py").write_text("print(2)\n")
    with pytest.raises(AssertionError, match="was read again"):
        Extras(project, store).of(op)
    store.close()
