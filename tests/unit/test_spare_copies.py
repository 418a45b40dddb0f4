"""workspace._copy_file with a spare (a finished node's private copy, reused): the copy holds exactly
the new bytes, whatever the spare held, longer or shorter, and its hash is theirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plx.hashing import hash_bytes
from plx.workspace import _copy_file


@pytest.mark.parametrize("old", [b"", b"short", b"a much longer earlier input, with a tail\n" * 50])
@pytest.mark.parametrize("new", [b"", b"hello world\n", b"x" * 70_000])
def test_a_reused_spare_holds_exactly_the_new_bytes(old: bytes, new: bytes, tmp_path: Path) -> None:
    spares = tmp_path / "spares"
    spares.mkdir()
    (spares / "1").write_bytes(old)
    src = tmp_path / "input.txt"
    src.write_bytes(new)
    dst = tmp_path / "node.in" / "input.txt"
    dst.parent.mkdir()
    home = os.open(spares, os.O_RDONLY | os.O_DIRECTORY)
    try:
        got = _copy_file(src, dst, 0o644, (home, "1"))
    finally:
        os.close(home)
    assert dst.read_bytes() == new and got == hash_bytes(new)
    assert not (spares / "1").exists()  # it was taken (renamed), not copied
    assert dst.stat().st_mode & 0o777 == 0o644
