"""`plx report` and `plx graph --format svg|json`: one self-contained HTML page about runs.

The page holds everything inline (CSS, a little JS, SVG drawn here): it opens offline and fetches
nothing. Every value that came from a user or a node (names, tags, notes, params, node ids, log
tails) is escaped with html.escape where it is written. networkx is imported only by this module
(layout by topological generations, the critical path), so no other command pays for its import.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

import networkx as nx

from .errors import RunError, UsageError
from .records import BROKEN, NodeState, RunState, run_params

STATE_COLORS: dict[str, tuple[str, str]] = {  # fill, stroke
    NodeState.SUCCESS: ("#e7f6ec", "#1f8a4c"),
    NodeState.CACHED: ("#e6f0fb", "#2f6fb7"),
    NodeState.FAILED: ("#fdeaea", "#c0392b"),
    NodeState.TIMEOUT: ("#fdeaea", "#c0392b"),
    NodeState.SKIPPED: ("#fff6df", "#b7860b"),
    NodeState.CANCELED: ("#f0f0f0", "#8a8a8a"),
    NodeState.RUNNING: ("#efeafc", "#6a4bc4"),
    NodeState.PENDING: ("#f6f6f6", "#a0a0a0"),
    RunState.INTERRUPTED: ("#fdeaea", "#c0392b"),
}
CRITICAL = "#e8590c"
UNTIMED = (NodeState.PENDING, NodeState.SKIPPED, NodeState.CANCELED, NodeState.CACHED)  # a box shows the state alone
LEGEND = (NodeState.SUCCESS, NodeState.CACHED, NodeState.FAILED, NodeState.SKIPPED, NodeState.CANCELED)
_svg_ids = itertools.count()  # marker ids, unique within a page holding many drawings
NODE_W, NODE_H, COL_GAP, ROW_GAP = 170, 46, 56, 14
TAIL_BYTES, TAIL_LINES = 4096, 30
MAX_DRAWN = 400  # nodes per run drawn in the DAG and given a log section


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def fmt_num(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return "" if v is None else (v if isinstance(v, str) else json.dumps(v))
    if isinstance(v, int):
        return str(v)
    return f"{v:.4g}"


def fmt_dur(s: Any) -> str:
    if not isinstance(s, (int, float)):
        return ""
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {int(s % 60)} s"


# ---- the DAG ----------------------------------------------------------------------


def run_dag(data: Mapping[str, Any]) -> nx.DiGraph:
    """The run's DAG with each node's state and duration; edges from the record's `deps`, or for
    records without them, from output hashes that a node read as an input."""
    g = nx.DiGraph()
    nodes = data.get("nodes") or {}
    for n, d in nodes.items():
        g.add_node(n, state=d.get("state", NodeState.PENDING), duration=float(d.get("duration") or 0.0))
    deps = data.get("deps")
    if deps is None:
        made: dict[str, str] = {}
        for n, d in nodes.items():
            for art in (d.get("outputs") or {}).values():
                made.setdefault(str(art.get("hash")), n)
        for n, d in nodes.items():
            for items in ((d.get("recipe") or {}).get("inputs") or {}).values():
                for item in items if isinstance(items, list) else [items]:
                    src = made.get(str(item.get("hash"))) if isinstance(item, dict) else None
                    if src and src != n:
                        g.add_edge(src, n)
    else:
        for n, ups in deps.items():
            for u in ups:
                if u in g and n in g:
                    g.add_edge(u, n)
    return g


def critical_path(g: nx.DiGraph) -> list[str]:
    """The chain of nodes whose recorded durations add up to the longest time: what bounded the run."""
    if not g:
        return []
    h = nx.DiGraph()
    h.add_nodes_from(g)
    start = object()
    for n in g:
        w = g.nodes[n].get("duration", 0.0)
        if g.in_degree(n) == 0:
            h.add_edge(start, n, w=w)
        for s in g.successors(n):
            h.add_edge(n, s, w=g.nodes[s].get("duration", 0.0))
    path = nx.dag_longest_path(h, weight="w")
    path = [n for n in path if n is not start]
    while path and not g.nodes[path[0]].get("duration"):  # a cached start took no time: it bounded nothing
        path.pop(0)
    while path and not g.nodes[path[-1]].get("duration"):
        path.pop()
    return path


def layout(g: nx.DiGraph) -> dict[str, tuple[int, int]]:
    """(column, row) per node: columns are topological generations; rows ordered by the mean row of
    a node's predecessors, so edges mostly run straight."""
    pos: dict[str, tuple[int, int]] = {}
    order = {n: i for i, n in enumerate(g)}
    for col, gen in enumerate(nx.topological_generations(g)):
        if col == 0:
            ranked = sorted(gen, key=lambda n: order[n])
        else:

            def bary(n: str) -> tuple[float, int]:
                rows = [pos[p][1] for p in g.predecessors(n) if p in pos]
                return (sum(rows) / len(rows) if rows else 0.0, order[n])

            ranked = sorted(gen, key=bary)
        for row, n in enumerate(ranked):
            pos[n] = (col, row)
    return pos


