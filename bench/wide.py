"""Wide graph: 1,000 trivial bash nodes and one node concatenating their outputs, plx versus make (and doit).

Prints cold-run and no-op re-run times side by side with -j2, and the 16 x `sleep 0.5` check
(ideal with -j2: 4 s). Run: python bench/wide.py [N]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import PLX, print_table, temp_project, timed  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
REPEAT = 3


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


def fresh(has_doit: bool, where: str | None) -> Path:
    """A new project for each cold run: deleting the last one's files would slow the next run down
    (on ext4 without a journal, files created soon after deletions scan the freed inodes)."""
    root = temp_project(where)
    plx_project(root, N)
    makefile(root, N)
    if has_doit:
        dodo(root, N)
    return root


def cold_runs(tools: dict[str, list[str]], has_doit: bool, where: str | None, roots: list[Path]) -> dict[str, list[float]]:
    cold: dict[str, list[float]] = {t: [] for t in tools}
    for _ in range(REPEAT):  # the tools take turns, so a slow moment of the machine hits them alike
        for name, cmd in tools.items():
            roots.append(fresh(has_doit, where))
            cold[name].append(timed(cmd, roots[-1]))
    return cold


def main() -> None:
    has_doit = shutil.which("doit") is not None or subprocess.run([sys.executable, "-m", "doit", "--version"], capture_output=True).returncode == 0
    tools = {"make -j2": ["make", "-j2", "-s"], "plx run -j2": [PLX, "run", "graphs/wide.yaml", "-j", "2"]}
    if has_doit:
        tools["doit -n 2"] = [sys.executable, "-m", "doit", "-n", "2"]
    roots: list[Path] = []
    # The temp folder's disk, and a tmpfs when there is one: on some disks creating files costs far
    # more than elsewhere, and more after recent deletions (see README, Speed).
    places = [("disk", None)] + ([("tmpfs", "/dev/shm")] if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else [])
    colds = {label: cold_runs(tools, has_doit, where, roots) for label, where in places}
    root = roots[-1]
    subprocess.run(tools["plx run -j2"], cwd=root, capture_output=True, check=True)
    check = subprocess.run([PLX, "get", "last", "all.all", "-o", "-"], cwd=root, capture_output=True, text=True).stdout.split()
    assert check == [str(i) for i in range(N)], "the concatenation is wrong"
    subprocess.run(tools["make -j2"], cwd=root, capture_output=True, check=True)
    noops = {name: timed(cmd, root, repeat=3) for name, cmd in tools.items()}
    for label, cold in colds.items():
        base = statistics.median(cold["make -j2"])
        rows = []
        for name in tools:
            c = statistics.median(cold[name])
            rows.append([name, c, f"{min(cold[name]):.2f}–{max(cold[name]):.2f}", c / base, noops[name], noops[name] / noops["make -j2"]])
        title = f"{N} trivial bash nodes + 1 concatenation, -j2, projects on {label} (s; cold: median of {REPEAT} fresh projects)"
        print_table(title, rows, ["tool", "cold", "cold range", "cold / make", "no-op re-run", "no-op / make"])
    sleepers(root)
    naps = [timed([PLX, "run", "graphs/naps.yaml", "-j", "2"], root) for _ in range(3)]
    t = statistics.median(naps)
    print_table(
        "16 x sleep 0.5 with -j2 (ideal 4.000 s; median of 3)",
        [["plx run -j2", t, f"{min(naps):.2f}–{max(naps):.2f}", f"{(t / 4.0 - 1) * 100:+.1f}%"]],
        ["tool", "seconds", "range", "over ideal"],
    )
    for r in roots:
        shutil.rmtree(r, ignore_errors=True)


if __name__ == "__main__":
    main()
