"""The PlxError family: every mistake a user can make surfaces as one of these."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a file, located as precisely as we know."""

    file: str
    line: int | None
    col: int | None
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        text = f"{where}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class PlxError(Exception):
    """A user-facing error: shown as `plx: error: ...`, never with a traceback."""

    exit_code = 1


class UsageError(PlxError):
    """The command was called wrong (exit 2): unknown option, missing GRAPH file."""

    exit_code = 2


class ValidationError(PlxError):
    """One or more files are invalid; carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics))


class RunError(PlxError):
    """A run cannot start or cannot be found (missing input file, unknown run id)."""


class Interrupted(PlxError):
    """The run was stopped by Ctrl-C or SIGTERM (exit 130)."""

    exit_code = 130


def did_you_mean(word: str, choices: list[str] | set[str] | tuple[str, ...]) -> str | None:
    """Return a 'did you mean ...?' hint for a close match among choices, if any."""
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
