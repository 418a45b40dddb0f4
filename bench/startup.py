"""Start-up and validation speed: `plx --help`, `plx validate` of a small project, a 10,000-node graph, an alias bomb.

Targets (issue 2): help and small validate < 0.25 s; 10,000-node validate < 2 s; alias bomb well under 1 s.
Run: python bench/startup.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import PLX, print_table, temp_project, timed  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    root = temp_project()
    (root / "operations").mkdir()
    (root / "graphs").mkdir()
    (root / "operations/noop.yaml").write_text(
        "kind: operation\nname: noop\nrunner: bash_jinja2\ninputs: [{name: src, min: 0}]\nparams: [{name: i, type: int, default: 0}]\n"
        "outputs: [{name: out}]\ncmd: echo {{ param.i }} > {{ output.out }}\n"
    )
    lines = ["kind: graph", "name: big", "nodes:"]
    for i in range(10_000):
        lines.append(f"  n{i}: {{operation: noop, params: {{i: {i}}}" + (f", inputs: {{src: n{i // 2}.out}}}}" if i else "}"))
    (root / "graphs/big.yaml").write_text("\n".join(lines) + "\n")
    bomb = "\n".join(f"{chr(97 + k)}: &{chr(97 + k)} [" + ",".join([f"*{chr(96 + k)}"] * 9) + "]" for k in range(1, 9))
    (root / "bomb.yaml").write_text('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + bomb + "\n")
    small = temp_project()
    timed([PLX, "init"], small)
    rows = [
        ["plx --help", timed([PLX, "--help"], root, repeat=5), 0.25],
        ["plx validate (small project: `plx init`)", timed([PLX, "validate"], small, repeat=5), 0.25],
        ["plx validate (this repository: 28 files)", timed([PLX, "validate"], REPO, repeat=5), 0.5],
        ["plx validate graphs/big.yaml (10,000 nodes)", timed([PLX, "validate", "graphs/big.yaml"], root, repeat=3), 2.0],
        ["plx validate bomb.yaml (alias bomb)", timed([PLX, "validate", "bomb.yaml"], root, repeat=3, check=False), 1.0],
    ]
    print_table(
        "start-up and validation (median wall seconds)", [[n, t, target, "ok" if t < target else "SLOW"] for n, t, target in rows], ["command", "seconds", "target", ""]
    )


if __name__ == "__main__":
    main()
