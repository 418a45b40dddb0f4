"""docs/reliability.md, the store's half: nothing wrong served, nothing finished lost, damaged files are a
message and a way forward. Every fault is provoked for real: gc racing live runs, SIGKILL,
hard and symbolic links written by nodes, a real full tmpfs, damaged databases and records."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import PLX, Project, counting_op

# ---- gc beside live runs ---------------------------------------------------------

OLD_MTIME_OP = """\
kind: operation
name: old_mtime
runner: bash_jinja2
inputs: [{name: src, type: text, min: 0}]
params: [{name: v, type: str}, {name: suffix, type: str, default: ""}]
outputs:
  - {name: out, type: text, filename: out.txt}
  - {name: tree, type: directory}
cmd: |
  { {% if input.src %}cat {{ input.src }}; {% endif %}echo {{ param.v }}{{ param.suffix }}; } > fresh.txt
  touch -d 2000-01-01 fresh.txt
  cp -p fresh.txt {{ output.out }}
  echo {{ param.v }}{{ param.suffix }} > {{ output.tree }}/f.txt
  touch -d 2000-01-01 {{ output.tree }}/f.txt {{ output.tree }}
  sleep 0.05
"""

OLD_MTIME_GRAPH = """\
kind: graph
name: old
params: [{name: v, type: str, default: x}]
nodes:
  a: {operation: old_mtime, params: {v: "${v}"}}
  b: {operation: old_mtime, inputs: {src: a.out}, params: {v: "${v}", suffix: -b}}
  c: {operation: old_mtime, inputs: {src: b.out}, params: {v: "${v}", suffix: -c}}
outputs: {final: c.out}
"""


@pytest.mark.parametrize("keep_last", [None, 3])
def test_gc_racing_live_runs_loses_nothing(project: Project, keep_last: int | None) -> None:
    """`plx cache gc` (also with --keep-last) in a loop while runs whose nodes write outputs with old
    mtimes (`touch -d`, `cp -p`) start and finish: every run succeeds, every output of every run
    kept is served, the store verifies, the cache entries of kept runs survive."""
    gc_args = ["cache", "gc"] + ([] if keep_last is None else ["--keep-last", str(keep_last)])
    project.write("operations/old_mtime.yaml", OLD_MTIME_OP)
    project.write("graphs/old.yaml", OLD_MTIME_GRAPH)
    stop = threading.Event()
    gc_results: list[tuple[int, str]] = []

    def gc_loop() -> None:
        while not stop.is_set():
            r = project.plx(*gc_args)
            gc_results.append((r.code, r.err))

    gc_thread = threading.Thread(target=gc_loop)
    gc_thread.start()
    values = [f"v{i}" for i in range(8)]
    try:
        for pair in (values[i : i + 2] for i in range(0, len(values), 2)):  # two runs at a time
            procs = [project.popen("run", "graphs/old.yaml", "-p", f"v={v}", "--json") for v in pair]
            for p in procs:
                out, err = p.communicate(timeout=120)
                assert p.returncode == 0, err
                assert "Traceback" not in err
    finally:
        stop.set()
        gc_thread.join(timeout=120)
    assert gc_results and all(code == 0 for code, _ in gc_results), gc_results
    assert not any("Traceback" in e for _, e in gc_results)
    r = project.plx(*gc_args)  # once more, with no run live: only garbage goes
    assert r.code == 0, r
    assert project.plx("cache", "verify").code == 0
    runs = project.plx("log", "--json", "-n", "100").json()
    assert len(runs) == (keep_last or len(values)) and {run["status"] for run in runs} == {"success"}
    for run in runs:
        v = project.plx("log", run["id"], "--json").json()["params"]["v"]
        got = project.plx("get", run["id"], "final", "-o", "-")
        assert got.code == 0 and got.out == f"{v}\n{v}-b\n{v}-c\n", got
        tree = project.root / f"tree-{v}"
        assert project.plx("get", run["id"], "b.tree", "-o", str(tree)).code == 0
        assert (tree / "f.txt").read_text() == f"{v}-b\n"
    newest = project.plx("log", runs[0]["id"], "--json").json()["params"]["v"]
    again = project.plx("run", "graphs/old.yaml", "-p", f"v={newest}", "--json")
    assert {n["state"] for n in again.json()["nodes"].values()} == {"cached"}  # entries survived too


WAIT_OP = """\
kind: operation
name: wait
runner: command
params: [{name: go, type: str}]
outputs: [{name: out}]
cmd: |
  echo $$ > started-here
  while [ ! -e "$PARAM_GO" ]; do sleep 0.05; done
  echo done > "$OUTPUT_OUT"
