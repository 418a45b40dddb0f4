"""Everything plx shows on a terminal: live progress, plain progress lines, tables, JSON."""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time

from .records import NodeState, attempts_of, count_states

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import IO, Any

    from .records import RunData

STATE_ORDER = ["pending", "running", "success", "cached", "failed", "timeout", "skipped", "canceled"]
COLORS = {"success": "green", "cached": "cyan", "failed": "red", "timeout": "red", "skipped": "yellow", "canceled": "yellow", "running": "blue", "interrupted": "red"}


def table(rows: list[list[Any]], headers: list[str]) -> str:
    if len(rows) > FAST_TABLE_ROWS:
        fast = _plain_table(rows, headers)
        if fast is not None:
            return fast
    from tabulate import tabulate

    return str(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))


FAST_TABLE_ROWS = 500  # tabulate takes ~70 µs a row: a 100,000-node --dry-run table would take seconds


def _plain_table(rows: list[list[Any]], headers: list[str]) -> str | None:
    """tabulate's "simple" table, the same text, for ASCII single-line text cells; None for anything else."""
    cells = [["" if c is None else c.strip() if isinstance(c, str) else None for c in row] for row in rows]
    if any(len(row) != len(headers) or None in row for row in cells):
        return None
    text = "\n".join("\t".join(row) for row in cells)  # type: ignore[arg-type]
    if not text.isascii() or "\n" in "".join(headers) or any("\n" in c for row in cells for c in row if c):  # type: ignore[operator]
        return None
    widths = [max(len(h) + 2, max((len(row[i]) for row in cells), default=0)) for i, h in enumerate(headers)]  # type: ignore[arg-type]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]  # type: ignore[union-attr]
    return "\n".join(lines)


def dump_json(data: Any, out: IO[str] | None = None) -> None:
    (out or sys.stdout).write(json.dumps(data, indent=2, default=str) + "\n")


def summary_line(record: dict[str, Any]) -> str:
    c = count_states(record["nodes"])
    parts = [f"{c.get('success', 0)} run", f"{c.get('cached', 0)} cached", f"{c.get('failed', 0) + c.get('timeout', 0)} failed", f"{c.get('skipped', 0)} skipped"]
    if c.get("canceled"):
        parts.append(f"{c['canceled']} canceled")
    return f"run {record['id']} {record['status']}: " + ", ".join(parts) + f" in {record.get('duration') or 0:.2f} s"


