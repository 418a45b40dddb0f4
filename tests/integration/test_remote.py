"""The remote tier (README, "Sharing results") for real: two clones of one project sharing a file:// remote, and S3
against a local moto server; damaged, truncated and unreadable remote objects; read-only and
unreachable remotes; a no-op run that never contacts the remote."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PLX, Project, Result

GRAPH = """\
kind: graph
name: chain
nodes:
  a: {operation: step, params: {tag: a, value: one}}
  b: {operation: step, inputs: {src: a.out}, params: {tag: b, value: two}}
  tree: {operation: tree, inputs: {src: b.out}}
outputs: {b: b.out, tree: tree.dir}
"""

# The same operations in both clones (their cache keys must match): each execution is counted in
# $COUNTS, a folder the test gives each clone through the environment (not part of any key).
STEP_OP = """\
kind: operation
name: step
runner: bash_jinja2
inputs: [{name: src, type: text, min: 0}]
params: [{name: tag, type: str}, {name: value, type: str}]
outputs: [{name: out, type: text, filename: out.txt}]
cmd: |
  mkdir -p "$COUNTS" && echo run >> "$COUNTS/{{ param.tag }}"
  { {% if input.src %}cat {{ input.src }}; {% endif %}echo {{ param.value }}; } > {{ output.out }}
"""

TREE_OP = """\
kind: operation
name: tree
runner: bash_jinja2
inputs: [{name: src, type: text}]
outputs: [{name: dir, type: directory}]
cmd: |
  mkdir -p "$COUNTS" && echo run >> "$COUNTS/tree"
  mkdir -p {{ output.dir }}/sub {{ output.dir }}/empty
  cp {{ input.src }} {{ output.dir }}/copy.txt
  echo deep > {{ output.dir }}/sub/deep.txt
  head -c 300000 /dev/urandom > {{ output.dir }}/sub/big.bin
"""


def _write(project: Project) -> None:
    project.write("operations/step.yaml", STEP_OP)
    project.write("operations/tree.yaml", TREE_OP)
    project.write("graphs/chain.yaml", GRAPH)


class Clone(Project):
    """A project whose plx runs count executions in its own counts/ folder."""

    def plx(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        return super().plx(*args, timeout=timeout, env={"COUNTS": str(self.root / "counts"), **(env or {})}, cwd=cwd)


@pytest.fixture
def clones(project: Project, tmp_path: Path) -> tuple[Project, Project, Path]:
    """Two clones of one git project, and an empty folder to share as their remote."""
    _write(project)
    project.git("add", "-A")
    project.git("commit", "-qm", "init")
    other = tmp_path / "clone2"
    subprocess.run(["git", "clone", "-q", str(project.root), str(other)], check=True)
    (other / ".gitignore").write_text(".plx/\ncounts/\n")
    remote = tmp_path / "shared"
    remote.mkdir()
    return Clone(project.root), Clone(other), remote


def _env(remote: Path | str, **extra: str) -> dict[str, str]:
    url = remote if isinstance(remote, str) else f"file://{remote}"
    return {"PLX_REMOTE": url, **extra}


def _states(r: object) -> dict[str, str]:
    return {n: d["state"] for n, d in r.json()["nodes"].items()}  # type: ignore[attr-defined]


def _remote_files(remote: Path, kind: str) -> list[Path]:
    return sorted(p for p in (remote / kind).rglob("*") if p.is_file()) if (remote / kind).is_dir() else []


def test_a_second_clone_gets_everything_from_the_remote(clones: tuple[Project, Project, Path]) -> None:
    one, two, remote = clones
    r1 = one.plx("run", "graphs/chain.yaml", "--json", env=_env(remote))
    assert r1.code == 0, r1
    assert _states(r1) == {"a": "success", "b": "success", "tree": "success"}
    assert len(_remote_files(remote, "entries")) == 3
    assert not [p for p in remote.rglob("*") if ".tmp-" in p.name]  # no upload left half-done

    r2 = two.plx("run", "graphs/chain.yaml", "--json", env=_env(remote))
    assert r2.code == 0, r2
    assert _states(r2) == {"a": "cached", "b": "cached", "tree": "cached"}
    assert {n["source"] for n in r2.json()["nodes"].values()} == {"remote"}
    assert [two.counter(t) for t in ("a", "b", "tree")] == [0, 0, 0]  # nothing executed in clone 2
    assert r2.json()["nodes"]["tree"]["outputs"] == r1.json()["nodes"]["tree"]["outputs"]
    assert "from the remote" in two.plx("log", "last", "b", "--worker").out
    table = two.plx("log", "last").out  # the table marks them as the JSON does
    assert _cached_column(table) == {"a": "remote", "b": "remote", "tree": "remote"}, table
    assert two.plx("get", "last", "b", "-o", "-").out == "one\ntwo\n"
    assert two.plx("get", "last", "tree", "-o", "got").code == 0
    assert (two.root / "got" / "sub" / "big.bin").read_bytes() == _tree_file(one, "sub/big.bin")
    assert (two.root / "got" / "empty").is_dir()
    # What came from the remote is now local: a third run needs no remote at all.
    r3 = two.plx("run", "graphs/chain.yaml", "--json", "--no-remote")
    assert _states(r3) == {"a": "cached", "b": "cached", "tree": "cached"}
    table = two.plx("log", "last").out
    assert _cached_column(table) == {"a": "yes", "b": "yes", "tree": "yes"}, table
    assert two.plx("cache", "verify").code == 0


def _cached_column(table: str) -> dict[str, str]:
    """`plx log RUN`'s 'cached' column, by node (rows: node, state, duration, cached, ...)."""
    return {cells[0]: cells[3] for cells in (line.split() for line in table.splitlines()) if len(cells) > 3 and cells[0] in ("a", "b", "tree")}


