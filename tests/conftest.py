"""Shared fixtures: the installed `plx` command and temp git projects to run it in."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Iterator

import pytest

# A suite started in the background by a shell without job control (`cmd &` in a script) inherits
# Ctrl-C ignored, and so would every plx it starts (Python keeps an inherited SIG_IGN): the Ctrl-C
# tests need plx to get SIGINT as a terminal delivers it. A handler is reset to the default at exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"


def plx_executable() -> str:
    """The console script installed next to this interpreter (what a user runs)."""
    candidate = Path(sys.executable).parent / "plx"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("plx")
    if not found:
        raise RuntimeError("the plx command is not installed: pip install -e .[test]")
    return found


PLX = plx_executable()


class Result:
    def __init__(self, proc: subprocess.CompletedProcess[str]):
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def json(self) -> Any:
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"<exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}>"


class Project:
    """A temporary git repository to run plx in."""

    def __init__(self, root: Path):
        self.root = root
        self.started: list[subprocess.Popen[str]] = []  # killed at teardown if a failed test left one running

    def write(self, rel: str, text: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
        return p

    def plx(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        proc = subprocess.run(
            [PLX, *args],
            cwd=cwd or self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PLX_KILL_GRACE": "1", **(env or {})},
            stdin=subprocess.DEVNULL,
        )
        return Result(proc)

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen([PLX, *args], cwd=self.root, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PLX_KILL_GRACE": "1"}, **kw)
        self.started.append(proc)
        return proc

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.root, check=True, capture_output=True, text=True).stdout

    def last_run(self) -> Any:
        return self.plx("log", "last", "--json").json()

    def wait_running(self, n: int = 1, timeout: float = 20) -> None:
        """Wait until n nodes of this project's runs are running (read through `plx log --json`)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.plx("log", "--json")
            if r.code == 0 and sum(run["counts"].get("running", 0) for run in r.json()) >= n:
                return
            time.sleep(0.05)
        raise AssertionError(f"{n} node(s) never started running")

    def run_ids(self) -> set[str]:
        runs = self.root / ".plx" / "runs"
        return {p.name for p in runs.iterdir()} if runs.is_dir() else set()

    def wait_started(self, n: int = 1, timeout: float = 60, skip: set[str] | frozenset[str] = frozenset()) -> None:
        """Wait until n nodes of this project's runs have started: a `running` event in a record, read
        from the files (a `plx log` under coverage on a loaded machine takes longer than a short node
        runs, so polling it can miss the node), and still true once they have ended."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = 0
            for events in (self.root / ".plx" / "runs").glob("*/events.jsonl"):
                if events.parent.name in skip:  # runs that were there before the one waited for
                    continue
                try:
                    lines = events.read_text(errors="replace").splitlines()
                except OSError:
                    continue
                for line in lines:
                    try:
                        started += json.loads(line).get("state") == "running"
                    except (ValueError, AttributeError):  # a line being written
                        pass
            if started >= n:
                return
            time.sleep(0.02)
        raise AssertionError(f"{n} node(s) never started")

    def counter(self, name: str) -> int:
        """How many times a node ran: operations in these tests append a line per execution."""
        p = self.root / "counts" / name
        return len(p.read_text().splitlines()) if p.exists() else 0


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    root = tmp_path / "proj"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run(["git", "config", "user.email", "t@example.com"], cwd=root, check=True)
    subprocess.run(["git", "config", "user.name", "Test"], cwd=root, check=True)
    (root / ".gitignore").write_text(".plx/\ncounts/\n")
    proj = Project(root)
    yield proj
    for proc in proj.started:  # a test that failed half-way must not leave a plx (and its nodes) running
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)


# An operation that counts its executions in counts/<tag>, so cache tests can prove what ran.
COUNTING_OP = """\
kind: operation
name: step
runner: bash_jinja2
inputs:
  - name: src
    type: text
    min: 0
params:
  - name: tag
    type: str
  - name: value
    type: str
    default: x
outputs:
  - name: out
    type: text
    filename: out.txt
cmd: |
  mkdir -p {{ (env_root ~ '/counts') | q }}
  echo run >> {{ (env_root ~ '/counts/' ~ param.tag) | q }}
  { {% if input.src %}cat {{ input.src | q }}; {% endif %}echo {{ param.value | q }}; } > {{ output.out | q }}
"""


def counting_op(root: Path) -> str:
    return COUNTING_OP.replace("env_root", repr(str(root)))
