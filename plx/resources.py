"""What a node takes while it runs (cpus as slots of -j, memory, gpus) and what the machine has.

The engine holds a node's request from its launch to its end and starts a node only when its
request fits in what is free; a request that could never fit is an error before anything runs.
"""

from __future__ import annotations

import os
import re
import subprocess

from .structs import record

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)


def parse_memory(value: Any) -> int:
    """'4GB' -> 4_000_000_000, '1.5GiB' -> 1_610_612_736, an integer -> bytes. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"not a size: {value!r} (write e.g. 512MB, 4GB or 1.5GiB)")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


def show_memory(n: int) -> str:
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n}B"


@record(frozen=True)
class Request:
    """A node's request: cpus (slots of -j), memory in bytes, gpus."""

    cpus: int = 1
    memory: int = 0
    gpus: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "memory": self.memory, "gpus": self.gpus}

    @property
    def declared(self) -> bool:
        return self != Request()


def request_of(op_resources: dict[str, Any] | None, node_resources: dict[str, Any] | None) -> Request:
    """The operation's resources with the node's overriding them key by key (both validated)."""
    merged = {**(op_resources or {}), **(node_resources or {})}
    return Request(int(merged.get("cpus", 1)), parse_memory(merged.get("memory", 0)), int(merged.get("gpus", 0)))


def machine_memory() -> int:
    """Physical memory of this machine in bytes (0 when unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def gpu_ids() -> list[str]:
    """The GPUs plx may hand out: CUDA_VISIBLE_DEVICES of plx itself if set, else `nvidia-smi -L`."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and not g.strip().startswith("-")]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(ln for ln in out.splitlines() if ln.startswith("GPU "))]


class Pool:
    """What is free now: slots of -j, memory, GPU ids. `take` and `give` are called by the engine's loop."""

    def __init__(self, jobs: int, memory: int | None, gpus: list[str] | None):
        """memory None: not budgeted here; gpus None: not assigned here (a Dask cluster's workers do both)."""
        self.slots, self.memory, self.gpus = jobs, memory if memory is not None else 1 << 62, gpus
        self.held: dict[str, tuple[Request, list[str]]] = {}

    def fits(self, r: Request) -> bool:
        return r.cpus <= self.slots and r.memory <= self.memory and (self.gpus is None or r.gpus <= len(self.gpus))

    def take(self, tid: str, r: Request) -> list[str]:
        """Hold r for tid; returns the GPU ids assigned to it."""
        ids: list[str] = []
        if self.gpus is not None:
            ids, self.gpus = self.gpus[: r.gpus], self.gpus[r.gpus :]
        self.slots -= r.cpus
        self.memory -= r.memory
        self.held[tid] = (r, ids)
        return ids

    def give(self, tid: str) -> None:
        held = self.held.pop(tid, None)
        if held is None:
            return
        r, ids = held
        self.slots += r.cpus
        self.memory += r.memory
        if self.gpus is not None:
            self.gpus = sorted(self.gpus + ids, key=lambda g: (len(g), g))

    def gpus_of(self, tid: str) -> list[str]:
        held = self.held.get(tid)
        return held[1] if held else []


def check_requests(requests: dict[str, Request], jobs: int, memory: int | None, gpus: list[str] | None, where: str = "this machine") -> list[str]:
    """Why some requests could never be met (each a sentence naming the node), or nothing.
    memory or gpus None: not checked here."""
    problems: list[str] = []
    for node, r in requests.items():
        if r.cpus > jobs:
            problems.append(f"node '{node}' asks for {r.cpus} cpus, but -j is {jobs}: run with -j {r.cpus} or more, or lower its resources.cpus")
        if memory and r.memory > memory:
            problems.append(f"node '{node}' asks for {show_memory(r.memory)} of memory, but {where} has {show_memory(memory)}")
        if gpus is not None and r.gpus > len(gpus):
            have = f"{len(gpus)} GPU{'s' if len(gpus) != 1 else ''}" + (f" ({','.join(gpus)})" if gpus else "")
            problems.append(f"node '{node}' asks for {r.gpus} GPU{'s' if r.gpus != 1 else ''}, but {where} has {have} (found with CUDA_VISIBLE_DEVICES or nvidia-smi -L)")
    return _fold_expansions(problems)


def _fold_expansions(problems: list[str]) -> list[str]:
    """One sentence for all the expansions of a fanned-out node that share a problem (10,000 are one line)."""
    import re

    out: list[str] = []
    first: dict[str, int] = {}  # the problem with the expansion key taken out -> its line in out
    more: dict[int, tuple[str, int]] = {}
    for p in problems:
        m = re.match(r"node '([^']*\])'", p)
        generic = re.sub(r"\[[^\[\]]*\]", "[]", p) if m else None
        if generic is not None and generic in first:
            i = first[generic]
            template, n = more.get(i, (re.sub(r"\[[^\[\]]*\]", "", m.group(1)) if m else "", 0))
            more[i] = (template, n + 1)
            continue
        if generic is not None:
            first[generic] = len(out)
        out.append(p)
    for i, (template, n) in more.items():
        out[i] += f" (and {n} more expansion{'s' if n != 1 else ''} of '{template}')"
    return out
