"""Where node processes run: the local process pool, or a Dask distributed cluster."""

from __future__ import annotations

import queue
from typing import Any

from ..errors import UsageError


def make_executor(opts: Any, results: queue.Queue[Any]) -> Any:
    """The executor named by the run options; both report Finished events on `results`."""
    if opts.executor == "local":
        from .local import LocalExecutor

        return LocalExecutor(results, opts.jobs)
    if opts.executor == "dask":
        if not opts.scheduler:
            raise UsageError("--executor dask needs --scheduler tcp://HOST:PORT")
        from .dask import DaskExecutor

        return DaskExecutor(results, opts.scheduler, remote=getattr(opts, "remote", None))
    raise UsageError(f"unknown executor '{opts.executor}' (local or dask)")
