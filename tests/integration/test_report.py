"""`plx report` opened in a real browser (headless Chromium driven by Playwright): it loads with no
console errors and fetches nothing, draws the DAGs and charts, sorts its table, and shows hostile
labels as text."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Project

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
XSS = "</script><img src=x onerror=alert(1)>"

PREP = """\
kind: operation
name: prep
runner: bash_jinja2
outputs: [{name: rows, type: text}]
cmd: |
  echo "prepared <b>rows</b>"
  seq 1 20 > {{ output.rows }}
"""
FIT = """\
kind: operation
name: fit
runner: python
inputs: [{name: rows, type: text}]
params: [{name: lr, type: float, default: 0.1}, {name: bias, type: float, default: 0}]
outputs: [{name: m, type: json}]
cmd: |
  import json, time
  time.sleep(0.05)
  print("epoch 1 loss 0.5")
  print("</pre><script>alert(2)</script>")
  open(output["m"], "w").write(json.dumps({"accuracy": round(1 - abs(param["lr"] - 0.3) + param["bias"], 4), "loss": param["lr"] * 2}))
"""
EVAL = """\
kind: operation
name: evaluate
runner: python
inputs: [{name: a, type: json}, {name: b, type: json}]
outputs: [{name: m, type: json}]
cmd: |
  import json
  a, b = json.load(open(input["a"])), json.load(open(input["b"]))
  json.dump({"accuracy": max(a["accuracy"], b["accuracy"]), "loss": {"test": min(a["loss"], b["loss"])}}, open(output["m"], "w"))
"""
GRAPH = """\
kind: graph
name: diamond
params: [{name: lr, type: float, default: 0.1}]
nodes:
  prep: {operation: prep}
  fit_a: {operation: fit, inputs: {rows: prep.rows}, params: {lr: "${lr}"}}
  fit_b: {operation: fit, inputs: {rows: prep.rows}, params: {lr: "${lr}", bias: 0.01}}
  eval: {operation: evaluate, inputs: {a: fit_a.m, b: fit_b.m}}
