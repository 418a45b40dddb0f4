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


def test_cross_validation_gathers_five_folds(repo_copy: Project) -> None:
    r = repo_copy.plx("run", "graphs/cross_validation.yaml", "--json")
    assert r.code == 0, r
    nodes = r.json()["nodes"]
    assert [n for n in nodes if n.startswith("evaluate")] == [f"evaluate[fold={i}]" for i in range(5)]
    folds = repo_copy.plx("get", "last", "folds", "-o", "-").out.splitlines()
    assert len(folds) == 6 and folds[0].startswith("source,accuracy,n_test")
    assert sum(int(line.split(",")[2]) for line in folds[1:]) == 180  # every row is tested exactly once
    summary = json.loads(repo_copy.plx("get", "last", "summary", "-o", "-").out)
    assert summary["columns"]["accuracy"]["mean"] > 0.9


def test_per_file_pipeline_runs_only_a_new_files_nodes(repo_copy: Project) -> None:
    assert repo_copy.plx("run", "graphs/shops.yaml").code == 0
    (repo_copy.root / "data/shops/zurich.csv").write_text("date,product,quantity,amount\n2026-03-01,tea,3,9.00\n")
    try:
        r = repo_copy.plx("run", "graphs/shops.yaml", "--json")
        assert r.code == 0, r
        ran = [n for n, d in r.json()["nodes"].items() if d["state"] == "success"]
        assert ran == ["tagged[zurich]", "large[zurich]", "all", "by_shop"]
        by_shop = repo_copy.plx("get", "last", "by_shop", "-o", "-").out
        assert by_shop.splitlines()[0] == "shop,count,sum_amount,mean_quantity" and "zurich,1,9" in by_shop
    finally:
        (repo_copy.root / "data/shops/zurich.csv").unlink()
