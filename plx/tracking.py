"""Experiment tracking: labels (name, tags, note), metrics from json outputs, and `plx log` filters.

Metrics are every numeric leaf of a run's `json` graph outputs, flattened with dots and keyed by
the graph output's name first (`m.accuracy`, `m.loss.test`, `m.per_class.0`). Booleans, strings
and nulls are not metrics; neither are non-finite numbers (NaN, +-inf: Python's JSON reader accepts
them but strict JSON cannot carry them and they do not order), which are left out. At most MAX_METRICS per run are kept.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
from pathlib import Path

from .errors import RunError, UsageError
from .records import NodeState, RunState

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any

    from .records import RunData

# Patterns as text, compiled (by re's cache) on first use: a run without tags or `--where` never needs them.
TAG_RE = r"^\S{1,100}$"
MAX_NOTE = 10_000
# A json output may hold a whole array of predictions: only the first numbers (in document order)
# become metrics, so records and the index stay small and `plx log` stays fast.
MAX_METRICS = 1_000


# ---- metrics and params ---------------------------------------------------------


def numeric_leaves(value: Any, prefix: str, out: dict[str, float], limit: int | None = None) -> None:
    """Every finite number in value (not bools), keyed by its dotted path under prefix (at most limit)."""
    if isinstance(value, bool) or value is None or (limit is not None and len(out) >= limit):
        return
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return
        out[prefix] = value
    elif isinstance(value, dict):
        for k, v in value.items():
            numeric_leaves(v, f"{prefix}.{k}", out, limit)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            if limit is not None and len(out) >= limit:
                break
            numeric_leaves(v, f"{prefix}.{i}", out, limit)


def run_metrics(store_root: Path, data: dict[str, Any]) -> dict[str, float]:
    """The metrics of a run: numeric leaves of its json graph outputs, read from the store."""
    out: dict[str, float] = {}
    nodes, outputs = data.get("nodes"), data.get("outputs")
    if not isinstance(nodes, dict) or not isinstance(outputs, dict):  # a damaged record: no metrics, no traceback
        return out
    for name, ref in outputs.items():
        if not isinstance(ref, dict) or not isinstance(nodes.get(ref.get("node")), dict):
            continue
        arts = nodes[ref["node"]].get("outputs")
        art = arts.get(ref.get("output")) if isinstance(arts, dict) else None
        if not isinstance(art, dict) or art.get("type") != "json":
            continue
        h = str(art.get("hash", ""))
        try:
            value = json.loads((store_root / "objects" / h[:2] / h[2:]).read_bytes())
        except (OSError, ValueError):
            continue  # not stored (a failed run) or damaged: no metrics rather than a wrong one
        numeric_leaves(value, name, out, MAX_METRICS)
    return out


def check_labels(name: str | None, tags: list[str], note: str | None) -> None:
    if name is not None and (not name.strip() or len(name) > 200 or "\n" in name):
        raise UsageError("--name: give one line of at most 200 characters")
    for t in tags:
        if not re.match(TAG_RE, t):
            raise UsageError(f"tag {t!r}: a tag is 1 to 100 characters without spaces")
    if note is not None and len(note) > MAX_NOTE:
        raise UsageError(f"a note holds at most {MAX_NOTE} characters")


def sweep_tags(names: list[str], values: tuple[Any, ...]) -> list[str]:
    """The tags of one combination of a sweep: `lr=0.1`, one per swept param."""
    return [f"{k}={v if isinstance(v, str) else json.dumps(v, separators=(',', ':'))}" for k, v in zip(names, values, strict=True)]


def merge_tags(*groups: list[str]) -> list[str]:
    out: list[str] = []
    for group in groups:
        out += [t for t in group if t not in out]
    return out


# ---- labelling a recorded run -----------------------------------------------------


def relabel(store_root: Path, ref: str, *, add: tuple[str, ...] = (), remove: tuple[str, ...] = (), note: str | None = None, set_note: bool = False) -> RunData:
    """`plx tag` / `plx note`: rewrite the run's record atomically, then its index row."""
    from .history import History, Index, write_json_atomic

    check_labels(None, list(add), note)  # any tag can be removed, even one a sweep value gave spaces
    history = History(store_root)
    rid = history.resolve(ref)
    d = history.dir / rid
    # One writer at a time: two `plx tag` at once must not lose one's change.
    fd = os.open(d / "labels.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = history.load(rid)
        if data.get("status") == RunState.RUNNING:
            raise RunError(f"run {rid} is still running; label it once it has ended (the running plx rewrites its record at the end)")
        tags = [t for t in merge_tags(list(data.get("tags") or []), list(add)) if t not in remove]
        data["tags"] = tags
        if set_note:
            data["note"] = note or None
        write_json_atomic(d / "run.json", data)
        index = Index(history.dir)
        try:
            index.put(data)
        finally:
            index.close()
        return data
    finally:
        os.close(fd)


# ---- filters ----------------------------------------------------------------------

GRAMMAR = (
    "write FIELD OP VALUE: FIELD is metrics.KEY, params.KEY, tags, name, note, status, graph, id, started or duration; "
    "OP is one of = != < <= > >= ~ (~: contains); e.g. 'metrics.eval.accuracy>0.9', 'params.lr=0.1', 'tags~base'"
)
# A field is anything up to the operator (metric keys come from users' JSON: `metrics.m.per class.0`).
_EXPR = r"^\s*(?P<field>[^=<>!~\s][^=<>!~]*?)\s*(?P<op>!=|<=|>=|=|<|>|~)\s*(?P<value>.*?)\s*$"
PLAIN_FIELDS = ("tags", "name", "note", "status", "graph", "id", "started", "finished", "duration")


def check_field(field: str, flag: str) -> None:
    if field in PLAIN_FIELDS or (field.startswith(("metrics.", "params.")) and len(field.split(".", 1)[1]) > 0):
        return
    raise UsageError(f"{flag} {field!r}: unknown field; {GRAMMAR}")


class Where:
    """One `--where FIELD OP VALUE` condition."""

    def __init__(self, text: str):
        m = re.match(_EXPR, text, re.S)
        if not m or (not m["value"] and m["op"] not in ("=", "!=")) or m["value"][:1] in ("=", "<", ">", "!", "~"):
            raise UsageError(f"--where {text!r}: {GRAMMAR}")
        self.text = text
        self.field, self.op, raw = m["field"], m["op"], m["value"]
        check_field(self.field, "--where")
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            raw, self.value = raw[1:-1], raw[1:-1]  # quoted: always a string
        else:
            self.value = _literal(raw)
        self.raw = raw

    def __call__(self, run: dict[str, Any]) -> bool:
        found, value = field_value(run, self.field)
        if self.field == "tags":
            tags = [str(t) for t in value or []]
            if self.op == "=":
                return self.raw in tags
            if self.op == "!=":
                return self.raw not in tags
            if self.op == "~":
                return any(self.raw in t for t in tags)
            return False
        if not found or value is None:
            return self.op == "!="
        if self.op == "~":
            return self.raw in (value if isinstance(value, str) else json.dumps(value))
        return _compare(value, self.op, self.value, self.raw)


def _literal(raw: str) -> Any:
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        f = float(raw)
        return f if math.isfinite(f) else raw
    except ValueError:
        pass
    if raw.startswith(("[", "{")):
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw


def _compare(value: Any, op: str, want: Any, raw: str) -> bool:
    if isinstance(value, bool) or isinstance(want, bool):
        a: Any = value
        b: Any = want if isinstance(want, bool) else raw
        if op in ("=", "!="):
            return (a == b) == (op == "=")
        return False
    if isinstance(value, (int, float)) and isinstance(want, (int, float)):
        a, b = value, want
    elif isinstance(value, (int, float)) or isinstance(want, (int, float)):
        if op in ("=", "!="):
            return op == "!="
        return False
    elif isinstance(value, str):
        a, b = value, raw
    else:
        a, b = json.dumps(value, sort_keys=True), json.dumps(want, sort_keys=True) if not isinstance(want, str) else raw
    if op == "=":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    try:
        return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])
    except TypeError:
        return False


