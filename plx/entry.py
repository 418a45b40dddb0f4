"""The `plx` console script: the process's settings first, then the command line interface (cli.py)."""

from __future__ import annotations

import gc


def main() -> None:
    # The collector's threshold cli.main sets (see why there), set before importing it: the imports
    # (typer, plx's modules) alone trigger collections that find nothing (~3 ms of every command).
    gc.set_threshold(100_000, 50, 100)
    from .cli import main as cli_main

    cli_main()