def dag_svg(g: nx.DiGraph, critical: list[str] | None = None, links: dict[str, str] | None = None, states: bool = True) -> str:
    """The DAG as SVG: boxes (state colours, durations), curved edges, the critical path in orange."""
    pos = layout(g)
    if not pos:
        return '<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="200" height="40"><text x="8" y="24">(no nodes)</text></svg>'
    crit = set(critical or [])
    crit_edges = set(zip(critical or [], (critical or [])[1:], strict=False))
    cols = max(c for c, _ in pos.values()) + 1
    rows = max(r for _, r in pos.values()) + 1
    top = 24 if any(pos[b][0] - pos[a][0] > 1 for a, b in g.edges) else 10  # room for edges routed above row 0
    width, height = cols * (NODE_W + COL_GAP) - COL_GAP + 24, rows * (NODE_H + ROW_GAP) - ROW_GAP + top + 10
    uid = next(_svg_ids)

    def xy(n: str) -> tuple[float, float]:
        c, r = pos[n]
        return 10 + c * (NODE_W + COL_GAP), top + r * (NODE_H + ROW_GAP)

    parts = [
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"><defs>'
        + "".join(
            f'<marker id="{k}{uid}" viewBox="0 0 8 8" refX="7.5" refY="4" markerWidth="8" markerHeight="8" markerUnits="userSpaceOnUse" orient="auto">'
            f'<path d="M0,0 L8,4 L0,8 z" fill="{c}"/></marker>'
            for k, c in (("ah", "#9aa3ae"), ("ac", CRITICAL))
        )
        + "</defs>"
    ]
    for a, b in g.edges:
        (x1, y1), (x2, y2) = xy(a), xy(b)
        x1, y1, y2 = x1 + NODE_W, y1 + NODE_H / 2, y2 + NODE_H / 2
        on = (a, b) in crit_edges
        if pos[b][0] - pos[a][0] > 1:  # skips columns: along the gap above both rows, not through the boxes between
            lane = top + min(pos[a][1], pos[b][1]) * (NODE_H + ROW_GAP) - ROW_GAP / 2 - 1
            d = (
                f"M{x1:.0f},{y1:.0f} C{x1 + 24:.0f},{y1:.0f} {x1 + 10:.0f},{lane:.0f} {x1 + 40:.0f},{lane:.0f} "
                f"L{x2 - 40:.0f},{lane:.0f} C{x2 - 10:.0f},{lane:.0f} {x2 - 24:.0f},{y2:.0f} {x2 - 2:.0f},{y2:.0f}"
            )
        else:
            mid = (x1 + x2) / 2
            d = f"M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2 - 2:.0f},{y2:.0f}"
        parts.append(
            f'<path d="{d}" fill="none" stroke="{CRITICAL if on else "#b8bec7"}" stroke-width="{2.6 if on else 1.4}" marker-end="url(#{"ac" if on else "ah"}{uid})"/>'
        )
    for n in g:
        x, y = xy(n)
        d = g.nodes[n]
        state = d.get("state", NodeState.PENDING) if states else NodeState.PENDING
        fill, stroke = STATE_COLORS.get(state, STATE_COLORS[NodeState.PENDING]) if states else ("#ffffff", "#7a8594")
        label = n if len(n) <= 22 else n[:10] + "…" + n[-10:]
        sub = f"{state} · {fmt_dur(d.get('duration'))}" if states and state not in UNTIMED else (state if states else d.get("op", ""))
        crit_attr = f' stroke="{CRITICAL}" stroke-width="2.6"' if n in crit else f' stroke="{stroke}" stroke-width="1.3"'
        box = (
            f'<g class="node" data-node="{esc(n)}" data-state="{esc(state)}"><title>{esc(n)}'
            + (f" — {esc(state)}, {esc(fmt_dur(d.get('duration')))}" if states else "")
            + "</title>"
            f'<rect x="{x:.0f}" y="{y:.0f}" rx="7" width="{NODE_W}" height="{NODE_H}" fill="{fill}"{crit_attr}/>'
            f'<rect x="{x:.0f}" y="{y:.0f}" rx="2" width="5" height="{NODE_H}" fill="{stroke}"/>'
            f'<text x="{x + 13:.0f}" y="{y + 19:.0f}" class="nid">{esc(label)}</text>'
            f'<text x="{x + 13:.0f}" y="{y + 35:.0f}" class="nsub">{esc(sub)}</text></g>'
        )
        if links and n in links:
            box = f'<a href="#{esc(links[n])}">{box}</a>'
        parts.append(box)
    parts.append("</svg>")
    return "".join(parts)