def field_value(run: dict[str, Any], field: str) -> tuple[bool, Any]:
    """(present, value) of a field of a run summary; metrics/params keys may hold dots themselves."""
    if field.startswith(("metrics.", "params.")):
        kind, _, key = field.partition(".")
        bag = run.get(kind) or {}
        if key in bag:
            return True, bag[key]
        return False, None
    if field in run:
        return True, run[field]
    return False, None


def filter_runs(runs: list[dict[str, Any]], *, tags: list[str], name: str | None, where: list[str]) -> list[dict[str, Any]]:
    conditions = [Where(w) for w in where]
    out = []
    for r in runs:
        if tags and not all(t in (r.get("tags") or []) for t in tags):
            continue
        if name is not None and r.get("name") != name:
            continue
        if all(c(r) for c in conditions):
            out.append(r)
    return out


def sort_runs(runs: list[dict[str, Any]], spec: str) -> list[dict[str, Any]]:
    """`--sort [-]FIELD`: runs without the field go last either way."""
    desc = spec.startswith("-")
    field = spec[1:] if desc else spec
    check_field(field, "--sort")
    have: list[tuple[Any, dict[str, Any]]] = []
    missing: list[tuple[Any, dict[str, Any]]] = []
    for r in runs:
        found, v = field_value(r, field)
        (have if found and v is not None else missing).append((v, r))

    def key(item: tuple[Any, dict[str, Any]]) -> tuple[int, Any]:
        v = item[0]
        if isinstance(v, bool):
            return (0, int(v))
        if isinstance(v, (int, float)):
            return (0, v)
        return (1, v if isinstance(v, str) else json.dumps(v, sort_keys=True))

    have.sort(key=key, reverse=desc)
    return [r for _, r in have] + [r for _, r in missing]


