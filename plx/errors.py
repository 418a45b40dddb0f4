"""The PlxError family: every mistake a user can make surfaces as one of these."""

from __future__ import annotations

from .structs import record


@record(frozen=True)
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


def disk_full_message(where: object) -> str:
    return f"no space left on the disk holding {where} (or it cannot be written); free some space (`plx cache gc` removes what no run needs) and run again"


def is_disk_full(exc: BaseException) -> bool:
    """An OSError (ENOSPC, EDQUOT) or an SQLite error that says the disk or the quota is full."""
    import errno
    import sqlite3

    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, sqlite3.Error):
        # SQLITE_FULL; SQLITE_IOERR is what SQLite reports when it cannot grow its shared-memory
        # file on a full tmpfs: both are the disk's to fix.
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and (code & 0xFF) in (10, 13) or "disk is full" in str(exc) or "disk I/O error" in str(exc)
    return False


def is_locked_db(exc: BaseException) -> bool:
    """An SQLite error that only means another connection holds the file for a moment."""
    import sqlite3

    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None) or 0
    return (code & 0xFF) in (5, 6) or "locked" in str(exc) or "busy" in str(exc)  # BUSY, LOCKED and their extended codes


def is_unwritable_db(exc: BaseException) -> bool:
    """An SQLite error that means plx may not write the database or its folder (a read-only mount,
    another user's store): CANTOPEN (SQLite opens its files for writing) or READONLY."""
    import sqlite3

    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None) or 0
    return (code & 0xFF) in (8, 14) or "unable to open database file" in str(exc) or "readonly database" in str(exc)


def is_damaged_db(exc: BaseException) -> bool:
    """An SQLite error that means the database file itself is damaged (not a full disk, not a lock)."""
    import sqlite3

    if not isinstance(exc, sqlite3.DatabaseError) or is_disk_full(exc):
        return False
    return getattr(exc, "sqlite_errorcode", None) in (11, 26) or "malformed" in str(exc) or "not a database" in str(exc)  # CORRUPT, NOTADB


def warn(message: str, kind: str = "warning") -> None:
    """Tell the user something (on stderr) from code that otherwise does not print: a damaged
    derived file that plx set aside and rebuilt, a record it had to skip."""
    import sys

    sys.stderr.write(f"plx: {kind}: {message}\n")
    sys.stderr.flush()
