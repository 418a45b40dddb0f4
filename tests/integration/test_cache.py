"""The cache, proven by counting executions (redun's pattern): hits, misses, dedup, integrity, gc."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.conftest import Project, counting_op

CHAIN = """\
kind: graph
name: chain
inputs:
  - {name: seed, type: text, default: data/seed.txt}
params:
  - {name: v, type: str, default: one}
nodes:
  a: {operation: step, inputs: {src: inputs.seed}, params: {tag: a}}
  b: {operation: step, inputs: {src: a.out}, params: {tag: b, value: "${v}"}}
  c: {operation: step, inputs: {src: b.out}, params: {tag: c}}
  d: {operation: step, params: {tag: d}}
outputs: {final: c.out}
"""


def setup(project: Project, graph: str = CHAIN) -> str:
    project.write("operations/step.yaml", counting_op(project.root))
    project.write("data/seed.txt", "seed\n")
    project.write("graphs/chain.yaml", graph)
    return "graphs/chain.yaml"


def counts(project: Project) -> dict[str, int]:
    return {t: project.counter(t) for t in "abcd"}


def test_rerun_is_all_cached(project: Project) -> None:
    g = setup(project)
    assert project.plx("run", g).code == 0
    assert counts(project) == {"a": 1, "b": 1, "c": 1, "d": 1}
    r = project.plx("run", g, "--json")
    assert r.code == 0
    assert counts(project) == {"a": 1, "b": 1, "c": 1, "d": 1}
    assert {n["state"] for n in r.json()["nodes"].values()} == {"cached"}


def test_renaming_a_node_keeps_its_cache(project: Project) -> None:
    g = setup(project)
    project.plx("run", g)
    project.write("graphs/chain.yaml", CHAIN.replace("  d: {", "  renamed: {"))
    r = project.plx("run", g, "--json")
    assert r.json()["nodes"]["renamed"]["state"] == "cached"
    assert counts(project)["d"] == 1


def test_param_change_reruns_that_node_and_downstream_only(project: Project) -> None:
    g = setup(project)
    project.plx("run", g)
    r = project.plx("run", g, "-p", "v=two", "--json")
    assert r.code == 0
    assert counts(project) == {"a": 1, "b": 2, "c": 2, "d": 1}
    assert r.json()["overrides"] == {"v": "two"}


def test_input_content_change_versus_touch(project: Project) -> None:
    g = setup(project)
    project.plx("run", g)
    seed = project.root / "data/seed.txt"
    os.utime(seed, (time.time() + 5, time.time() + 5))
    project.plx("run", g)
    assert counts(project) == {"a": 1, "b": 1, "c": 1, "d": 1}
    seed.write_text("seed\n")  # rewritten, same bytes
    project.plx("run", g)
    assert counts(project)["a"] == 1
    seed.write_text("seeD\n")
    project.plx("run", g)
    assert counts(project) == {"a": 2, "b": 2, "c": 2, "d": 1}


def test_identical_bytes_from_a_rerun_upstream_keep_downstream_cached(project: Project) -> None:
    g = setup(project)
    project.plx("run", g)
    # Change a's recipe (its operation gains an env var) without changing what it writes.
    op = project.root / "operations/step.yaml"
    project.write("operations/other.yaml", op.read_text().replace("name: step", "name: step2").replace("runner:", "env: {UNUSED: x}\nrunner:"))
    project.write("graphs/chain.yaml", CHAIN.replace("a: {operation: step,", "a: {operation: step2,"))
    r = project.plx("run", g, "--json")
    nodes = r.json()["nodes"]
    assert nodes["a"]["state"] == "success" and nodes["b"]["state"] == "cached" and nodes["c"]["state"] == "cached"
    assert counts(project) == {"a": 2, "b": 1, "c": 1, "d": 1}


def test_identical_nodes_in_one_run_execute_once(project: Project) -> None:
    g = setup(
        project,
        """\
        kind: graph
        name: dup
        nodes:
          x1: {operation: step, params: {tag: a}}
          x2: {operation: step, params: {tag: a}}
          x3: {operation: step, params: {tag: a}}
        """,
    )
    r = project.plx("run", g, "-j", "3", "--json")
    assert r.code == 0, r
    assert project.counter("a") == 1
    assert sorted(n["state"] for n in r.json()["nodes"].values()) == ["cached", "cached", "success"]


SLOW = """\
kind: operation
name: slow
runner: bash_jinja2
params: [{{name: tag, type: str}}]
outputs: [{{name: out}}]
cmd: |
  mkdir -p {root}/counts && echo run >> {root}/counts/{{{{ param.tag }}}}
  sleep 1.5
  echo done > {{{{ output.out }}}}
