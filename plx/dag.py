"""Graph algorithms on plain dicts of node ids: a cycle, a topological order, an upstream closure (no third-party graph library: see docs/design.md)."""

from __future__ import annotations

from collections import deque

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable


def find_cycle(adjacency: dict[str, list[str]]) -> list[str] | None:
    """Nodes on one cycle of a directed graph (edges node -> its upstream), or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(adjacency, WHITE)
    for start in adjacency:
        if color[start] != WHITE:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = [start]
        color[start] = GREY
        while stack:
            node, i = stack[-1]
            nexts = adjacency.get(node, [])
            if i < len(nexts):
                stack[-1] = (node, i + 1)
                nxt = nexts[i]
                if color.get(nxt, BLACK) == GREY:
                    cycle = path[path.index(nxt) :]
                    return list(reversed(cycle)) if len(cycle) > 1 else cycle
                if color.get(nxt) == WHITE:
                    color[nxt] = GREY
                    stack.append((nxt, 0))
                    path.append(nxt)
            else:
                color[node] = BLACK
                stack.pop()
                path.pop()
    return None


def topological(nodes: dict[str, Any], upstream: dict[str, set[str]]) -> list[str]:
    """Node ids so that each comes after its upstream (Kahn), keeping file order among peers."""
    indeg = {n: len([u for u in upstream[n] if u in nodes]) for n in nodes}
    down: dict[str, list[str]] = {n: [] for n in nodes}
    for n, ups in upstream.items():
        for u in ups:
            if u in down:
                down[u].append(n)
    ready = deque(n for n in nodes if indeg[n] == 0)
    out: list[str] = []
    while ready:
        n = ready.popleft()
        out.append(n)
        for d in down[n]:
            indeg[d] -= 1
            if indeg[d] == 0:
                ready.append(d)
    return out


def upstream_closure(start: Iterable[str], upstream: Callable[[str], Iterable[str]]) -> set[str]:
    """The given nodes and every node they depend on, directly or through others."""
    wanted = set(start)
    stack = list(wanted)
    while stack:
        for d in upstream(stack.pop()):
            if d not in wanted:
                wanted.add(d)
                stack.append(d)
    return wanted
