"""Run, node and artifact records: their states, their shapes, and their public JSON (docs/reference.md).

A run record is the plain JSON file `runs/<id>/run.json` (history.RunRecord writes it); the types here
describe it for readers. States are `StrEnum`s: a state is its string everywhere (JSON, SQLite,
comparisons with records read back from disk), so the files and the JSON stay exactly as they were.
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any, Mapping, TypedDict


class NodeState(StrEnum):
    """The state of one node in a run (docs/reference.md, "Node states")."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    CACHED = "cached"
    FAILED = "failed"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"
    CANCELED = "canceled"


class RunState(StrEnum):
    """The status of a run (docs/reference.md, "Run states")."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"
    INTERRUPTED = "interrupted"


FINAL_NODE_STATES = frozenset({NodeState.SUCCESS, NodeState.CACHED, NodeState.FAILED, NodeState.TIMEOUT, NodeState.SKIPPED, NodeState.CANCELED})
DONE_OK = frozenset({NodeState.SUCCESS, NodeState.CACHED})  # a dependent may start
BROKEN = frozenset({NodeState.FAILED, NodeState.TIMEOUT})  # the node's command did not do its work
STARTED = frozenset({NodeState.SUCCESS, NodeState.FAILED, NodeState.TIMEOUT, NodeState.RUNNING})  # its command was started
STATE_ORDER = list(NodeState)


if TYPE_CHECKING:  # the shapes of run records: for readers and the type checker (no TypedDict at run time)

    class ArtifactData(TypedDict):
        """An output as recorded (store.Artifact.to_json)."""

        hash: str
        size: int
        type: str
        filename: str

    class AttemptData(TypedDict, total=False):
        attempt: int
        state: str
        exit_code: int | None
        duration: float | None
        finished: str | None
        reason: str

    class NodeData(TypedDict, total=False):
        """One node of a run record (`nodes[node_id]`)."""

        state: str  # a NodeState value
        cache_key: str | None
        exit_code: int | None
        duration: float | None
        started: str | None
        finished: str | None
        outputs: dict[str, ArtifactData]
        reason: str
        logs: str
        attempt: int
        attempts: list[AttemptData]
        source: str
        worker: str
        dask_attempts: list[Any]
        waiting_for: str
        recipe: dict[str, Any]  # the cache key's recipe (compact: operations by reference to op_recipes)

    class GitData(TypedDict, total=False):
        commit: str | None
        branch: str | None
        dirty: bool | None

    class RunData(TypedDict, total=False):
        """A run record (`runs/<id>/run.json`) as readers see it; keys a record may lack are optional."""

        id: str
        graph: str
        graph_file: str
        status: str  # a RunState value
        started: str | None
        finished: str | None
        duration: float | None
        git: GitData
        plx_version: str
        argv: list[str]
        cwd: str
        rerun_of: str | None
        rev: str | None
        params: dict[str, Any]
        graph_params: dict[str, Any]
        sweep: str | None
        inputs: dict[str, Any]
        outputs: dict[str, dict[str, Any]]
        snapshot: dict[str, Any]
        nodes: dict[str, NodeData]
        op_recipes: dict[str, Any]
        environments: dict[str, Any]
        name: str | None
        tags: list[str]
        note: str | None
        metrics: dict[str, float]
        deps: dict[str, list[str]]
        remote: str


def as_run(data: Mapping[str, Any]) -> RunData:
    """A run record read from JSON, typed for its readers (no copy: records are plain JSON objects)."""
    return data  # type: ignore[return-value]


def count_states(nodes: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """How many nodes are in each state."""
    return dict(Counter(str(n.get("state", NodeState.PENDING)) for n in nodes.values()))


def attempts_of(node: Mapping[str, Any]) -> int:
    """How many times a node's command was started in a run (0 when it was cached or did not run)."""
    if node.get("attempts"):
        return len(node["attempts"])
    return int(node.get("attempt") or (1 if node.get("state") in STARTED or node.get("logs") else 0))


def run_params(data: Mapping[str, Any]) -> dict[str, Any]:
    """Every graph param's value as used (defaults included), plus node params given with -p."""
    graph_params, overrides = data.get("graph_params"), data.get("params")
    params = dict(graph_params) if isinstance(graph_params, dict) else {}
    for key, value in (overrides if isinstance(overrides, dict) else {}).items():  # the record's `params` are the -p overrides
        if "." in key:
            params[key] = value
    return params


def labels(data: Mapping[str, Any]) -> dict[str, Any]:
    tags = data.get("tags")
    return {"name": data.get("name"), "tags": [str(t) for t in tags] if isinstance(tags, list) else [], "note": data.get("note")}


def public_fields(data: Mapping[str, Any], one_run: bool) -> dict[str, Any]:
    """The run JSON's labels, params as used and metrics; for one run also
    `overrides` (the -p values, called `params` before) and `outputs`."""
    out: dict[str, Any] = {**labels(data), "params": run_params(data), "metrics": data.get("metrics") or {}}
    if one_run:
        out["overrides"] = data.get("params") or {}
        outputs: dict[str, Any] = {}
        nodes = data.get("nodes") or {}
        for name, ref in (data.get("outputs") or {}).items():
            if isinstance(ref, dict) and "node" in ref:
                art = ((nodes.get(ref["node"]) or {}).get("outputs") or {}).get(ref.get("output")) or {}
                outputs[name] = {"node": ref["node"], "output": ref.get("output"), "hash": art.get("hash"), "type": art.get("type")}
            else:
                outputs[name] = dict(ref) if isinstance(ref, dict) else ref
        out["outputs"] = outputs
    return out


def public_node(d: Mapping[str, Any]) -> dict[str, Any]:
    """One node of the run JSON."""
    return {
        "state": d.get("state"),
        "exit_code": d.get("exit_code"),
        "duration": d.get("duration"),
        "cache_key": d.get("cache_key"),
        "outputs": {k: {"hash": v["hash"], "size": v["size"], "type": v["type"]} for k, v in (d.get("outputs") or {}).items()},
        **({"reason": d["reason"]} if d.get("reason") else {}),
        "attempts": attempts_of(d),
        **({"source": d["source"]} if d.get("source") else {}),
        **({"worker": d["worker"], "dask_attempts": len(d.get("dask_attempts") or [])} if d.get("worker") else {}),
    }


def public_run(data: Mapping[str, Any], with_nodes: bool = True) -> dict[str, Any]:
    """A run as the stable JSON of `plx log --json`, `plx log RUN --json` and `plx run --json` (docs/reference.md)."""
    out = {k: data.get(k) for k in ("id", "graph", "status", "started", "finished", "duration", "git")}
    out["counts"] = count_states(data.get("nodes", {}))
    out.update(public_fields(data, with_nodes))
    if with_nodes:
        out["inputs"] = data.get("inputs", {})
        out["rerun_of"] = data.get("rerun_of")
        out["nodes"] = {n: public_node(d) for n, d in data.get("nodes", {}).items()}
    return out
