"""Nothing keeps running (docs/reliability.md): real signals to plx, nodes that call setsid and double-fork;
and a node that fails while the run stops is `failed` with its own reason."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PLX, Project

# Every way a node's process can leave its process group, each writing its pid to a file:
# setsid in a subshell, setsid in the background, a double fork, a process that clears the
# environment variables plx marks its processes with; then the leader and its foreground child.
ESCAPING_OP = """\
kind: operation
name: escape
runner: bash_jinja2
params:
  - {name: dir, type: str}
  - {name: t, type: float, default: 0.2}
  - {name: code, type: int, default: 0}
outputs: [{name: out}]
timeout: 5
cmd: |
  echo "leader $$" >> {{ param.dir }}/pids
  ( setsid sleep 300 & echo "setsid-subshell $!" >> {{ param.dir }}/pids )
  setsid sleep 301 & echo "setsid $!" >> {{ param.dir }}/pids
  ( ( sleep 302 & echo "double-fork $!" >> {{ param.dir }}/pids ) & )
  env -u PLX_RUN_ID -u PLX_NODE sleep 303 & echo "unmarked $!" >> {{ param.dir }}/pids
  sleep {{ param.t }} & echo "child $!" >> {{ param.dir }}/pids
  wait $!
  touch {{ output.out }}
  exit {{ param.code }}
"""


def _setup(project: Project, tmp_path: Path, t: float = 0.2, code: int = 0, timeout: float | None = None) -> Path:
    d = tmp_path / "pids"
    d.mkdir()
    op = ESCAPING_OP if timeout is None else ESCAPING_OP.replace("timeout: 5", f"timeout: {timeout}")
    project.write("operations/escape.yaml", op)
    project.write("graphs/g.yaml", f"kind: graph\nname: g\nnodes:\n  a: {{operation: escape, params: {{dir: '{d}', t: {t}, code: {code}}}}}\n")
    return d


def _pids(d: Path, n: int = 6, timeout: float = 20) -> dict[str, int]:
    """The node's processes by what they are, once all have written their pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = d / "pids"
        lines = [line.split() for line in p.read_text().splitlines()] if p.exists() else []
        if len(lines) >= n:
            return {name: int(pid) for name, pid in lines}
        time.sleep(0.05)
    raise AssertionError(f"the node never wrote {n} pids")


def _alive(pid: int) -> bool:
    """Running (a zombie is dead: it only waits for its parent to read its status)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return False


def _processes(*files: str) -> Iterator[tuple[int, list[bytes]]]:
    """Every process on the machine whose /proc files (stat, cmdline, environ, ...) could be read, with them."""
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                yield int(p), [Path(f"/proc/{p}/{name}").read_bytes() for name in files]
            except OSError:
                continue


def _marked(run_id: str) -> list[int]:
    """Every process on the machine still carrying this run's marker."""
    return [pid for pid, (env,) in _processes("environ") if f"PLX_RUN_ID={run_id}\0".encode() in env and _alive(pid)]


