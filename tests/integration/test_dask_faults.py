"""The Dask executor under faults, for real: a worker SIGKILLed mid-node, a worker that cannot see the project."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PLX, Project
from tests.dask_cluster import start_cluster, stop

pytest.importorskip("distributed", reason="dask[distributed] is not installed (pip install -e '.[test]' brings it)")


def _start_cluster(prefixes: list[list[str]], n: int) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """One single-threaded worker per prefix (the command that wraps `dask worker`)."""
    return start_cluster([(prefix, ["--nthreads", "1"]) for prefix in prefixes], n)


@pytest.fixture
def two_workers() -> Iterator[str]:
    address, procs = _start_cluster([[], []], 2)
    try:
        yield address
    finally:
        stop(procs)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_worker_killed_mid_node_leaves_one_attempt(project: Project, two_workers: str) -> None:
    pids = project.root / "pids"
    pids.mkdir()
    # Attempt 1 is killed with its worker while its processes (the leader, and a child in the
    # background that writes later) would go on appending to the output; only attempt 2 may count.
    project.write(
        "operations/slow.yaml",
        f"""\
        kind: operation
        name: slow
        runner: command
        outputs: [{{name: out, type: text}}]
        cmd: |
          a=$PLX_DASK_ATTEMPT
          echo "start $a" >> "$OUTPUT_OUT"
          (sleep 2; echo "late $a" >> "$OUTPUT_OUT"; if [ "$a" = 1 ]; then sleep 120; fi) &
          echo $! > {pids}/child-$a
          if [ "$a" = 1 ]; then setsid sleep 600 > /dev/null 2>&1 < /dev/null & echo $! > {pids}/escaped-1; fi
          echo $$ > {pids}/leader-$a
          echo $PPID > {pids}/worker-$a
          sleep 4
          echo "end $a" >> "$OUTPUT_OUT"
          wait
        """,
    )
    project.write(
        "operations/quick.yaml",
        "kind: operation\nname: quick\nrunner: command\ninputs: [{name: src, type: text}]\noutputs: [{name: out, type: text}]\ncmd: cat $INPUT_SRC > $OUTPUT_OUT\n",
    )
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  slow: {operation: slow}\n  after: {operation: quick, inputs: {src: slow.out}}\n")
    proc = project.popen("run", "graphs/g.yaml", "--executor", "dask", "--scheduler", two_workers, "--json")
    deadline = time.monotonic() + 60
    while not (pids / "worker-1").exists() or not (pids / "worker-1").read_text().strip():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    worker1, leader1, child1, escaped1 = (int((pids / f"{w}-1").read_text()) for w in ("worker", "leader", "child", "escaped"))
    assert _alive(escaped1)
    os.kill(worker1, signal.SIGKILL)
    # The worker's node processes die with it, not later: before any retry could start; so does one
    # that left the node's process group and session (setsid).
    deadline = time.monotonic() + 30
    while (_alive(leader1) or _alive(child1) or _alive(escaped1)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(leader1) and not _alive(child1) and not _alive(escaped1)
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    import json

    run = json.loads(out)
    node = run["nodes"]["slow"]
    assert node["state"] == "success", err
    assert node["dask_attempts"] == 2, node
    got = project.plx("get", "last", "slow.out", "-o", "-")
    assert got.out == "start 2\nlate 2\nend 2\n", got
    assert project.plx("get", "last", "after.out", "-o", "-").out == "start 2\nlate 2\nend 2\n"
    record = project.last_run()
    assert run["status"] == "success" and record["status"] == "success"
    data = json.loads(next((project.root / ".plx" / "runs").glob(f"{run['id']}/run.json")).read_text())
    attempts = data["nodes"]["slow"]["dask_attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2] and attempts[0]["pid"] == leader1
    assert attempts[0]["worker"] != attempts[1]["worker"] or attempts[0]["pid"] != attempts[1]["pid"]
    assert data["nodes"]["slow"]["worker"] == attempts[1]["worker"]
    worker_log = project.plx("log", "last", "slow", "--worker").out
    assert "attempt 1 on Dask worker" in worker_log and "attempt 2 on Dask worker" in worker_log
    assert not list((project.root / ".plx" / "tmp").rglob("*.lost-attempt*")) and not list((project.root / ".plx" / "tmp").rglob("*.attempts"))


def test_a_worker_that_cannot_see_the_project(project: Project, tmp_path: Path) -> None:
    """A worker in its own mount namespace, with an empty tmpfs over the project's parent folder."""
    hidden = project.root.parent
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {hidden} && test ! -e {project.root}"], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"cannot hide a folder with unshare -m + tmpfs here: {probe.stderr.strip()}")
        pytest.skip(f"this machine forbids unshare -m / mount: {probe.stderr.strip()}")
    address, procs = _start_cluster([["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size=1m tmpfs {hidden} && exec "$@"', "sh"]], 1)
    try:
        project.write("operations/w.yaml", "kind: operation\nname: w\nrunner: command\noutputs: [{name: out}]\ncmd: echo hi > $OUTPUT_OUT\n")
        project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  w: {operation: w}\n")
        r = project.plx("run", "graphs/g.yaml", "--executor", "dask", "--scheduler", address, "--json")
        assert r.code == 1, r
        node = r.json()["nodes"]["w"]
        assert node["state"] == "failed"
        assert f"cannot see {project.root}" in node["reason"] and "mount the project's shared folder at the same path on every worker" in node["reason"], node
        assert "Traceback" not in r.err and "FileNotFoundError" not in r.err
    finally:
        stop(procs)


def test_workers_without_a_shared_folder_go_through_the_remote(project: Project, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The only worker cannot see the project (a tmpfs over its parent, in its own mount
    namespace); with a file:// remote it still runs every node: inputs from the remote, outputs to it."""
    hidden = project.root.parent
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {hidden} && test ! -e {project.root}"], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"cannot hide a folder with unshare -m + tmpfs here: {probe.stderr.strip()}")
        pytest.skip(f"this machine forbids unshare -m / mount: {probe.stderr.strip()}")
    remote = tmp_path_factory.mktemp("remote")
    cache = hidden / "worker-cache"  # inside the worker's tmpfs: a cache of its own
    worker = ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size=64m tmpfs {hidden} && PLX_WORKER_CACHE={cache} exec "$@"', "sh"]
    address, procs = _start_cluster([worker], 1)
    try:
        project.write("data/in.txt", "from the user\n")
        project.write(
            "operations/a.yaml",
            "kind: operation\nname: a\nrunner: command\ninputs: [{name: src, type: text}]\noutputs: [{name: out, type: text}, {name: d, type: directory}]\n"
            'cmd: |\n  cat "$INPUT_SRC" > "$OUTPUT_OUT"; echo a >> "$OUTPUT_OUT"\n  mkdir -p "$OUTPUT_D/sub"; echo deep > "$OUTPUT_D/sub/x"\n  echo "a ran on $(hostname)"\n',
        )
        project.write(
            "operations/b.yaml",
            "kind: operation\nname: b\nrunner: python\ninputs: [{name: src, type: text}, {name: d, type: directory}]\noutputs: [{name: out, type: text}]\n"
            "cmd: |\n  import os\n  text = open(input['src']).read() + open(os.path.join(input['d'], 'sub', 'x')).read()\n  open(output['out'], 'w').write(text + 'b\\n')\n",
        )
        project.write(
            "graphs/g.yaml",
            "kind: graph\nname: g\ninputs: [{name: data, type: text, default: data/in.txt}]\nnodes:\n"
            "  a: {operation: a, inputs: {src: inputs.data}}\n  b: {operation: b, inputs: {src: a.out, d: a.d}}\noutputs: {b: b.out}\n",
        )
        env = {"PLX_REMOTE": f"file://{remote}"}
        r = project.plx("run", "graphs/g.yaml", "--executor", "dask", "--scheduler", address, "--json", env=env)
        assert r.code == 0, r
        nodes = r.json()["nodes"]
        assert {n["state"] for n in nodes.values()} == {"success"}
        assert all(n["worker"].startswith("tcp://127.0.0.1") for n in nodes.values())
        assert project.plx("get", "last", "b", "-o", "-").out == "from the user\na\ndeep\nb\n"
        assert project.plx("log", "last", "a").out.startswith("a ran on ")  # its stdout came back too
        assert project.plx("cache", "verify", "--remote", env=env).code == 0
        # Without the remote, the same worker says what it cannot see and what to do.
        r = project.plx("run", "graphs/g.yaml", "--executor", "dask", "--scheduler", address, "--no-cache", "--json", env={"PLX_REMOTE": ""})
        assert r.code == 1 and "or configure a remote" in r.json()["nodes"]["a"]["reason"]
    finally:
        stop(procs)


SLOW_OP = """\
kind: operation
name: slow
runner: command
outputs: [{{name: out, type: text}}]
cmd: |
  a=$PLX_DASK_ATTEMPT
  echo "start $a" >> "$OUTPUT_OUT"
  echo $$ > {pids}/leader-$a.tmp && echo $PPID > {pids}/worker-$a.tmp && mv {pids}/leader-$a.tmp {pids}/leader-$a && mv {pids}/worker-$a.tmp {pids}/worker-$a
  if [ "$a" = 1 ]; then sleep 600; fi  # attempt 1 ends only by its worker's death: nothing depends on timing
  echo "end $a" >> "$OUTPUT_OUT"
"""


def test_a_worker_killed_mid_node_through_the_remote_names_both_attempts(project: Project, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Two workers that cannot see the project (each in its own mount namespace, a tmpfs over the
    project's parent) run through a file:// remote; the one running the node is SIGKILLed. There is
    no shared folder to keep `<work>.attempts`: the record still names the worker of each attempt."""
    hidden = project.root.parent
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {hidden} && test ! -e {project.root}"], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"cannot hide a folder with unshare -m + tmpfs here: {probe.stderr.strip()}")
        pytest.skip(f"this machine forbids unshare -m / mount: {probe.stderr.strip()}")
    remote = tmp_path_factory.mktemp("remote")
    pids = tmp_path_factory.mktemp("pids")  # outside the hidden folder: every worker and the test see it
    worker = ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size=64m tmpfs {hidden} && PLX_WORKER_CACHE={hidden}/cache exec "$@"', "sh"]
    address, procs = _start_cluster([worker, worker], 2)
    try:
        project.write("operations/slow.yaml", SLOW_OP.format(pids=pids))
        project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  slow: {operation: slow}\n")
        env = {**os.environ, "PLX_KILL_GRACE": "1", "PLX_REMOTE": f"file://{remote}"}
        cmd = [PLX, "run", "graphs/g.yaml", "--executor", "dask", "--scheduler", address, "--json"]
        proc = subprocess.Popen(cmd, cwd=project.root, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            deadline = time.monotonic() + 120
            while not (pids / "worker-1").exists():
                assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
                time.sleep(0.05)
            worker1, leader1 = int((pids / "worker-1").read_text()), int((pids / "leader-1").read_text())
            os.kill(worker1, signal.SIGKILL)
            out, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert not _alive(leader1)
        import json

        run = json.loads(out)
        node = run["nodes"]["slow"]
        assert node["state"] == "success" and node["dask_attempts"] == 2, (node, err)
        assert project.plx("get", "last", "slow.out", "-o", "-").out == "start 2\nend 2\n"
        data = json.loads((project.root / ".plx" / "runs" / run["id"] / "run.json").read_text())
        attempts = data["nodes"]["slow"]["dask_attempts"]
        assert [a["attempt"] for a in attempts] == [1, 2], attempts
        assert all(a["worker"].startswith("tcp://127.0.0.1:") for a in attempts) and attempts[0]["worker"] != attempts[1]["worker"], attempts
        assert data["nodes"]["slow"]["worker"] == attempts[1]["worker"]
        worker_log = project.plx("log", "last", "slow", "--worker").out
        assert f"attempt 1 on Dask worker {attempts[0]['worker']}" in worker_log and f"attempt 2 on Dask worker {attempts[1]['worker']}" in worker_log
    finally:
        stop(procs)
