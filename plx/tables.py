"""CSV helpers for the bundled table operations: one reading of a table, and clear failures.

Operations in `operations/` run under the interpreter plx runs under, so they import this.
A problem is reported on stderr as one line naming the file and what is wrong, with exit 2.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any, NoReturn


def fail(message: str) -> NoReturn:
    """Stop the node with a message a person can act on."""
    sys.stderr.write(f"error: {message}\n")
    raise SystemExit(2)


def read_table(path: str, need: list[str] | tuple[str, ...] = ()) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a CSV file; a ragged or empty table, or a missing column, fails the node."""
    name = Path(path).name
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                fail(f"{name} is empty: a CSV table needs a header line")
            if len(set(header)) != len(header):
                fail(f"{name}: duplicate column names in the header: {header}")
            rows = []
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    fail(f"{name} is malformed: line {reader.line_num} has {len(row)} fields, the header has {len(header)}")
                rows.append(dict(zip(header, row, strict=True)))
    except UnicodeDecodeError:
        fail(f"{name} is not UTF-8 text")
    except csv.Error as exc:
        fail(f"{name} is malformed: {exc}")
    missing = [c for c in need if c not in header]
    if missing:
        fail(f"{name} has no column {', '.join(repr(c) for c in missing)} (columns: {', '.join(header)})")
    return header, rows


def write_table(path: str, header: list[str], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def number(value: str) -> float | None:
    """A cell as a number, or None when it is not one (empty cells included)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def sort_key(value: str) -> tuple[int, Any]:
    """Numbers sort numerically and before text, text alphabetically."""
    n = number(value)
    return (0, n) if n is not None else (1, value)


def fmt(x: float) -> str:
    """Integral floats without '.0', so counts and sums of integers stay integers."""
    return str(int(x)) if float(x).is_integer() else repr(round(x, 10))
