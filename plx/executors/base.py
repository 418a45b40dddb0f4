"""The executor interface: what the engine hands an executor (Job), what it gets back (Finished), and the registry of executors by name."""

from __future__ import annotations

import queue
from pathlib import Path

from ..structs import record

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any, Callable

    from .protocol import Executor

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


# name -> factory(run options, results queue). A new executor registers here (register()),
# from its own module or a plugin: the engine only ever calls make_executor.
if TYPE_CHECKING:
    Factory = Callable[[Any, "queue.Queue[Any]"], Executor]
_REGISTRY: dict[str, Factory] = {}


def __getattr__(name: str) -> Any:
    # Executor, the protocol an executor follows, lives in .protocol (it needs typing, which a run
    # never imports): found here too, made on first use (a plugin's isinstance check).
    if name == "Executor":
        from .protocol import Executor

        return Executor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register(name: str, factory: Factory) -> None:
    """Make an executor available as `--executor NAME`."""
    _REGISTRY[name] = factory


def registered() -> dict[str, Factory]:
    return _REGISTRY