def column_value(run: dict[str, Any], field: str) -> str:
    found, v = field_value(run, field)
    if not found or v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return v if isinstance(v, str) else json.dumps(v)


# ---- JSON -------------------------------------------------------------------------


def select_runs(
    history: Any, *, graph: str | None, status: str | None, limit: int | None, tags: list[str], name: str | None, where: list[str], sort: str | None
) -> list[dict[str, Any]]:
    """`plx log`'s list: the index's summaries, filtered, sorted, then cut to limit."""
    for w in where:
        Where(w)  # a malformed expression fails before anything is read
    if sort:
        check_field(sort.removeprefix("-"), "--sort")
    if not (tags or name is not None or where or sort):
        return list(history.summaries(graph=graph, status=status, limit=limit))
    runs = filter_runs(history.summaries(graph=graph, status=status, limit=None), tags=tags, name=name, where=where)
    if sort:
        runs = sort_runs(runs, sort)
    return runs[:limit] if limit else runs


# ---- estimates for the live view -------------------------------------------------


def duration_history(store_root: Path, graph: str, scan: int = 20, want: int = 5) -> dict[str, dict[str, float]]:
    """Recorded durations of nodes that ran, from the newest records: by cache key, by operation
    (the hash of its recipe), and by node id in runs of the same graph. For the live view's ETA."""
    from .history import History

    by: dict[str, dict[str, list[float]]] = {"key": {}, "op": {}, "node": {}}
    history = History(store_root)
    found = 0
    for rid in history.ids()[:scan]:
        try:
            data = json.loads((history.dir / rid / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        same = data.get("graph") == graph
        for node, d in (data.get("nodes") or {}).items():
            if d.get("state") != NodeState.SUCCESS or not isinstance(d.get("duration"), (int, float)):
                continue
            if d.get("cache_key"):
                by["key"].setdefault(d["cache_key"], []).append(d["duration"])
            op = (d.get("recipe") or {}).get("operation")
            if isinstance(op, str):
                by["op"].setdefault(op, []).append(d["duration"])
            if same:
                by["node"].setdefault(node, []).append(d["duration"])
        found += same
        if found >= want:
            break
    return {kind: {k: sorted(v)[len(v) // 2] for k, v in bag.items()} for kind, bag in by.items()}
