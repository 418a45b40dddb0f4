"""The whole engine on an executor added by name, without processes: a fake executor writes each
node's outputs itself. A sweep of two members shares every key, so the second member's tasks wait
on the first's; the first attempt of one key fails, and its waiter computes the key itself."""

from __future__ import annotations

import os
import queue
import signal
from pathlib import Path
from typing import Any

import pytest

from plx.commands import plan_members
from plx.engine import Engine, NullReporter, RunOptions
from plx.errors import Interrupted
from plx.executors.base import Finished, Job, register, registered
from plx.loader import Library
from plx.project import Project


class WritingExecutor:
    """Runs nothing: writes `out` in the job's folder (its text: the node id), or fails it when told."""

    fail_once: set[str] = set()  # nodes whose first job exits 1
    jobs: list[str] = []

    def __init__(self, opts: Any, results: queue.Queue[Any]) -> None:
        self.results = results
        self.running: dict[str, Any] = {}

    def submit(self, job: Job) -> None:
        if job.before is not None:
            job.before()
        node = job.env["PLX_NODE"]
        WritingExecutor.jobs.append(job.id)
        code = 0
        if node in WritingExecutor.fail_once:
            WritingExecutor.fail_once.discard(node)
            code = 1
        else:
            (job.cwd / "out").write_text(node + "\n")
        self.results.put(Finished(job.id, code, False, 0.0, 0.001))

    def cancel_all(self, hard: bool = False) -> None:
        pass

    def close(self) -> None:
        pass

    def check_resources(self, requests: dict[str, Any]) -> list[str]:
        return []


def project(root: Path) -> tuple[Project, Library, Path]:
    (root / "operations").mkdir(parents=True)
    (root / "graphs").mkdir()
    (root / "operations/step.yaml").write_text(
        "kind: operation\nname: step\nrunner: command\ncmd: unused\n"
        "inputs: [{name: src, type: text, min: 0}]\nparams: [{name: n, type: int, default: 0}]\noutputs: [{name: out, type: text}]\n"
    )
    (root / "graphs/g.yaml").write_text(
        "kind: graph\nname: g\nparams: [{name: k, type: int, default: 1}]\nnodes:\n  a: {operation: step}\n  b: {operation: step, inputs: {src: a.out}}\n"
    )
    proj = Project(root)
    return proj, Library(proj), root / "graphs/g.yaml"


def test_a_sweep_on_a_fake_executor_dedups_and_a_failed_first_makes_its_waiter_run(tmp_path: Path) -> None:
    proj, lib, graph = project(tmp_path)
    # `k` is a graph param no node uses: both members have the same keys, so each task of the
    # second member waits on the first member's.
    members, flat = plan_members(lib, graph, targets=[], params=[], inputs=[], sweeps=["k=1,2"])
    register("writing", WritingExecutor)
    WritingExecutor.jobs, WritingExecutor.fail_once = [], {"a"}
    try:
        opts = RunOptions(jobs=2, keep_going=True, executor="writing", overrides=flat, rev={"commit": "0" * 40})
        records = Engine(proj, members, opts, NullReporter(), lib).run_all()
    finally:
        registered().pop("writing")
    first, second = records
    assert first["nodes"]["a"]["state"] == "failed" and first["nodes"]["b"]["state"] == "skipped"
    # The waiter on a's key computed it itself, then b ran once for the second member.
    assert second["nodes"]["a"]["state"] == "success" and second["nodes"]["b"]["state"] == "success"
    assert len(WritingExecutor.jobs) == 3
    assert {r["status"] for r in records} == {"failed", "success"}


def test_a_second_run_is_served_from_the_cache(tmp_path: Path) -> None:
    proj, lib, graph = project(tmp_path)
    register("writing", WritingExecutor)
    WritingExecutor.jobs, WritingExecutor.fail_once = [], set()
    try:
        for _ in range(2):
            members, flat = plan_members(lib, graph, targets=[], params=[], inputs=[])
            opts = RunOptions(jobs=1, executor="writing", overrides=flat, rev={"commit": "0" * 40})
            record = Engine(proj, members, opts, NullReporter(), lib).run_all()[0]
    finally:
        registered().pop("writing")
    assert len(WritingExecutor.jobs) == 2  # a and b, once
    assert {n["state"] for n in record["nodes"].values()} == {"cached"}



class _TermOnFirstSuccess(NullReporter):
    """Sends plx's own process a real SIGTERM when the first node is confirmed: mid-way through a batch."""

    sent = False

    def node_state(self, node: str, state: str, info: dict[str, Any]) -> None:
        if state == "success" and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_sigterm_while_nodes_are_confirmed_waits_until_the_whole_batch_is(tmp_path: Path) -> None:
    """Found by review: nodes confirmed one by one after their entries' commit; a SIGTERM after the
    first left the rest of the batch recorded `canceled`, their entries committed. Now the signal
    waits for the batch, then stops the run."""
    proj, lib, _ = project(tmp_path)
    (tmp_path / "graphs/wide.yaml").write_text("kind: graph\nname: wide\nnodes:\n" + "".join(f"  n{i}: {{operation: step, params: {{n: {i}}}}}\n" for i in range(6)))
    members, flat = plan_members(lib, tmp_path / "graphs/wide.yaml", targets=[], params=[], inputs=[])
    register("writing", WritingExecutor)
    WritingExecutor.jobs, WritingExecutor.fail_once = [], set()
    reporter = _TermOnFirstSuccess()
    try:
        # jobs=6: the fake executor finishes each job as it is submitted, so all six end before the
        # loop commits them, in one batch
        opts = RunOptions(jobs=6, executor="writing", overrides=flat, rev={"commit": "0" * 40})
        engine = Engine(proj, members, opts, reporter, lib)
        with pytest.raises(Interrupted):  # the run ends interrupted
            engine.run_all()
    finally:
        registered().pop("writing")
    assert reporter.sent and len(WritingExecutor.jobs) == 6
    assert {str(s) for s in engine.state.values()} == {"success"}, engine.state


def test_runs_that_overlap_give_the_switch_interval_back_when_the_last_one_ends() -> None:
    """Two runs in one process (the Python API, in threads) that end in the order they started: the
    interval stays short while either runs, and is the program's own again after both."""
    import sys

    from plx.engine import SWITCH_INTERVAL, _short_switch_interval

    before = sys.getswitchinterval()
    first, second = _short_switch_interval(), _short_switch_interval()
    first.__enter__()
    second.__enter__()
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
    first.__exit__(None, None, None)
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)  # the second still runs
    second.__exit__(None, None, None)
    assert sys.getswitchinterval() == pytest.approx(before)