def _tree_file(project: Project, rel: str) -> bytes:
    dest = project.root / "out-tree"
    if not dest.exists():
        assert project.plx("get", "last", "tree", "-o", str(dest)).code == 0
    return (dest / rel).read_bytes()


def test_a_no_op_run_makes_no_remote_call(clones: tuple[Project, Project, Path], tmp_path: Path) -> None:
    one, _, remote = clones
    assert one.plx("run", "graphs/chain.yaml", env=_env(remote)).code == 0
    trace = tmp_path / "trace"
    r = one.plx("run", "graphs/chain.yaml", "--json", env=_env(remote, PLX_REMOTE_TRACE=str(trace)))
    assert _states(r) == {"a": "cached", "b": "cached", "tree": "cached"}
    assert not trace.exists(), trace.read_text()  # not even a connection
    # The trace does record calls when there are some (so the check above can fail).
    r = one.plx("run", "graphs/chain.yaml", "-p", "a.value=new", env=_env(remote, PLX_REMOTE_TRACE=str(trace)))
    assert r.code == 0 and "get " in trace.read_text() and "put " in trace.read_text()


def _flip(path: Path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _object(remote: Path, h: str) -> Path:
    return remote / "objects" / h[:2] / h[2:]


@pytest.mark.parametrize("damage", ["flipped", "truncated", "missing", "unreadable"])
def test_a_damaged_remote_object_is_a_reported_miss(clones: tuple[Project, Project, Path], damage: str) -> None:
    one, two, remote = clones
    r1 = one.plx("run", "graphs/chain.yaml", "--json", env=_env(remote))
    h = r1.json()["nodes"]["b"]["outputs"]["out"]["hash"]
    obj = _object(remote, h)
    if damage == "flipped":
        _flip(obj)
    elif damage == "truncated":
        os.chmod(obj, 0o644)
        obj.write_bytes(obj.read_bytes()[:3])
    elif damage == "missing":
        obj.unlink()
    else:
        os.chmod(obj, 0o644)
        obj.unlink()
        obj.mkdir()  # a folder where the object should be: cannot be read as a file
    r2 = two.plx("run", "graphs/chain.yaml", "--json", env=_env(remote))
    assert r2.code == 0, r2
    assert "Traceback" not in r2.err
    states = _states(r2)
    assert states["a"] == "cached" and states["b"] == "success", r2  # b ran again in clone 2
    assert two.counter("b") == 1 and two.counter("a") == 0
    word = {"flipped": "damaged", "truncated": "truncated", "missing": "missing", "unreadable": "unreadable"}[damage]
    assert f"object {h[:12]} is {word}" in r2.err, r2.err
    assert two.plx("get", "last", "b", "-o", "-").out == "one\ntwo\n"
    assert two.plx("cache", "verify").code == 0  # nothing damaged was stored
    assert not list((two.root / ".plx" / "tmp").glob("remote-*"))  # the bad download was thrown away


def test_a_damaged_remote_entry_is_a_reported_miss(clones: tuple[Project, Project, Path]) -> None:
    one, two, remote = clones
    r1 = one.plx("run", "graphs/chain.yaml", "--json", env=_env(remote))
    key = r1.json()["nodes"]["a"]["cache_key"]
    entry = remote / "entries" / key[:2] / f"{key[2:]}.json"
    entry.write_text('{"outputs": {"out": {"hash": "../../etc/passwd", "size": 1, "type": "text", "filename": "x"}}}')
    r2 = two.plx("run", "graphs/chain.yaml", "--json", env=_env(remote))
    assert r2.code == 0 and "Traceback" not in r2.err
    assert _states(r2)["a"] == "success" and f"cache entry {key[:12]} is damaged" in r2.err
    entry.write_text("{not json")
    r3 = two.plx("run", "graphs/chain.yaml", "--no-cache", "--json", "--no-remote")
    assert r3.code == 0


def test_read_only_remote(clones: tuple[Project, Project, Path]) -> None:
    one, two, remote = clones
    r = one.plx("run", "graphs/chain.yaml", env=_env(remote, PLX_REMOTE_PUSH="0"))
    assert r.code == 0, r
    assert not _remote_files(remote, "entries") and not _remote_files(remote, "objects")
    assert one.plx("run", "graphs/chain.yaml", env=_env(remote)).code == 0  # all cached here: still nothing pushed
    assert not _remote_files(remote, "entries")
    assert one.plx("run", "graphs/chain.yaml", "--no-cache", env=_env(remote)).code == 0
    assert len(_remote_files(remote, "entries")) == 3
    r2 = two.plx("run", "graphs/chain.yaml", "--json", env=_env(remote, PLX_REMOTE_PUSH="0"))  # reading still works
    assert set(_states(r2).values()) == {"cached"}


def test_unreachable_remote_is_one_warning_and_a_local_run(clones: tuple[Project, Project, Path], tmp_path: Path) -> None:
    one, _, _ = clones
    r = one.plx("run", "graphs/chain.yaml", "--json", env=_env(tmp_path / "no" / "such" / "mount"))
    assert r.code == 0, r
    assert set(_states(r).values()) == {"success"}
    assert r.err.count("plx: warning:") == 1 and "going on without the remote" in r.err, r.err
    assert not (tmp_path / "no").exists()


def test_remote_settings(clones: tuple[Project, Project, Path]) -> None:
    one, two, remote = clones
    one.write("plx.yaml", f"remote: {os.path.relpath(remote, one.root)}\n")  # a path relative to the project root
    assert one.plx("run", "graphs/chain.yaml").code == 0
    assert len(_remote_files(remote, "entries")) == 3
    two.write("plx.yaml", f"remote: file://{remote}\n")
    r = two.plx("run", "graphs/chain.yaml", "--json", env={"PLX_REMOTE": ""})  # empty: off
    assert set(_states(r).values()) == {"success"}
    assert two.plx("run", "graphs/chain.yaml", "--no-cache", "--json", "--no-remote").code == 0
    r = two.plx("run", "graphs/chain.yaml", "--json", "--remote", "file:///nowhere/at/all", "--no-cache")
    assert r.code == 0 and "going on without the remote" in r.err
    two.write("plx.yaml", "remote: 3\n")
    r = two.plx("run", "graphs/chain.yaml")
    assert r.code == 1 and "plx.yaml:1:9: 'remote' must be a URL" in r.err, r.err


def test_dry_run_asks_the_remote_and_downloads_nothing(clones: tuple[Project, Project, Path], tmp_path: Path) -> None:
    one, two, remote = clones
    r1 = one.plx("run", "graphs/chain.yaml", "--json", env=_env(remote))
    assert r1.code == 0, r1
    trace = tmp_path / "trace"
    r = one.plx("run", "graphs/chain.yaml", "--dry-run", env=_env(remote, PLX_REMOTE_TRACE=str(trace)))
    assert r.code == 0 and "0 would run, 3 cached\n" in r.err and not trace.exists(), r  # local hits: the remote is not asked

    r = two.plx("run", "graphs/chain.yaml", "--dry-run", "--json", env=_env(remote))
    assert r.code == 0, r
    rows = {row["node"]: row for row in r.json()}
    assert {n: (row["action"], row.get("source")) for n, row in rows.items()} == {n: ("cached", "remote") for n in ("a", "b", "tree")}, rows
    # b's and tree's keys are computed from what the remote's entries of their upstream name, as the run would
    assert {n: row["cache_key"] for n, row in rows.items()} == {n: d["cache_key"] for n, d in r1.json()["nodes"].items()}
    r = two.plx("run", "graphs/chain.yaml", "--dry-run", env=_env(remote))
    assert "0 would run, 3 cached (3 from the remote)" in r.err, r.err
    assert "would be downloaded, not run" in r.out and f"file://{remote}" in r.out, r.out
    assert not [p for p in (two.root / ".plx" / "objects").rglob("*") if p.is_file()]  # nothing downloaded
    assert "3 would run, 0 cached" in two.plx("run", "graphs/chain.yaml", "--dry-run", "--no-remote", env=_env(remote)).err

    # A damaged entry is a warning and a node that would run (and what needs it, after it).
    key = rows["b"]["cache_key"]
    (remote / "entries" / key[:2] / f"{key[2:]}.json").write_text("{not json")
    r = two.plx("run", "graphs/chain.yaml", "--dry-run", "--json", env=_env(remote))
    assert [(row["node"], row["action"]) for row in r.json()] == [("a", "cached"), ("b", "run"), ("tree", "run")], r
    assert f"cache entry {key[:12]} is damaged" in r.err and "Traceback" not in r.err
    r = two.plx("run", "graphs/chain.yaml", "--dry-run", env=_env(tmp_path / "no" / "such" / "mount"))  # unreachable
    assert r.code == 0 and "3 would run, 0 cached" in r.err and r.err.count("plx: warning:") == 1, r.err
    assert set(_states(two.plx("run", "graphs/chain.yaml", "--json", env=_env(remote)))) == {"a", "b", "tree"}
    assert two.counter("a") == 0 and two.counter("b") == 1  # the run did what the dry run said


def test_rerun_takes_the_remote_options(clones: tuple[Project, Project, Path], tmp_path: Path) -> None:
    one, _, remote = clones
    assert one.plx("run", "graphs/chain.yaml", env={"PLX_REMOTE": ""}).code == 0
    trace = tmp_path / "trace"
    r = one.plx("rerun", "last", "--no-cache", "--no-remote", env=_env(remote, PLX_REMOTE_TRACE=str(trace)))
    assert r.code == 0 and not trace.exists() and not _remote_files(remote, "entries"), r
    r = one.plx("rerun", "last", "--no-cache", "--remote", f"file://{remote}", env={"PLX_REMOTE": ""})
    assert r.code == 0 and len(_remote_files(remote, "entries")) == 3, r


def test_cache_gc_leaves_the_remote_alone_and_says_so(clones: tuple[Project, Project, Path]) -> None:
    one, _, remote = clones
    assert one.plx("run", "graphs/chain.yaml", env=_env(remote)).code == 0
    before = {p: p.read_bytes() for p in remote.rglob("*") if p.is_file()}
    r = one.plx("cache", "gc", "--keep-last", "0", env=_env(remote))
    assert r.code == 0 and "removed 1 runs" in r.err, r.err
    assert f"the remote file://{remote} is not touched (gc cleans this store only)" in r.err, r.err
    assert {p: p.read_bytes() for p in remote.rglob("*") if p.is_file()} == before
    assert "remote" not in one.plx("cache", "gc", env={"PLX_REMOTE": ""}).err  # no remote, no note
    # What gc removed here comes back from the remote on the next miss.
    for d in ("objects", "index"):
        subprocess.run(["rm", "-rf", str(one.root / ".plx" / d)], check=True)
    r = one.plx("run", "graphs/chain.yaml", "--json", env=_env(remote))
    assert set(_states(r).values()) == {"cached"} and {n["source"] for n in r.json()["nodes"].values()} == {"remote"}, r


def test_a_large_pull_streams_with_progress_on_a_terminal_only(clones: tuple[Project, Project, Path]) -> None:
    one, two, remote = clones
    for p in (one, two):
        p.write("operations/big.yaml", 'kind: operation\nname: big\nrunner: command\noutputs: [{name: out, type: file}]\ncmd: head -c 128000000 /dev/zero > "$OUTPUT_OUT"\n')
        p.write("graphs/big.yaml", "kind: graph\nname: big\nnodes:\n  b: {operation: big}\n")
    r = one.plx("run", "graphs/big.yaml", "--json", env=_env(remote))
    assert r.code == 0, r
    h = r.json()["nodes"]["b"]["outputs"]["out"]["hash"]
    env = {**os.environ, **_env(remote)}
    # Peak memory of the pull alone (a fresh parent whose only child is plx): the 128 MB stream through
    # in pieces, and what was verified while it streamed is not read again (its pages would count).
    probe = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    got = subprocess.run([sys.executable, "-c", probe, str(PLX), "pull", "graphs/big.yaml"], cwd=two.root, env=env, capture_output=True, text=True)
    assert got.returncode == 0 and "pulled 1 cache entries (128.0 MB)" in got.stderr, got
    assert "download" not in got.stderr  # no terminal, no progress
    assert int(got.stdout) < 100_000, f"peak RSS {int(got.stdout) // 1024} MB for a 128 MB pull"
    # On a terminal, the transfer shows its progress.
    subprocess.run(["rm", "-rf", str(two.root / ".plx")], check=True)
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(PLX), "pull", "graphs/big.yaml"], cwd=two.root, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal's other end closed: plx is done
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=120) == 0, out
    assert f"download {h[:12]}: 128.0 / 128.0 MB".encode() in out, out