class PlainReporter:
    """One line per node state change, for CI logs and pipes; routine changes in bulk become one line."""

    BATCH = 20  # more nodes than this of one state since the last summary: one summary line
    EVERY = 1.0  # seconds between summaries of routine changes (sooner when another line is printed)
    LARGE = 1000  # a run of more nodes always summarizes routine changes, every EVERY_LARGE seconds
    EVERY_LARGE = 10.0
    SLOW = 5.0  # seconds: a node running this long gets its own line (and its success, with its duration)
    BATCHED = ("running", "success", "cached", "skipped", "canceled")

    def __init__(self, out: IO[str] | None = None, quiet: bool = False):
        self.out = out or sys.stderr
        self.quiet = quiet
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.pending: list[str] = []
        # Plain progress scales: routine changes (started, succeeded quickly, served from the cache,
        # skipped) are held for up to EVERY seconds; more than BATCH of one state then become one line.
        # Failures, retries and slow nodes keep their own lines, at once.
        self.batched: dict[str, list[tuple[str, float, str]]] = {}  # state -> (node, when, what its line adds)
        self.quietly_running: dict[str, float] = {}  # node -> start time, for nodes started within a summary
        self.ended: set[str] = set()  # nodes that ended since the last summary
        self.summarized = time.monotonic()
        self._progress: TransferProgress | None = None

    def run_started(self, title: str, nodes: list[str], jobs: int) -> None:
        self.t0 = time.monotonic()
        if len(nodes) > self.LARGE:
            self.BATCH, self.EVERY = 0, max(self.EVERY, self.EVERY_LARGE)
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
        elif state == "running" and (info.get("attempt") or 0) > 1:
            extra = f" (attempt {info['attempt']})"
        elif info.get("source") == "remote":
            extra = " (from the remote)"
        with self.lock:
            if state != "running":
                self.quietly_running.pop(node, None)
                self.ended.add(node)
            routine = state in self.BATCHED and not info.get("reason") and (info.get("attempt") or 1) == 1 and info.get("source") != "remote"
            if routine and not (info.get("duration") and info["duration"] >= self.SLOW):
                # the line itself is made only if it is printed (a summary line usually stands for it)
                self.batched.setdefault(state, []).append((node, time.monotonic(), extra))
                return
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
            self.pending.append(self._stamp(text))

    def _stamp(self, text: str, at: float | None = None) -> str:
        return f"[{(time.monotonic() if at is None else at) - self.t0:7.2f}s] {text}\n"

    def flush(self, final: bool = False) -> None:
        now = time.monotonic()
        with self.lock:
            if final or self.pending or now - self.summarized >= self.EVERY:
                batched, self.batched, self.summarized = self.batched, {}, now
            else:
                batched = {}
            timed: list[tuple[float, str]] = []  # printed in the order they happened, not grouped by state
            for state in self.BATCHED:
                entries = batched.get(state)
                if not entries:
                    continue
                if len(entries) <= self.BATCH:
                    timed.extend((at, self._stamp(f"{state:<8} {node}{extra}", at)) for node, at, extra in entries)
                    continue
                many = f"{len(entries)} nodes ({entries[0][0]} … {entries[-1][0]})" if len(entries) > 1 else f"1 node ({entries[0][0]})"
                timed.append((entries[0][1], self._stamp(f"{state:<8} {many}")))
                if state == "running":
                    self.quietly_running.update((node, now) for node, _at, _extra in entries if node not in self.ended)
            if batched:
                self.ended.clear()
            timed.sort(key=lambda item: item[0])
            self.pending[:0] = [line for _at, line in timed]  # before the lines of failures etc. that came after them
            for node, since in list(self.quietly_running.items()):
                if now - since >= self.SLOW:  # a node started within a summary line that is taking long: named
                    del self.quietly_running[node]
                    self.pending.append(self._stamp(f"running  {node} ({now - since:.0f} s so far)"))
        with self.lock:
            if self.pending:
                self.out.write("".join(self.pending))
                self.out.flush()
                self.pending.clear()

    def run_finished(self, records: list[dict[str, Any]]) -> None:
        self.flush(final=True)
        for record in records:
            failed = [(n, d) for n, d in record["nodes"].items() if d.get("state") in ("failed", "timeout")]
            for n, d in failed:
                # map[B] is a glob to a shell; the log named is the one that explains the failure
                self.out.write(f"  {d['state']}: {n}: {d.get('reason', '')}; see `plx log {record['id']} {shlex.quote(n)} --{d.get('log', 'stderr')}`\n")
            self.out.write(summary_line(record) + (f" [{record['sweep']}]" if record.get("sweep") else "") + "\n")
        self.out.flush()


