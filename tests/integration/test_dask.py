"""The Dask executor against a real scheduler and two workers on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Project
from tests.dask_cluster import free_port, start_cluster, stop

# The test extra brings dask; an install without it skips this module with the reason printed.
pytest.importorskip("distributed", reason="dask[distributed] is not installed (pip install -e '.[test]' brings it)")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    address, procs = start_cluster([([], ["--nworkers", "2", "--nthreads", "1"])], 2)
    try:
        yield address
    finally:
        stop(procs)


def _setup(project: Project) -> None:
    project.write(
        "operations/w.yaml",
        """\
        kind: operation
        name: w
        runner: python
        inputs: [{name: src, type: text, min: 0}]
        params: [{name: v, type: str}]
        outputs: [{name: out, type: text}]
        cmd: |
          import os
          prev = open(input["src"]).read() if input["src"] else ""
          open(output["out"], "w").write(prev + param["v"] + "\\n")
          print("ran on pid", os.getpid(), "node", os.environ["PLX_NODE"])
        """,
    )
    project.write(
        "graphs/g.yaml",
        """\
        kind: graph
        name: g
        nodes:
          a: {operation: w, params: {v: a}}
          b: {operation: w, params: {v: b}}
          c: {operation: w, inputs: {src: a.out}, params: {v: c}}
        outputs: {c: c.out}
        """,
    )


def test_graph_runs_on_dask_and_shares_the_cache(project: Project, scheduler: str) -> None:
    _setup(project)
    r = project.plx("run", "graphs/g.yaml", "--executor", "dask", "--scheduler", scheduler, "--json")
    assert r.code == 0, r
    assert {n["state"] for n in r.json()["nodes"].values()} == {"success"}
    assert project.plx("get", "last", "c", "-o", "-").out == "a\nc\n"
    assert "node c" in project.plx("log", "last", "c").out
    local = project.plx("run", "graphs/g.yaml", "--json")
    assert {n["state"] for n in local.json()["nodes"].values()} == {"cached"}
    local = project.plx("run", "graphs/g.yaml", "--no-cache", "--json")
    assert local.json()["nodes"]["c"]["outputs"] == r.json()["nodes"]["c"]["outputs"]


def test_a_sweep_runs_on_dask_with_its_shared_upstream_once(project: Project, scheduler: str) -> None:
    _setup(project)
    r = project.plx("run", "graphs/g.yaml", "--sweep", "c.v=x,y", "--executor", "dask", "--scheduler", scheduler, "--json")
    assert r.code == 0, r
    runs = r.json()
    assert [run["overrides"] for run in runs] == [{"c.v": "x"}, {"c.v": "y"}]
    assert [project.plx("get", run["id"], "c", "-o", "-").out for run in runs] == ["a\nx\n", "a\ny\n"]
    ran_a = [run["nodes"]["a"]["state"] for run in runs]
    assert ran_a.count("success") == 1, ran_a  # the shared upstream executed once


def test_a_fan_out_runs_on_dask(project: Project, scheduler: str) -> None:
    _setup(project)
    project.write(
        "graphs/fan.yaml",
        """\
        kind: graph
        name: fan
        nodes:
          a: {operation: w, foreach: {v: [x, y, z]}, params: {v: "${v}"}}
          c: {operation: w, foreach: a, inputs: {src: item.out}, params: {v: "${key}"}}
        outputs: {y: "c[v=y].out"}
        """,
    )
    r = project.plx("run", "graphs/fan.yaml", "--executor", "dask", "--scheduler", scheduler, "--json")
    assert r.code == 0, r
    assert list(r.json()["nodes"]) == ["a[v=x]", "a[v=y]", "a[v=z]", "c[v=x]", "c[v=y]", "c[v=z]"]
    assert project.plx("get", "last", "y", "-o", "-").out == "y\nv=y\n"
    assert "node c[v=z]" in project.plx("log", "last", "c[v=z]").out


def test_failure_and_timeout_on_dask(project: Project, scheduler: str) -> None:
    pids = project.root / "pids"
    pids.mkdir()
    project.write("operations/bad.yaml", "kind: operation\nname: bad\nrunner: command\noutputs: [{name: out}]\ncmd: echo oops >&2; exit 4\n")
    project.write(
        "operations/slow.yaml",
        f"kind: operation\nname: slow\nrunner: command\noutputs: [{{name: out}}]\ntimeout: 0.02\ncmd: (sleep 300 & echo $! > {pids}/child; wait) & sleep 300\n",
    )
    project.write("graphs/f.yaml", "kind: graph\nname: f\nnodes:\n  bad: {operation: bad}\n  slow: {operation: slow}\n")
    r = project.plx("run", "graphs/f.yaml", "--keep-going", "--executor", "dask", "--scheduler", scheduler, "--json")
    assert r.code == 1
    nodes = r.json()["nodes"]
    assert nodes["bad"]["state"] == "failed" and nodes["bad"]["exit_code"] == 4
    assert nodes["slow"]["state"] == "timeout"
    assert project.plx("log", "last", "bad", "--stderr").out == "oops\n"
    child = int((pids / "child").read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split(")")[1].split()[0]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def test_what_a_successful_node_leaves_running_on_a_worker_is_stopped(project: Project, scheduler: str) -> None:
    """A node that succeeds but leaves processes behind, one in a session of its own (setsid), one in a
    process group of its own (a job of a subshell with job control): both are gone when plx returns
    (SPEC §9, nothing keeps running), on Dask as locally. Neither is reached by the node's process group."""
    pids = project.root / "pids"
    pids.mkdir()
    project.write(
        "operations/escape.yaml",
        "kind: operation\nname: escape\nrunner: command\noutputs: [{name: out}]\ncmd: |\n"
        f"  setsid sleep 3001 > /dev/null 2>&1 < /dev/null & echo $! > {pids}/setsid\n"
        # it has left the node's session (else the end of the node's process group would take it)
        """  while [ "$(cut -d' ' -f6 /proc/$!/stat)" != "$!" ]; do sleep 0.01; done\n"""
        f"  ( set -m; sleep 3002 > /dev/null 2>&1 < /dev/null & echo $! > {pids}/group )\n"
        '  echo ok > "$OUTPUT_OUT"\n',
    )
    project.write("graphs/e.yaml", "kind: graph\nname: e\nnodes:\n  e: {operation: escape}\n")
    r = project.plx("run", "graphs/e.yaml", "--executor", "dask", "--scheduler", scheduler, "--json")
    left = [int((pids / name).read_text()) for name in ("setsid", "group")]
    try:
        assert r.code == 0 and r.json()["nodes"]["e"]["state"] == "success", r
        assert [pid for pid in left if _alive(pid)] == []
    finally:
        for pid in left:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_ctrl_c_stops_remote_nodes(project: Project, scheduler: str) -> None:
    pids = project.root / "pids"
    pids.mkdir()
    project.write(
        "operations/nap.yaml",
        f"kind: operation\nname: nap\nrunner: command\nparams: [{{name: t, type: int}}]\noutputs: [{{name: out}}]\ncmd: echo $$ > {pids}/$PARAM_T; sleep 300\n",
    )
    project.write("graphs/n.yaml", "kind: graph\nname: n\nnodes:\n  x: {operation: nap, params: {t: 1}}\n  y: {operation: nap, params: {t: 2}}\n")
    proc = project.popen("run", "graphs/n.yaml", "--executor", "dask", "--scheduler", scheduler)
    deadline = time.monotonic() + 30
    while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    for f in pids.iterdir():
        pid = int(f.read_text())
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists()
    assert project.last_run()["status"] == "canceled"


