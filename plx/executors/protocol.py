"""The protocol every executor follows (plx.executors.base.Executor): what the engine calls, what it expects back."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from .base import Job


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
