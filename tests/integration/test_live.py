"""The live view on a terminal (run in a real pseudo-terminal): a progress bar of nodes done with an
ETA from recorded durations, and beside each running node its elapsed time and last printed line."""

from __future__ import annotations

import os
import pty
import re
import select

from tests.conftest import PLX, Project

SLOW = """\
kind: operation
name: slow
runner: bash_jinja2
params: [{name: n, type: int, default: 1}]
outputs: [{name: out, type: text}]
cmd: |
  for i in 1 2 3 4 5 6 7 8; do echo "step $i of 8 (n={{ param.n }})"; printf '\\033[2J\\033]0;title\\007'; sleep 0.2; done
  echo done > {{ output.out }}
"""
GRAPH = """\
kind: graph
name: slowg
nodes:
  a: {operation: slow, params: {n: 1}}
  b: {operation: slow, params: {n: 2}}
  c: {operation: slow, params: {n: 3}}
"""


def in_a_terminal(project: Project, *args: str) -> str:
    pid, fd = pty.fork()
    if pid == 0:  # the child: plx on a terminal
        os.chdir(project.root)
        os.environ.update({"COLUMNS": "150", "LINES": "40", "TERM": "xterm"})
        os.execv(PLX, [PLX, *args])
    out = b""
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, out.decode(errors="replace")[-3000:]
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode("utf-8", errors="replace"))


def test_live_view_shows_progress_eta_and_last_lines(project: Project) -> None:
    project.write("operations/slow.yaml", SLOW)
    project.write("graphs/slow.yaml", GRAPH)
    first = in_a_terminal(project, "run", "graphs/slow.yaml", "-j", "2")
    assert "0/3 nodes" in first and "ETA ?" in first  # nothing recorded yet: no estimate before a node ends
    assert re.search(r"running\s+a\s+\d+\.\ds\s+step \d of 8 \(n=1\)", first), first[-2000:]
    assert re.search(r"2/3 nodes", first)
    # The same operations again: durations recorded, so an ETA from the first moment.
    again = in_a_terminal(project, "run", "graphs/slow.yaml", "-j", "2", "--no-cache")
    etas = [int(m) for m in re.findall(r"0/3 nodes\s+ETA (\d+)s", again)]
    assert etas and 2 <= etas[0] <= 20, again[-2000:]  # two slots: ~1.6 s + ~1.6 s (generous: a loaded machine records longer)
    assert "\x07" not in again and "]0;title" not in again  # a node's escape sequences never reach the terminal
