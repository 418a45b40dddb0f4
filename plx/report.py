"""Everything plx shows on a terminal: live progress, plain progress lines, tables, JSON."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import IO, Any

from .history import count_states

STATE_ORDER = ["pending", "running", "success", "cached", "failed", "timeout", "skipped", "canceled"]
COLORS = {"success": "green", "cached": "cyan", "failed": "red", "timeout": "red", "skipped": "yellow", "canceled": "yellow", "running": "blue", "interrupted": "red"}


def table(rows: list[list[Any]], headers: list[str]) -> str:
    from tabulate import tabulate

    return str(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


def dump_json(data: Any, out: IO[str] | None = None) -> None:
    (out or sys.stdout).write(json.dumps(data, indent=2, default=str) + "\n")


def summary_line(record: dict[str, Any]) -> str:
    c = count_states(record["nodes"])
    parts = [f"{c.get('success', 0)} run", f"{c.get('cached', 0)} cached", f"{c.get('failed', 0) + c.get('timeout', 0)} failed", f"{c.get('skipped', 0)} skipped"]
    if c.get("canceled"):
        parts.append(f"{c['canceled']} canceled")
    return f"run {record['id']} {record['status']}: " + ", ".join(parts) + f" in {record.get('duration') or 0:.2f} s"


class PlainReporter:
    """One line per node state change, for CI logs and pipes."""

    def __init__(self, out: IO[str] | None = None, quiet: bool = False):
        self.out = out or sys.stderr
        self.quiet = quiet
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.pending: list[str] = []
        self._progress: TransferProgress | None = None

    def run_started(self, title: str, nodes: list[str], jobs: int) -> None:
        self.t0 = time.monotonic()
        if not self.quiet:
            self._line(f"run {title}: {len(nodes)} nodes, -j {jobs}")
            self.flush()

    def node_state(self, node: str, state: str, info: dict[str, Any]) -> None:
        if self.quiet or state == "pending":
            return
        if state == "interrupt":
            self._line("interrupted: stopping running nodes (Ctrl-C again to kill at once)")
            self.flush()
            return
        extra = ""
        if info.get("reason"):
            extra = f" ({info['reason']})"
        elif info.get("duration") and state not in ("cached", "running"):
            extra = f" ({info['duration']:.2f} s)"
        elif info.get("source") == "remote":
            extra = " (from the remote)"
        self._line(f"{state:<8} {node}{extra}")

    def warning(self, text: str) -> None:
        self._line(f"plx: warning: {text}")
        self.flush()

    def transfer(self, label: str, done: int, total: int) -> None:
        """A large remote transfer's progress: shown on a terminal only (a CI log gets no progress bars)."""
        if self._progress is None:
            self._progress = TransferProgress(self.out)
        self._progress(label, done, total)

    def _line(self, text: str) -> None:
        # Kept until flush(), which the engine calls at least every 0.1 s: a write per line
        # costs more than the rest of what the loop does for a short node.
        with self.lock:
            self.pending.append(f"[{time.monotonic() - self.t0:7.2f}s] {text}\n")

    def flush(self) -> None:
        with self.lock:
            if self.pending:
                self.out.write("".join(self.pending))
                self.out.flush()
                self.pending.clear()

    def run_finished(self, records: list[dict[str, Any]]) -> None:
        self.flush()
        for record in records:
            failed = [(n, d) for n, d in record["nodes"].items() if d.get("state") in ("failed", "timeout")]
            for n, d in failed:
                self.out.write(f"  {d['state']}: {n}: {d.get('reason', '')}; see `plx log {record['id']} {n} --stderr`\n")
            self.out.write(summary_line(record) + (f" [{record['sweep']}]" if record.get("sweep") else "") + "\n")
        self.out.flush()


class LiveReporter:
    """A rich live display: running nodes with elapsed time and counts by state."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.states: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.run_id = ""
        self.graph = ""
        self.lock = threading.Lock()
        self.console = Console(stderr=True)
        self.transfers: dict[str, tuple[int, int]] = {}  # large remote transfers under way
        self.live = Live(console=self.console, refresh_per_second=8, transient=True, get_renderable=self._render)

    def run_started(self, title: str, nodes: list[str], jobs: int) -> None:
        self.run_id, self.graph = title, ""
        self.states = dict.fromkeys(nodes, "pending")
        self.live.start()

    def node_state(self, node: str, state: str, info: dict[str, Any]) -> None:
        if state == "interrupt":
            self.console.print("[yellow]interrupted: stopping running nodes (Ctrl-C again to kill at once)[/]")
            return
        with self.lock:
            self.states[node] = state
            if state == "running":
                self.started[node] = time.monotonic()
        if state in ("success", "failed", "timeout"):
            color = COLORS.get(state, "white")
            extra = f" ({info['reason']})" if info.get("reason") else (f" {info['duration']:.2f} s" if info.get("duration") else "")
            self.console.print(f"[{color}]{state:<8}[/] {node}{extra}")

    def transfer(self, label: str, done: int, total: int) -> None:
        with self.lock:
            if done >= total:
                self.transfers.pop(label, None)
            else:
                self.transfers[label] = (done, total)

    def warning(self, text: str) -> None:
        from rich.markup import escape

        self.console.print(f"[yellow]plx: warning:[/] {escape(text)}", highlight=False)

    def _render(self) -> Any:
        from rich.table import Table

        with self.lock:
            c: dict[str, int] = {}
            for s in self.states.values():
                c[s] = c.get(s, 0) + 1
            running = [n for n, s in self.states.items() if s == "running"]
        t = Table.grid(padding=(0, 2))
        now = time.monotonic()
        for n in running[:12]:
            t.add_row("[blue]running[/]", n, f"{now - self.started.get(n, now):6.1f}s")
        if len(running) > 12:
            t.add_row("", f"... and {len(running) - 12} more", "")
        with self.lock:
            transfers = list(self.transfers.items())
        for label, (done, total) in transfers[:4]:
            t.add_row("[magenta]remote[/]", label, f"{done / 1e6:,.0f}/{total / 1e6:,.0f} MB")
        totals = "  ".join(f"[{COLORS.get(s, 'white')}]{s} {c[s]}[/]" for s in STATE_ORDER if c.get(s))
        t.add_row("", f"{self.run_id}: {totals}", "")
        return t

    def run_finished(self, records: list[dict[str, Any]]) -> None:
        self.live.stop()
        PlainReporter(out=self.console.file).run_finished(records)


class TransferProgress:
    """Progress of large remote transfers on a terminal: one line rewritten in place (nothing without a terminal)."""

    def __init__(self, out: IO[str] | None = None) -> None:
        self.out = out or sys.stderr
        self.enabled = self.out.isatty()
        self.last = 0.0
        self.lock = threading.Lock()

    def __call__(self, label: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        with self.lock:
            if done < total and now - self.last < 0.2:
                return
            self.last = now
            self.out.write(f"\r\x1b[K{label}: {done / 1e6:,.1f} / {total / 1e6:,.1f} MB" + ("\n" if done >= total else ""))
            self.out.flush()


def warn(text: str) -> None:
    """A warning on stderr, for commands that have no run reporter."""
    sys.stderr.write(f"plx: warning: {text}\n")
    sys.stderr.flush()


def reporter_for(json_mode: bool) -> Any:
    """Live progress on a terminal; plain lines otherwise (CI, pipes)."""
    if sys.stderr.isatty() and not json_mode:
        return LiveReporter()
    return PlainReporter()