"""

FAIL_OP = """\
kind: operation
name: fail_big
runner: command
outputs: [{name: out}]
cmd: |
  head -c 3000 /dev/zero > partial.bin
  exit 3
"""


def test_gc_beside_a_live_run_keeps_its_work_and_says_what_it_freed(project: Project) -> None:
    project.write("operations/wait.yaml", WAIT_OP)
    project.write("operations/fail_big.yaml", FAIL_OP)
    project.write("graphs/w.yaml", "kind: graph\nname: w\nnodes:\n  w: {operation: wait, params: {go: %s}}\n" % (project.root / "go"))
    project.write("graphs/f.yaml", "kind: graph\nname: f\nnodes:\n  f: {operation: fail_big}\n")
    assert project.plx("run", "graphs/f.yaml").code == 1  # its work folder is kept to look at
    old_garbage = _plant_object(project, b"garbage\n", mtime=946684800)  # stored in 2000, referenced by nothing
    new_garbage = _plant_object(project, b"fresh garbage\n", mtime=time.time())  # as if a live run had just stored it
    failed_run = project.last_run()["id"]
    kept = project.root / ".plx/tmp" / failed_run / "f" / "partial.bin"
    assert kept.stat().st_size == 3000
    proc = project.popen("run", "graphs/w.yaml")
    try:
        project.wait_running()
        live_run = project.plx("log", "--json", "--status", "running").json()[0]["id"]
        live_work = project.root / ".plx/tmp" / live_run / "w"
        deadline = time.monotonic() + 20
        while not (live_work / "started-here").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = project.plx("cache", "gc")
        assert r.code == 0, r
        # the finished run's kept folder is freed and named as such; the live run's is untouched
        assert "1 work folders kept from failed or killed nodes (3,000 bytes)" in r.err, r
        assert "1 objects (8 bytes)" in r.err, r
        assert "1 live run" in r.err, r
        assert not kept.exists()
        assert (live_work / "started-here").exists()
        assert not old_garbage.exists() and new_garbage.exists()  # within the grace period: kept while runs are live
    finally:
        (project.root / "go").touch()
        assert proc.wait(timeout=30) == 0
    assert project.plx("get", "last", "w.out", "-o", "-").out == "done\n"
    r = project.plx("cache", "gc")
    assert r.code == 0 and "live run" not in r.err, r
    assert not new_garbage.exists()  # no run live: garbage goes at once
    assert project.plx("cache", "verify").code == 0


def _plant_object(project: Project, data: bytes, mtime: float) -> Path:
    from plx.hashing import hash_bytes

    h = hash_bytes(data)
    p = project.root / ".plx/objects" / h[:2] / h[2:]
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    p.chmod(0o444)
    os.utime(p, (mtime, mtime))
    return p


def test_an_object_reused_by_a_run_gets_the_store_time_not_the_nodes(project: Project) -> None:
    """gc's grace period counts from when plx stored or reused an object, whatever mtime the node gave it."""
    project.write("operations/old_mtime.yaml", OLD_MTIME_OP)
    project.write("graphs/old.yaml", OLD_MTIME_GRAPH)
    reused = _plant_object(project, b"r\n", mtime=946684800)  # an unreferenced object from long ago
    assert project.plx("run", "graphs/old.yaml", "-p", "v=r").code == 0  # a.out is b"r\n" again, with mtime 2000
    assert time.time() - reused.stat().st_mtime < 600
    fresh = [p for p in (project.root / ".plx/objects").rglob("*") if p.is_file()]
    assert fresh and all(time.time() - p.stat().st_mtime < 600 for p in fresh)


# ---- what a node writes cannot change what it does not own -----------------------


