"""History: `plx compare`, `plx get`, and the values of recorded runs."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..errors import RunError, UsageError
from ..project import Project
from ..records import FINAL_NODE_STATES, NodeState, RunState, as_run, attempts_of, count_states
from ..store import Artifact

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Iterator

    from ..history import History
    from ..records import RunData


def _numeric_leaves(value: Any, prefix: str, out: dict[str, float]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        out[prefix] = value
    elif isinstance(value, dict):
        for k, v in value.items():
            _numeric_leaves(v, f"{prefix}.{k}" if not prefix.endswith(":") else f"{prefix}{k}", out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _numeric_leaves(v, f"{prefix}.{i}" if not prefix.endswith(":") else f"{prefix}{i}", out)


def run_values(project: Project, data: RunData) -> dict[str, dict[str, Any]]:
    """What `compare` lines up: params, input hashes, numeric leaves of json outputs."""
    import json

    from ..store import Store

    params = {f"param {k}": v for k, v in (data.get("graph_params") or {}).items()}
    for node, info in data.get("nodes", {}).items():  # effective values, defaults filled
        for k, v in ((info.get("recipe") or {}).get("params") or {}).items():
            params[f"param {node}.{k}"] = v
    inputs: dict[str, Any] = {}
    for name, rec in (data.get("inputs") or {}).items():
        items = rec if isinstance(rec, list) else ([rec] if rec else [])
        inputs[f"input {name}"] = ",".join(i["hash"][:12] for i in items)
    metrics: dict[str, float] = {}
    store = Store(project.store)
    for node, info in data.get("nodes", {}).items():
        for out, art in (info.get("outputs") or {}).items():
            if art.get("type") != "json":
                continue
            try:
                value = json.loads(store.object_path(art["hash"]).read_bytes())
            except (OSError, ValueError):
                continue
            _numeric_leaves(value, f"{node}.{out}:", metrics)
    store.close()
    return {"params": params, "inputs": inputs, "environment": environment_values(data), "metrics": metrics}


def environment_values(data: RunData) -> dict[str, Any]:
    """A run's python environments as compare lines them up: `python`, `package NAME`; with several
    interpreters in the run, each name is followed by the interpreter's path."""
    envs = list((data.get("environments") or {}).values())
    out: dict[str, Any] = {}
    for fp in envs:
        where = f" ({fp.get('executable')})" if len(envs) > 1 else ""
        out[f"python{where}"] = fp.get("python")
        for name, version in (fp.get("packages") or {}).items():
            out[f"package {name}{where}"] = version
    return out


def output_metrics(project: Project, data: dict[str, Any]) -> dict[str, float]:
    """Numeric leaves of a run's json graph outputs: {"metrics.accuracy": 0.96, ...}: the record's
    `metrics` (plx/tracking.py), read from the store for a record made before plx kept them."""
    from ..tracking import run_metrics

    if isinstance(data.get("metrics"), dict):
        return dict(data["metrics"])
    return run_metrics(project.store, data)


def compare(project: Project, refs: list[str], show_all: bool) -> dict[str, Any]:
    from ..history import History

    history = History(project.store)
    ids = [history.resolve(r) for r in refs]
    values = [run_values(project, history.load(i)) for i in ids]
    rows = []
    for kind in ("params", "inputs", "environment", "metrics"):
        keys: list[str] = []
        for v in values:
            keys += [k for k in v[kind] if k not in keys]
        for key in keys:
            cells = [v[kind].get(key) for v in values]
            if not show_all and all(c == cells[0] for c in cells):
                continue
            row: dict[str, Any] = {"name": key, "kind": kind.rstrip("s"), "values": cells}
            if kind == "environment" and any(v["environment"] for v in values):
                # against the first run: a package added, removed or changed (a run without python nodes has no environment)
                first = cells[0]
                row["changes"] = [None if i == 0 or c == first else "added" if first is None else "removed" if c is None else "changed" for i, c in enumerate(cells)]
            if kind == "metrics" and isinstance(cells[0], (int, float)):
                row["deltas"] = [None if not isinstance(c, (int, float)) else round(c - cells[0], 12) for c in cells]
            rows.append(row)
    return {"runs": ids, "rows": rows}


def _artifact(project: Project, run_id: str, spec: str) -> tuple[str, Artifact]:
    """The artifact behind NODE.OUTPUT (or a graph output's name) of a run: (shown name, artifact)."""
    from ..history import History

    history = History(project.store)
    rid = history.resolve(run_id)
    data = history.load(rid)
    nodes = data["nodes"]
    if "." in spec:
        node, _, out = spec.rpartition(".")
    elif spec in data.get("outputs", {}):
        ref = data["outputs"][spec]
        if "node" not in ref:
            raise RunError(f"graph output '{spec}' is an input file of the graph: {ref.get('path')}")
        node, out = ref["node"], ref["output"]
    else:
        raise UsageError(f"'{spec}': write NODE.OUTPUT, or the name of a graph output ({', '.join(data.get('outputs', {})) or 'none'})")
    if node not in nodes:
        from ..fanout import missing_node_hint

        hint = missing_node_hint(node, list(nodes))
        raise RunError(f"run {rid} has no node '{node}'" + (f" ({hint})" if hint else ""))
    outs = nodes[node].get("outputs") or {}
    if out not in outs:
        state = nodes[node].get("state")
        if not outs:
            raise RunError(f"node '{node}' of run {rid} has no stored outputs (it is {state})")
        raise RunError(f"node '{node}' has no output '{out}' (its outputs: {', '.join(outs)})")
    return f"{node}.{out}", Artifact.from_json(outs[out])