# ---- S3, against moto's server on 127.0.0.1 ------------------------------------------

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "plxtestkey",
    "AWS_SECRET_ACCESS_KEY": "plx-secret-never-stored",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, stopped by its PID at the end; yields its endpoint URL."""
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install -e '.[test]' brings it)")
    server = Path(sys.executable).parent / "moto_server"
    if not server.exists():
        pytest.skip("moto_server is not installed (pip install -e '.[test]' brings it)")
    port = _free_port()
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _s3_env(endpoint: str, bucket: str, **extra: str) -> dict[str, str]:
    return {**S3_ENV, "FSSPEC_S3_ENDPOINT_URL": endpoint, "PLX_REMOTE": f"s3://{bucket}/team/plx", **extra}


def _bucket(endpoint: str, name: str) -> None:
    env = {**os.environ, **S3_ENV}
    code = f"import s3fs; s3fs.S3FileSystem(endpoint_url={endpoint!r}).mkdir({name!r})"
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_s3_remote_between_two_clones(clones: tuple[Project, Project, Path], s3: str, tmp_path: Path) -> None:
    one, two, _ = clones
    _bucket(s3, "shared1")
    env = _s3_env(s3, "shared1")
    r1 = one.plx("run", "graphs/chain.yaml", "--json", env=env)
    assert r1.code == 0, r1
    trace = tmp_path / "trace"
    r2 = two.plx("run", "graphs/chain.yaml", "--json", env={**env, "PLX_REMOTE_TRACE": str(trace)})
    assert r2.code == 0, r2
    assert set(_states(r2).values()) == {"cached"} and two.counter("a") == 0
    assert two.plx("get", "last", "b", "-o", "-").out == "one\ntwo\n"
    assert "get " in trace.read_text()
    trace.unlink()
    r3 = two.plx("run", "graphs/chain.yaml", "--json", env={**env, "PLX_REMOTE_TRACE": str(trace)})
    assert set(_states(r3).values()) == {"cached"} and not trace.exists()
    for p in (one, two):  # credentials come from the environment and are never written under .plx/
        for f in (p.root / ".plx").rglob("*"):
            if f.is_file():
                assert b"plx-secret-never-stored" not in f.read_bytes(), f


def test_s3_unreachable_is_one_warning(clones: tuple[Project, Project, Path]) -> None:
    one, _, _ = clones
    env = _s3_env(f"http://127.0.0.1:{_free_port()}", "nobody", AWS_MAX_ATTEMPTS="1", AWS_RETRY_MODE="standard")
    r = one.plx("run", "graphs/chain.yaml", "--json", env=env)
    assert r.code == 0, r
    assert set(_states(r).values()) == {"success"}
    assert r.err.count("plx: warning:") == 1 and "unreachable" in r.err, r.err
    assert "Traceback" not in r.err


def test_s3_credentials_in_the_url_are_not_recorded(clones: tuple[Project, Project, Path], s3: str) -> None:
    one, _, _ = clones
    _bucket(s3, "shared2")
    r = one.plx("run", "graphs/chain.yaml", "--remote", "s3://user:pa55word@shared2/x", "--json", env={**S3_ENV, "FSSPEC_S3_ENDPOINT_URL": s3})
    assert r.code == 0, r
    # plx rerun takes the run options --remote/--no-remote too; --remote=URL is redacted as well.
    r = one.plx("rerun", "last", "--no-cache", "--remote=s3://user:pa55word@shared2/x", "--json", env={**S3_ENV, "FSSPEC_S3_ENDPOINT_URL": s3})
    assert r.code == 0, r
    recorded = json.loads((one.root / ".plx" / "runs" / r.json()["id"] / "run.json").read_text())["argv"]
    assert "--remote=s3://***@shared2/x" in recorded, recorded
    record = json.dumps(one.last_run())
    for f in (one.root / ".plx" / "runs").rglob("*"):
        if f.is_file():
            assert b"pa55word" not in f.read_bytes(), f
    assert "pa55word" not in record


# ---- plx push / pull / cache verify --remote -------------------------------------------

WIDE = """\
kind: graph
name: wide
nodes:
{nodes}
  big: {{operation: big}}
