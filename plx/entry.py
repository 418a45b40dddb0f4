"""The `plx` console script: the process's settings first, then `plx run` as console.py reads it, or typer (cli.py)."""

from __future__ import annotations

import gc
import sys


def main() -> None:
    # The collector's threshold console.serve sets (see why there), set before the imports: they
    # (typer, plx's modules) alone trigger collections that find nothing (~3 ms of every command).
    gc.set_threshold(100_000, 50, 100)
    from .console import quick_run_args, run_command, serve

    args = quick_run_args(sys.argv[1:])
    if args is not None:  # `plx run GRAPH ...`, plainly written: without typer's ~12 ms
        serve(lambda: run_command(**args))
        return
    from .cli import main as cli_main

    cli_main()
