"""`python -m plx` is the `plx` command."""

from .cli import main

main()