def test_hard_linked_output_is_copied_never_re_permissioned(project: Project, tmp_path: Path) -> None:
    user_file = tmp_path / "userfile.txt"
    user_file.write_text("mine\n")
    user_file.chmod(0o644)
    project.write(
        "operations/link.yaml",
        f"""\
        kind: operation
        name: link
        runner: bash_jinja2
        outputs: [{{name: out, type: text}}, {{name: tree, type: directory}}]
        cmd: ln {user_file} {{{{ output.out }}}}; ln {user_file} {{{{ output.tree }}}}/inside.txt
        """,
    )
    project.write("graphs/l.yaml", "kind: graph\nname: l\nnodes:\n  l: {operation: link}\n")
    r = project.plx("run", "graphs/l.yaml", "--json")
    assert r.code == 0, r
    art = r.json()["nodes"]["l"]["outputs"]["out"]
    obj = project.root / ".plx/objects" / art["hash"][:2] / art["hash"][2:]
    assert stat.S_IMODE(user_file.stat().st_mode) == 0o644  # the user's file keeps its mode
    assert user_file.stat().st_ino != obj.stat().st_ino  # and is not the store's object
    assert user_file.stat().st_nlink == 1
    assert not any(p.stat().st_ino == user_file.stat().st_ino for p in (project.root / ".plx/objects").rglob("*") if p.is_file())
    user_file.write_text("changed by the user\n")  # must not reach the store
    assert project.plx("cache", "verify").code == 0
    assert project.plx("get", "last", "l.out", "-o", "-").out == "mine\n"
    assert project.plx("get", "last", "l.tree", "-o", str(tmp_path / "tree")).code == 0
    assert (tmp_path / "tree/inside.txt").read_text() == "mine\n"


LINKS_OP = """\
kind: operation
name: links
runner: bash_jinja2
params: [{name: how, type: str}]
outputs: [{name: tree, type: directory}, {name: side, type: text, filename: side.txt}]
cmd: |
  echo side > side.txt
  cd {{ output.tree }}
  echo hello > z.txt
  mkdir sub
  case {{ param.how }} in
    relative) ln -s z.txt b.txt; ln -s ../z.txt sub/c.txt ;;
    absolute) ln -s "$PWD/z.txt" b.txt; ln -s "$(dirname "$PWD")/side.txt" sub/c.txt ;;
    outside) ln -s /etc/hostname b.txt ;;
    dangling) ln -s nowhere.txt b.txt ;;
    folder) ln -s sub b ;;
  esac
"""


def _links_project(project: Project) -> None:
    project.write("operations/links.yaml", LINKS_OP)
    project.write(
        "graphs/links.yaml", "kind: graph\nname: links\nparams: [{name: how, type: str, default: relative}]\nnodes:\n  n: {operation: links, params: {how: '${how}'}}\n"
    )


def _links_in_store(project: Project) -> list[Path]:
    return [p for p in (project.root / ".plx/objects").rglob("*") if p.is_symlink()]


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_link_inside_a_directory_output_stores_what_it_points_to(project: Project, how: str) -> None:
    _links_project(project)
    r = project.plx("run", "graphs/links.yaml", "-p", f"how={how}")
    assert r.code == 0, r
    assert "Traceback" not in r.err
    assert _links_in_store(project) == []
    dest = project.root / "got"
    assert project.plx("get", "last", "n.tree", "-o", str(dest)).code == 0
    assert not (dest / "b.txt").is_symlink() and (dest / "b.txt").read_text() == "hello\n"
    assert (dest / "sub/c.txt").read_text() == ("hello\n" if how == "relative" else "side\n")
    assert project.plx("cache", "verify").code == 0
    r = project.plx("run", "graphs/links.yaml", "-p", f"how={how}", "--json")  # and it is served from the cache
    assert r.json()["nodes"]["n"]["state"] == "cached"


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("outside", "holds a link tree/b.txt pointing outside the working directory (/etc/hostname)"),
        ("dangling", "holds a link tree/b.txt that points to nothing"),
        ("folder", "holds a link tree/b to a folder"),
    ],
)
def test_link_that_cannot_be_stored_fails_the_node_with_a_reason(project: Project, how: str, reason: str) -> None:
    _links_project(project)
    r = project.plx("run", "graphs/links.yaml", "-p", f"how={how}", "--json")
    assert r.code == 1, r
    assert "Traceback" not in r.err
    node = r.json()["nodes"]["n"]
    assert node["state"] == "failed" and reason in node["reason"], node
    assert _links_in_store(project) == []
    assert project.plx("cache", "verify").code == 0