"""

BIG_OP = """\
kind: operation
name: big
runner: command
outputs: [{name: out, type: file}]
cmd: python3 -c "import random; r = random.Random(7); open('$OUTPUT_OUT', 'wb').write(r.randbytes(24 << 20))"
"""


def _wide(p: Project, n: int = 24) -> None:
    p.write("operations/big.yaml", BIG_OP)
    p.write("graphs/wide.yaml", WIDE.format(nodes="\n".join(f"  n{i}: {{operation: step, params: {{tag: n{i}, value: v{i}}}}}" for i in range(n))))


def test_push_pull_and_verify(clones: tuple[Project, Project, Path]) -> None:
    one, two, remote = clones
    env = _env(remote)
    assert one.plx("run", "graphs/chain.yaml", env=_env(remote, PLX_REMOTE_PUSH="0")).code == 0
    r = one.plx("push", env=_env(remote, PLX_REMOTE_PUSH="0"))
    assert r.code == 1 and "read-only" in r.err
    r = one.plx("push", env=env)
    assert r.code == 0 and "pushed 3 cache entries (0 already there), 5 objects" in r.err, r.err
    r = one.plx("push", "last", env=env)  # idempotent
    assert r.code == 0 and "pushed 0 cache entries (3 already there), 0 objects" in r.err, r.err

    r = two.plx("pull", "graphs/chain.yaml", env=env)
    assert r.code == 0 and "pulled 3 cache entries" in r.err and "take 3 nodes from the cache and run 0" in r.err, r.err
    r = two.plx("run", "graphs/chain.yaml", "--json", "--no-remote")
    assert set(_states(r).values()) == {"cached"} and two.counter("a") == 0
    r = two.plx("pull", "graphs/chain.yaml", "-p", "a.value=other", env=env)  # nothing on the remote for that
    assert r.code == 0 and "pulled 0 cache entries" in r.err and "run 3" in r.err, r.err

    # pull RUN: what a recorded run used and produced, after the local store lost it
    for d in ("objects", "index", "stats"):
        subprocess.run(["rm", "-rf", str(one.root / ".plx" / d)], check=True)
    r = one.plx("pull", "last", env=env)
    assert r.code == 0 and "pulled 3 cache entries" in r.err, r.err
    assert one.plx("get", "last", "b", "-o", "-").out == "one\ntwo\n"
    assert set(_states(one.plx("run", "graphs/chain.yaml", "--json", "--no-remote")).values()) == {"cached"}

    r = one.plx("cache", "verify", "--remote", env=env)
    assert r.code == 0 and "5 objects checked, 0 damaged" in r.err, r.err
    entry = _remote_files(remote, "entries")[0]
    obj = sorted(_remote_files(remote, "objects"))[0]
    _flip(obj)
    entry.write_text("garbage")
    r = one.plx("cache", "verify", "--remote", env=env)
    assert r.code == 1 and "Traceback" not in r.err
    assert f"damaged on the remote: {obj.parent.name}{obj.name}" in r.err and "is damaged (not a plx entry)" in r.err, r.err
    assert one.plx("cache", "verify", "--remote").code == 1 and "no remote is configured" in one.plx("push").err


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_two_machines_push_the_same_work_at_once(clones: tuple[Project, Project, Path], backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    one, two, remote = clones
    for p in (one, two):
        _wide(p)
    if backend == "s3":
        endpoint = request.getfixturevalue("s3")
        _bucket(endpoint, "race")
        env = _s3_env(endpoint, "race")
    else:
        env = _env(remote)
    for p in (one, two):  # the same work computed on both machines, not pushed yet
        r = p.plx("run", "graphs/wide.yaml", "--json", env={**env, "PLX_REMOTE_PUSH": "0"})
        assert r.code == 0, r
    assert _states(r)["big"] == "success"
    procs = [subprocess.Popen([sys.executable, "-m", "plx", "push"], cwd=p.root, env={**os.environ, **env}, stderr=subprocess.PIPE, text=True) for p in (one, two)]
    errs = [proc.communicate(timeout=300)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errs
    assert all("pushed" in e and "Traceback" not in e for e in errs), errs
    r = one.plx("cache", "verify", "--remote", env=env)
    assert r.code == 0 and "25 objects checked, 0 damaged" in r.err, r.err  # 24 small outputs and the big one
    if backend == "file":
        assert not [p for p in remote.rglob("*") if ".tmp-" in p.name]
    third = Clone(tmp_path / "third")
    subprocess.run(["git", "clone", "-q", str(one.root), str(third.root)], check=True)
    _wide(third)
    r = third.plx("run", "graphs/wide.yaml", "--json", env=env)
    assert r.code == 0 and set(_states(r).values()) == {"cached"}, r
    assert third.counter("n0") == 0


def _s3_put(endpoint: str, path: str, data: bytes) -> None:
    code = f"import s3fs, sys; s3fs.S3FileSystem(endpoint_url={endpoint!r}).pipe_file({path!r}, sys.stdin.buffer.read())"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, **S3_ENV}, input=data, timeout=60)


def test_s3_damaged_truncated_and_longer_objects_are_misses(clones: tuple[Project, Project, Path], s3: str) -> None:
    one, two, _ = clones
    _bucket(s3, "damage")
    env = _s3_env(s3, "damage")
    r1 = one.plx("run", "graphs/chain.yaml", "--json", env=env)
    assert r1.code == 0, r1
    outs = {n: d["outputs"] for n, d in r1.json()["nodes"].items()}
    a, b = outs["a"]["out"]["hash"], outs["b"]["out"]["hash"]
    _s3_put(s3, f"damage/team/plx/objects/{a[:2]}/{a[2:]}", b"one\n" + b"x" * 100)  # longer than its entry says
    _s3_put(s3, f"damage/team/plx/objects/{b[:2]}/{b[2:]}", b"on")  # truncated
    r2 = two.plx("run", "graphs/chain.yaml", "--json", env=env)
    assert r2.code == 0 and "Traceback" not in r2.err, r2
    assert _states(r2) == {"a": "success", "b": "success", "tree": "cached"}, r2.err
    assert f"object {a[:12]} is damaged" in r2.err and f"object {b[:12]} is truncated" in r2.err, r2.err
    assert two.plx("get", "last", "b", "-o", "-").out == "one\ntwo\n"
    # Clone 2 found them damaged, ran a and b, and pushed good copies over the bad ones.
    r = one.plx("cache", "verify", "--remote", env=env)
    assert r.code == 0, r.err


def test_stopping_during_an_upload_leaves_nothing_half_written(clones: tuple[Project, Project, Path], s3: str, tmp_path: Path) -> None:
    one, _, _ = clones
    _bucket(s3, "stopping")
    one.write(
        "operations/big.yaml", 'kind: operation\nname: big\nrunner: command\noutputs: [{name: out, type: file}]\ncmd: head -c 300000000 /dev/zero > "$OUTPUT_OUT"\n'
    )
    one.write("graphs/big.yaml", "kind: graph\nname: big\nnodes:\n  b: {operation: big}\n")
    trace = tmp_path / "trace"
    env = {**os.environ, **_s3_env(s3, "stopping"), "PLX_REMOTE_TRACE": str(trace), "COUNTS": str(one.root / "counts")}
    proc = subprocess.Popen([sys.executable, "-m", "plx", "run", "graphs/big.yaml"], cwd=one.root, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while "put " not in (trace.read_text() if trace.exists() else ""):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # as Ctrl-C: the upload under way stops at its next piece
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    listing = subprocess.run(
        [sys.executable, "-c", f"import s3fs; print(s3fs.S3FileSystem(endpoint_url={s3!r}).find('stopping'))"],
        env={**os.environ, **S3_ENV},
        capture_output=True,
        text=True,
    ).stdout
    assert listing.strip() == "[]", listing  # no entry, and no object cut short under its final name
    r = one.plx("push", env=_s3_env(s3, "stopping"))  # the node did succeed: a push shares it now
    assert r.code == 0 and "pushed 1 cache entries" in r.err, r.err
    assert one.plx("cache", "verify", "--remote", env=_s3_env(s3, "stopping")).code == 0