# ---- the timeline -------------------------------------------------------------------


def _t(s: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(s)).timestamp()
    except (TypeError, ValueError):
        return None


def timeline_svg(data: Mapping[str, Any], critical: list[str], limit: int = 200) -> str:
    """Node start/end as bars against the run's clock; cached nodes as ticks at the time they were served."""
    t0 = _t(data.get("started"))
    bars: list[tuple[float, float, str, str]] = []
    for n, d in (data.get("nodes") or {}).items():
        s, e = _t(d.get("started")), _t(d.get("finished"))
        if s is None and e is None:
            continue
        start = s if s is not None else e
        end = e if e is not None else (start if data.get("status") != RunState.RUNNING else datetime.now().timestamp())
        assert start is not None and end is not None
        bars.append((start, end, n, str(d.get("state", ""))))
    if not bars or t0 is None:
        return '<p class="muted">No node ran in this run (everything came from the cache or nothing started).</p>'
    bars.sort()
    bars = bars[:limit]
    end = max(max(e for _, e, _, _ in bars), _t(data.get("finished")) or 0.0)
    span = max(end - t0, 1e-3)
    label_w, plot_w, row_h = 190, 640, 20
    height = len(bars) * row_h + 34
    crit = set(critical)
    parts = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 20}" height="{height}" role="img">']
    for tick in nice_ticks(0.0, span, 5):  # time axis
        x = label_w + plot_w * tick / span
        parts.append(f'<line x1="{x:.0f}" y1="4" x2="{x:.0f}" y2="{height - 18}" stroke="#eceef1"/>')
        parts.append(f'<text x="{x:.0f}" y="{height - 4}" class="axis" text-anchor="middle">{esc(fmt_dur(tick) if tick else "0")}</text>')
    for i, (s, e, n, state) in enumerate(bars):
        y = 6 + i * row_h
        fill, stroke = STATE_COLORS.get(state, STATE_COLORS[NodeState.PENDING])
        x = label_w + plot_w * (s - t0) / span
        w = max(plot_w * (e - s) / span, 2.5)
        label = n if len(n) <= 26 else n[:12] + "…" + n[-12:]
        parts.append(f'<text x="{label_w - 8}" y="{y + 13}" class="tl" text-anchor="end">{esc(label)}</text>')
        edge = f' stroke="{CRITICAL}" stroke-width="2"' if n in crit else f' stroke="{stroke}"'
        parts.append(
            f'<rect x="{x:.1f}" y="{y + 2}" width="{w:.1f}" height="{row_h - 6}" rx="3" fill="{fill}"{edge}>'
            f"<title>{esc(n)}: {esc(state)}, {esc(fmt_dur(e - s))}</title></rect>"
        )
    parts.append("</svg>")
    more = len([1 for d in (data.get("nodes") or {}).values() if d.get("started")]) - len(bars)
    return "".join(parts) + (f'<p class="muted">… and {more} more nodes</p>' if more > 0 else "")


# ---- charts --------------------------------------------------------------------------


def _varying(runs: list[dict[str, Any]], kind: str) -> list[str]:
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r[kind] if k not in keys]
    return [k for k in keys if len({json.dumps(r[kind].get(k), sort_keys=True) for r in runs}) > 1]


def nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step + 1e-9) * step
    out = []
    t = first
    while t <= hi + step * 1e-9:
        if t >= lo - step * 1e-9:
            out.append(round(t, 12))
        t += step
    return out