def test_a_link_left_in_the_store_by_an_older_plx_is_damage_not_a_crash(project: Project) -> None:
    _links_project(project)
    r = project.plx("run", "graphs/links.yaml", "--json")
    assert r.code == 0, r
    from plx.hashing import hash_bytes

    h = hash_bytes(b"hello\n")
    obj = project.root / ".plx/objects" / h[:2] / h[2:]
    obj.unlink()
    os.symlink("z.txt", obj)  # what plx 0.x renamed into objects/: a dangling relative link
    v = project.plx("cache", "verify")
    assert v.code == 1 and "symbolic link" in v.err and "Traceback" not in v.err, v
    unreferenced = project.root / ".plx/objects/00" / ("1" * 62)
    unreferenced.parent.mkdir(exist_ok=True)
    os.symlink("nowhere", unreferenced)
    g = project.plx("cache", "gc")  # a link in the store is damage that gc removes, referenced or not
    assert g.code == 0 and "2 objects" in g.err, g
    assert not os.path.lexists(obj)
    assert project.plx("cache", "verify").code == 0
    os.symlink("z.txt", obj)
    r = project.plx("run", "graphs/links.yaml", "--json")
    assert r.code == 0, r
    assert r.json()["nodes"]["n"]["state"] == "success"  # damaged: the node ran again
    assert not obj.is_symlink() and obj.read_text() == "hello\n"
    assert project.plx("cache", "verify").code == 0
    assert project.plx("cache", "gc").code == 0


# ---- commit before success -------------------------------------------------------


