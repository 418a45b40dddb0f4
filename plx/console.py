"""What the plx command does around every command, without typer: errors to exit codes, the way out,
and `plx run` itself, so that the command line of a plain run is served without importing typer.

cli.py wires these to typer. entry.py hands `plx run GRAPH [NODE]... [-j N] [--no-cache] [-k] [--json]`
(the command line of nearly every run) straight to `run_command`: typer's import and parsing cost
~12 ms of every run, a tenth of a no-op. Any other command line, `--help` and every mistake go to
typer. tests/unit/test_console.py checks that both read each such command line the same way.
"""

from __future__ import annotations

import errno
import functools
import gc
import os
import sys

from . import procs
from .errors import PlxError, UsageError, ValidationError

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])


def err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


_REFUSED = (errno.EACCES, errno.EPERM, errno.EROFS)


def handle_errors(fn: F) -> F:
    """A user's mistake prints `plx: error: ...` and exits with its code; a plx bug keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            for d in sorted(exc.diagnostics, key=lambda d: (d.file, d.line or 0, d.col or 0)):
                err(f"plx: error: {d}")
            raise SystemExit(exc.exit_code) from None
        except PlxError as exc:
            err(f"plx: error: {exc}")
            raise SystemExit(exc.exit_code) from None
        except KeyboardInterrupt:
            err("plx: interrupted")
            raise SystemExit(130) from None
        except BrokenPipeError:
            raise SystemExit(0) from None
        except Exception as exc:  # a full disk is the user's to fix, not a plx bug: a message, no traceback
            from .errors import disk_full_message, is_disk_full

            if isinstance(exc, OSError) and exc.errno in _REFUSED and exc.filename:
                # A file or folder plx may not write (an output file, a folder deep in a foreign store):
                # the path and why, never a traceback. The store's own folders say more (Store).
                err(f"plx: error: {exc.filename}: {exc.strerror}")
                raise SystemExit(1) from None
            if not is_disk_full(exc):
                raise
            # No file name: the store's databases, or plx's own output (`plx log > file` on a full disk).
            err(f"plx: error: {disk_full_message(getattr(exc, 'filename', None) or 'the store or the output')}")
            raise SystemExit(1) from None

    return wrapper  # type: ignore[return-value]


def serve(command: Callable[[], Any]) -> None:
    """Run the whole command line (typer's app, or a run entry.py read itself) as the plx process."""
    # A 100,000-node graph makes millions of small objects that live until plx exits; at the default
    # threshold (700 allocations) the collector walks them thousands of times (~30 % of a validate).
    gc.set_threshold(100_000, 50, 100)
    procs.own_process()
    try:
        command()
    except SystemExit as exc:
        _leave_now(exc.code)
        raise
    except BrokenPipeError:  # outside a command (`plx --help | head`): handle_errors covers the commands
        os._exit(0)
    except OSError as exc:  # the output itself cannot be written (`plx --version > /dev/full`)
        err(f"plx: error: cannot write the output: {exc.strerror or exc}")
        os._exit(1)
    _leave_now(0)


def _leave_now(code: object) -> None:
    """End the process at once when the command is done: Python's own teardown (finalizing modules,
    freeing a run's objects one by one) takes tens of milliseconds, a fifth of a no-op run's time.
    Only when nothing else can still be working: every file plx writes is closed by the command
    itself, so what is left to flush is the two output streams (and coverage's data, under the tests)."""
    import threading

    if not (code is None or isinstance(code, int)) or any(t.is_alive() and not t.daemon and t is not threading.current_thread() for t in threading.enumerate()):
        return  # a message to print, or a thread still working: the usual way out
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # closed when plx started (`plx ... >&-`)
            continue
        try:
            stream.flush()
        except BrokenPipeError:  # `plx log | head`: nothing more can be said
            pass
        except (OSError, ValueError):  # a full disk, say: the usual way out says so (exit 120)
            return
    cov = sys.modules.get("coverage")
    current = getattr(getattr(cov, "Coverage", None), "current", None)
    if current is not None and (c := current()) is not None:
        c.stop()
        c.save()
    os._exit(code or 0)


# ---- plx run ----------------------------------------------------------------------

# `plx run`'s parameters as cli.run declares them, with their defaults (test_console checks that they agree).
RUN_DEFAULTS: dict[str, Any] = {
    "graph": None,
    "nodes": [],
    "jobs": None,
    "param": [],
    "input_": [],
    "sweep": [],
    "no_cache": False,
    "keep_going": False,
    "dry_run": False,
    "rev": None,
    "executor": "local",
    "scheduler": None,
    "as_json": False,
    "remote": None,
    "no_remote": False,
    "name": None,
    "tag": [],
    "note": None,
}
_FLAGS = {"--no-cache": "no_cache", "--keep-going": "keep_going", "-k": "keep_going", "--json": "as_json"}


def quick_run_args(argv: list[str]) -> dict[str, Any] | None:
    """`plx run`'s parameters from a plain command line: GRAPH, NODEs, -j/--jobs N (N >= 1), --no-cache,
    -k/--keep-going, --json, each at most once. None for anything else (typer then reads it, and
    says what is wrong with it)."""
    if len(argv) < 2 or argv[0] != "run":
        return None
    args = {k: list(v) if isinstance(v, list) else v for k, v in RUN_DEFAULTS.items()}  # lists of its own: never RUN_DEFAULTS
    seen: set[str] = set()
    positional: list[str] = []
    i = 1
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-") or a == "-":
            positional.append(a)
        elif a in _FLAGS and _FLAGS[a] not in seen:
            seen.add(_FLAGS[a])
            args[_FLAGS[a]] = True
        elif "jobs" not in seen and (a in ("-j", "--jobs") or a.startswith(("-j", "--jobs="))):
            if a in ("-j", "--jobs"):
                i += 1
                value = argv[i] if i < len(argv) else ""
            else:
                value = a[len("--jobs=") :] if a.startswith("--jobs=") else a[2:]
            if not (value.isascii() and value.isdigit() and value[0] != "0"):
                return None  # typer's message for a value that is no count
            seen.add("jobs")
            args["jobs"] = int(value)
        else:
            return None
        i += 1
    if not positional:
        return None
    args["graph"], args["nodes"] = positional[0], positional[1:]
    return args


@handle_errors
def run_command(
    graph: str,
    nodes: list[str],
    jobs: Optional[int],
    param: list[str],
    input_: list[str],
    sweep: list[str],
    no_cache: bool,
    keep_going: bool,
    dry_run: bool,
    rev: Optional[str],
    executor: str,
    scheduler: Optional[str],
    as_json: bool,
    remote: Optional[str],
    no_remote: bool,
    name: Optional[str],
    tag: list[str],
    note: Optional[str],
) -> None:
    """`plx run`: validate, plan and run a graph (or print its plan), then its summary and exit code."""
    from . import commands
    from .records import RunState, public_run
    from .report import dry_run_table, dump_json, reporter_for, sweep_table

    project, lib = commands.open_project()
    path = commands.graph_path(project, graph)
    if dry_run:
        if rev:
            project, lib, path, _ = commands.at_revision(project, path, rev)
        rows = commands.dry_run(project, lib, path, targets=nodes or [], params=param, inputs=input_, sweeps=sweep, remote=remote, no_remote=no_remote)
        if as_json:
            dump_json(rows)
            return
        text, counts = dry_run_table(rows, bool(sweep))
        print(text)
        err(counts)
        return
    if executor not in ("local", "dask"):
        raise UsageError(f"--executor {executor}: choose local or dask")
    records = commands.run_many(
        project,
        lib,
        path,
        targets=nodes or [],
        params=param,
        inputs=input_,
        jobs=jobs,
        no_cache=no_cache,
        keep_going=keep_going,
        reporter=reporter_for(as_json),
        argv=redacted(sys.argv[1:]),
        sweeps=sweep,
        rev=rev,
        executor=executor,
        scheduler=scheduler,
        remote=remote,
        no_remote=no_remote,
        labels=run_labels(name, tag, note),
    )
    if not sweep:
        finish_run(records[0], as_json)
        return
    if as_json:
        dump_json([public_run(r) for r in records])
    else:
        text, note_text = sweep_table(records, [commands.output_metrics(project, r) for r in records])
        if note_text:
            err(note_text)
        print(text)
    if any(r["status"] != RunState.SUCCESS for r in records):
        raise SystemExit(1)


def redacted(argv: list[str]) -> list[str]:
    """The command line as recorded: a password inside a --remote URL is never written to the history."""
    if not any("://" in a for a in argv):
        return argv
    from .remote import redact  # only then: importing it costs a plain run's start-up a few milliseconds

    return [redact(a) if "://" in a else a for a in argv]


def run_labels(name: Optional[str], tags: list[str], note: Optional[str]) -> dict[str, Any]:
    from .tracking import check_labels, merge_tags

    check_labels(name, tags, note)
    return {"name": name, "tags": merge_tags(tags), "note": note}


def finish_run(record: dict[str, Any], as_json: bool) -> None:
    """Print a finished run as JSON if asked, and exit 1 unless it succeeded."""
    from .records import RunState, public_run
    from .report import dump_json

    if as_json:
        dump_json(public_run(record))
    if record["status"] != RunState.SUCCESS:
        raise SystemExit(1)