def chart_svg(points: list[tuple[Any, float, str, int]], xname: str, yname: str) -> str:
    """A small scatter (numbers: a line through the points sorted by x; log x when it spans decades)."""
    w, h, ml, mr, mt, mb = 300, 200, 52, 12, 14, 40
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, *_ in points)
    ys = [y for _, y, *_ in points]
    y0, y1 = min(ys), max(ys)
    if y0 == y1:
        y0, y1 = y0 - (abs(y0) * 0.1 or 1), y1 + (abs(y1) * 0.1 or 1)
    pad = (y1 - y0) * 0.08
    yt = nice_ticks(y0 - pad, y1 + pad)
    y0, y1 = min(yt[0], y0 - pad), max(yt[-1], y1 + pad)
    if numeric:
        xs = [float(x) for x, *_ in points]
        logx = min(xs) > 0 and max(xs) / min(xs) >= 100
        tx = [math.log10(x) for x in xs] if logx else xs
        a, b = min(tx), max(tx)
        if a == b:
            a, b = a - 1, b + 1
        px = [ml + (w - ml - mr) * (t - a) / (b - a) for t in tx]
        pad_x = (b - a) * 0.06
        a, b = a - pad_x, b + pad_x
        px = [ml + (w - ml - mr) * (t - a) / (b - a) for t in tx]
        marks = [float(k) for k in range(math.ceil(a), math.floor(b) + 1)] if logx else nice_ticks(a, b)
        ticks = [(ml + (w - ml - mr) * (t - a) / (b - a), fmt_num(10**t if logx else t)) for t in marks]
    else:
        cats: list[str] = []
        for x, *_ in points:
            k = fmt_num(x)
            if k not in cats:
                cats.append(k)
        step = (w - ml - mr) / max(len(cats), 1)
        px = [ml + step * (cats.index(fmt_num(x)) + 0.5) for x, *_ in points]
        ticks = [(ml + step * (i + 0.5), c if len(c) <= 10 else c[:9] + "…") for i, c in enumerate(cats)]
        logx = False
    py = [mt + (h - mt - mb) * (1 - (y - y0) / (y1 - y0)) for y in ys]
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">']
    for yv in yt:
        yy = mt + (h - mt - mb) * (1 - (yv - y0) / (y1 - y0))
        parts.append(f'<line x1="{ml}" y1="{yy:.1f}" x2="{w - mr}" y2="{yy:.1f}" stroke="#eceef1"/>')
        parts.append(f'<text x="{ml - 6}" y="{yy + 4:.1f}" class="axis" text-anchor="end">{esc(fmt_num(round(yv, 6)))}</text>')
    for x, label in ticks:
        parts.append(f'<text x="{x:.1f}" y="{h - mb + 15}" class="axis" text-anchor="middle">{esc(label)}</text>')
    parts.append(f'<text x="{(ml + w - mr) / 2:.0f}" y="{h - 6}" class="axt" text-anchor="middle">{esc(xname)}{" (log)" if logx else ""}</text>')
    if numeric and len(points) > 1:
        line = sorted(zip(px, py, strict=True))
        parts.append('<polyline fill="none" stroke="#9db4d6" stroke-width="1.5" points="' + " ".join(f"{a:.1f},{b:.1f}" for a, b in line) + '"/>')
    for (x, y, who, idx), cx, cy in zip(points, px, py, strict=True):
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4.5" fill="#2f6fb7" fill-opacity="0.85" data-run="{idx}">'
            f"<title>{esc(who)}: {esc(xname)}={esc(fmt_num(x))}, {esc(yname)}={esc(fmt_num(y))}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def charts_html(runs: list[dict[str, Any]], max_charts: int = 36) -> str:
    params = [p for p in _varying(runs, "params")]
    metrics_all: list[str] = []
    for r in runs:
        metrics_all += [k for k in r["metrics"] if k not in metrics_all]
    metrics = [m for m in metrics_all if m in _varying(runs, "metrics")] or metrics_all
    if len(runs) < 2 or not params or not metrics:
        why = "one run" if len(runs) < 2 else "no param varies between these runs" if not params else "these runs have no metrics"
        return f'<p class="muted">No charts: {why}.</p>'
    cells = []
    for m in metrics:
        for p in params:
            pts = [(r["params"][p], r["metrics"][m], r["label"], r["index"]) for r in runs if p in r["params"] and isinstance(r["metrics"].get(m), (int, float))]
            if len(pts) < 2:
                continue
            cells.append(f'<figure class="card chartcard"><figcaption><b>{esc(m)}</b> <span class="muted">vs</span> {esc(p)}</figcaption>{chart_svg(pts, p, m)}</figure>')
            if len(cells) >= max_charts:
                break
        if len(cells) >= max_charts:
            break
    possible = len(metrics) * len(params)
    more = f" (the first {len(cells)} of {possible}; `plx log --columns` lists any value)" if possible > len(cells) and len(cells) >= max_charts else ""
    note = f'<p class="muted">Showing {len(cells)} charts: metrics that vary, against each param that varies{esc(more)}.</p>'
    return note + '<div class="charts">' + "".join(cells) + "</div>"


# ---- the page --------------------------------------------------------------------------


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if size > TAIL_BYTES and lines:
        lines = lines[1:]  # the first line is probably cut
    return "\n".join(lines[-TAIL_LINES:])


def _worker_tails(path: Path) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return {}
    for line in text.splitlines():
        node, tab, rest = line.partition("\t")
        if tab:
            out.setdefault(node, []).append(rest)
    return {n: "\n".join(v[-12:]) for n, v in out.items()}


def _label(d: Mapping[str, Any]) -> str:
    """How the page names a run: its name, its sweep combination, both, or its id."""
    if d.get("name") and d.get("sweep"):
        return f"{d['name']} [{d['sweep']}]"
    return str(d.get("name") or d.get("sweep") or d["id"])


def _badge(state: Any) -> str:
    fill, stroke = STATE_COLORS.get(str(state), STATE_COLORS[NodeState.PENDING])
    return f'<span class="badge" style="background:{fill};color:{stroke};border-color:{stroke}">{esc(state)}</span>'


def _chips(tags: list[Any]) -> str:
    return "".join(f'<span class="chip">{esc(t)}</span>' for t in tags)