def open_output(project: Project, run_id: str, spec: str) -> BinaryIO:
    """`plx get RUN NODE.OUTPUT -o -`: the stored bytes of a file output, as a stream for the caller to copy."""
    from ..store import Store

    shown, art = _artifact(project, run_id, spec)
    store = Store(project.store)
    try:
        if not store.intact(art):
            raise RunError(f"the stored artifact of {shown} is missing or damaged; run the graph again to rebuild it")
        if art.type == "directory":
            raise UsageError("a directory output cannot be written to stdout; give -o DEST")
        return open(store.object_path(art.hash), "rb")
    finally:
        store.close()


def get_output(project: Project, run_id: str, spec: str, dest: str | None, force: bool) -> str:
    """Copy NODE.OUTPUT (or a graph output name) of a run out of the store to a file; returns where it went."""
    import shutil  # here, not at the top: `plx run` imports this module, and never shutil (deferred.py)

    from ..store import Store

    shown, art = _artifact(project, run_id, spec)
    store = Store(project.store)
    try:
        if not store.intact(art):
            raise RunError(f"the stored artifact of {shown} is missing or damaged; run the graph again to rebuild it")
        target = Path(dest) if dest else Path.cwd() / art.filename
        if target.exists() or target.is_symlink():
            if not force:
                raise RunError(f"{target} exists; give --force to replace it, or -o DEST")
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        tmp = target.parent / f".{target.name}.plx-tmp-{os.getpid()}"
        try:
            store.materialize(art, tmp)
            os.replace(tmp, target)
        except BaseException:  # a full disk: no half-written copy is left behind
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            raise
        return str(target)
    finally:
        store.close()


def follow_run(history: History, rid: str, poll: float = 0.2) -> Iterator[str]:
    """`plx log RUN -f`: a line per node state change as it happens, then the run's end; the caller prints."""
    from ..history import read_events

    pos = 0
    while True:
        data = as_run(history.load(rid))  # decided before reading, so the last changes are shown too
        done = data["status"] != RunState.RUNNING
        events, pos = read_events(history, rid, pos)
        lines = []
        for ev in events:
            when = str(ev.get("finished") or ev.get("started") or "")[11:19]
            extra = f" ({ev['reason']})" if ev.get("reason") else f" ({ev['duration']:.2f} s)" if ev.get("duration") and ev["state"] != NodeState.CACHED else ""
            lines.append(f"{when:>8} {ev['state']:<8} {ev['node']}{extra}\n")
        if lines:
            yield "".join(lines)
        if done:
            counts = count_states(data.get("nodes", {}))
            yield f"run {rid} {data['status']}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + "\n"
            return
        time.sleep(poll)


def open_node_log(history: History, rid: str, data: RunData, node: str, stream: str, follow: bool, attempt: int | None) -> Iterator[bytes | str]:
    """`plx log RUN NODE`: checks the node and `--attempt` now, then returns the log (see node_log)."""
    if node not in data["nodes"]:
        from ..fanout import missing_node_hint

        hint = missing_node_hint(node, list(data["nodes"]))
        raise RunError(f"run {rid} has no node '{node}'" + (f" ({hint})" if hint else ""))
    if attempt is not None:
        made = attempts_of(data["nodes"][node])
        if attempt > made:
            raise RunError(f"node '{node}' of run {rid} ran {made} attempt{'s' if made != 1 else ''} ({data['nodes'][node].get('state')}); --attempt counts from 1")
        if attempt < made and stream != "worker":  # earlier attempts' logs are kept as <node>.attempt<N>.<stream>
            if follow:
                raise UsageError("--follow shows the attempt running now; leave out --attempt")
            return _earlier_attempt(history, rid, node, stream, attempt)
    return node_log(history, rid, node, stream, follow)


def _earlier_attempt(history: History, rid: str, node: str, stream: str, attempt: int) -> Iterator[bytes | str]:
    chunk, _ = history.read_log(rid, f"{node}.attempt{attempt}", stream)
    yield chunk
    if not chunk:
        yield f"{node} wrote nothing to {stream} in attempt {attempt}"


def node_log(history: History, rid: str, node: str, stream: str, follow: bool, poll: float = 0.2) -> Iterator[bytes | str]:
    """A node's log: bytes for stdout; with follow, until the node (or its run) has ended. A `str` is a
    note for stderr (a new attempt begins; the node wrote nothing)."""
    pos = 0
    shown = 0
    attempt = None
    while True:
        # Decide before copying, so the bytes written up to the end are copied once more.
        data = as_run(history.load(rid)) if follow else None
        done = data is None or data["status"] != RunState.RUNNING or data["nodes"].get(node, {}).get("state") in FINAL_NODE_STATES
        if data is not None and data["nodes"].get(node, {}).get("attempt") != attempt:
            if attempt is not None:  # a new attempt writes new logs: follow those from their start
                yield f"--- attempt {data['nodes'][node].get('attempt')} ---"
                pos = 0
            attempt = data["nodes"].get(node, {}).get("attempt")
        chunk, pos = history.read_log(rid, node, stream, pos)
        if chunk:
            yield chunk
            shown += len(chunk)
        if done:
            if not shown:  # on stderr, so that a script reading stdout still gets exactly nothing
                state = (data or as_run(history.load(rid)))["nodes"].get(node, {}).get("state")
                if state in (NodeState.SKIPPED, NodeState.CACHED, NodeState.PENDING) and stream != "worker":
                    yield f"{node} did not run in this run ({state})"
                else:
                    yield f"{node} wrote nothing to {stream}" if stream != "worker" else f"no worker log for {node}"
            return
        time.sleep(poll)