class LiveReporter:
    """A rich live display: a progress bar of nodes done with an ETA, running nodes with their elapsed
    time and the last line they printed, and counts by state."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.states: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.jobs = 1
        self.where: dict[str, tuple[str, str, str]] = {}  # node -> (run id, node id in the run, operation hash)
        self.store: Any = None
        self.past: dict[str, dict[str, float]] = {"key": {}, "op": {}, "node": {}}
        self.keys: dict[str, str] = {}
        self.took: list[float] = []  # durations of nodes that ran in this run
        self.last_lines: dict[str, tuple[float, str]] = {}
        self.run_id = ""
        self.graph = ""
        self.lock = threading.Lock()
        self.console = Console(stderr=True)
        self.transfers: dict[str, tuple[int, int]] = {}  # large remote transfers under way
        self.live = Live(console=self.console, refresh_per_second=8, transient=True, get_renderable=self._render)

    def run_started(self, title: str, nodes: list[str], jobs: int) -> None:
        self.run_id, self.graph = title, ""
        self.states = dict.fromkeys(nodes, "pending")
        self.jobs = max(1, jobs)
        self.live.start()

    def track(self, store: Any, graph: str, where: dict[str, tuple[str, str, str]]) -> None:
        """Called by the engine: where each node's logs are and its operation, and the recorded
        durations that the ETA is estimated from."""
        from .tracking import duration_history

        self.store, self.where = store, where

        def read() -> None:  # in the background: large records take a while to parse, the run must not wait
            try:
                self.past = duration_history(store, graph)
            except (OSError, ValueError, KeyError, TypeError):
                pass  # no estimate: the ETA waits for this run's own durations

        threading.Thread(target=read, daemon=True).start()

    def node_state(self, node: str, state: str, info: dict[str, Any]) -> None:
        from rich.markup import escape

        if state == "interrupt":
            self.console.print("[yellow]interrupted: stopping running nodes (Ctrl-C again to kill at once)[/]")
            return
        with self.lock:
            self.states[node] = state
            if state == "running":
                self.started[node] = time.monotonic()
                if info.get("cache_key"):
                    self.keys[node] = info["cache_key"]
            elif state == "success" and isinstance(info.get("duration"), (int, float)):
                self.took.append(info["duration"])
        if state == "running" and (info.get("attempt") or 0) > 1:
            self.console.print(f"[yellow]retry   [/] {escape(node)} (attempt {info['attempt']})")
        if state in ("success", "failed", "timeout"):
            color = COLORS.get(state, "white")
            extra = f" ({info['reason']})" if info.get("reason") else (f" {info['duration']:.2f} s" if info.get("duration") else "")
            self.console.print(f"[{color}]{state:<8}[/] {escape(node)}{escape(extra)}")  # ids such as train[model=rf] are not markup

    def _estimate(self, node: str) -> float | None:
        """A node's expected duration: the same cache key's, else the same operation's, else the same
        node's in earlier runs of the graph (recorded medians)."""
        key = self.keys.get(node)
        if key and key in self.past["key"]:
            return self.past["key"][key]
        run_node = self.where.get(node)
        if run_node:
            if run_node[2] in self.past["op"]:
                return self.past["op"][run_node[2]]
            if run_node[1] in self.past["node"]:
                return self.past["node"][run_node[1]]
        return None

    def eta(self, now: float) -> float | None:
        """Seconds left: the expected durations of running and pending nodes placed on the -j slots
        (None: no estimate for some node)."""
        with self.lock:
            waiting = [n for n, s in self.states.items() if s == "pending"]
            running = [n for n, s in self.states.items() if s == "running"]
        if not waiting and not running:
            return 0.0
        import heapq

        fallback = sum(self.took) / len(self.took) if self.took else None
        slots = [0.0] * self.jobs  # when each of the -j slots is free, placing nodes in order (dependencies aside)
        for n in running + waiting:
            est = self._estimate(n)
            if est is None:
                est = fallback
            if est is None:
                return None
            if n in self.started and self.states.get(n) == "running":
                est = max(est - (now - self.started[n]), 0.0)
            heapq.heapreplace(slots, slots[0] + est)
        return max(slots)

    def _last_line(self, node: str, now: float) -> str:
        """The last line a running node printed (stdout or stderr, whichever was written last),
        read at most every 0.25 s; control characters removed so a node cannot drive the terminal."""
        cached = self.last_lines.get(node)
        if cached and now - cached[0] < 0.25:
            return cached[1]
        line = ""
        where = self.where.get(node)
        if where and self.store is not None:
            import os
            import re

            best = -1.0
            for stream in ("stdout", "stderr"):
                path = self.store / "runs" / where[0] / "logs" / f"{where[1]}.{stream}"
                try:
                    st = os.stat(path)
                    if st.st_mtime < best:
                        continue
                    with open(path, "rb") as f:
                        f.seek(max(0, st.st_size - 2048))
                        text = f.read().decode("utf-8", errors="replace")
                except OSError:
                    continue
                # escape sequences (CSI, OSC) and other control characters out, then the last line left
                text = re.sub(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|[\x00-\x09\x0b-\x1f\x7f]", "", text)
                lines = [x.strip() for x in text.split("\n") if x.strip()]
                if lines:
                    best, line = st.st_mtime, lines[-1]
        line = line if len(line) <= 70 else line[:69] + "…"
        self.last_lines[node] = (now, line)
        return line

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
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        with self.lock:
            c: dict[str, int] = {}
            for s in self.states.values():
                c[s] = c.get(s, 0) + 1
            running = [n for n, s in self.states.items() if s == "running"]
        t = Table.grid(padding=(0, 2))
        now = time.monotonic()
        for n in running[:12]:
            t.add_row("[blue]running[/]", Text(n), f"{now - self.started.get(n, now):6.1f}s", Text(self._last_line(n, now), style="dim"))
        if len(running) > 12:
            t.add_row("", f"... and {len(running) - 12} more", "", "")
        total = len(self.states)
        done = sum(v for k, v in c.items() if k not in ("pending", "running"))
        eta = self.eta(now)
        eta_text = "ETA ?" if eta is None else f"ETA {_fmt_secs(eta)}"
        with self.lock:
            transfers = list(self.transfers.items())
        for label, (moved, size) in transfers[:4]:
            t.add_row("[magenta]remote[/]", label, f"{moved / 1e6:,.0f}/{size / 1e6:,.0f} MB", "")
        bar = Table.grid(padding=(0, 1))
        totals = "  ".join(f"[{COLORS.get(s, 'white')}]{s} {c[s]}[/]" for s in STATE_ORDER if c.get(s))
        bar.add_row(ProgressBar(total=max(total, 1), completed=done, width=32), f"{done}/{total} nodes", f"[bold]{eta_text}[/]", f"  {self.run_id}: {totals}")
        return Group(t, bar) if running or transfers else bar

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


def _fmt_secs(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def reporter_for(json_mode: bool) -> Any:
    """Live progress on a terminal; plain lines otherwise (CI, pipes)."""
    if sys.stderr.isatty() and not json_mode:
        return LiveReporter()
    return PlainReporter()


# ---- the tables of plx commands (cli.py prints what these return) ----------------------------


def ops_table(rows: list[dict[str, Any]]) -> str:
    return table(
        [[r["name"], r["runner"], ", ".join(r["inputs"]), ", ".join(r["params"]), ", ".join(r["outputs"]), r["title"]] for r in rows],
        ["name", "runner", "inputs", "params", "outputs", "title"],
    )


def dry_run_table(rows: list[dict[str, Any]], sweep: bool) -> tuple[str, str]:
    """`plx run --dry-run`: (the table, the closing count line)."""
    first = ["sweep"] if sweep else []
    text = table([[*(r[c] for c in first), r["node"], r["action"], "; ".join(r["why"])] for r in rows], [*first, "node", "action", "why"])
    n_run = sum(1 for r in rows if r["action"] == "run" and not r.get("shared"))
    n_shared = sum(1 for r in rows if r.get("shared"))
    n_cached = sum(1 for r in rows if r["action"] == "cached")
    n_remote = sum(1 for r in rows if r.get("source") == "remote")
    return text, f"{n_run} would run, {n_cached} cached" + (f" ({n_remote} from the remote)" if n_remote else "") + (
        f" ({n_shared} more shared between combinations, run once)" if n_shared else ""
    )


def sweep_table(records: list[dict[str, Any]], metrics: list[dict[str, float]]) -> tuple[str, str | None]:
    """One row per combination: its status and the numeric values of the graph's json outputs; and a note
    when only the values that differ are shown."""
    keys: list[str] = []
    for m in metrics:
        keys += [k for k in m if k not in keys]
    note = None
    if len(metrics) > 1 and len(keys) > 8:  # many values: those that differ between combinations tell the story
        keys = [k for k in keys if len({m.get(k) for m in metrics}) > 1]
        note = f"showing the {len(keys)} output values that differ between combinations (`plx compare` shows all)"
    rows = [[r["sweep"], r["id"], r["status"], *(("" if k not in m else f"{m[k]:.6g}") for k in keys)] for r, m in zip(records, metrics, strict=True)]
    return table(rows, ["sweep", "run", "status", *keys]), note


def compare_table(result: dict[str, Any]) -> str:
    rows = []
    for r in result["rows"]:
        cells = []
        for i, v in enumerate(r["values"]):
            text = "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
            d = (r.get("deltas") or [None] * len(r["values"]))[i]
            if i and d:
                text += f" ({d:+.4g})"
            if "changes" in r:  # a package: '-' where it is not installed, and what changed against the first run
                text = text or "-"
                if r["changes"][i]:
                    text += f" ({r['changes'][i]})"
            cells.append(text)
        rows.append([r["name"], *cells])
    return table(rows, ["", *(rid for rid in result["runs"])])


def runs_table(runs: list[dict[str, Any]], extra: list[str]) -> str:
    """`plx log`: one row per run (the summaries of tracking.select_runs), with the chosen extra columns."""
    from .tracking import column_value

    labelled = any(r.get("name") or r.get("tags") for r in runs)
    rows = []
    for r in runs:
        c = r["counts"]
        git = r.get("git") or {}
        commit = (git.get("commit") or "")[:8] + ("*" if git.get("dirty") else "")
        rows.append(
            [
                r["id"],
                r["graph"],
                r["status"],
                (r.get("started") or "")[:19].replace("T", " "),
                f"{r['duration']:.1f}s" if r.get("duration") is not None else "",
                c.get(NodeState.SUCCESS, 0),
                c.get(NodeState.CACHED, 0),
                c.get(NodeState.FAILED, 0) + c.get(NodeState.TIMEOUT, 0),
                commit,
                *([r.get("name") or "", ",".join(r.get("tags") or [])] if labelled else []),
                *(column_value(r, c) for c in extra),
            ]
        )
    return table(rows, ["id", "graph", "status", "started", "duration", "ran", "cached", "failed", "commit", *(["name", "tags"] if labelled else []), *extra])


def run_view(rid: str, data: RunData) -> str:
    """`plx log RUN`: the header line, the labels and metrics the run has, and a row per node."""
    rows = [
        [
            n,
            d.get("state"),
            f"{d['duration']:.2f}s" if d.get("duration") is not None else "",
            ("remote" if d.get("source") == "remote" else "yes") if d.get("state") == NodeState.CACHED else "",
            "" if d.get("exit_code") is None else d["exit_code"],
            attempts_of(d) or "",
            d.get("reason", ""),
        ]
        for n, d in data["nodes"].items()
    ]
    lines = [f"run {rid}  graph {data['graph']}  {data['status']}  started {data.get('started')}"]
    if data.get("name"):
        lines.append(f"name: {data['name']}")
    if data.get("tags"):
        lines.append(f"tags: {', '.join(data['tags'])}")
    if data.get("note"):
        lines.append("note: " + str(data["note"]).replace("\n", "\n      "))
    metrics = list((data.get("metrics") or {}).items())
    if metrics:
        more = f"  ... {len(metrics) - 8} more (--json)" if len(metrics) > 8 else ""
        lines.append("metrics: " + "  ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics[:8]) + more)
    lines.append(table(rows, ["node", "state", "duration", "cached", "exit", "attempts", "reason"]))
    return "\n".join(lines)