def run_section(i: int, data: Mapping[str, Any], runs_dir: Path, open_: bool) -> str:
    g = run_dag(data)
    crit = critical_path(g)
    links = {n: f"log-{i}-{j}" for j, n in enumerate(g)}
    git = data.get("git") or {}
    head = (
        f'<summary><span class="rtitle">{esc(_label(data))}</span> {_badge(data.get("status"))} '
        f'<span class="muted">{esc(data.get("graph"))} · {esc(str(data.get("started") or "")[:19].replace("T", " "))} · '
        f"{esc(fmt_dur(data.get('duration')))}</span> {_chips(data.get('tags') or [])}</summary>"
    )
    facts = [("run", data["id"]), ("graph", data.get("graph")), ("commit", ((git.get("commit") or "")[:10] + (" (dirty)" if git.get("dirty") else "")) or "—")]
    if data.get("sweep"):
        facts.append(("sweep", data["sweep"]))
    if data.get("rerun_of"):
        facts.append(("rerun of", data["rerun_of"]))
    body = ['<div class="facts">' + "".join(f"<div><span>{esc(k)}</span><b>{esc(v)}</b></div>" for k, v in facts) + "</div>"]
    if data.get("note"):
        body.append(f'<div class="note">{esc(data["note"])}</div>')
    params, metrics = run_params(data), data.get("metrics") or {}
    if params or metrics:
        kv = '<div class="kv">'
        if params:
            kv += "<div><h4>params</h4><table>" + "".join(f"<tr><td>{esc(k)}</td><td>{esc(fmt_num(v))}</td></tr>" for k, v in params.items()) + "</table></div>"
        if metrics:
            cells = [f'<div><span title="{esc(k)}">{esc(k)}</span><b>{esc(fmt_num(v))}</b></div>' for k, v in metrics.items()]
            kv += f'<div class="mwrap"><h4>metrics</h4><div class="mgrid">{"".join(cells[:24])}</div>'
            if len(cells) > 24:  # many (a summary table's every statistic): the rest one click away
                kv += f'<details class="more"><summary>{len(cells) - 24} more metrics</summary><div class="mgrid">{"".join(cells[24:])}</div></details>'
            kv += "</div>"
        body.append(kv + "</div>")
    total = sum(g.nodes[n]["duration"] for n in crit)
    body.append(
        f'<h3>DAG</h3><p class="muted">{len(g)} nodes. '
        + (f'<span style="color:{CRITICAL}">Critical path</span>: {esc(" → ".join(crit))} ({esc(fmt_dur(total))}). ' if crit else "")
        + "Click a node for its log tail.</p>"
    )
    if len(g) <= MAX_DRAWN:
        body.append(f'<div class="scroll">{dag_svg(g, crit, links)}</div>')
    else:  # a page with a drawing of thousands of boxes helps nobody (and weighs megabytes)
        body.append(f'<p class="muted">Not drawn: more than {MAX_DRAWN} nodes. <code>plx graph GRAPH --format svg</code> draws the graph.</p>')
    body.append(f'<h3>Timeline</h3><div class="scroll">{timeline_svg(data, crit)}</div>')
    worker = _worker_tails(runs_dir / data["id"] / "worker.log")
    logs_dir = str(runs_dir / data["id"] / "logs")
    try:
        present = set(os.listdir(logs_dir))  # one listing, not two failed opens per silent node
    except OSError:
        present = set()
    logs = ["<h3>Nodes and log tails</h3>"]
    order = sorted(links, key=lambda n: (g.nodes[n].get("state") not in BROKEN, n not in crit))
    if len(order) > MAX_DRAWN:  # the failed and critical ones first
        logs.append(f'<p class="muted">The first {MAX_DRAWN} of {len(order)} nodes: failed ones, then the critical path, then the rest.</p>')
    for n in (order if len(order) > MAX_DRAWN else list(links))[:MAX_DRAWN]:
        anchor = links[n]
        d = (data.get("nodes") or {}).get(n, {})
        tails = [(s, _tail(f"{logs_dir}/{n}.{s}") if "/" in n or f"{n}.{s}" in present else "") for s in ("stdout", "stderr")]
        tails.append(("worker", worker.get(n, "")))
        reason = f'<div class="reason">{esc(d.get("reason"))}</div>' if d.get("reason") else ""
        inner = "".join(f'<div class="tail"><span class="muted">{s}</span><pre>{esc(t)}</pre></div>' for s, t in tails if t) or '<p class="muted">no output</p>'
        logs.append(
            f'<details class="nodelog" id="{anchor}"{" open" if d.get("state") in BROKEN else ""}><summary>{_badge(d.get("state"))} <code>{esc(n)}</code> '
            f'<span class="muted">{esc(fmt_dur(d.get("duration")))}'
            + (f" · exit {esc(d.get('exit_code'))}" if d.get("exit_code") is not None else "")
            + (f" · {len(d['attempts'])} attempts" if isinstance(d.get("attempts"), list) and len(d["attempts"]) > 1 else "")
            + f"</span></summary>{reason}{inner}</details>"
        )
    body.append("".join(logs))
    return f'<details class="run card" id="run-{i}"{" open" if open_ else ""}>{head}<div class="rbody">{"".join(body)}</div></details>'