def _survivors(pids: dict[str, int], run_id: str, wait: float = 5.0) -> list[int]:
    deadline = time.monotonic() + wait  # a generous guard: stopping takes the TERM grace period
    while True:
        left = sorted(set(p for p in pids.values() if _alive(p)) | set(_marked(run_id)))
        if not left or time.monotonic() > deadline:
            for p in left:  # leave nothing behind, whatever the outcome
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            return left
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def _leave_nothing(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Whatever a test asserted, no process of its nodes outlives it."""
    yield
    p = tmp_path / "pids" / "pids"
    for line in p.read_text().splitlines() if p.exists() else []:
        try:
            os.kill(int(line.split()[1]), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_every_process(project: Project, tmp_path: Path, sig: int) -> None:
    d = _setup(project, tmp_path, t=300)
    proc = project.popen("run", "graphs/g.yaml")
    pids = _pids(d)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    run = project.last_run()
    assert run["status"] == "canceled" and run["nodes"]["a"]["state"] == "canceled", run
    assert _survivors(pids, run["id"]) == []


def test_timeout_stops_every_process(project: Project, tmp_path: Path) -> None:
    d = _setup(project, tmp_path, t=300, timeout=0.02)  # 1.2 s
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 1, r
    run = project.last_run()
    assert run["nodes"]["a"]["state"] == "timeout", run
    assert _survivors(_pids(d), run["id"]) == []


def test_what_a_finished_node_leaves_is_stopped_while_the_run_goes_on(project: Project, tmp_path: Path) -> None:
    d = _setup(project, tmp_path)
    # b starts after a and checks, 4 s later, that nothing a started is still running.
    project.write(
        "operations/check.yaml",
        f"""\
        kind: operation
        name: check
        runner: bash_jinja2
        inputs: [{{name: after}}]
        outputs: [{{name: out}}]
        cmd: |
          sleep 4
          for p in $(awk '{{print $2}}' {d}/pids); do
            if [ -e /proc/$p ] && ! grep -q '^[0-9]* ([^)]*) Z' /proc/$p/stat; then echo "alive: $p" >&2; exit 5; fi
          done
          touch {{{{ output.out }}}}
        """,
    )
    project.write(
        "graphs/g.yaml",
        f"kind: graph\nname: g\nnodes:\n  a: {{operation: escape, params: {{dir: '{d}'}}}}\n  b: {{operation: check, inputs: {{after: a.out}}}}\n",
    )
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 0, r
    assert _survivors(_pids(d), project.last_run()["id"]) == []


def test_a_first_failure_leaves_nothing_running(project: Project, tmp_path: Path) -> None:
    d = _setup(project, tmp_path)
    project.write(
        "graphs/g.yaml",
        f"kind: graph\nname: g\nnodes:\n  a: {{operation: escape, params: {{dir: '{d}', code: 3}}}}\n  b: {{operation: escape, params: {{dir: '{d}', t: 2, code: 4}}}}\n",
    )
    r = project.plx("run", "graphs/g.yaml", "-j", "2")
    assert r.code == 1, r
    run = project.last_run()
    assert run["nodes"]["a"]["state"] == "failed" and run["nodes"]["b"]["state"] == "failed", run
    lines = (d / "pids").read_text().split()
    pids = {f"{i}": int(p) for i, p in enumerate(lines[1::2])}
    assert len(pids) == 12
    assert _survivors(pids, run["id"]) == []


def _guardian_of(pid: int) -> int:
    """The guardian plx started (a child of plx running plx.procs.guard)."""
    for p, (stat, cmd) in _processes("stat", "cmdline"):
        if int(stat.rpartition(b")")[2].split()[1]) == pid and b"plx.procs" in cmd:
            return p
    raise AssertionError("plx started no guardian")


def test_a_killed_plx_leaves_nothing_running(project: Project, tmp_path: Path) -> None:
    """SIGKILL of plx: its guardian stops every process of the run at once, with no plx command."""
    d = _setup(project, tmp_path, t=300)
    proc = project.popen("run", "graphs/g.yaml")
    pids = _pids(d)
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10  # a generous guard: the guardian's TERM grace is 1 s
    while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [name for name, p in pids.items() if _alive(p)] == []
    run = project.last_run()
    assert run["status"] == "interrupted"
    assert _survivors(pids, run["id"], wait=0) == []


def test_the_guardian_ends_with_its_run(project: Project) -> None:
    """A run that ends as runs end tells its guardian, which exits: none outlives its plx (plx does
    not wait for it, so it may take a moment after plx is gone)."""
    project.write("operations/nap.yaml", "kind: operation\nname: nap\nrunner: command\noutputs: [{name: out}]\ncmd: sleep 1; touch $OUTPUT_OUT\n")
    project.write("graphs/n.yaml", "kind: graph\nname: n\nnodes:\n  a: {operation: nap}\n")
    proc = project.popen("run", "graphs/n.yaml")
    guardian = None
    deadline = time.monotonic() + 10
    while guardian is None and time.monotonic() < deadline:  # started with the first node
        with contextlib.suppress(AssertionError):
            guardian = _guardian_of(proc.pid)
        time.sleep(0.02)
    assert guardian is not None, "plx started no guardian"
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    deadline = time.monotonic() + 5
    while _alive(guardian) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(guardian), "the guardian outlived its run"


def _guardians_with(token: str) -> list[int]:
    """The guardians (plx.procs in their command line) whose environment holds PLX_TEST_TOKEN=token."""
    mark = f"PLX_TEST_TOKEN={token}".encode()
    return [p for p, (cmd, env) in _processes("cmdline", "environ") if b"plx.procs" in cmd and mark in env.split(b"\0")]


def test_a_run_that_starts_no_node_leaves_no_guardian(project: Project) -> None:
    """plx starts its guardian while it reads the graph (before its first node); a run that never
    starts one (a graph that fails to load, a no-op) leaves it to end with plx."""
    project.write("operations/e.yaml", "kind: operation\nname: e\nrunner: command\noutputs: [{name: out}]\ncmd: echo hi > $OUTPUT_OUT\n")
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  a: {operation: e}\n")
    project.write("graphs/bad.yaml", "kind: graph\nname: bad\nnodes:\n  a: {operation: nope}\n")
    assert project.plx("run", "graphs/g.yaml").code == 0
    for i, (graph, code) in enumerate([("graphs/bad.yaml", 1), ("graphs/g.yaml", 0)]):
        token = f"{os.getpid()}-{i}-{time.monotonic_ns()}"
        r = project.plx("run", graph, env={"PLX_TEST_TOKEN": token})
        assert r.code == code, r.err
        deadline = time.monotonic() + 5
        while _guardians_with(token) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _guardians_with(token) == [], f"a guardian outlived `plx run {graph}`"
    # The check above can fail: while a node runs, its run's guardian carries the token.
    token = f"{os.getpid()}-live-{time.monotonic_ns()}"
    go = project.root / "go"
    hold = f"while [ ! -e {go} ]; do sleep 0.02; done; touch $OUTPUT_OUT"
    project.write("operations/hold.yaml", f"kind: operation\nname: hold\nrunner: command\noutputs: [{{name: out}}]\ncmd: {hold}\n")
    project.write("graphs/n.yaml", "kind: graph\nname: n\nnodes:\n  a: {operation: hold}\n")
    before = {p.name for p in (project.root / ".plx/runs").iterdir()}
    env = {**os.environ, "PLX_TEST_TOKEN": token}
    proc = subprocess.Popen([PLX, "run", "graphs/n.yaml"], cwd=project.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        project.wait_started(1, skip=before)  # the node waits for `go`: its run's guardian is there until then
        assert len(_guardians_with(token)) == 1  # one guardian while the node runs: the one started ahead
    finally:
        go.touch()
        assert proc.wait(timeout=60) == 0


def test_the_next_plx_command_stops_what_a_killed_run_left(project: Project, tmp_path: Path) -> None:
    """plx and its guardian both SIGKILLed: `plx run` (of another graph) finds the dead run and stops
    its processes before anything else, without a `plx log` in between."""
    d = _setup(project, tmp_path, t=300)
    proc = project.popen("run", "graphs/g.yaml")
    pids = _pids(d)
    guardian = _guardian_of(proc.pid)
    os.kill(guardian, signal.SIGKILL)
    proc.kill()
    proc.communicate(timeout=30)
    time.sleep(0.5)
    assert any(_alive(p) for p in pids.values())  # nothing stopped them yet
    project.write("graphs/h.yaml", "kind: graph\nname: h\nnodes: {}\n")
    r = project.plx("run", "graphs/h.yaml")
    assert r.code == 0, r
    assert [name for name, p in pids.items() if _alive(p)] == [], "plx run did not stop the leftovers"
    runs = project.plx("log", "--json").json()
    assert runs[1]["status"] == "interrupted"
    assert _survivors(pids, runs[1]["id"], wait=0) == []


def test_a_node_failing_while_the_run_stops_is_failed_with_its_reason(project: Project) -> None:
    project.write(
        "operations/fail.yaml",
        """\
        kind: operation
        name: fail
        runner: command
        params: [{name: t, type: float}, {name: code, type: int}]
        outputs: [{name: out}]
        cmd: sleep $PARAM_T; echo "gave up after $PARAM_T" >&2; exit $PARAM_CODE
        """,
    )
    project.write(
        "graphs/g.yaml",
        "kind: graph\nname: g\nnodes:\n  a: {operation: fail, params: {t: 0.1, code: 3}}\n  b: {operation: fail, params: {t: 1, code: 4}}\n",
    )
    r = project.plx("run", "graphs/g.yaml", "-j", "2")
    assert r.code == 1, r
    nodes = project.last_run()["nodes"]
    assert nodes["a"]["state"] == "failed" and nodes["a"]["exit_code"] == 3
    assert nodes["b"]["state"] == "failed" and nodes["b"]["exit_code"] == 4, nodes["b"]
    assert nodes["b"]["reason"] == "exit code 4: gave up after 1"


def test_a_node_failing_on_its_own_during_ctrl_c_is_failed(project: Project, tmp_path: Path) -> None:
    flag = tmp_path / "started"
    project.write(
        "operations/stubborn.yaml",
        f"""\
        kind: operation
        name: stubborn
        runner: command
        params: [{{name: mode, type: str}}]
        outputs: [{{name: out}}]
        cmd: |
          if [ "$PARAM_MODE" = own ]; then trap 'echo "cleanup failed" >&2; exit 4' TERM; fi
          touch {flag}.$PARAM_MODE
          sleep 300 & wait $!
        """,
    )
    project.write(
        "graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  own: {operation: stubborn, params: {mode: own}}\n  plain: {operation: stubborn, params: {mode: plain}}\n"
    )
    proc = project.popen("run", "graphs/g.yaml", "-j", "2")
    deadline = time.monotonic() + 20
    while not (Path(f"{flag}.own").exists() and Path(f"{flag}.plain").exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    nodes = project.last_run()["nodes"]
    assert nodes["plain"]["state"] == "canceled", nodes
    assert nodes["own"]["state"] == "failed" and nodes["own"]["exit_code"] == 4, nodes
    assert nodes["own"]["reason"] == "exit code 4: cleanup failed"


def test_a_reused_pid_is_left_alone(tmp_path: Path) -> None:
    """kill_leftovers checks start times: a process carrying the marker but started before the run
    (its pid cannot be one of the run's) is not touched."""
    from plx.procs import kill_leftovers

    env = {**os.environ, "PLX_RUN_ID": "run-x"}
    p = subprocess.Popen(["sleep", "30"], env=env)
    # An unmarked process in the same session (this test's, not a node's): never touched.
    q = subprocess.Popen(["sleep", "30"], env={k: v for k, v in os.environ.items() if not k.startswith("PLX_")})
    try:
        time.sleep(0.1)
        assert kill_leftovers("run-x", since=time.time() + 60, grace=0.1) == []
        assert p.poll() is None
        assert kill_leftovers("run-x", since=time.time() - 60, grace=0.1) == [p.pid]
        assert p.wait(timeout=5) == -signal.SIGTERM
        assert q.poll() is None
    finally:
        for x in (p, q):
            x.kill()
            x.wait()
