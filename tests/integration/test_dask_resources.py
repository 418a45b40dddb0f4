"""`resources` on Dask: worker resources, against a real scheduler and a worker that offers CPU=2,GPU=1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Project
from tests.dask_cluster import start_cluster, stop
from tests.integration.test_resources_retries import TWO, overlap, span_of, spans


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    address, procs = start_cluster([([], ["--nworkers", "1", "--nthreads", "2", "--resources", "CPU=2,GPU=1"])], 1)
    try:
        yield address
    finally:
        stop(procs)


def test_resources_become_dask_worker_resources(project: Project, scheduler: str) -> None:
    # Two threads on the worker, four slots of -j: only the worker's CPU=2 (and GPU=1) makes them take turns.
    g = spans(project, "{cpus: 2, gpus: 1}", TWO)
    r = project.plx("run", g, "-j", "4", "--executor", "dask", "--scheduler", scheduler)
    assert r.code == 0, r
    assert not overlap(span_of(project, "a"), span_of(project, "b"))
    spans(project, "{cpus: 1}", TWO.replace("tag: a", "tag: a1").replace("tag: b", "tag: b1"))
    assert project.plx("run", g, "-j", "2", "--executor", "dask", "--scheduler", scheduler).code == 0
    assert overlap(span_of(project, "a"), span_of(project, "b"))


def test_a_request_no_worker_can_meet_fails_before_anything_runs(project: Project, scheduler: str) -> None:
    g = spans(project, "{gpus: 2}", TWO)
    r = project.plx("run", g, "--executor", "dask", "--scheduler", scheduler, timeout=60)
    assert r.code == 1, r
    assert "node 'a' needs the Dask worker resources CPU=1,GPU=2, and no worker of the cluster has them" in r.err
    assert project.plx("log", "--json").json() == []
