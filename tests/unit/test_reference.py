"""docs/reference.md cannot drift: it is what `python -m plx.refdoc` prints, and independently of the
generator every command, option, file key, setting, state, exit code and run JSON key is in it."""

from __future__ import annotations

from pathlib import Path

import typer.main

from plx import errors, refdoc
from plx.cli import app
from plx.history import summary
from plx.project import _SETTINGS
from plx.records import NodeState, RunState, public_run
from plx.schema import SCHEMAS

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"


def text() -> str:
    return REFERENCE.read_text(encoding="utf-8")


def test_reference_is_generated() -> None:
    assert refdoc.generate() == text(), "docs/reference.md is out of date: run `python -m plx.refdoc > docs/reference.md`"


def _commands(cmd: object, name: str) -> list[tuple[str, object]]:
    if hasattr(cmd, "list_commands"):
        ctx = cmd.context_class(cmd)  # type: ignore[attr-defined]
        out = [(name, cmd)]
        for sub in cmd.list_commands(ctx):
            out += _commands(cmd.get_command(ctx, sub), f"{name} {sub}".strip())  # type: ignore[attr-defined]
        return out
    return [(name, cmd)]


def test_every_command_and_option_is_documented() -> None:
    doc = text()
    seen = 0
    for name, cmd in _commands(typer.main.get_command(app), ""):
        if name and not hasattr(cmd, "list_commands"):
            assert f"### `plx {name}`" in doc, f"plx {name} is missing from docs/reference.md"
        for p in cmd.params:  # type: ignore[attr-defined]
            for opt in [*p.opts, *p.secondary_opts] if p.param_type_name == "option" else [p.metavar or p.name.upper()]:
                if opt == "--help":
                    continue
                assert f"`{opt}`" in doc, f"{opt} of plx {name} is missing from docs/reference.md"
                seen += 1
    assert seen > 60  # the walk found the options (it would pass vacuously on an empty app)


def _keys(schema: dict, prefix: str = "") -> list[str]:
    out = []
    for key, sub in (schema.get("properties") or {}).items():
        out.append(prefix + key)
        if isinstance(sub.get("items"), dict):
            out += _keys(sub["items"], f"{prefix}{key}[].")
        out += _keys(sub, f"{prefix}{key}.")
        for pattern in (sub.get("patternProperties") or {}).values():
            out += _keys(pattern, f"{prefix}{key}.NODE.")
    return out


def test_every_file_key_and_setting_is_documented() -> None:
    doc = text()
    for kind, schema in SCHEMAS.items():
        keys = _keys(schema)
        assert "cmd" in keys or kind == "graph"
        for key in keys:
            assert f"| `{key}` |" in doc, f"{kind} key {key} is missing from docs/reference.md"
    assert set(refdoc.SETTINGS) == _SETTINGS, "plx.yaml settings and docs/reference.md disagree"
    for key in _SETTINGS:
        assert f"| `{key}` |" in doc


def test_states_and_exit_codes_are_documented() -> None:
    assert list(refdoc.NODE_STATES) == [s.value for s in NodeState]
    assert list(refdoc.RUN_STATES) == [s.value for s in RunState]
    codes = {cls.exit_code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.PlxError)}
    assert codes | {0} <= set(refdoc.EXIT_CODES)
    doc = text()
    for code in refdoc.EXIT_CODES:
        assert f"| `{code}` |" in doc


RECORD = {
    "id": "20260101-000000-abcd",
    "graph": "g",
    "status": "success",
    "started": "2026-01-01T00:00:00+00:00",
    "finished": "2026-01-01T00:00:01+00:00",
    "duration": 1.0,
    "git": {"commit": "c", "branch": "main", "dirty": False},
    "params": {"lr": 0.1},
    "graph_params": {"lr": 0.1},
    "inputs": {"raw": {"path": "data/raw.csv", "hash": "h"}},
    "outputs": {"model": {"node": "train", "output": "model"}},
    "name": "n",
    "tags": ["t"],
    "note": "x",
    "metrics": {"eval.accuracy": 0.9},
    "nodes": {
        "train": {
            "state": "success",
            "exit_code": 0,
            "duration": 1.0,
            "cache_key": "k",
            "outputs": {"model": {"hash": "h", "size": 1, "type": "file", "filename": "m"}},
            "reason": "r",
            "attempts": [{"attempt": 1}],
            "source": "remote",
            "worker": "w",
            "dask_attempts": [1],
        }
    },
}


def test_every_run_json_key_is_documented() -> None:
    one = public_run(RECORD)
    documented = set(refdoc.RUN_SUMMARY_KEYS) | set(refdoc.RUN_DETAIL_KEYS)
    assert set(one) <= documented, f"run JSON keys missing from docs/reference.md: {set(one) - documented}"
    assert set(public_run(RECORD, with_nodes=False)) <= set(refdoc.RUN_SUMMARY_KEYS)
    assert set(summary(RECORD)) <= set(refdoc.RUN_SUMMARY_KEYS), "plx log --json keys missing from docs/reference.md"
    assert set(one["nodes"]["train"]) <= set(refdoc.NODE_KEYS)
    doc = text()
    for key in [*documented, *refdoc.NODE_KEYS]:
        assert f"| `{key}` |" in doc