"""


def test_concurrent_runs_share_the_work(project: Project) -> None:
    project.write("operations/slow.yaml", SLOW.format(root=project.root))
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  s: {operation: slow, params: {tag: s}}\n  t: {operation: slow, params: {tag: t}}\n")
    procs = [project.popen("run", "graphs/g.yaml", "-j", "2") for _ in range(3)]
    codes = [p.wait(timeout=60) for p in procs]
    assert codes == [0, 0, 0]
    assert project.counter("s") == 1 and project.counter("t") == 1
    runs = project.plx("log", "--json").json()
    assert len(runs) == 3 and all(r["status"] == "success" for r in runs)


def _object_of(project: Project, node: str) -> Path:
    h = project.last_run()["nodes"][node]["outputs"]["out"]["hash"]
    return project.root / ".plx/objects" / h[:2] / h[2:]


def test_corrupted_object_is_reported_and_never_served(project: Project) -> None:
    g = setup(project)
    project.plx("run", g)
    obj = _object_of(project, "a")
    os.chmod(obj, 0o644)
    data = bytearray(obj.read_bytes())
    data[0] ^= 0xFF
    obj.write_bytes(bytes(data))
    r = project.plx("cache", "verify")
    assert r.code == 1 and "damaged" in r.err and obj.parent.name + obj.name in r.err
    r = project.plx("run", g, "--json")
    assert r.code == 0
    assert r.json()["nodes"]["a"]["state"] == "success" and counts(project)["a"] == 2
    assert project.plx("cache", "verify").code == 0
    assert project.plx("get", "last", "a.out", "-o", "-").out == "seed\nx\n"


def test_dry_run_counts_no_damaged_or_missing_object_as_cached(project: Project) -> None:
    """--dry-run looks its entries up in batches; each object is still checked (signature, else bytes)."""
    g = setup(project)
    project.plx("run", g)
    damaged, missing = _object_of(project, "a"), _object_of(project, "d")
    st = damaged.stat()
    os.chmod(damaged, 0o644)
    data = bytearray(damaged.read_bytes())
    data[0] ^= 0xFF
    damaged.write_bytes(bytes(data))
    os.utime(damaged, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: only the ctime tells
    missing.unlink()
    r = project.plx("run", g, "--dry-run", "--json")
    assert r.code == 0, r
    assert {row["node"]: row["action"] for row in r.json()} == {"a": "run", "b": "run", "c": "run", "d": "run"}
    assert counts(project) == {"a": 1, "b": 1, "c": 1, "d": 1}


def test_missing_object_reruns_the_node(project: Project) -> None:
    g = setup(project)
    project.plx("run", g)
    _object_of(project, "c").unlink()
    r = project.plx("run", g, "--json")
    assert r.json()["nodes"]["c"]["state"] == "success" and counts(project)["c"] == 2


def test_batched_lookups_still_check_every_object(project: Project) -> None:
    """A no-op reads the cache entries of many ready nodes in one query (and their objects' known
    stat signatures in another); each object is still checked when its node is looked up: bytes
    changed (size and mtime kept), deleted, or replaced by a link make that node run again, and
    only that node."""
    project.write(
        "operations/upper.yaml",
        "kind: operation\nname: upper\nrunner: command\ninputs: [{name: src, type: text}]\noutputs: [{name: out, type: text}]\n"
        'cmd: tr a-z A-Z < "$INPUT_SRC" > "$OUTPUT_OUT"\n',
    )
    for i in range(12):
        project.write(f"data/s/f{i:02d}.txt", f"sample {i}\n")
    project.write(
        "graphs/w.yaml",
        'kind: graph\nname: w\ninputs: [{name: s, type: text, max: -1, default: "data/s/*.txt"}]\nnodes:\n'
        "  up: {operation: upper, foreach: inputs.s, inputs: {src: item}}\n",
    )
    first = project.plx("run", "graphs/w.yaml", "--json")
    assert first.code == 0, first
    nodes = first.json()["nodes"]
    ids = sorted(nodes)
    assert len(ids) == 12

    def obj(tid: str) -> Path:
        h = nodes[tid]["outputs"]["out"]["hash"]
        return project.root / ".plx/objects" / h[:2] / h[2:]

    changed, deleted, linked = obj(ids[3]), obj(ids[7]), obj(ids[10])
    st = changed.stat()
    os.chmod(changed, 0o644)
    changed.write_bytes(changed.read_bytes().lower())  # the same size
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns))  # and mtime
    deleted.unlink()
    good = project.root / "copy"
    good.write_bytes(linked.read_bytes())
    linked.unlink()
    linked.symlink_to(good)  # the right bytes, but not a file of the store
    dry = project.plx("run", "graphs/w.yaml", "--dry-run")  # its lookups are read ahead in batches too
    assert dry.code == 0, dry
    would_run = {line.split()[0] for line in dry.out.splitlines() if line.startswith("up[") and " run " in line}
    assert would_run == {ids[3], ids[7], ids[10]}, dry.out
    second = project.plx("run", "graphs/w.yaml", "--json")
    assert second.code == 0, second
    states = {t: n["state"] for t, n in second.json()["nodes"].items()}
    assert {t for t, s in states.items() if s != "cached"} == {ids[3], ids[7], ids[10]}, states
    assert all(states[t] == "success" for t in (ids[3], ids[7], ids[10]))
    for t in (ids[3], ids[7], ids[10]):
        assert project.plx("get", "last", f"{t}.out", "-o", "-").out == f"SAMPLE {int(t[-3:-1])}\n"
    assert project.plx("cache", "verify").code == 0
    third = project.plx("run", "graphs/w.yaml", "--json")
    assert {n["state"] for n in third.json()["nodes"].values()} == {"cached"}
    # the graph inputs' hashes come from one stat-cache query too: an input edited in place, its
    # size and mtime kept, is read again (its ctime and so its signature changed)
    src = project.root / "data/s/f05.txt"
    st = src.stat()
    src.write_text("SAMPLE 5\n")
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    fourth = project.plx("run", "graphs/w.yaml", "--json")
    assert {t for t, n in fourth.json()["nodes"].items() if n["state"] != "cached"} == {"up[f05]"}


def test_failed_node_is_not_cached(project: Project) -> None:
    project.write(
        "operations/flaky.yaml",
        f"""\
        kind: operation
        name: flaky
        runner: command
        outputs: [{{name: out}}]
        cmd: |
          mkdir -p {project.root}/counts; echo run >> {project.root}/counts/a
          test -e {project.root}/ok
          echo fine > $OUTPUT_OUT
        """,
    )
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  f: {operation: flaky}\n")
    assert project.plx("run", "graphs/g.yaml").code == 1
    assert project.plx("run", "graphs/g.yaml").code == 1
    (project.root / "ok").touch()
    assert project.plx("run", "graphs/g.yaml").code == 0
    assert project.plx("run", "graphs/g.yaml").code == 0
    assert project.counter("a") == 3
    assert not list((project.root / ".plx/tmp").glob("obj-*"))


def test_not_cacheable_and_no_cache(project: Project) -> None:
    g = setup(project, CHAIN.replace("d: {operation: step, params: {tag: d}}", "d: {operation: step, params: {tag: d}, cacheable: false}"))
    project.plx("run", g)
    project.plx("run", g)
    assert counts(project) == {"a": 1, "b": 1, "c": 1, "d": 2}
    project.plx("run", g, "--no-cache")
    assert counts(project) == {"a": 2, "b": 2, "c": 2, "d": 3}
    project.plx("run", g)
    assert counts(project) == {"a": 2, "b": 2, "c": 2, "d": 4}


def test_gc_keeps_what_kept_runs_need(project: Project) -> None:
    g = setup(project)
    project.plx("run", g)
    project.plx("run", g, "-p", "v=two")
    project.plx("run", g, "-p", "v=three")
    before = project.plx("cache", "stats").out
    r = project.plx("cache", "gc")
    assert r.code == 0 and "0 objects" in r.err  # everything is still referenced
    r = project.plx("cache", "gc", "--keep-last", "1")
    assert r.code == 0, r
    assert "removed 2 runs" in r.err
    assert project.plx("cache", "stats").out != before
    assert project.plx("cache", "verify").code == 0
    r = project.plx("run", g, "-p", "v=three", "--json")
    assert {n["state"] for n in r.json()["nodes"].values()} == {"cached"}
    assert project.plx("get", "last", "final", "-o", "-").out == "seed\nx\nthree\nx\n"
    r = project.plx("run", g, "-p", "v=two", "--json")
    assert r.json()["nodes"]["b"]["state"] == "success"


def test_gc_removes_an_older_stores_value_files_and_rows_plx_never_reads(project: Project) -> None:
    """A store an older plx wrote through diskcache: a large entry kept as `xx/yy/*.val`, orphaned
    once plx wrote that key again as text. gc (no run live) removes both kinds; the cache still serves."""
    import sqlite3

    g = setup(project)
    project.plx("run", g)
    index = project.root / ".plx/index"
    (index / "3f" / "a2").mkdir(parents=True)
    (index / "3f" / "a2" / "9c41e0.val").write_bytes(b"v" * 40000)
    db = sqlite3.connect(index / "cache.db")
    db.execute("INSERT INTO Cache(key, raw, store_time, mode, filename) VALUES ('old-large-entry', 1, 0, 3, '3f/a2/9c41e0.val')")
    db.commit()
    db.close()
    r = project.plx("cache", "gc")
    assert r.code == 0 and "older plx's format, never read (40,000 bytes)" in r.err and "40,000 bytes freed" in r.err, r
    assert not (index / "3f").exists()
    db = sqlite3.connect(index / "cache.db")
    assert db.execute("SELECT count(*) FROM Cache WHERE key = 'old-large-entry'").fetchone() == (0,)
    db.close()
    r = project.plx("run", g, "--json")
    assert {n["state"] for n in r.json()["nodes"].values()} == {"cached"}


def test_tampered_index_cannot_run_code(project: Project) -> None:
    import sqlite3

    g = setup(project)
    project.plx("run", g)
    marker = project.root / "pwned"
    db = sqlite3.connect(project.root / ".plx/index/cache.db")
    import pickle

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {marker}",))

    db.execute("UPDATE Cache SET mode = 4, value = ?", (pickle.dumps(Evil()),))
    db.commit()
    db.close()
    r = project.plx("run", g, "--json")
    assert not marker.exists()
    assert r.code == 0, r
    assert {n["state"] for n in r.json()["nodes"].values()} == {"success"}  # unreadable entries are misses
    assert counts(project) == {"a": 2, "b": 2, "c": 2, "d": 2}


def test_gc_never_removes_what_a_running_plx_is_writing(project: Project) -> None:
    project.write(
        "operations/two.yaml",
        """\
        kind: operation
        name: two
        runner: command
        params: [{name: t, type: str}]
        outputs: [{name: out}]
        cmd: echo "$PARAM_T" > $OUTPUT_OUT
        """,
    )
    project.write(
        "operations/wait.yaml",
        f"""\
        kind: operation
        name: wait
        runner: command
        inputs: [{{name: src}}]
        outputs: [{{name: out}}]
        cmd: while [ ! -e {project.root}/go ]; do sleep 0.05; done; cat $INPUT_SRC > $OUTPUT_OUT
        """,
    )
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  first: {operation: two, params: {t: hi}}\n  second: {operation: wait, inputs: {src: first.out}}\n")
    proc = project.popen("run", "graphs/g.yaml")
    project.wait_running()
    r = project.plx("cache", "gc", "--keep-last", "0")
    assert r.code == 0 and "removed 0 runs" in r.err and "0 objects" in r.err, r
    (project.root / "go").touch()
    assert proc.wait(timeout=30) == 0
    assert project.plx("get", "last", "second.out", "-o", "-").out == "hi\n"
    assert project.plx("cache", "verify").code == 0


def test_moving_the_project_keeps_the_cache(project: Project, tmp_path: Path) -> None:
    g = setup(project)
    project.plx("run", g)
    moved = Project(tmp_path / "elsewhere")
    import shutil

    shutil.copytree(project.root, moved.root, symlinks=True)
    r = moved.plx("run", g, "--json")
    assert r.code == 0, r
    assert {n["state"] for n in r.json()["nodes"].values()} == {"cached"}
