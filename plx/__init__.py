"""plx: reproducible data-science experiments as YAML graphs, run in parallel and cached."""

from __future__ import annotations

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

__all__ = ["Graph", "Operation", "Run", "load", "run", "__version__"]


def __getattr__(name: str) -> Any:
    # The Python API is imported on first use so that `plx --help` stays fast.
    if name in ("Graph", "Operation", "Run", "load", "run"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'plx' has no attribute {name!r}")
