"""Wide graph: 1,000 trivial bash nodes and one node concatenating their outputs, plx versus make (and doit).

Prints cold-run and no-op re-run times side by side with -j2, and the 16 x `sleep 0.5` check
(ideal with -j2: 4 s). Run: python bench/wide.py [N]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import PLX, print_table, temp_project, timed  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000


def plx_project(root: Path, n: int) -> None:
    (root / "operations").mkdir()
    (root / "graphs").mkdir()
    (root / "operations/emit.yaml").write_text(
        "kind: operation\nname: emit\nrunner: bash_jinja2\nparams: [{name: i, type: int}]\noutputs: [{name: out, type: text}]\n"
        "cmd: echo {{ param.i }} > {{ output.out }}\n"
    )
    (root / "operations/cat_all.yaml").write_text(
        "kind: operation\nname: cat_all\nrunner: command\ninputs: [{name: parts, type: text, max: -1}]\noutputs: [{name: all, type: text}]\n"
        "cmd: printf '%s\\n' \"$INPUT_PARTS\" | tr '\\n' '\\0' | xargs -0 cat > \"$OUTPUT_ALL\"\n"
    )
    lines = ["kind: graph", "name: wide", "nodes:"]
    for i in range(n):
        lines.append(f"  n{i}: {{operation: emit, params: {{i: {i}}}}}")
    lines.append("  all:")
    lines.append("    operation: cat_all")
    lines.append("    inputs:")
    lines.append("      parts: [" + ", ".join(f"n{i}.out" for i in range(n)) + "]")
    (root / "graphs/wide.yaml").write_text("\n".join(lines) + "\n")


def makefile(root: Path, n: int) -> None:
    out = ["all: out/all.txt", "out/all.txt: " + " ".join(f"out/n{i}.txt" for i in range(n)), "\tcat $^ > $@"]
    out += ["out/n%.txt:", "\t@mkdir -p out", "\techo $* > $@"]
    (root / "Makefile").write_text("\n".join(out) + "\n")


def dodo(root: Path, n: int) -> None:
    (root / "dodo.py").write_text(f"""\
import os
N = {n}
def task_emit():
    for i in range(N):
        yield {{"name": str(i), "actions": [f"mkdir -p dout && echo {{i}} > dout/n{{i}}.txt"], "targets": [f"dout/n{{i}}.txt"]}}
def task_all():
    deps = [f"dout/n{{i}}.txt" for i in range(N)]
    return {{"actions": ["cat " + " ".join(deps) + " > dout/all.txt"], "file_dep": deps, "targets": ["dout/all.txt"]}}
""")


def sleepers(root: Path) -> None:
    (root / "operations/nap.yaml").write_text(
        "kind: operation\nname: nap\nrunner: command\nparams: [{name: i, type: int}]\noutputs: [{name: out}]\ncacheable: false\n"
        "cmd: sleep 0.5; echo $PARAM_I > $OUTPUT_OUT\n"
    )
    (root / "graphs/naps.yaml").write_text("kind: graph\nname: naps\nnodes:\n" + "".join(f"  s{i}: {{operation: nap, params: {{i: {i}}}}}\n" for i in range(16)))


def main() -> None:
    root = temp_project()
    plx_project(root, N)
    makefile(root, N)
    has_doit = shutil.which("doit") is not None or subprocess.run([sys.executable, "-c", "import doit"], capture_output=True).returncode == 0
    if has_doit:
        dodo(root, N)
    rows = []
    plx_cold = timed([PLX, "run", "graphs/wide.yaml", "-j", "2"], root)
    check = subprocess.run([PLX, "get", "last", "all.all", "-o", "-"], cwd=root, capture_output=True, text=True).stdout.split()
    assert check == [str(i) for i in range(N)], "the concatenation is wrong"
    plx_noop = timed([PLX, "run", "graphs/wide.yaml", "-j", "2"], root, repeat=3)
    make_cold = timed(["make", "-j2", "-s"], root)
    make_noop = timed(["make", "-j2", "-s"], root, repeat=3)
    rows.append(["make -j2", make_cold, make_noop, 1.0, 1.0])
    rows.append(["plx run -j2", plx_cold, plx_noop, plx_cold / make_cold, plx_noop / make_noop])
    if has_doit:
        doit = [sys.executable, "-m", "doit", "-n", "2"]
        doit_cold = timed(doit, root)
        doit_noop = timed(doit, root, repeat=3)
        rows.append(["doit -n 2", doit_cold, doit_noop, doit_cold / make_cold, doit_noop / make_noop])
    print_table(f"{N} trivial bash nodes + 1 concatenation (s)", rows, ["tool", "cold", "no-op re-run", "cold / make", "no-op / make"])
    sleepers(root)
    t = timed([PLX, "run", "graphs/naps.yaml", "-j", "2"], root, repeat=2)
    print_table("16 x sleep 0.5 with -j2 (ideal 4.000 s)", [["plx run -j2", t, f"{(t / 4.0 - 1) * 100:+.1f}%"]], ["tool", "seconds", "over ideal"])
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
