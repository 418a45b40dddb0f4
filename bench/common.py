"""Helpers shared by the benchmark scripts: timing commands, temp projects, printing tables."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLX = str(Path(sys.executable).parent / "plx") if (Path(sys.executable).parent / "plx").exists() else (shutil.which("plx") or "plx")


# Measure plx as pip installs it, with its modules compiled to bytecode: an editable install under
# PYTHONDONTWRITEBYTECODE=1 (set on some machines) would recompile every module at every call.
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parent.parent / "plx")], check=False)


def timed(cmd: list[str] | str, cwd: Path, repeat: int = 1, env: dict[str, str] | None = None, check: bool = True) -> float:
    """Median wall time of a command, in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, shell=isinstance(cmd, str), capture_output=True, env={**_ENV, **(env or {})})
        times.append(time.perf_counter() - t0)
        if check and proc.returncode != 0:
            raise SystemExit(f"failed: {cmd}\n{proc.stderr.decode()[-2000:]}")
    return statistics.median(times)


def temp_project(where: str | None = None) -> Path:
    root = Path(tempfile.mkdtemp(prefix="plx-bench-", dir=where))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / ".gitignore").write_text(".plx/\n")
    return root


def recorded_project(nodes: str = "a") -> tuple[Path, dict[str, object], Path]:
    """A temp project whose graph of trivial nodes (space-separated ids) ran once: (root, that run's
    record as JSON, its folder), for the history benchmarks to clone records from."""
    import json

    root = temp_project()
    (root / "operations").mkdir()
    (root / "graphs").mkdir()
    (root / "operations/w.yaml").write_text("kind: operation\nname: w\nrunner: command\noutputs: [{name: out}]\ncmd: echo x > $OUTPUT_OUT\n")
    graph = "".join(f"  {n}: {{operation: w}}\n" for n in nodes.split())
    (root / "graphs/g.yaml").write_text("kind: graph\nname: g\nnodes:\n" + graph)
    timed([PLX, "run", "graphs/g.yaml"], root)
    folder = next(p for p in (root / ".plx/runs").iterdir() if p.is_dir())
    return root, json.loads((folder / "run.json").read_text()), folder


def print_table(title: str, rows: list[list[object]], headers: list[str]) -> None:
    from tabulate import tabulate

    print(f"\n## {title}\n")
    print(tabulate(rows, headers=headers, tablefmt="github", floatfmt=".3f"))