def runs_table(rows: list[dict[str, Any]]) -> str:
    params: list[str] = []
    metrics: list[str] = []
    for r in rows:
        params += [k for k in r["params"] if k not in params]
        metrics += [k for k in r["metrics"] if k not in metrics]
    varying = set(_varying(rows, "metrics"))
    if len(metrics) > 12 and varying:
        metrics = [m for m in metrics if m in varying]
    if len(metrics) > 12:  # a table dozens of columns wide helps nobody: the rest are in each run's details
        metrics = metrics[:12]
    ranges = {}
    for m in metrics:
        vals = [r["metrics"][m] for r in rows if isinstance(r["metrics"].get(m), (int, float))]
        ranges[m] = (min(vals), max(vals)) if vals else (0, 0)
    head = ["run", "status", "tags", "started", "duration"] + [f"params.{p}" for p in params] + [f"metrics.{m}" for m in metrics]
    kinds = ["s", "s", "s", "s", "n"] + ["p"] * len(params) + ["m"] * len(metrics)
    out = ['<div class="scroll"><table id="runs" class="runs"><thead><tr>']
    for i, (h, k) in enumerate(zip(head, kinds, strict=True)):
        cls = ' class="num"' if k in "nmp" else ""
        kind, dot, key = h.partition(".")
        shown = f'<span class="hk">{esc(kind)}</span>{esc(key)}' if dot else esc(h)
        out.append(f'<th data-col="{i}"{cls} tabindex="0" title="sort by {esc(h)}">{shown}<span class="arrow"></span></th>')
    out.append("</tr></thead><tbody>")
    for r in rows:
        cells = [
            (
                r["label"],
                f'<a href="#run-{r["index"]}">{esc(r["label"])}</a><div class="rid">{esc(r["id"])}</div>'
                if r["label"] != r["id"]
                else f'<a href="#run-{r["index"]}">{esc(r["id"])}</a>',
            ),
            (r["status"], _badge(r["status"])),
            (",".join(r["tags"]), _chips(r["tags"])),
            (r["started"] or "", esc(str(r["started"] or "")[:19].replace("T", " "))),
            (r["duration"], esc(fmt_dur(r["duration"]))),
        ]
        cells += [(r["params"].get(p), esc(fmt_num(r["params"].get(p)))) for p in params]
        for m in metrics:
            v = r["metrics"].get(m)
            lo, hi = ranges[m]
            style = ""
            if isinstance(v, (int, float)) and hi > lo:
                style = f' style="background:rgba(31,138,76,{0.06 + 0.30 * (v - lo) / (hi - lo):.2f})"'
            cells.append((v, f'<span{style} class="heat">{esc(fmt_num(v))}</span>'))
        out.append(
            f'<tr data-run="{r["index"]}">'
            + "".join(
                f'<td data-v="{esc(v if isinstance(v, str) else json.dumps(v))}"{" class=num" if k in "nmp" else ""}>{shown}</td>'
                for (v, shown), k in zip(cells, kinds, strict=True)
            )
            + "</tr>"
        )
    out.append("</tbody></table></div>")
    return "".join(out)


