"""plx.deferred: a pattern compiled at its first use behaves as re.compile's; find_program finds what shutil.which finds."""

from __future__ import annotations

import os
import re
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plx.deferred import find_program, lazy_compile

# -- lazy_compile --------------------------------------------------------------------------------


def test_a_lazy_pattern_is_compiled_at_its_first_use_and_then_answers_as_the_pattern():
    source = r"(?P<name>[a-z]+)=(\d+)"
    lazy, real = lazy_compile(source, re.ASCII), re.compile(source, re.ASCII)
    assert "match" not in vars(lazy)  # nothing compiled yet
    for text in ("a=1", "x = 2", "abc=123 d=4", "", "=5"):
        assert bool(lazy.match(text)) == bool(real.match(text))
        assert bool(lazy.fullmatch(text)) == bool(real.fullmatch(text))
        assert lazy.findall(text) == real.findall(text)
        assert lazy.sub(r"\2", text) == real.sub(r"\2", text)
        assert lazy.split(text) == real.split(text)
    assert "match" in vars(lazy)  # held as its own: later calls skip __getattr__
    assert (lazy.pattern, lazy.flags, lazy.groups, lazy.groupindex) == (real.pattern, real.flags, real.groups, real.groupindex)


def test_a_lazy_pattern_that_does_not_compile_says_so_at_its_first_use():
    lazy = lazy_compile("(unclosed")
    with pytest.raises(re.error):
        lazy.search("x")


def test_dunder_lookups_do_not_compile():
    lazy = lazy_compile("a+")
    assert not hasattr(lazy, "__deepcopy_missing__")
    assert "match" not in vars(lazy)


# -- find_program --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folders holding `prog` as an executable, a plain file, a folder, a link to an executable, a dangling link."""
    root = tmp_path_factory.mktemp("path")

    def make(folder: str, kind: str) -> None:
        d = root / folder
        d.mkdir()
        p = d / "prog"
        if kind == "exe":
            p.write_text("#!/bin/sh\n")
            p.chmod(0o755)
        elif kind == "plain":
            p.write_text("data\n")
            p.chmod(0o644)
        elif kind == "dir":
            p.mkdir()
            p.chmod(0o755)
        elif kind == "link":
            p.symlink_to(root / "exe" / "prog")
        elif kind == "dangling":
            p.symlink_to(root / "nowhere")

    for kind in ("exe", "plain", "dir", "link", "dangling"):
        make(kind, kind)
    (root / "empty").mkdir()
    return str(root)


FOLDERS = ["exe", "plain", "dir", "link", "dangling", "empty", "missing", "", ".", "exe/", "relative"]
WORDS = ["prog", "nothing", "exe/prog", "plain/prog", "./prog", "", "dir/prog", "link/prog"]


@settings(max_examples=300, deadline=None)
@given(entries=st.lists(st.sampled_from(FOLDERS), max_size=6), absolute=st.lists(st.booleans(), min_size=6, max_size=6), word=st.sampled_from(WORDS))
def test_find_program_agrees_with_shutil_which(layout: str, entries: list[str], absolute: list[bool], word: str) -> None:
    folders = [os.path.join(layout, e) if e and a else e for e, a in zip(entries, absolute, strict=False)]
    path = os.pathsep.join(folders)
    cwd = os.getcwd()
    os.chdir(layout)  # relative entries and words are found from here, as bash would
    try:
        assert find_program(word, path) == shutil.which(word, path=path)
    finally:
        os.chdir(cwd)


def test_without_a_path_find_program_reads_path_as_shutil_does(layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", os.pathsep.join([os.path.join(layout, "plain"), os.path.join(layout, "link")]))
    assert find_program("prog") == shutil.which("prog") == os.path.join(layout, "link", "prog")
    monkeypatch.delenv("PATH")
    assert find_program("sh") == shutil.which("sh")
    assert find_program("prog", "") is None and shutil.which("prog", path="") is None
