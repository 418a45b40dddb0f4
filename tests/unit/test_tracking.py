"""Unit tests of tracking (metrics, filters, sort) and of the report's graph work (DAG, critical path, layout)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from plx.errors import UsageError
from plx.tracking import Where, numeric_leaves, sort_runs, sweep_tags


def test_numeric_leaves_flatten_with_dots_and_skip_non_metrics() -> None:
    out: dict[str, float] = {}
    numeric_leaves({"a": 1, "b": {"c": 2.5, "d": [3, {"e": 4}]}, "t": True, "s": "x", "n": None, "nan": math.nan, "inf": -math.inf}, "m", out)
    assert out == {"m.a": 1, "m.b.c": 2.5, "m.b.d.0": 3, "m.b.d.1.e": 4}


RUN = {"id": "r1", "name": "base", "status": "success", "tags": ["baseline", "lr=0.1"], "params": {"lr": 0.1, "opt": "adam", "flag": True}, "metrics": {"m.acc": 0.93}}


@pytest.mark.parametrize(
    "expr,expected",
    [
        ("metrics.m.acc>0.9", True),
        ("metrics.m.acc > 0.95", False),
        ("metrics.m.acc>=0.93", True),
        ("metrics.m.acc<1", True),
        ("metrics.m.acc=0.93", True),
        ("metrics.m.acc!=0.93", False),
        ("metrics.other>0", False),
        ("metrics.other!=0", True),
        ("params.lr=0.1", True),
        ("params.lr=0.10", True),
        ("params.opt=adam", True),
        ("params.opt='adam'", True),
        ("params.opt~da", True),
        ("params.opt>aaa", True),
        ("params.lr=adam", False),
        ("params.flag=true", True),
        ("params.flag=1", False),
        ("tags=baseline", True),
        ("tags=base", False),
        ("tags~base", True),
        ("tags!=nightly", True),
        ("name=base", True),
        ("status!=failed", True),
        ("metrics.m.acc>0.9 ", True),
    ],
)
def test_where(expr: str, expected: bool) -> None:
    assert Where(expr)(RUN) is expected


@pytest.mark.parametrize("expr", ["", "metrics", "metrics.m.acc", "metrics.m.acc>>1", "x=1", "metrics.=1", "params.lr<", "=1", "tags=~x"])
def test_malformed_where_is_a_usage_error_with_the_grammar(expr: str) -> None:
    with pytest.raises(UsageError) as err:
        Where(expr)
    assert err.value.exit_code == 2 and ("FIELD OP VALUE" in str(err.value))


def test_sort_puts_missing_values_last_both_ways() -> None:
    runs = [{"id": "a", "metrics": {"x": 2}}, {"id": "b", "metrics": {}}, {"id": "c", "metrics": {"x": 10}}, {"id": "d", "metrics": {"x": 1}}]
    assert [r["id"] for r in sort_runs(runs, "metrics.x")] == ["d", "a", "c", "b"]
    assert [r["id"] for r in sort_runs(runs, "-metrics.x")] == ["c", "a", "d", "b"]


def test_sweep_tags() -> None:
    assert sweep_tags(["lr", "layers", "name"], (0.1, [1, 2], "a b")) == ["lr=0.1", "layers=[1,2]", "name=a b"]


def test_dag_critical_path_and_layout() -> None:
    from plx.report_html import critical_path, dag_svg, layout, run_dag

    data = {
        "nodes": {
            "a": {"state": "success", "duration": 1.0},
            "b": {"state": "success", "duration": 5.0},
            "c": {"state": "cached", "duration": 0.0},
            "d": {"state": "success", "duration": 1.0},
        },
        "deps": {"b": ["a"], "c": ["a"], "d": ["b", "c"]},
    }
    g = run_dag(data)
    assert set(g.edges) == {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}
    assert critical_path(g) == ["a", "b", "d"]
    pos = layout(g)
    assert pos["a"][0] == 0 and pos["b"][0] == pos["c"][0] == 1 and pos["d"][0] == 2
    svg = dag_svg(g, critical_path(g))
    assert svg.count('class="node"') == 4 and svg.count("marker-end") == 4


def test_dag_of_a_record_without_deps_is_inferred_from_hashes() -> None:
    from plx.report_html import run_dag

    data = {
        "nodes": {
            "up": {"state": "success", "outputs": {"o": {"hash": "h1"}}},
            "down": {"state": "success", "recipe": {"inputs": {"i": [{"hash": "h1", "name": "o"}]}}, "outputs": {"o": {"hash": "h2"}}},
            "alone": {"state": "success", "recipe": {"inputs": {"i": [{"hash": "user-file"}]}}},
        }
    }
    assert set(run_dag(data).edges) == {("up", "down")}


def test_everything_from_users_is_escaped() -> None:
    from plx.report_html import build

    evil = "</script><img src=x onerror=alert(1)>"
    record = {
        "id": "r1",
        "graph": evil,
        "status": "success",
        "name": evil,
        "tags": [evil],
        "note": evil,
        "graph_params": {evil: evil},
        "metrics": {evil: 1.0},
        "nodes": {evil: {"state": "success", "duration": 1.0, "reason": evil}},
    }
    page = build([record, {**record, "id": "r2", "graph_params": {evil: "other"}, "metrics": {evil: 2.0}}], Path("/nonexistent"))
    assert "<img" not in page and page.count("<script") == 1


def test_a_cached_start_is_not_on_the_critical_path() -> None:
    from plx.report_html import critical_path, run_dag

    data = {
        "nodes": {"c": {"state": "cached", "duration": 0.0}, "x": {"state": "success", "duration": 2.0}, "y": {"state": "success", "duration": 1.0}},
        "deps": {"x": ["c"], "y": ["c"]},
    }
    assert critical_path(run_dag(data)) == ["x"]
    assert critical_path(run_dag({"nodes": {"c": {"state": "cached", "duration": 0.0}}})) == []


def test_metrics_are_capped(tmp_path: Path) -> None:
    import json

    from plx.tracking import MAX_METRICS, run_metrics

    h = "ab" + "c" * 62
    (tmp_path / "objects" / "ab").mkdir(parents=True)
    (tmp_path / "objects" / "ab" / h[2:]).write_text(json.dumps({"acc": 0.9, "predictions": list(range(5000))}))
    data = {"outputs": {"m": {"node": "n", "output": "o"}}, "nodes": {"n": {"outputs": {"o": {"hash": h, "type": "json"}}}}}
    m = run_metrics(tmp_path, data)
    assert len(m) == MAX_METRICS and m["m.acc"] == 0.9 and m["m.predictions.0"] == 0


def test_a_huge_run_is_summarised_not_drawn() -> None:
    from plx.report_html import MAX_DRAWN, build

    nodes = {f"map[{i}]": {"state": "failed" if i == 1500 else "success", "duration": 0.01} for i in range(2000)}
    page = build([{"id": "r", "graph": "g", "status": "failed", "nodes": nodes, "deps": {}}], Path("/nonexistent"))
    assert "Not drawn: more than" in page and page.count('class="nodelog"') == MAX_DRAWN
    assert 'id="log-0-1500" open' in page  # the failed node is among those shown
