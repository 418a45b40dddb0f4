"""`plx run`, the runners, output checks, failures, logs and `get`, with the installed command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Project


def graph(project: Project, name: str, body: str) -> str:
    project.write(f"graphs/{name}.yaml", body)
    return f"graphs/{name}.yaml"


def test_three_runners_see_params_inputs_outputs(project: Project) -> None:
    project.write("data/in.txt", "hello\n")
    project.write(
        "operations/tpl.yaml",
        """\
        kind: operation
        name: tpl
        runner: bash_jinja2
        inputs: [{name: src, type: text}]
        params:
          - {name: title, type: str}
          - {name: flag, type: bool, default: true}
          - {name: sizes, type: list_int, default: [1, 2]}
        outputs: [{name: out, type: text, filename: out.txt}]
        cmd: |
          echo {{ param.title | q }} {{ param.flag }} {{ param["sizes"] | q }} > {{ output.out | q }}
          echo "$PARAM_TITLE|$PARAM_FLAG|$PARAM_SIZES" >> {{ output.out | q }}
          cat {{ input.src | q }} >> {{ output.out | q }}
        """,
    )
    project.write(
        "operations/cmd.yaml",
        """\
        kind: operation
        name: cmd
        runner: command
        inputs: [{name: src, type: text}]
        params: [{name: opts, type: dict, default: {a: 1}}]
        outputs: [{name: out, type: text}]
        env: {GREETING: hi}
        cmd: |
          printf '%s|%s|%s\\n' "$GREETING" "$PARAM_OPTS" "$(basename "$INPUT_SRC")" > "$OUTPUT_OUT"
          cat "$INPUT_SRC" >> "$OUTPUT_OUT"
        """,
    )
    project.write(
        "operations/py.yaml",
        """\
        kind: operation
        name: py
        runner: python
        inputs: [{name: src, type: text}]
        params: [{name: code, type: str}]
        outputs: [{name: out, type: json, filename: out.json}]
        cmd: |
          import json, os
          assert params is param and inputs is input and outputs is output
          data = {"code": param["code"], "src": open(input["src"]).read(), "env": os.environ["PARAM_CODE"],
                  "abs": os.path.isabs(output["out"])}
          json.dump(data, open(output["out"], "w"))
        """,
    )
    g = graph(
        project,
        "g",
        """\
        kind: graph
        name: g
        inputs: [{name: data, type: text, default: data/in.txt}]
        nodes:
          a: {operation: tpl, inputs: {src: inputs.data}, params: {title: "it's $HOME; rm -rf /"}}
          b: {operation: cmd, inputs: {src: a.out}}
          c: {operation: py, inputs: {src: b.out}, params: {code: "\\"); import os; os._exit(3) #"}}
        outputs: {result: c.out}
        """,
    )
    r = project.plx("run", g)
    assert r.code == 0, r
    got = json.loads(project.plx("get", "last", "result", "-o", "-").out)
    assert got["code"] == '"); import os; os._exit(3) #'
    assert got["env"] == got["code"] and got["abs"] is True
    lines = got["src"].splitlines()
    assert lines[0] == 'hi|{"a": 1}|out.txt'
    assert lines[1] == "it's $HOME; rm -rf / true 1 2"
    assert lines[2] == "it's $HOME; rm -rf /|true|[1, 2]"
    assert lines[3] == "hello"


def test_list_and_optional_inputs(project: Project) -> None:
    for name in "abc":
        project.write(f"data/{name}.txt", name + "\n")
    project.write(
        "operations/gather.yaml",
        """\
        kind: operation
        name: gather
        runner: python
        inputs:
          - {name: parts, type: text, max: -1}
          - {name: extra, type: text, min: 0}
          - {name: more, type: text, min: 0, max: -1}
        outputs: [{name: out, type: json}]
        cmd: |
          import json, os
          json.dump({"parts": [open(p).read().strip() for p in input["parts"]], "names": [os.path.basename(p) for p in input["parts"]],
                     "extra": input["extra"], "more": input["more"], "env_extra": os.environ["INPUT_EXTRA"],
                     "env_parts": os.environ["INPUT_PARTS"].count("\\n")}, open(output["out"], "w"))
        """,
    )
    project.write(
        "operations/tplopt.yaml",
        """\
        kind: operation
        name: tplopt
        runner: bash_jinja2
        inputs: [{name: extra, type: text, min: 0}]
        outputs: [{name: out, type: text}]
        cmd: |
          echo "[{{ input.extra }}]" > {{ output.out }}
        """,
    )
    g = graph(
        project,
        "g",
        """\
        kind: graph
        name: g
        inputs:
          - {name: files, type: text, max: -1, default: "data/*.txt"}
          - {name: one, type: text, default: data/b.txt}
        nodes:
          g1: {operation: gather, inputs: {parts: [inputs.one, inputs.files]}}
          t: {operation: tplopt}
        outputs: {out: g1.out}
        """,
    )
    r = project.plx("run", g)
    assert r.code == 0, r
    got = json.loads(project.plx("get", "last", "out", "-o", "-").out)
    assert got["parts"] == ["b", "a", "b", "c"]
    assert got["names"] == ["0-b.txt", "1-a.txt", "2-b.txt", "3-c.txt"]  # a shared name: numbered in list order
    assert got["extra"] is None and got["more"] == [] and got["env_extra"] == "" and got["env_parts"] == 3
    assert project.plx("get", "last", "t.out", "-o", "-").out == "[]\n"


BAD_OUTPUTS = {
    "missing": ("text", "echo nothing", "output 'out' was not written"),
    "badjson": ("json", "echo '{oops' > out", "output 'out' is not valid JSON"),
    "dirfile": ("directory", "rmdir out; echo x > out", "must be a directory"),
    "symlink": ("file", "ln -s /etc/hostname out", "is a symbolic link"),
    "linkout": ("directory", "ln -s /etc out/etc", "pointing outside the working directory"),
}


@pytest.mark.parametrize("case", sorted(BAD_OUTPUTS))
def test_output_checks_fail_the_node(project: Project, case: str) -> None:
    otype, cmd, message = BAD_OUTPUTS[case]
    project.write(
        "operations/bad.yaml",
        f"""\
        kind: operation
        name: bad
        runner: command
        outputs: [{{name: out, type: {otype}}}]
        cmd: {cmd}
        """,
    )
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  n: {operation: bad}\n")
    r = project.plx("run", g)
    assert r.code == 1, r
    assert message in r.err
    run = project.last_run()
    assert run["nodes"]["n"]["state"] == "failed" and message in run["nodes"]["n"]["reason"]
    assert message in project.plx("log", "last", "n", "--worker").out


def test_directory_and_executable_outputs_and_get(project: Project) -> None:
    project.write(
        "operations/mk.yaml",
        """\
        kind: operation
        name: mk
        runner: command
        outputs:
          - {name: tree, type: directory}
          - {name: tool, type: executable, filename: tool.sh}
        cmd: |
          mkdir -p "$OUTPUT_TREE/sub/empty" && echo one > "$OUTPUT_TREE/a.txt" && echo two > "$OUTPUT_TREE/sub/b.txt"
          printf '#!/bin/sh\\necho tool-ran\\n' > "$OUTPUT_TOOL"; chmod +x "$OUTPUT_TOOL"
        """,
    )
    project.write(
        "operations/use.yaml",
        """\
        kind: operation
        name: use
        runner: command
        inputs: [{name: tree, type: directory}, {name: tool, type: executable}]
        outputs: [{name: out, type: text}]
        cmd: |
          "$INPUT_TOOL" > "$OUTPUT_OUT"; cat "$INPUT_TREE/sub/b.txt" >> "$OUTPUT_OUT"
          echo scribble > "$INPUT_TREE/a.txt"   # writing into an input must not reach the store
        """,
    )
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  mk: {operation: mk}\n  use: {operation: use, inputs: {tree: mk.tree, tool: mk.tool}}\n")
    r = project.plx("run", g)
    assert r.code == 0, r
    assert project.plx("get", "last", "use.out", "-o", "-").out == "tool-ran\ntwo\n"
    dest = project.root / "copy"
    r = project.plx("get", "last", "mk.tree", "-o", str(dest))
    assert r.code == 0, r
    assert (dest / "a.txt").read_text() == "one\n" and (dest / "sub/b.txt").read_text() == "two\n" and (dest / "sub/empty").is_dir()
    assert project.plx("get", "last", "mk.tree", "-o", str(dest)).code == 1  # kept unless --force
    assert project.plx("get", "last", "mk.tree", "-o", str(dest), "--force").code == 0
    r = project.plx("get", "last", "mk.tool")
    assert r.code == 0 and os.access(project.root / "tool.sh", os.X_OK)
    assert project.plx("cache", "verify").code == 0


def test_failure_skips_downstream_and_stops_launching(project: Project) -> None:
    project.write(
        "operations/sh.yaml",
        """\
        kind: operation
        name: sh
        runner: bash_jinja2
        inputs: [{name: src, min: 0}]
        params: [{name: script, type: str}]
        outputs: [{name: out}]
        cmd: |
          {{ param.script | raw }}
          touch {{ output.out }}
        """,
    )
    g = graph(
        project,
        "g",
        """\
        kind: graph
        name: g
        nodes:
          bad: {operation: sh, params: {script: "echo failing >&2; exit 3"}}
          after: {operation: sh, inputs: {src: bad.out}, params: {script: "true"}}
          slow: {operation: sh, params: {script: "sleep 1"}}
          later: {operation: sh, inputs: {src: slow.out}, params: {script: "true"}}
        """,
    )
    r = project.plx("run", g, "-j", "2")
    assert r.code == 1, r
    nodes = project.last_run()["nodes"]
    assert nodes["bad"]["state"] == "failed" and nodes["bad"]["exit_code"] == 3
    assert nodes["after"]["state"] == "skipped"
    assert nodes["slow"]["state"] == "success"  # already running: it finishes
    assert nodes["later"]["state"] == "skipped"  # never launched after the failure
    assert project.plx("log", "last", "bad", "--stderr").out == "failing\n"
    skipped = project.plx("log", "last", "after")
    assert skipped.code == 0 and skipped.out == "" and "after did not run in this run (skipped)" in skipped.err
    r = project.plx("run", g, "-j", "2", "--keep-going")
    nodes = project.last_run()["nodes"]
    assert r.code == 1 and nodes["later"]["state"] in ("success", "cached") and nodes["after"]["state"] == "skipped"


def test_a_node_that_exits_0_but_fails_its_checks_stops_the_run_before_the_next_starts(project: Project) -> None:
    """Its slot is free once its process ended, but no other node starts before its outputs are
    checked: at -j1 it fails the run (without --keep-going) before the next node can start."""
    project.write(
        "operations/quiet.yaml",
        "kind: operation\nname: quiet\nrunner: command\nparams: [{name: i, type: int}]\noutputs: [{name: out}]\ncmd: echo ran >> \"$PLX_PROJECT_ROOT/ran.txt\"\n",
    )
    project.write("graphs/q.yaml", "kind: graph\nname: q\nnodes:\n" + "".join(f"  q{i}: {{operation: quiet, params: {{i: {i}}}}}\n" for i in range(4)))
    r = project.plx("run", "graphs/q.yaml", "-j", "1")
    assert r.code == 1, r
    states = sorted(n["state"] for n in project.last_run()["nodes"].values())
    assert states.count("failed") == 1 and "success" not in states, states
    assert (project.root / "ran.txt").read_text() == "ran\n"  # one node ran, the others never started


def _pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.split(")")[1].split()[0] != "Z":
                alive.append(pid)
        except (ProcessLookupError, FileNotFoundError):
            pass
    return alive


SPAWNER = """\
kind: operation
name: spawner
runner: bash_jinja2
params: [{{name: tag, type: str}}]
outputs: [{{name: out}}]
timeout: {timeout}
cmd: |
  ( sleep 300 & echo $! >> {{{{ ("{pids}/" ~ param.tag) | q }}}}; wait ) &
  echo $! >> {{{{ ("{pids}/" ~ param.tag) | q }}}}
  echo $$ >> {{{{ ("{pids}/" ~ param.tag) | q }}}}
  sleep 300
  touch {{{{ output.out }}}}
"""


def test_timeout_kills_grandchildren(project: Project) -> None:
    pids = project.root / "pids"
    pids.mkdir()
    project.write("operations/spawner.yaml", SPAWNER.format(timeout=0.02, pids=pids))
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  t: {operation: spawner, params: {tag: t}}\n")
    t0 = time.monotonic()
    r = project.plx("run", g)
    assert r.code == 1, r
    assert time.monotonic() - t0 < 30
    assert project.last_run()["nodes"]["t"]["state"] == "timeout"
    recorded = [int(x) for x in (pids / "t").read_text().split()]
    assert len(recorded) == 3
    deadline = time.monotonic() + 5
    while _pids_alive(recorded) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _pids_alive(recorded) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_cancels_and_kills_grandchildren(project: Project, sig: int) -> None:
    pids = project.root / "pids"
    pids.mkdir()
    project.write("operations/spawner.yaml", SPAWNER.format(timeout=10, pids=pids))
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  a: {operation: spawner, params: {tag: a}}\n  b: {operation: spawner, params: {tag: b}}\n")
    proc = project.popen("run", g, "-j", "2")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all((pids / t).exists() and len((pids / t).read_text().split()) == 3 for t in "ab"):
        time.sleep(0.1)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    recorded = [int(x) for t in "ab" for x in (pids / t).read_text().split()]
    deadline = time.monotonic() + 5
    while _pids_alive(recorded) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _pids_alive(recorded) == []
    run = project.last_run()
    assert run["status"] == "canceled"
    assert {n["state"] for n in run["nodes"].values()} == {"canceled"}


def test_sigkilled_plx_leaves_an_interrupted_run(project: Project) -> None:
    project.write("operations/sleepy.yaml", "kind: operation\nname: sleepy\nrunner: command\noutputs: [{name: out}]\ncmd: sleep 30; touch $OUTPUT_OUT\n")
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  s: {operation: sleepy}\n")
    proc = project.popen("run", g)
    project.wait_running()
    assert project.plx("log", "--json").json()[0]["status"] == "running"
    proc.kill()
    proc.wait()
    run = project.last_run()
    assert run["status"] == "interrupted"
    assert run["nodes"]["s"]["state"] == "canceled"
    assert run["git"]["branch"] == "main"  # learnt after the start, recorded before the crash
    # And the next run is not blocked by anything the dead one held.
    project.write("operations/sleepy.yaml", "kind: operation\nname: sleepy\nrunner: command\noutputs: [{name: out}]\ncmd: touch $OUTPUT_OUT\n")
    assert project.plx("run", g).code == 0


def test_log_follow_streams_until_the_node_ends(project: Project) -> None:
    project.write(
        "operations/ticker.yaml",
        """\
        kind: operation
        name: ticker
        runner: command
        outputs: [{name: out}]
        cmd: for i in 1 2 3 4 5; do echo tick $i; sleep 0.3; done; touch $OUTPUT_OUT
        """,
    )
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  t: {operation: ticker}\n")
    proc = project.popen("run", g)
    project.wait_started()
    follow = project.plx("log", "last", "t", "-f", timeout=30)
    proc.wait(timeout=30)
    assert follow.code == 0
    assert follow.out == "".join(f"tick {i}\n" for i in range(1, 6))


def test_logs_hold_every_byte_and_only_streams_used_get_a_file(project: Project) -> None:
    project.write(
        "operations/talk.yaml",
        """\
        kind: operation
        name: talk
        runner: bash_jinja2
        params: [{name: n, type: int}]
        outputs: [{name: out, type: text}]
        cmd: |
          {% if param.n %}head -c {{ param.n }} /dev/urandom | od -An -tx1 -v; echo "warned {{ param.n }}" >&2{% endif %}
          echo done > {{ output.out | q }}
        """,
    )
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  loud: {operation: talk, params: {n: 3000000}}\n  quiet: {operation: talk, params: {n: 0}}\n")
    assert project.plx("run", g).code == 0
    run = project.last_run()
    logs = project.root / ".plx" / "runs" / run["id"] / "logs"
    stdout = project.plx("log", "last", "loud").out
    assert len(stdout.split()) == 3000000 and len(stdout.encode()) == (logs / "loud.stdout").stat().st_size
    assert project.plx("log", "last", "loud", "--stderr").out == "warned 3000000\n"
    assert sorted(p.name for p in logs.iterdir()) == ["loud.stderr", "loud.stdout"]  # nothing for a silent stream
    quiet = project.plx("log", "last", "quiet")
    assert quiet.code == 0 and quiet.out == "" and "quiet wrote nothing to stdout" in quiet.err
    worker = project.plx("log", "last", "quiet", "--worker").out
    assert "node quiet: operation talk" in worker and "exit code 0" in worker and "output out: stored" in worker
    assert "loud" not in worker  # one worker log per run, shown one node at a time


def test_a_node_is_over_when_its_leader_exits_even_if_a_child_holds_its_output(project: Project) -> None:
    pids = project.root / "pids"
    project.write(
        "operations/bg.yaml",
        f"""\
        kind: operation
        name: bg
        runner: command
        outputs: [{{name: out}}]
        cmd: sleep 60 & echo $! > {pids}; echo started; touch $OUTPUT_OUT
        """,
    )
    project.write(
        "operations/mute.yaml",
        """\
        kind: operation
        name: mute
        runner: command
        outputs: [{name: out}]
        timeout: 0.03
        cmd: exec >&- 2>&-; sleep 60
        """,
    )
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  b: {operation: bg}\n  m: {operation: mute}\n")
    t0 = time.monotonic()
    r = project.plx("run", g, "--keep-going", "-j", "2")
    assert time.monotonic() - t0 < 20, r
    nodes = project.last_run()["nodes"]
    assert nodes["b"]["state"] == "success" and nodes["m"]["state"] == "timeout", r
    assert project.plx("log", "last", "b").out == "started\n"
    deadline = time.monotonic() + 5
    while _pids_alive([int(pids.read_text())]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _pids_alive([int(pids.read_text())]) == []


def test_work_folders_go_when_the_run_ends_except_a_failed_nodes(project: Project) -> None:
    project.write(
        "operations/ok.yaml", "kind: operation\nname: ok\nrunner: command\nparams: [{name: i, type: int}]\noutputs: [{name: out}]\ncmd: echo $PARAM_I > $OUTPUT_OUT\n"
    )
    project.write("operations/bad.yaml", "kind: operation\nname: bad\nrunner: command\noutputs: [{name: out}]\ncmd: echo half > scratch.txt; exit 3\n")
    nodes = "".join(f"  n{i}: {{operation: ok, params: {{i: {i}}}}}\n" for i in range(6))
    g = graph(project, "g", f"kind: graph\nname: g\nnodes:\n{nodes}  b: {{operation: bad}}\n")
    r = project.plx("run", g, "--keep-going", "-j", "2", "--json")
    assert r.code == 1
    run = r.json()
    assert [run["nodes"][f"n{i}"]["state"] for i in range(6)] == ["success"] * 6
    assert [project.plx("get", "last", f"n{i}.out", "-o", "-").out for i in range(6)] == [f"{i}\n" for i in range(6)]
    kept = project.root / ".plx" / "tmp" / run["id"]
    assert sorted(p.name for p in kept.iterdir()) == ["b"]  # the failed node's folder, to look at
    assert (kept / "b" / "scratch.txt").read_text() == "half\n"


def test_run_selected_nodes_and_exit_codes(project: Project) -> None:
    project.write("operations/w.yaml", "kind: operation\nname: w\nrunner: command\ninputs: [{name: src, min: 0}]\noutputs: [{name: out}]\ncmd: echo x > $OUTPUT_OUT\n")
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  a: {operation: w}\n  b: {operation: w, inputs: {src: a.out}}\n  c: {operation: w}\n")
    r = project.plx("run", g, "b", "--json")
    assert r.code == 0, r
    assert set(r.json()["nodes"]) == {"a", "b"}
    assert project.plx("run", g, "nope").code == 2
    assert project.plx("run", "graphs/missing.yaml").code == 2
    assert project.plx("run", g, "-i", "x=nofile").code == 1  # no such graph input
    assert project.plx("run", "operations/w.yaml").code == 2
    project.write("graphs/bad.yaml", "kind: graph\nname: bad\ninputs: [{name: d, default: data/none.csv}]\nnodes:\n  a: {operation: w, inputs: {src: inputs.d}}\n")
    r = project.plx("run", "graphs/bad.yaml")
    assert r.code == 1 and "data/none.csv' does not exist" in r.err and "Traceback" not in r.err
    assert project.plx("log", "zzz").code == 1


def test_preview_and_dry_run(project: Project) -> None:
    project.write(
        "operations/p.yaml",
        "kind: operation\nname: p\nrunner: bash_jinja2\nparams: [{name: n, type: int, default: 1}]\noutputs: [{name: out}]\ncmd: seq {{ param.n }} > {{ output.out }}\n",
    )
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  a: {operation: p, params: {n: 4}}\n")
    r = project.plx("preview", g, "a")
    assert r.code == 0 and "seq 4 > '<workdir>/out'" in r.out  # placeholders are quoted like any value
    r = project.plx("run", g, "--dry-run")
    assert "no cache entry yet" in r.out
    project.plx("run", g)
    r = project.plx("run", g, "--dry-run", "-p", "a.n=7")
    assert "param n 4 → 7" in r.out
    r = project.plx("run", g, "--dry-run")
    assert "cached" in r.out and project.plx("log", "--json").json()[0]["counts"] == {"success": 1}
    r = project.plx("run", g, "--dry-run", "--sweep", "a.n=4,5", "--json")
    assert r.code == 0, r
    assert [(row["sweep"], row["action"]) for row in r.json()] == [("a.n=4", "cached"), ("a.n=5", "run")]
    assert "param n 4 → 5" in r.json()[1]["why"]
    assert project.plx("log", "--json").json()[0]["counts"] == {"success": 1}  # nothing ran


def test_plain_progress_lines_and_summary(project: Project) -> None:
    project.write("operations/w.yaml", "kind: operation\nname: w\nrunner: command\noutputs: [{name: out}]\ncmd: echo x > $OUTPUT_OUT\n")
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  a: {operation: w}\n")
    r = project.plx("run", g)
    assert "running  a" in r.err and "success  a" in r.err
    run_id = project.last_run()["id"]
    assert f"run {run_id} success: 1 run, 0 cached, 0 failed, 0 skipped" in r.err
    assert r.out == ""


def test_plain_progress_lines_come_in_the_order_they_happened(project: Project) -> None:
    """Without a terminal, routine lines are held briefly and printed together: in time order (a step's
    success before the next step's start), not every `running` line first, then every `success`."""
    project.write("operations/w.yaml", "kind: operation\nname: w\nrunner: command\ninputs: [{name: src, min: 0}]\nparams: [{name: t, type: str}]\noutputs: [{name: out}]\ncmd: echo $PARAM_T > $OUTPUT_OUT\n")
    g = graph(
        project,
        "g",
        "kind: graph\nname: g\nnodes:\n  a: {operation: w, params: {t: a}}\n  b: {operation: w, inputs: {src: a.out}, params: {t: b}}\n  c: {operation: w, inputs: {src: b.out}, params: {t: c}}\n",
    )
    r = project.plx("run", g)
    assert r.code == 0, r
    lines = [line.split("] ", 1)[1].split(" (")[0].split() for line in r.err.splitlines() if line.startswith("[") and ("running" in line or "success" in line)]
    assert lines == [["running", "a"], ["success", "a"], ["running", "b"], ["success", "b"], ["running", "c"], ["success", "c"]], r.err


def test_live_progress_on_a_terminal(project: Project) -> None:
    import pty
    import select

    project.write("operations/w.yaml", "kind: operation\nname: w\nrunner: command\noutputs: [{name: out}]\ncmd: sleep 0.5; echo x > $OUTPUT_OUT\n")
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  a: {operation: w}\n  b: {operation: w}\n")
    leader, follower = pty.openpty()
    from tests.conftest import PLX

    proc = subprocess.Popen([PLX, "run", g], cwd=project.root, stdin=follower, stdout=follower, stderr=follower, env={**os.environ, "TERM": "xterm"})
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=30) == 0
    text = out.decode(errors="replace")
    assert "running" in text and "success" in text
    assert "1 run, 1 cached, 0 failed, 0 skipped" in text  # a and b are the same work: it ran once


def test_second_ctrl_c_kills_at_once(project: Project) -> None:
    # The node ignores TERM, so only the second Ctrl-C (KILL at once) can stop it before the grace ends.
    project.write(
        "operations/stubborn.yaml",
        f"kind: operation\nname: stubborn\nrunner: command\noutputs: [{{name: out}}]\ncmd: trap 'touch {project.root}/termed' TERM; while :; do sleep 0.1; done\n",
    )
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  s: {operation: stubborn}\n")
    proc = subprocess.Popen(
        [__import__("tests.conftest", fromlist=["PLX"]).PLX, "run", g],
        cwd=project.root,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PLX_KILL_GRACE": "30"},
    )
    project.wait_running(1)
    proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 60  # the second Ctrl-C only once plx is stopping the node (it got TERM)
    while not (project.root / "termed").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert time.monotonic() - t0 < 10
    assert project.last_run()["status"] == "canceled"


def test_ctrl_c_cancels_a_whole_sweep(project: Project) -> None:
    project.write(
        "operations/nap.yaml", "kind: operation\nname: nap\nrunner: command\nparams: [{name: t, type: int}]\noutputs: [{name: out}]\ncmd: sleep 30; touch $OUTPUT_OUT\n"
    )
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  n: {operation: nap, params: {t: 1}}\n")
    proc = project.popen("run", g, "--sweep", "n.t=1,2,3", "-j", "2")
    project.wait_running(2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    runs = project.plx("log", "--json").json()
    assert len(runs) == 3 and {r["status"] for r in runs} == {"canceled"}


def test_cloud_inputs_and_another_interpreter(project: Project) -> None:
    project.write("data/ref.json", '{"path": "s3://bucket/key.csv"}')
    project.write(
        "operations/where.yaml",
        """\
        kind: operation
        name: where
        runner: bash_jinja2
        inputs: [{name: remote, type: cloud}]
        outputs: [{name: out, type: text}]
        cmd: |
          echo {{ cloud_input.remote | q }} > {{ output.out | q }}
        """,
    )
    project.write(
        "operations/py.yaml",
        """\
        kind: operation
        name: py
        runner: python
        python: python3
        inputs: [{name: src, type: text}]
        outputs: [{name: out, type: text}]
        cmd: |
          import sys
          open(output["out"], "w").write(open(input["src"]).read().strip() + " " + sys.executable.split("/")[-1])
        """,
    )
    g = graph(
        project,
        "g",
        """\
        kind: graph
        name: g
        inputs: [{name: ref, type: cloud, default: data/ref.json}]
        nodes:
          w: {operation: where, inputs: {remote: inputs.ref}}
          p: {operation: py, inputs: {src: w.out}}
        """,
    )
    r = project.plx("run", g)
    assert r.code == 0, r
    assert project.plx("get", "last", "p.out", "-o", "-").out.startswith("s3://bucket/key.csv python3")


def test_a_process_that_cannot_start_fails_its_node_with_the_reason(project: Project) -> None:
    project.write(
        "operations/py.yaml",
        """\
        kind: operation
        name: py
        runner: python
        python: /nonexistent/bin/python3
        outputs: [{name: out, type: text}]
        cmd: open(output["out"], "w").write("x")
        """,
    )
    project.write("operations/after.yaml", "kind: operation\nname: after\nrunner: command\ninputs: [{name: x}]\noutputs: [{name: y}]\ncmd: cp $INPUT_X $OUTPUT_Y\n")
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  p: {operation: py}\n  a: {operation: after, inputs: {x: p.out}}\n")
    r = project.plx("run", g, "--json")
    assert r.code == 1, r
    nodes = r.json()["nodes"]
    assert nodes["p"]["state"] == "failed" and nodes["a"]["state"] == "skipped"
    assert "cannot start /nonexistent/bin/python3: No such file or directory" in r.err
    worker = project.plx("log", "last", "p", "--worker").out
    assert "failed: cannot start /nonexistent/bin/python3" in worker


def test_an_input_file_changed_or_deleted_during_the_run_fails_its_node(project: Project) -> None:
    project.write("data/in.txt", "x\n")
    go = project.root / "go"
    wait_for_go = f"for i in $(seq 2400); do [ -e {go} ] && break; sleep 0.05; done"
    project.write("operations/nap.yaml", f"kind: operation\nname: nap\nrunner: command\noutputs: [{{name: out}}]\ncmd: {wait_for_go}; touch $OUTPUT_OUT\n")
    project.write(
        "operations/use.yaml", "kind: operation\nname: use\nrunner: command\ninputs: [{name: a}, {name: b}]\noutputs: [{name: out}]\ncmd: cat $INPUT_B > $OUTPUT_OUT\n"
    )
    g = graph(
        project,
        "g",
        "kind: graph\nname: g\ninputs: [{name: data, type: file, default: data/in.txt}]\n"
        "nodes:\n  n: {operation: nap}\n  u: {operation: use, inputs: {a: n.out, b: inputs.data}}\n",
    )
    proc = project.popen("run", g, "--json")
    project.wait_started()
    project.write("data/in.txt", "y\n")  # after it was hashed, before u's copy of it is made
    go.touch()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    u = json.loads(out)["nodes"]["u"]
    assert u["state"] == "failed" and "data/in.txt changed after the run started" in u["reason"], u
    assert project.plx("run", g).code == 0  # run again: the new content, hashed and cached as such
    go.unlink()
    assert project.plx("get", "last", "u.out", "-o", "-").out == "y\n"
    before = project.run_ids()
    proc = project.popen("run", g, "--no-cache", "--json")
    project.wait_started(skip=before)
    (project.root / "data/in.txt").unlink()
    go.touch()
    out, err = proc.communicate(timeout=60)
    u = json.loads(out)["nodes"]["u"]
    assert u["state"] == "failed" and u["reason"].startswith("cannot place the inputs:") and "in.txt" in u["reason"], u


def test_a_template_error_at_run_time_fails_the_node(project: Project) -> None:
    project.write(
        "operations/t.yaml",
        """\
        kind: operation
        name: t
        runner: bash_jinja2
        params: [{name: d, type: dict, default: {}}]
        outputs: [{name: out}]
        cmd: echo {{ param.d.missing }} > {{ output.out }}
        """,
    )
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  n: {operation: t}\n")
    r = project.plx("run", g)
    assert r.code == 1 and "cannot render the command" in r.err and "Traceback" not in r.err


def test_a_python_failure_names_the_operation_and_the_error(project: Project) -> None:
    project.write(
        "operations/boom.yaml",
        """\
        kind: operation
        name: boom
        runner: python
        outputs: [{name: out}]
        cmd: |
          x = 1
          raise ValueError(f"bad value {x}")
        """,
    )
    g = graph(project, "g", "kind: graph\nname: g\nnodes:\n  b: {operation: boom}\n")
    r = project.plx("run", g)
    assert r.code == 1
    assert "failed: b: exit code 1: ValueError: bad value 1" in r.err
    stderr = project.plx("log", "last", "b", "--stderr").out
    assert 'File "operations/boom.yaml", line 7' in stderr and 'raise ValueError(f"bad value {x}")' in stderr  # the YAML file's line


def test_sigterm_while_a_chain_starts_its_next_step_never_hangs(project: Project) -> None:
    """Found by review: a chain's next step is started on plx's main thread; a SIGTERM landing while
    it started left a job that never reported, and plx waited for it forever (5 hung in 12)."""
    project.write(
        "operations/step.yaml",
        "kind: operation\nname: step\nrunner: command\ninputs: [{name: src, min: 0}]\nparams: [{name: i, type: int}]\noutputs: [{name: out}]\ncmd: echo $PARAM_I > $OUTPUT_OUT\n",
    )
    nodes = "".join(f"  s{i}: {{operation: step, params: {{i: {i}}}" + (f", inputs: {{src: s{i - 1}.out}}" if i else "") + "}\n" for i in range(300))
    g = graph(project, "chain", "kind: graph\nname: chain\nnodes:\n" + nodes)
    for delay in (0.3, 0.5, 0.7, 0.9, 1.1, 1.3):  # where TERM lands varies; every run must end
        proc = project.popen("run", g, "--no-cache")
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"plx still running 60 s after SIGTERM (sent {delay} s after the start)")
        assert proc.returncode in (0, 130, 143, -signal.SIGTERM), err  # -15: TERM came before plx set its handler
        assert "Traceback" not in err, err


def test_a_lone_command_with_redirections_runs_without_a_bash_in_between(project: Project, tmp_path: Path) -> None:
    """bash forks for `cmd < in > out`; plx execs it instead (runners._exec_form). What the node
    sees, its exit code and bash's messages stay those of bash; a function from BASH_ENV still wins."""
    parent = 'python3 -c "import os; print(open(f\'/proc/{os.getppid()}/comm\').read().strip())"'
    for name, cmd in (("lone", f'{parent} < "$INPUT_SRC" > "$OUTPUT_OUT"'), ("two", f'{parent} > "$OUTPUT_OUT"; true')):
        project.write(f"operations/{name}.yaml", f"kind: operation\nname: {name}\nrunner: command\ninputs: [{{name: src}}]\noutputs: [{{name: out}}]\ncmd: {json.dumps(cmd)}\n")
    project.write("operations/missing.yaml", 'kind: operation\nname: missing\nrunner: command\noutputs: [{name: out}]\ncmd: tr a-z A-Z < nosuch.txt > "$OUTPUT_OUT"\n')
    project.write("data/in.txt", "x\n")
    g = graph(project, "g", "kind: graph\nname: g\ninputs: [{name: src}]\nnodes:\n  lone: {operation: lone, inputs: {src: inputs.src}}\n  two: {operation: two, inputs: {src: inputs.src}}\n  missing: {operation: missing}\n")
    r = project.plx("run", g, "-i", "src=data/in.txt", "--json")
    assert r.code == 1, r
    nodes = r.json()["nodes"]
    assert nodes["missing"]["state"] == "failed" and nodes["missing"]["exit_code"] == 1
    assert "missing: line 1: nosuch.txt: No such file or directory" in project.plx("log", "last", "missing", "--stderr").out
    assert project.plx("get", "last", "two.out", "-o", "-").out.strip() == "bash"  # the control: two commands, bash is their parent
    assert project.plx("get", "last", "lone.out", "-o", "-").out.strip() != "bash"  # its parent is plx itself
    # A function of the command's name from BASH_ENV (or an exported one) is what bash would run: no exec then.
    (tmp_path / "env.sh").write_text("python3() { echo from-bash-env; }\n")
    r = project.plx("run", g, "-i", "src=data/in.txt", "--no-cache", "--json", env={"BASH_ENV": str(tmp_path / "env.sh")})
    assert r.json()["nodes"]["lone"]["state"] == "success", r
    assert project.plx("get", "last", "lone.out", "-o", "-").out.strip() == "from-bash-env"