def test_a_node_reported_success_is_committed_even_if_plx_is_killed_at_once(project: Project) -> None:
    """SIGKILL plx the moment a node's dependent starts: the node's cache entry is already committed."""
    project.write("operations/step.yaml", counting_op(project.root))
    project.write(
        "operations/signal.yaml",
        f"""\
        kind: operation
        name: signal
        runner: command
        inputs: [{{name: src, type: text}}]
        outputs: [{{name: out}}]
        cmd: echo $$ > {project.root}/b.pid; exec sleep 60
        """,
    )
    nodes = "  a: {operation: step, params: {tag: a, value: '${v}'}}\n  b: {operation: signal, inputs: {src: a.out}}\n"
    project.write("graphs/k.yaml", "kind: graph\nname: k\nparams: [{name: v, type: str, default: x}]\nnodes:\n" + nodes)
    pid_file = project.root / "b.pid"
    for i in range(3):
        pid_file.unlink(missing_ok=True)
        proc = project.popen("run", "graphs/k.yaml", "-p", f"v={i}")
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline, "b never started"
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)  # right after a finished and b started
        proc.communicate(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # plx's guardian may have stopped it (and init reaped it) first
            os.kill(int(pid_file.read_text()), signal.SIGKILL)  # b's process, left by the killed plx
        run = project.last_run()
        assert run["status"] == "interrupted"
        assert run["nodes"]["a"]["state"] == "success"
        before = project.counter("a")
        r = project.plx("run", "graphs/k.yaml", "-p", f"v={i}", "a", "--json")
        assert r.code == 0, r
        assert r.json()["nodes"]["a"]["state"] == "cached", f"attempt {i}: a's entry was lost"
        assert project.counter("a") == before
    assert project.plx("cache", "verify").code == 0


def test_success_reported_implies_a_committed_entry(project: Project) -> None:
    """SIGKILL plx as soon as it reports a node `success` (its progress line): the entry is there."""
    project.write("operations/step.yaml", counting_op(project.root))
    nodes = "".join(f"  n{i}: {{operation: step, params: {{tag: n{i}, value: '${{v}}'}}}}\n" for i in range(6))
    project.write("graphs/s.yaml", "kind: graph\nname: s\nparams: [{name: v, type: str, default: x}]\nnodes:\n" + nodes)
    for attempt in range(3):
        proc = project.popen("run", "graphs/s.yaml", "-p", f"v={attempt}", "-j", "1")
        assert proc.stderr is not None
        for line in proc.stderr:
            if "success" in line:
                proc.send_signal(signal.SIGKILL)
                break
        proc.communicate(timeout=30)
        succeeded = [tid for tid, n in project.last_run()["nodes"].items() if n["state"] == "success"]
        assert succeeded
        r = project.plx("run", "graphs/s.yaml", "-p", f"v={attempt}", "--json")
        states = {tid: n["state"] for tid, n in r.json()["nodes"].items()}
        assert all(states[tid] == "cached" for tid in succeeded), (attempt, succeeded, states)


# ---- a full disk -----------------------------------------------------------------


def _can_mount_tmpfs() -> str | None:
    if shutil.which("unshare") is None:
        return "unshare is not installed"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"this machine forbids mounting a tmpfs: {probe.stderr.strip()}"


def test_a_disk_that_fills_while_storing_is_a_message_and_a_way_forward(project: Project, tmp_path: Path) -> None:
    why = _can_mount_tmpfs()
    if why:
        print(why)
        pytest.skip(why)
    store = tmp_path / "store"
    store.mkdir()
    project.write(
        "operations/big.yaml",
        """\
        kind: operation
        name: big
        runner: command
        params: [{name: kb, type: int}]
        outputs: [{name: out}]
        cmd: |
          head -c ${PARAM_KB}k /dev/urandom > data.bin
          ln data.bin "$OUTPUT_OUT"
        """,
    )
    project.write(
        "operations/copy.yaml",
        'kind: operation\nname: copy\nrunner: command\ninputs: [{name: src}]\noutputs: [{name: out}]\ncmd: cat "$INPUT_SRC" > "$OUTPUT_OUT"\n',
    )
    (project.root / "data").mkdir()
    (project.root / "data/one_mb.bin").write_bytes(os.urandom(1024 * 1024))
    project.write("graphs/copy.yaml", "kind: graph\nname: copy\ninputs: [{name: f, default: data/one_mb.bin}]\nnodes:\n  n: {operation: copy, inputs: {src: inputs.f}}\n")
    project.write("graphs/big.yaml", "kind: graph\nname: big\nparams: [{name: kb, type: int, default: 8}]\nnodes:\n  n: {operation: big, params: {kb: '${kb}'}}\n")
    # Inside a private mount namespace: the 2 MB tmpfs is the store, and disappears with it.
    script = f"""
    set -u
    mount -t tmpfs -o size=2m tmpfs {store}
    step() {{ echo "== $*"; "$@"; echo "== exit $?"; }}
    step {PLX} run graphs/big.yaml -p kb=8
    first=$({PLX} log -n 1 --json | {sys.executable} -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')
    mkdir {tmp_path}/dest && mount -t tmpfs -o size=4k tmpfs {tmp_path}/dest
    step {PLX} get $first n.out -o {tmp_path}/dest/copy.bin
    echo "== get leftovers $(ls -A {tmp_path}/dest | wc -l)"
    step {PLX} run graphs/big.yaml -p kb=1400
    echo "== leftovers $(find {store}/tmp -name 'obj-*' | wc -l)"
    step {PLX} run graphs/copy.yaml
    echo "== input copies left $(find {store}/tmp -path '*.in/*' -type f | wc -l)"
    head -c 3m /dev/zero > {store}/filler 2>/dev/null
    step {PLX} log
    step {PLX} log last
    step {PLX} run graphs/big.yaml -p kb=8
    step {PLX} cache verify
    rm {store}/filler
    step {PLX} cache gc
    step {PLX} cache verify
    step {PLX} run graphs/big.yaml -p kb=300
    step {PLX} get last n.out -o {tmp_path}/got.bin
    step {PLX} log
    """
    proc = subprocess.run(
        ["unshare", "-m", "bash", "-c", script], cwd=project.root, capture_output=True, text=True, timeout=300, env={**os.environ, "PLX_STORE": str(store)}
    )
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    codes = [int(line.split()[-1]) for line in proc.stdout.splitlines() if line.startswith("== exit")]
    # run ok; run fails (storing the copy of a hard-linked 1.4 MB output does not fit); a run whose
    # input copy does not fit; log, log last, run and verify on a full disk; gc, verify, run, get,
    # log once space is back
    assert codes[0] == 0, out
    assert codes.pop(1) == 1 and "== get leftovers 0" in proc.stdout, out  # `get` to a full disk: a message, no partial copy
    assert codes[1] == 1, out
    assert "no space left on the disk" in proc.stdout + proc.stderr
    assert "== leftovers 0" in proc.stdout, out  # no half-written object left behind
    assert codes[2] == 1 and "cannot place the inputs" in out, out  # the input copy does not fit either
    assert "== input copies left 0" in proc.stdout, out  # and is not left half-written
    assert codes[3] == 0 and codes[4] == 0, out  # log works on a full disk
    assert codes[5] in (0, 1) and codes[6] == 0, out  # a run is cached or a message; verify works
    assert codes[7:] == [0, 0, 0, 0, 0], out
    assert (tmp_path / "got.bin").stat().st_size == 300 * 1024


# ---- damaged files ---------------------------------------------------------------


def _chain(project: Project) -> str:
    project.write("operations/step.yaml", counting_op(project.root))
    nodes = "  a: {operation: step, params: {tag: a}}\n  b: {operation: step, inputs: {src: a.out}, params: {tag: b}}\n"
    project.write("graphs/c.yaml", "kind: graph\nname: c\nnodes:\n" + nodes + "outputs: {final: b.out}\n")
    return "graphs/c.yaml"


def test_garbage_run_index_is_rebuilt_with_a_note(project: Project) -> None:
    g = _chain(project)
    assert project.plx("run", g).code == 0
    assert project.plx("run", g).code == 0
    index = project.root / ".plx/runs/index.sqlite"
    for suffix in ("-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    index.write_bytes(b"this is not a database" * 100)
    r = project.plx("log", "--json")
    assert r.code == 0, r
    assert len(r.json()) == 2
    assert r.err.count("plx: note:") == 1 and "index.sqlite" in r.err, r.err
    r = project.plx("log")
    assert r.code == 0 and "note" not in r.err, r
    assert project.plx("run", g).code == 0


@pytest.mark.parametrize("db", ["index", "stats"])
def test_damaged_cache_database_is_set_aside_and_rebuilt_empty(project: Project, db: str) -> None:
    g = _chain(project)
    assert project.plx("run", g).code == 0
    path = project.root / ".plx" / db / "cache.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(os.urandom(8192))
    r = project.plx("run", g, "--json")
    assert r.code == 0, r
    assert "Traceback" not in r.err
    assert "plx: warning:" in r.err and "set aside" in r.err, r.err
    states = {n["state"] for n in r.json()["nodes"].values()}
    assert states == ({"success"} if db == "index" else {"cached"})  # a lost index: misses, never errors
    assert list((project.root / ".plx").glob(f"{db}.damaged-*"))
    r = project.plx("run", g, "--json")
    assert r.code == 0 and "warning" not in r.err and {n["state"] for n in r.json()["nodes"].values()} == {"cached"}
    assert project.plx("cache", "verify").code == 0
    assert project.plx("cache", "gc").code == 0


@pytest.mark.parametrize("damage", ["truncated", "not_an_object", "no_nodes"])
def test_broken_run_record_is_skipped_by_listings_and_an_error_by_name(project: Project, damage: str) -> None:
    g = _chain(project)
    assert project.plx("run", g).code == 0
    assert project.plx("run", g, "--no-cache").code == 0
    good, bad = (r["id"] for r in project.plx("log", "--json").json())
    record = project.root / ".plx/runs" / bad / "run.json"
    text = record.read_text()
    record.write_text({"truncated": text[: len(text) // 2], "not_an_object": "[1, 2]\n", "no_nodes": '{"id": "x", "status": "success"}\n'}[damage])
    (project.root / ".plx/runs/index.sqlite").unlink()  # so that listing must read every record
    r = project.plx("log", "--json")
    assert r.code == 0 and [x["id"] for x in r.json()] == [good], r
    assert "plx: warning: skipped" in r.err and bad in r.err
    r = project.plx("cache", "gc")
    assert r.code == 0 and "skipped" in r.err, r
    for args in (["log", bad], ["log", bad, "a"], ["get", bad, "a.out", "-o", "-"], ["compare", good, bad], ["rerun", bad]):
        r = project.plx(*args)
        assert r.code == 1, (args, r)
        assert "Traceback" not in r.err
        assert f"the record of run {bad} is damaged" in r.err and "delete the folder" in r.err, (args, r)
    assert project.plx("get", good, "final", "-o", "-").code == 0


def _run_killed_while_its_node_waits(project: Project) -> str:
    """A run of one waiting node, its plx SIGKILLed once the node has started: the run's id."""
    project.write("operations/wait.yaml", WAIT_OP)
    project.write("graphs/w.yaml", "kind: graph\nname: w\nnodes:\n  w: {operation: wait, params: {go: %s}}\n" % (project.root / "never"))
    proc = project.popen("run", "graphs/w.yaml")
    project.wait_running()
    rid: str = project.plx("log", "--json").json()[0]["id"]
    pid_file = project.root / ".plx/tmp" / rid / "w" / "started-here"
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    with contextlib.suppress(ProcessLookupError):  # plx's guardian may have stopped it (and init reaped it) first
        os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the node's loop, left behind by the killed plx
    return rid


def test_event_lines_that_are_json_but_not_events_are_ignored(project: Project) -> None:
    rid = _run_killed_while_its_node_waits(project)
    with open(project.root / ".plx/runs" / rid / "events.jsonl", "a") as f:
        f.write('5\n"text"\n[1]\nnull\n{"node": 5}\n{"run": 3}\n{"node": "w", "state": "running"}\n')
    for args in (["log"], ["log", rid], ["log", rid, "--json"], ["log", rid, "w"], ["cache", "gc"]):
        r = project.plx(*args)
        assert r.code == 0 and "Traceback" not in r.err, (args, r)
    assert project.plx("log", rid, "--json").json()["status"] == "interrupted"


def test_folders_in_place_of_the_run_index_and_an_event_log(project: Project) -> None:
    rid = _run_killed_while_its_node_waits(project)
    runs = project.root / ".plx/runs"
    (runs / rid / "events.jsonl").unlink()
    (runs / rid / "events.jsonl").mkdir()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{runs / 'index.sqlite'}{suffix}").unlink(missing_ok=True)
    (runs / "index.sqlite").mkdir()
    r = project.plx("log", "--json")
    assert r.code == 0 and "Traceback" not in r.err and "index.sqlite was not a file" in r.err, r
    assert [x["status"] for x in r.json()] == ["interrupted"]
    r = project.plx("log", rid)
    assert r.code == 0 and "Traceback" not in r.err, r


def test_key_locks_replaced_by_a_folder(project: Project) -> None:
    g = _chain(project)
    locks = project.root / ".plx/key-locks"
    locks.parent.mkdir(parents=True, exist_ok=True)
    locks.mkdir()
    (locks / "junk").write_text("x")
    r = project.plx("run", g)
    assert r.code == 0 and "Traceback" not in r.err, r
    assert "key-locks was not a plain file" in r.err
    assert locks.is_file()
    r = project.plx("run", g, "--json")
    assert r.code == 0 and {n["state"] for n in r.json()["nodes"].values()} == {"cached"}


def test_output_named_dot_dot_never_reaches_a_run(project: Project) -> None:
    project.write(
        "operations/up.yaml",
        """\
        kind: operation
        name: up
        runner: command
        outputs: [{name: out, type: directory, filename: ".."}]
        cmd: "true"
        """,
    )
    project.write("graphs/up.yaml", "kind: graph\nname: up\nnodes:\n  n: {operation: up}\n")
    r = project.plx("run", "graphs/up.yaml")
    assert r.code == 1 and "operations/up.yaml:4:" in r.err and "'..' is not a plain file name" in r.err, r
    assert not (project.root / ".plx/runs").exists() or project.plx("log", "--json").json() == []


@pytest.mark.parametrize("name", ["objects", "tmp", "index", "stats", "runs"])
def test_a_file_in_place_of_a_store_folder_is_set_aside(project: Project, name: str) -> None:
    g = _chain(project)
    assert project.plx("run", g).code == 0
    folder = project.root / ".plx" / name
    shutil.rmtree(folder)
    folder.write_text("not a folder\n")
    r = project.plx("run", g)
    assert r.code == 0 and "Traceback" not in r.err, r
    assert f"{name} was not a folder" in r.err, r.err
    assert folder.is_dir() and list((project.root / ".plx").glob(f"{name}.damaged-*"))
    for args in (["log"], ["cache", "verify"], ["cache", "gc"]):
        r = project.plx(*args)
        assert r.code == 0 and "Traceback" not in r.err, (args, r)
