"""Where node processes run: the local process pool, or a Dask distributed cluster (see base.py for the interface)."""

from __future__ import annotations

import queue

from ..errors import UsageError
from .base import register, registered

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any

    from .protocol import Executor


def _local(opts: Any, results: queue.Queue[Any]) -> Executor:
    from .local import LocalExecutor

    return LocalExecutor(results, opts.jobs)


def _dask(opts: Any, results: queue.Queue[Any]) -> Executor:
    if not opts.scheduler:
        raise UsageError("--executor dask needs --scheduler tcp://HOST:PORT")
    from .dask import DaskExecutor

    return DaskExecutor(results, opts.scheduler, remote=getattr(opts, "remote", None))


register("local", _local)
register("dask", _dask)


def make_executor(opts: Any, results: queue.Queue[Any]) -> Executor:
    """The executor named by the run options; each reports Finished events on `results`."""
    factory = registered().get(opts.executor)
    if factory is None:
        raise UsageError(f"unknown executor '{opts.executor}' ({' or '.join(registered())})")
    return factory(opts, results)