def test_ctrl_c_with_many_nodes_queued_starts_no_more(project: Project, scheduler: str) -> None:
    """20 nodes, 2 worker threads: 2 run, the rest wait in Dask's queue. Ctrl-C stops the 2 and none of
    the others ever starts (plx does not wait for them to run one after the other)."""
    pids = project.root / "pids"
    pids.mkdir()
    project.write(
        "operations/nap.yaml",
        f"kind: operation\nname: nap\nrunner: command\nparams: [{{name: t, type: int}}]\noutputs: [{{name: out}}]\ncmd: echo $$ > {pids}/$PARAM_T; sleep 300\n",
    )
    project.write("graphs/n.yaml", "kind: graph\nname: n\nnodes:\n" + "".join(f"  n{i}: {{operation: nap, params: {{t: {i}}}}}\n" for i in range(20)))
    proc = project.popen("run", "graphs/n.yaml", "--executor", "dask", "--scheduler", scheduler)
    deadline = time.monotonic() + 60
    while len(list(pids.iterdir())) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)  # a generous guard: waiting for the queued nodes would take 18 x 300 s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    started = [int(f.read_text()) for f in pids.iterdir() if f.read_text().strip()]
    assert len(started) == 2, started
    for pid in started:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists()
    run = project.last_run()
    assert run["status"] == "canceled" and set(n["state"] for n in run["nodes"].values()) == {"canceled"}, [(k, n["state"], n.get("reason")) for k, n in run["nodes"].items() if n["state"] != "canceled"]


def test_unreachable_scheduler_is_a_clear_error(project: Project) -> None:
    _setup(project)
    r = project.plx("run", "graphs/g.yaml", "--executor", "dask", "--scheduler", f"tcp://127.0.0.1:{free_port()}")
    assert r.code == 1 and "cannot reach the Dask scheduler" in r.err and "Traceback" not in r.err
    assert project.plx("run", "graphs/g.yaml", "--executor", "dask").code == 2
