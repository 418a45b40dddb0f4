"""Which remote a process uses, and what of its URL may be shown or recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from plx.project import Project, resolve_url
from plx.remote import Remote, push_enabled, redact


def test_the_remote_is_chosen_flag_then_env_then_plx_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    project = Project(tmp_path, remote="s3://from-yaml/x")
    monkeypatch.delenv("PLX_REMOTE", raising=False)
    assert resolve_url(project) == "s3://from-yaml/x"
    monkeypatch.setenv("PLX_REMOTE", "gs://from-env/y")
    assert resolve_url(project) == "gs://from-env/y"
    assert resolve_url(project, "file:///flag") == "file:///flag"
    assert resolve_url(project, "file:///flag", off=True) is None
    monkeypatch.setenv("PLX_REMOTE", "")  # empty turns it off, even with plx.yaml naming one
    assert resolve_url(project) is None
    monkeypatch.setenv("PLX_REMOTE", "../cache")  # a plain path is relative to the project root
    assert resolve_url(project) == str((tmp_path / ".." / "cache").resolve())


@pytest.mark.parametrize(("value", "on"), [("0", False), ("false", False), ("off", False), ("no", False), ("1", True), ("yes", True)])
def test_plx_remote_push(monkeypatch: pytest.MonkeyPatch, value: str, on: bool) -> None:
    monkeypatch.setenv("PLX_REMOTE_PUSH", value)
    assert push_enabled() is on


def test_passwords_are_never_shown() -> None:
    assert redact("s3://key:secret@bucket/path") == "s3://***@bucket/path"
    assert redact("https://user:pw@host/x") == "https://***@host/x"
    assert redact("s3://bucket/path") == "s3://bucket/path"
    assert Remote("s3://a:b@bucket/x").shown == "s3://***@bucket/x"


def test_an_unknown_back_end_is_one_warning_and_no_remote() -> None:
    warnings: list[str] = []
    r = Remote("nosuchproto://x/y", warn=warnings.append)
    assert r.fetch("0" * 64, None) is None  # type: ignore[arg-type]
    assert r.fetch("1" * 64, None) is None  # type: ignore[arg-type]
    assert not r.usable and len(warnings) == 1 and "going on without the remote" in warnings[0]
