"""The executor interface: what the engine hands an executor (Job), what it gets back (Finished), and the registry of executors by name."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

from ..structs import record

NOT_STARTED = "canceled before it started"  # Finished.error of a job canceled before its process started


@record
class Job:
    id: str
    argv: list[str]
    env: dict[str, str]  # added to the environment of the process that runs the node
    cwd: Path
    stdout: Path
    stderr: Path
    timeout: float | None  # seconds
    before: Callable[[], None] | None = None  # run first, where the job runs (placing the inputs)
    resources: dict[str, float] | None = None  # what the node declared, as Dask worker resources


@record
class Finished:
    id: str
    exit_code: int | None
    timed_out: bool
    started: float
    ended: float
    error: str | None = None  # the process could not be started (or was not, being canceled first)


@runtime_checkable
class Executor(Protocol):
    """Where node processes run. Every accepted job's `Finished` is put on the results queue the
    executor was made with, and is queued before the job leaves `running` (so once `running` is
    empty, every result is queued)."""

    running: dict[str, Any]  # job id -> the executor's handle, for every job not finished yet

    def submit(self, job: Job) -> None:
        """Start a job (or queue it); raise if it cannot start at all (the node fails with the reason)."""

    def cancel_all(self, hard: bool = False) -> None:
        """Stop every running job (TERM, then KILL after a grace period; KILL at once if hard)."""

    def close(self) -> None:
        """Release everything; nothing the jobs started is left running."""

    def check_resources(self, requests: dict[str, Any]) -> list[str]:
        """Problems of resource requests that this executor's machines can never meet (empty: fine)."""


# name -> factory(run options, results queue). A new executor registers here (register()),
# from its own module or a plugin: the engine only ever calls make_executor.
Factory = Callable[[Any, "queue.Queue[Any]"], Executor]
_REGISTRY: dict[str, Factory] = {}


def register(name: str, factory: Factory) -> None:
    """Make an executor available as `--executor NAME`."""
    _REGISTRY[name] = factory


def registered() -> dict[str, Factory]:
    return _REGISTRY