CSS = """
:root{--fg:#1d2430;--muted:#6b7480;--line:#e3e6ea;--bg:#f6f7f9;--card:#fff;--accent:#2f6fb7}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{background:#18202b;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:20px;font-weight:600}
header .sub{color:#aab4c0;font-size:13px;margin-top:4px}
main{padding:20px 28px;max-width:1500px}
h2{font-size:16px;margin:26px 0 10px}
h3{font-size:14px;margin:18px 0 6px}
h4{margin:0 0 4px;font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;box-shadow:0 1px 2px rgba(0,0,0,.04)}
.muted{color:var(--muted)}
.scroll{overflow:auto}
table.runs{border-collapse:collapse;width:100%;background:#fff;border:1px solid var(--line);border-radius:10px;font-variant-numeric:tabular-nums}
table.runs th{position:sticky;top:0;background:#f0f2f5;text-align:left;font-weight:600;font-size:12px;padding:8px 10px;border-bottom:1px solid var(--line);cursor:pointer;
  white-space:nowrap;user-select:none}
table.runs th:hover{background:#e6eaf0}
table.runs th.num,table.runs td.num{text-align:right}
table.runs td{padding:7px 10px;border-bottom:1px solid #f0f1f3;white-space:nowrap;vertical-align:top}
table.runs tr:hover td{background:#fafbfc}
table.runs a{color:var(--accent);text-decoration:none;font-weight:500}
.rid{font-size:11px;color:var(--muted)}
.arrow{display:inline-block;width:12px;color:var(--accent)}
.heat{padding:1px 6px;border-radius:4px}
.badge{display:inline-block;border:1px solid;border-radius:999px;padding:0 8px;font-size:12px;line-height:18px}
.chip{display:inline-block;background:#eef2f7;color:#334155;border-radius:5px;padding:0 6px;margin:0 3px 0 0;font-size:12px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(310px,1fr));gap:12px}
.chartcard{margin:0;padding:8px 8px 4px}
svg.chart{width:100%;height:auto;max-width:460px;display:block}
svg.chart circle.hl{r:7px;fill:#e8590c;fill-opacity:1}
table.runs tr.hl td{background:#fff4ec}
.chartcard figcaption{font-size:12.5px;padding:2px 4px 4px}
details.run{margin:12px 0;padding:0}
details.run>summary{padding:12px 16px;cursor:pointer;list-style:none;display:flex;gap:10px;align-items:center;flex-wrap:wrap}
details.run>summary::before{content:"▸";color:var(--muted)}
details.run[open]>summary::before{content:"▾"}
.rtitle{font-weight:600;font-size:15px}
.hk{display:block;font-size:10px;font-weight:500;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.mwrap{flex:1;min-width:300px}
.mgrid{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));column-gap:28px;font-size:12.5px}
.mgrid div{display:flex;justify-content:space-between;gap:12px;border-bottom:1px solid #f2f3f5;padding:2px 0;min-width:0}
.mgrid span{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;min-width:0}
details.more>summary{cursor:pointer;color:var(--accent);font-size:12.5px;margin:6px 0}
.mgrid b{font-weight:500;font-family:ui-monospace,Menlo,monospace}
.rbody{padding:0 16px 16px;border-top:1px solid var(--line)}
.facts{display:flex;flex-wrap:wrap;gap:8px 28px;margin:12px 0}
.facts span{display:block;font-size:11px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.facts b{font-weight:500;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
.note{white-space:pre-wrap;background:#fffbea;border-left:3px solid #e0b400;padding:8px 12px;border-radius:4px;margin:8px 0}
.kv{display:flex;gap:40px;flex-wrap:wrap}
.kv table{border-collapse:collapse;font-size:12.5px;font-variant-numeric:tabular-nums}
.kv td{padding:2px 14px 2px 0;border-bottom:1px solid #f2f3f5}
.kv td:last-child{text-align:right;font-family:ui-monospace,Menlo,monospace}
svg text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
svg .nid{font-size:12.5px;font-weight:600;fill:#1d2430}
svg .nsub{font-size:11px;fill:#5b6470}
svg .axis{font-size:10.5px;fill:#7b8490}
svg .axt{font-size:11.5px;fill:#3b4450}
svg .tl{font-size:11.5px;fill:#3b4450}
svg .node{cursor:pointer}
svg .node:hover rect:first-of-type{filter:brightness(.96)}
details.nodelog{border-top:1px solid #f0f1f3;padding:4px 0}
details.nodelog>summary{cursor:pointer;padding:3px 0}
details.nodelog:target{background:#fff8e6}
.tail pre{background:#0f1620;color:#d7dee8;padding:8px 10px;border-radius:6px;overflow:auto;max-height:260px;font-size:12px;margin:4px 0 8px}
.reason{color:#c0392b;margin:4px 0}
.legend{display:flex;gap:12px;flex-wrap:wrap;font-size:12px;margin:6px 0}
footer{color:var(--muted);font-size:12px;padding:20px 28px}
"""

JS = r"""
(function(){
  var t=document.getElementById('runs');
  if(t){
    var dir={};
    t.querySelectorAll('th').forEach(function(th){
      th.addEventListener('click',function(){
        var c=+th.dataset.col, d=dir[c]=(dir[c]===1?-1:1);
        var body=t.tBodies[0], rows=Array.prototype.slice.call(body.rows);
        function val(r){var s=r.cells[c].dataset.v; try{var v=JSON.parse(s);}catch(e){v=s;} return v;}
        rows.sort(function(a,b){
          var x=val(a), y=val(b);
          if(x===null||x===''||x===undefined) return 1; if(y===null||y===''||y===undefined) return -1;
          if(typeof x==='number'&&typeof y==='number') return d*(x-y);
          return d*String(x).localeCompare(String(y),undefined,{numeric:true});
        });
        rows.forEach(function(r){body.appendChild(r);});
        t.querySelectorAll('th .arrow').forEach(function(a){a.textContent='';});
        th.querySelector('.arrow').textContent=d===1?'▲':'▼';
      });
      th.addEventListener('keydown',function(e){ if(e.key==='Enter'||e.key===' '){ e.preventDefault(); th.click(); } });
    });
  }
  function hl(run,on){
    document.querySelectorAll('[data-run="'+run+'"]').forEach(function(el){el.classList.toggle('hl',on);});
  }
  document.querySelectorAll('[data-run]').forEach(function(el){
    el.addEventListener('mouseenter',function(){hl(el.dataset.run,true);});
    el.addEventListener('mouseleave',function(){hl(el.dataset.run,false);});
  });
  function openTarget(){
    var id=decodeURIComponent(location.hash.slice(1)); if(!id) return;
    var el=document.getElementById(id); if(!el) return;
    for(var p=el;p;p=p.parentElement){ if(p.tagName==='DETAILS') p.open=true; }
    el.scrollIntoView({block:'center'});
  }
  window.addEventListener('hashchange',openTarget); openTarget();
})();
"""


