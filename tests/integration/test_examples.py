"""The repository's own example graphs validate and run, as the README promises."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO, Project

GRAPHS = sorted(p.name for p in (REPO / "graphs").glob("*.yaml"))


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("examples") / "proj"
    root.mkdir()
    for d in ("operations", "graphs", "data"):
        shutil.copytree(REPO / d, root / d)
    shutil.copy(REPO / "plx.yaml", root / "plx.yaml")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return Project(root)


def test_the_examples_validate(repo_copy: Project) -> None:
    r = repo_copy.plx("validate")
    assert r.code == 0, r


@pytest.mark.parametrize("graph", GRAPHS)
def test_example_graph_runs(repo_copy: Project, graph: str) -> None:
    r = repo_copy.plx("run", f"graphs/{graph}", "--json")
    assert r.code == 0, r
    assert r.json()["status"] == "success"


def test_demo_metrics_are_sensible(repo_copy: Project) -> None:
    repo_copy.plx("run", "graphs/demo.yaml")
    metrics = json.loads(repo_copy.plx("get", "last", "metrics", "-o", "-").out)
    assert metrics["accuracy"] > 0.85 and metrics["n_test"] == 54


def test_sweep_script(repo_copy: Project) -> None:
    proc = subprocess.run([sys.executable, "graphs/lr_sweep.py"], cwd=repo_copy.root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "metrics_3.accuracy" in proc.stdout