outputs: {eval: eval.m}
"""


def make_runs(project: Project) -> None:
    project.write("operations/prep.yaml", PREP)
    project.write("operations/fit.yaml", FIT)
    project.write("operations/evaluate.yaml", EVAL)
    project.write("graphs/diamond.yaml", GRAPH)
    r = project.plx("run", "graphs/diamond.yaml", "--sweep", "lr=0.01,0.1,0.3,0.9", "--tag", "<b>bold</b>", "--note", XSS, "--name", '"><svg/onload=alert(3)>', "-j", "2")
    assert r.code == 0, r


def test_report_defaults_escapes_and_is_self_contained(project: Project) -> None:
    make_runs(project)
    r = project.plx("report")
    assert r.code == 0, r
    assert "4 runs" in r.err  # the default: every run of the last sweep
    page = (project.root / "plx-report.html").read_text()
    assert XSS not in page and "<img" not in page and "<script>alert" not in page and "onload=alert(3)>" not in page.replace("&gt;", "")
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched
    assert page.count("<script") == 1
    make_runs(project)  # the same sweep again: the default is still only the last sweep's runs
    again = project.plx("report", "-o", "again.html")
    assert again.code == 0 and "4 runs" in again.err, again
    one = project.plx("report", "last", "-o", "one.html")
    assert one.code == 0 and "1 run" in one.err
    assert project.plx("report", "nope").code == 1
    bad = project.plx("report", "-o", "no/such/dir/r.html")
    assert bad.code == 2 and "cannot write" in bad.err and "Traceback" not in bad.err, bad


def _chromium() -> str:
    for path in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if path and os.access(path, os.X_OK):
            return path
    reason = "no Chromium found (/usr/bin/chromium): install it with `apt-get install -y chromium` (.ci/run does)"
    print(f"SKIP: {reason}")
    pytest.skip(reason)


def test_report_in_a_real_browser(project: Project, tmp_path: Path) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # a test dependency: pip install -e '.[test]'
        pytest.fail("playwright is not installed: pip install -e '.[test]'")
    exe = _chromium()
    make_runs(project)
    r = project.plx("report", "-o", "report.html")
    assert r.code == 0, r
    url = (project.root / "report.html").as_uri()
    problems: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda req: problems.append(f"request {req.url}") if not req.url.startswith(("file:", "data:")) else None)

            def on_dialog(d: Any) -> None:
                dialogs.append(d.message)
                d.dismiss()

            page.on("dialog", on_dialog)
            page.goto(url)
            page.wait_for_load_state("load")
            # the DAGs: non-empty SVG with the four nodes, edges and a critical path
            dag = page.locator("svg.dag").last
            assert dag.locator("g.node").count() == 4
            assert dag.locator("path[marker-end]").count() == 4  # the edges
            box = dag.bounding_box()
            assert box and box["width"] > 300 and box["height"] > 50
            assert dag.locator('rect[stroke="#e8590c"]').count() >= 2  # a fit and eval at least
            # the charts: one per metric that varies, against lr
            charts = page.locator("svg.chart")
            assert charts.count() >= 2
            assert charts.first.locator("circle").count() == 4
            cbox = charts.first.bounding_box()
            assert cbox and cbox["width"] > 100
            assert page.locator("svg.timeline rect").count() >= 3
            # hostile labels read as text
            assert page.locator(".note").first.text_content() == XSS  # (inside a closed section: text_content)
            assert page.locator("img").count() == 0
            assert any("</pre><script>alert(2)</script>" in t for t in page.locator(".tail pre").all_text_contents())
            # sorting: click the params.lr header; the rows follow, then reverse on a second click
            headers = page.locator("#runs th")
            col = [i for i in range(headers.count()) if "lr" in headers.nth(i).inner_text()][0]

            def column() -> list[str]:
                return [t.strip() for t in page.locator(f"#runs tbody tr td:nth-child({col + 1})").all_inner_texts()]

            def first_col() -> list[str]:
                return page.locator("#runs tbody tr td:nth-child(1)").all_inner_texts()

            acc = [i for i in range(headers.count()) if "accuracy" in headers.nth(i).inner_text()][0]
            headers.nth(acc).click()
            by_acc = first_col()
            accs = [float(t) for t in page.locator(f"#runs tbody tr td:nth-child({acc + 1})").all_inner_texts()]
            assert accs == sorted(accs)
            headers.nth(col).click()
            assert [float(x) for x in column()] == [0.01, 0.1, 0.3, 0.9]
            assert first_col() != by_acc  # the rows moved
            headers.nth(col).focus()
            page.keyboard.press("Enter")  # the keyboard sorts too
            assert [float(x) for x in column()] == [0.9, 0.3, 0.1, 0.01]
            # hovering a run's row marks its points in every chart
            page.locator("#runs tbody tr").first.hover()
            page.wait_for_function(f"document.querySelectorAll('svg.chart circle.hl').length >= {charts.count()}", timeout=15_000)
            assert page.locator("svg.chart circle.hl").count() == charts.count()
            # a DAG node links to its log tail, which opens
            assert page.locator("details.nodelog[open]").count() == 0
            page.locator("svg.dag").last.locator("a").first.click()
            # the link's target opens on the page's hashchange event, after the click returns: wait for it
            page.locator("details.nodelog[open]").first.wait_for(state="attached", timeout=15_000)
            assert page.locator("details.nodelog[open]").count() >= 1
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            if os.environ.get("PLX_REPORT_SCREENSHOT"):
                shutil.copy(tmp_path / "report.png", os.environ["PLX_REPORT_SCREENSHOT"])
        finally:
            browser.close()
    assert not dialogs, dialogs
    assert not problems, problems