def default_runs(history: Any) -> list[str]:
    """The last run, or every run of the last sweep (runs recorded together from one command line)."""
    ids = history.ids()
    if not ids:
        raise RunError("there are no runs yet; start one with `plx run GRAPH`")
    last = history.load(ids[0])
    if not last.get("sweep"):
        return [ids[0]]
    out, labels = [ids[0]], {last["sweep"]}
    for rid in ids[1:]:  # the runs just before it, from the same command line, each a new combination
        d = history.load(rid)
        if not d.get("sweep") or d.get("argv") != last.get("argv") or d.get("graph") != last.get("graph") or d["sweep"] in labels:
            break
        out.append(rid)
        labels.add(d["sweep"])
    return out


def build(records: Sequence[Mapping[str, Any]], runs_dir: Path, title: str | None = None) -> str:
    """The page for these run records (oldest first in the table)."""
    rows = []
    for i, d in enumerate(records):
        rows.append(
            {
                "index": i,
                "id": d["id"],
                "name": d.get("name"),
                "label": _label(d),
                "status": d.get("status"),
                "tags": list(d.get("tags") or []),
                "started": d.get("started"),
                "duration": d.get("duration"),
                "params": run_params(d),
                "metrics": d.get("metrics") or {},
            }
        )
    graphs = sorted({str(d.get("graph")) for d in records})
    title = title or f"plx report — {', '.join(graphs)}"
    legend = "".join(f"<span>{_badge(s)}</span>" for s in LEGEND) + f'<span style="color:{CRITICAL}">━ critical path</span>'
    sections = "".join(run_section(i, d, runs_dir, open_=(len(records) <= 3 or i == len(records) - 1)) for i, d in enumerate(records))
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>{esc(title)}</h1><div class="sub">{len(records)} run{"s" if len(records) != 1 else ""} · generated {esc(generated)} by plx</div></header><main>'
        f'<h2>Runs</h2><p class="muted">Click a column header to sort. Metric cells are shaded from the column\'s lowest to its highest value.</p>{runs_table(rows)}'
        + (f"<h2>Metrics against params</h2>{charts_html(rows)}" if len(records) > 1 else "")
        + f'<h2>Run details</h2><div class="legend">{legend}</div>{sections}'
        f"</main><footer>Self-contained page: no network needed. plx report</footer><script>{JS}</script></body></html>\n"
    )


def write_report(project: Any, refs: list[str], out: Path) -> tuple[Path, list[str]]:
    """`plx report`: the page about the given runs (default: the last run or last sweep) -> (file, run ids)."""
    from .history import History

    history = History(project.store)
    ids = [history.resolve(r) for r in refs] if refs else default_runs(history)
    seen: list[str] = []
    for i in ids:
        if i not in seen:
            seen.append(i)
    records = sorted((history.load(i) for i in seen), key=lambda d: d["id"])
    page = build(records, history.dir)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        if tmp.parent.is_dir():
            tmp.unlink(missing_ok=True)
        raise UsageError(f"-o {out}: cannot write it ({exc.strerror or exc})") from None
    return out, [d["id"] for d in records]


# ---- plx graph --format svg|json ----------------------------------------------------------


def graph_drawing(nodes: list[str], edges: list[tuple[str, str, str]], fmt: str, ops: dict[str, str] | None = None) -> str:
    """The DAG of a graph file as SVG (the report's drawing, without states) or node-link JSON."""
    g = nx.DiGraph()
    for n in nodes:
        g.add_node(n, op=(ops or {}).get(n, ""))
    for a, b, label in edges:
        if g.has_edge(a, b):
            g.edges[a, b]["label"] += ", " + label
        else:
            g.add_edge(a, b, label=label)
    if fmt == "json":
        return json.dumps(nx.node_link_data(g, edges="links"), indent=2)
    svg = dag_svg(g, states=False)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + svg.replace("<svg ", '<svg font-family="sans-serif" ', 1).replace(
        'class="nid"', 'class="nid" font-size="12.5" font-weight="600"'
    ).replace('class="nsub"', 'class="nsub" font-size="11" fill="#5b6470"')
