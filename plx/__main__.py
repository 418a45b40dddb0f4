"""`python -m plx` is the `plx` command."""

from .entry import main

main()
