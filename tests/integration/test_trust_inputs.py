"""docs/reliability.md, inputs: a stored file reaches a node as a read-only hard link to the store's
object (no copy), checked when the node ends. A node that writes into such an input, chmods or
re-dates it, or leaves files beside it, cannot damage the cache nor what the next node gets: every
fault is provoked for real, by nodes of the installed `plx` (as root too, where permission bits stop
nothing)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from plx.hashing import hash_file
from tests.conftest import Project

MAKE = """\
kind: operation
name: make
runner: command
params: [{name: text, type: str}]
outputs: [{name: out, type: text, filename: data.txt}]
cmd: echo "$PARAM_TEXT" > "$OUTPUT_OUT"
"""

# Writes into its input (as a careless tool would: `>>`, `sort -o f f`), then signals `mark`.
SCRIBBLE = """\
kind: operation
name: scribble
runner: command
inputs: [{name: src, type: text}]
params: [{name: mark, type: str, default: ""}]
outputs: [{name: out, type: text}]
cmd: |
  echo scribbled >> "$INPUT_SRC" || true
  if [ -n "$PARAM_MARK" ]; then touch "$PARAM_MARK"; fi
  cat "$INPUT_SRC" > "$OUTPUT_OUT"
"""

# Reads its input once `mark` exists (another node wrote into the same stored object by then).
READ_AFTER = """\
kind: operation
name: read_after
runner: command
inputs: [{name: src, type: text}]
params: [{name: mark, type: str}]
outputs: [{name: out, type: text}]
cmd: |
  for i in $(seq 600); do [ -e "$PARAM_MARK" ] && break; sleep 0.05; done
  cat "$INPUT_SRC" > "$OUTPUT_OUT"
"""

COPY = """\
kind: operation
name: copy
runner: command
inputs: [{name: src, type: text}]
outputs: [{name: out, type: text}]
cmd: cat "$INPUT_SRC" > "$OUTPUT_OUT"
"""


@pytest.fixture(autouse=True)
def link_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check the links themselves: as root (CI) plx copies unless told to link."""
    monkeypatch.setenv("PLX_LINK_INPUTS", "1")


def _objects(project: Project) -> list[Path]:
    return [p for p in (project.root / ".plx/objects").rglob("*") if p.is_file()]


def _store_is_sound(project: Project, missing_ok: bool = False) -> None:
    """Every object holds the bytes its name says, read-only, linked nowhere (no node kept a link).
    missing_ok: an object removed as damaged may be missing (verify says so) until a run makes it again."""
    r = project.plx("cache", "verify")
    damaged = [line for line in r.err.splitlines() if line.startswith("damaged: ")]
    assert r.code == (1 if damaged else 0) and (not damaged or missing_ok), r
    assert all("missing" in line for line in damaged), r
    for p in _objects(project):
        assert hash_file(p) == p.parent.name + p.name, p
        st = p.stat()
        assert st.st_nlink == 1, p
        assert stat.S_IMODE(st.st_mode) == 0o444, p


def _writer_beside_a_reader(project: Project, mark: Path, writer: str, writer_op: str, reader: str, reader_op: str) -> None:
    """graphs/g.yaml: `make` writes "shared"; `bad` (writer) and `reader` both take it as input, with `mark`."""
    project.write("operations/make.yaml", MAKE)
    project.write(f"operations/{writer}.yaml", writer_op)
    project.write(f"operations/{reader}.yaml", reader_op)
    project.write(
        "graphs/g.yaml",
        f"""\
        kind: graph
        name: g
        nodes:
          make: {{operation: make, params: {{text: shared}}}}
          bad: {{operation: {writer}, inputs: {{src: make.out}}, params: {{mark: "{mark}"}}}}
          reader: {{operation: {reader}, inputs: {{src: make.out}}, params: {{mark: "{mark}"}}}}
        """,
    )


def test_a_node_writing_into_a_stored_input_fails_and_never_damages_the_cache(project: Project) -> None:
    project.write("operations/make.yaml", MAKE)
    project.write("operations/scribble.yaml", SCRIBBLE)
    project.write("operations/copy.yaml", COPY)
    project.write(
        "graphs/g.yaml",
        "kind: graph\nname: g\nnodes:\n  make: {operation: make, params: {text: hello}}\n  bad: {operation: scribble, inputs: {src: make.out}}\n",
    )
    r = project.plx("run", "graphs/g.yaml")
    run = project.last_run()
    assert run["nodes"]["make"]["state"] == "success"
    bad = run["nodes"]["bad"]
    if os.getuid() == 0:  # as root the write succeeds: plx finds the changed bytes when the node ends
        assert r.code == 1 and bad["state"] == "failed", r
        assert "input 'src' changed while the node ran" in bad["reason"], bad
        assert "changed while the node ran" in project.plx("log", "last", "bad", "--worker").out
    else:  # the object is read-only: the write is refused, the node reads the right bytes
        assert r.code == 0, r
        assert project.plx("get", "last", "bad.out", "-o", "-").out == "hello\n"
    _store_is_sound(project, missing_ok=True)
    # What `make` produced is never served damaged: `get` serves its bytes or says they are gone.
    got = project.plx("get", "last", "make.out", "-o", "-")
    assert got.code != 0 or got.out == "hello\n", got
    # The next run makes the damaged output again, and a well-behaved reader gets the right bytes.
    project.write(
        "graphs/ok.yaml",
        "kind: graph\nname: ok\nnodes:\n  make: {operation: make, params: {text: hello}}\n  copy: {operation: copy, inputs: {src: make.out}}\n",
    )
    r = project.plx("run", "graphs/ok.yaml")
    assert r.code == 0, r
    assert project.plx("get", "last", "copy.out", "-o", "-").out == "hello\n"
    assert project.plx("get", "last", "make.out", "-o", "-").out == "hello\n"
    _store_is_sound(project)


def test_a_reader_of_an_input_another_node_damages_meanwhile_is_not_cached(project: Project, tmp_path: Path) -> None:
    """Two nodes hold links to the same object at once; one writes into it: neither result is kept."""
    mark = tmp_path / "scribbled"
    _writer_beside_a_reader(project, mark, "scribble", SCRIBBLE, "read_after", READ_AFTER)
    r = project.plx("run", "graphs/g.yaml", "-j", "2", "--keep-going", timeout=120)
    nodes = project.last_run()["nodes"]
    assert r.code == (1 if os.getuid() == 0 else 0), r  # not root: the write is refused, nothing changes
    if os.getuid() == 0:
        assert nodes["bad"]["state"] == "failed", nodes["bad"]
        # The reader read the scribbled bytes (or could not get its input once the object was removed).
        assert nodes["reader"]["state"] == "failed", nodes["reader"]
    assert not nodes["reader"].get("outputs") or project.plx("get", "last", "reader.out", "-o", "-").out == "shared\n"
    _store_is_sound(project, missing_ok=True)
    r = project.plx("run", "graphs/g.yaml", "reader", "-j", "2")
    assert r.code == 0, r
    assert project.plx("get", "last", "reader.out", "-o", "-").out == "shared\n"


def test_chmod_and_touch_on_a_stored_input_leave_the_object_read_only_with_the_store_time(project: Project) -> None:
    project.write("operations/make.yaml", MAKE)
    project.write(
        "operations/fiddle.yaml",
        """\
        kind: operation
        name: fiddle
        runner: command
        inputs: [{name: src, type: text}]
        outputs: [{name: out, type: text}]
        cmd: |
          chmod 666 "$INPUT_SRC"
          touch -d 2000-01-01 "$INPUT_SRC"
          cat "$INPUT_SRC" > "$OUTPUT_OUT"
        """,
    )
    project.write(
        "graphs/g.yaml",
        "kind: graph\nname: g\nnodes:\n  make: {operation: make, params: {text: hi}}\n  fiddle: {operation: fiddle, inputs: {src: make.out}}\n",
    )
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 0, r
    assert project.plx("get", "last", "fiddle.out", "-o", "-").out == "hi\n"
    _store_is_sound(project)
    assert all(time.time() - p.stat().st_mtime < 600 for p in _objects(project))
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 0 and "2 cached" in r.err, r


def test_a_fan_in_of_same_named_inputs_gets_them_numbered_in_one_folder_and_leaves_nothing(project: Project) -> None:
    """Items of a list input that share a file name are numbered in the input's one folder, in list
    order (no folder per item: a fan-in of 1,000 made 1,000 folders); after the run no link and no
    folder is left in the store's tmp/."""
    project.write("operations/make.yaml", MAKE)
    project.write(
        "operations/gather.yaml",
        """\
        kind: operation
        name: gather
        runner: command
        inputs: [{name: parts, type: text, max: -1}]
        outputs: [{name: all, type: text}]
        cmd: |
          for p in $INPUT_PARTS; do echo "$(basename "$p") $(cat "$p")"; done > "$OUTPUT_ALL"
          printf '%s\\n' "$INPUT_PARTS" | xargs -n1 dirname | sort -u | wc -l >> "$OUTPUT_ALL"
        """,
    )
    nodes = "".join(f"  m{i}: {{operation: make, params: {{text: v{i}}}}}\n" for i in range(5))
    parts = ", ".join(f"m{i}.out" for i in range(5))
    project.write("graphs/g.yaml", f"kind: graph\nname: g\nnodes:\n{nodes}  all: {{operation: gather, inputs: {{parts: [{parts}]}}}}\n")
    r = project.plx("run", "graphs/g.yaml", "-j", "2")
    assert r.code == 0, r
    assert project.plx("get", "last", "all.all", "-o", "-").out == "".join(f"{i}-data.txt v{i}\n" for i in range(5)) + "1\n"
    assert not any((project.root / ".plx/tmp").iterdir())
    _store_is_sound(project)


def test_a_list_input_of_distinct_names_keeps_them_and_its_order(project: Project) -> None:
    """Items whose file names all differ keep them, side by side in the input's folder; the paths
    still come in the list's order (here not the names' order)."""
    project.write("data/b.txt", "B\n")
    project.write("data/a.txt", "A\n")
    project.write(
        "operations/names.yaml",
        """        kind: operation
        name: names
        runner: command
        inputs: [{name: parts, type: text, max: -1}]
        outputs: [{name: out, type: text}]
        cmd: |
          for p in $INPUT_PARTS; do echo "$(basename "$(dirname "$p")")/$(basename "$p") $(cat "$p")"; done > "$OUTPUT_OUT"
        """,
    )
    project.write("graphs/g.yaml", "kind: graph\nname: g\ninputs: [{name: files, type: text, max: -1}]\nnodes:\n  n: {operation: names, inputs: {parts: inputs.files}}\n")
    r = project.plx("run", "graphs/g.yaml", "-i", "files=data/b.txt", "-i", "files=data/a.txt")
    assert r.code == 0, r
    assert project.plx("get", "last", "n.out", "-o", "-").out == "parts/b.txt B\nparts/a.txt A\n"


def test_a_recycled_input_folder_holds_nothing_of_the_node_before(project: Project) -> None:
    """A node that leaves a file beside its input (an index, say) or in its work folder: the next
    node, which gets the same folders renamed, sees neither."""
    project.write("operations/make.yaml", MAKE)
    project.write(
        "operations/litter.yaml",
        """\
        kind: operation
        name: litter
        runner: command
        inputs: [{name: src, type: text}]
        params: [{name: i, type: int}]
        outputs: [{name: out, type: text}]
        cmd: |
          ls -A "$(dirname "$INPUT_SRC")" > "$OUTPUT_OUT"; ls -A . >> "$OUTPUT_OUT"; ls -A "$(dirname "$(dirname "$INPUT_SRC")")" >> "$OUTPUT_OUT"
          touch "$INPUT_SRC.idx" "$(dirname "$(dirname "$INPUT_SRC")")/extra" left-behind.tmp
        """,
    )
    chain = "".join(f"  l{i}: {{operation: litter, inputs: {{src: {'make' if i == 0 else f'l{i - 1}'}.out}}, params: {{i: {i}}}}}\n" for i in range(4))
    project.write("graphs/g.yaml", f"kind: graph\nname: g\nnodes:\n  make: {{operation: make, params: {{text: t}}}}\n{chain}")
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 0, r
    for i in range(4):
        name = "data.txt" if i == 0 else "out"
        assert project.plx("get", "last", f"l{i}.out", "-o", "-").out == f"{name}\nout\nsrc\n", i
    assert not any((project.root / ".plx/tmp").iterdir())
    _store_is_sound(project)


def test_plx_removes_nothing_through_a_link_a_node_put_in_place_of_its_input_folder(project: Project, tmp_path: Path) -> None:
    """A node that swaps its input folder for a link to a folder of yours: when plx clears the
    node's inputs it removes nothing there (not the file named like the input, not a runner's helper)."""
    victim = tmp_path / "yours"
    victim.mkdir()
    for name in ("data.txt", "mine.txt", "values.json"):  # an input's name, a file, a runner's helper
        (victim / name).write_text("keep me\n")
    project.write("operations/make.yaml", MAKE)
    project.write(
        "operations/swap.yaml",
        f"""\
        kind: operation
        name: swap
        runner: command
        inputs: [{{name: src, type: text}}]
        params: [{{name: up, type: int}}]
        outputs: [{{name: out, type: text}}]
        cmd: |
          cat "$INPUT_SRC" > "$OUTPUT_OUT"
          d=$(dirname "$INPUT_SRC"); [ "$PARAM_UP" = 1 ] && d=$(dirname "$d")
          mv "$d" "$d.moved"; ln -s {victim} "$d"
        """,
    )
    project.write(
        "graphs/g.yaml",
        "kind: graph\nname: g\nnodes:\n  make: {operation: make, params: {text: hi}}\n"
        "  swap: {operation: swap, inputs: {src: make.out}, params: {up: 0}}\n  swap_in: {operation: swap, inputs: {src: make.out}, params: {up: 1}}\n",
    )
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 0, r
    assert sorted(p.name for p in victim.iterdir()) == ["data.txt", "mine.txt", "values.json"]
    assert all(p.read_text() == "keep me\n" for p in victim.iterdir())
    assert project.plx("get", "last", "swap.out", "-o", "-").out == "hi\n"
    assert project.plx("get", "last", "swap_in.out", "-o", "-").out == "hi\n"
    r = project.plx("cache", "verify")
    assert r.code == 0 and "0 damaged" in r.err, r


def test_links_a_node_puts_where_plx_keeps_spare_copies_reach_none_of_your_files(project: Project, tmp_path: Path) -> None:
    """A finished node's private copy of a user's file waits in a spare folder for the next copy.
    Nodes can reach it (it is in the store's tmp folder, above their own): one that puts links there,
    in place of the folder or of a spare in it, or where an older plx kept spares, makes plx write,
    rename or remove nothing of yours, and every node still reads its own input."""
    victim = tmp_path / "yours"
    victim.mkdir()
    for name in ("1", "2", "3", "4"):
        (victim / name).write_text("keep me\n")
    project.write("data/x.txt", "x\n")
    project.write(
        "operations/plant.yaml",
        f"""\
        kind: operation
        name: plant
        runner: command
        inputs: [{{name: src, type: text}}, {{name: after, type: text, min: 0}}]
        outputs: [{{name: out, type: text}}]
        cmd: |
          ln -sfn {victim} ../.plx-spare
          for d in ../../.spares-*; do
            [ -d "$d" ] && [ ! -L "$d" ] || continue
            for f in "$d"/*; do [ -e "$f" ] && ln -sf {victim}/1 "$f"; done
            for n in 1 2 3 4; do ln -s {victim}/$n "$d/$n" 2>/dev/null || true; done
            mv -T "$d" "$d.moved" && ln -sfn {victim} "$d"
          done
          cat "$INPUT_SRC" > "$OUTPUT_OUT"
        """,
    )
    project.write(
        "graphs/g.yaml",
        "kind: graph\nname: g\ninputs: [{name: x, type: text, default: data/x.txt}]\nnodes:\n"
        "  a: {operation: plant, inputs: {src: inputs.x}}\n  b: {operation: plant, inputs: {src: inputs.x, after: a.out}}\n"
        "  c: {operation: plant, inputs: {src: inputs.x, after: b.out}}\n  d: {operation: plant, inputs: {src: inputs.x, after: c.out}}\n",
    )
    r = project.plx("run", "graphs/g.yaml", "-j", "1")
    assert r.code == 0, r
    assert sorted(p.name for p in victim.iterdir()) == ["1", "2", "3", "4"]
    assert all(p.read_text() == "keep me\n" for p in victim.iterdir())
    assert [project.plx("get", "last", f"{n}.out", "-o", "-").out for n in "abcd"] == ["x\n"] * 4
    assert (project.root / "data/x.txt").read_text() == "x\n"


# Empties its input and puts the same bytes back a moment later (as `sort -o f f` on a sorted file does).
EMPTY_AND_RESTORE = """\
kind: operation
name: empty_and_restore
runner: command
inputs: [{name: src, type: text}]
params: [{name: mark, type: str}]
outputs: [{name: out, type: text}]
cmd: |
  cp "$INPUT_SRC" saved
  : > "$INPUT_SRC" 2>/dev/null || true
  touch "$PARAM_MARK"
  sleep 1
  cat saved > "$INPUT_SRC" 2>/dev/null || true
  cat saved > "$OUTPUT_OUT"
"""

# Reads its input once `mark` exists, and ends after the other node has put the bytes back.
READ_THEN_WAIT = READ_AFTER.replace("name: read_after", "name: read_then_wait") + "  sleep 2\n"


def test_a_node_emptying_and_restoring_its_input_never_changes_what_another_reads(project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Found by review: as root, a node could empty a linked object and restore it before either
    node ended; a node reading it meanwhile got nothing, every check passed, and the empty result
    was cached. Without PLX_LINK_INPUTS, root gets private copies; others get read-only links."""
    monkeypatch.delenv("PLX_LINK_INPUTS")
    mark = tmp_path / "emptied"
    _writer_beside_a_reader(project, mark, "empty_and_restore", EMPTY_AND_RESTORE, "read_then_wait", READ_THEN_WAIT)
    r = project.plx("run", "graphs/g.yaml", "-j", "2", timeout=120)
    assert r.code == 0, r
    assert project.plx("get", "last", "reader.out", "-o", "-").out == "shared\n"
    assert project.plx("get", "last", "make.out", "-o", "-").out == "shared\n"
    _store_is_sound(project)


# Appends to its input (no `|| true`: a refused write fails the node), records its bounding set.
APPEND = """\
kind: operation
name: append
runner: command
inputs: [{name: src, type: text}]
outputs: [{name: out, type: text}, {name: caps, type: text}]
cmd: |
  grep CapBnd /proc/self/status | cut -f2 > "$OUTPUT_CAPS"
  echo more >> "$INPUT_SRC"
  cat "$INPUT_SRC" > "$OUTPUT_OUT"
"""


def _append_graph(project: Project) -> None:
    project.write("operations/make.yaml", MAKE)
    project.write("operations/append.yaml", APPEND)
    project.write(
        "graphs/g.yaml",
        "kind: graph\nname: g\nnodes:\n  make: {operation: make, params: {text: hello}}\n  add: {operation: append, inputs: {src: make.out}}\n",
    )


def test_a_node_writing_into_a_stored_input_is_refused_even_as_root(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root too, a stored input is a read-only link the node cannot write: plx starts nodes
    without CAP_DAC_OVERRIDE, so the permission bits hold (before: root got a private copy)."""
    monkeypatch.delenv("PLX_LINK_INPUTS")
    _append_graph(project)
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 1, r
    node = project.last_run()["nodes"]["add"]
    assert node["state"] == "failed" and "Permission denied" in r.err, (node, r)
    assert "changed while the node ran" not in r.err, r  # refused, not found afterwards
    assert project.plx("get", "last", "make.out", "-o", "-").out == "hello\n"
    _store_is_sound(project)


def test_plx_run_from_python_as_root_leaves_the_callers_capabilities_alone(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a Python program calling plx.run as root, the nodes still cannot write a stored input, and
    the program's own thread keeps CAP_DAC_OVERRIDE (the plx command gives it up in its main thread
    for good; a caller's thread must not be changed), so what it starts afterwards keeps it too."""
    if os.geteuid() != 0:
        pytest.skip("needs root: capabilities are root's")
    monkeypatch.delenv("PLX_LINK_INPUTS")
    _append_graph(project)
    script = textwrap.dedent("""\
        import ctypes, json, subprocess
        import plx
        r = plx.run("graphs/g.yaml")
        prctl = ctypes.CDLL(None).prctl
        after = subprocess.run(["grep", "CapBnd", "/proc/self/status"], capture_output=True, text=True).stdout.split()[1]
        print(json.dumps({"status": r.status, "nodes": r.nodes, "mine": prctl(23, 1, 0, 0, 0), "child": after}))
        """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=project.root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["nodes"] == {"make": "success", "add": "failed"}, out  # the write was refused
    assert out["mine"] == 1, out  # PR_CAPBSET_READ: the caller's thread still has it
    assert int(out["child"], 16) & (1 << 1), out  # and so do the processes it starts afterwards
    assert project.plx("get", "last", "make.out", "-o", "-").out == "hello\n"
    _store_is_sound(project)


def test_plx_link_inputs_0_gives_nodes_private_copies_and_every_capability(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The escape hatch: a node that must write where permission bits forbid runs with
    PLX_LINK_INPUTS=0, gets private copies of its stored inputs, and as root keeps CAP_DAC_OVERRIDE."""
    monkeypatch.delenv("PLX_LINK_INPUTS")
    _append_graph(project)
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 1, r  # by default the write is refused (as root too)
    r = project.plx("run", "graphs/g.yaml", env={"PLX_LINK_INPUTS": "0"})
    assert r.code == 0, r
    assert project.plx("get", "last", "add.out", "-o", "-").out == "hello\nmore\n"
    assert project.plx("get", "last", "make.out", "-o", "-").out == "hello\n"
    if os.geteuid() == 0:
        caps = int(project.plx("get", "last", "add.caps", "-o", "-").out, 16)
        assert caps & (1 << 1), hex(caps)  # CAP_DAC_OVERRIDE kept
    _store_is_sound(project)


def test_as_root_a_node_reads_any_file_but_writes_only_where_permission_bits_allow(project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without CAP_DAC_OVERRIDE a root node still reads another user's 0600 file (CAP_DAC_READ_SEARCH
    is kept), writes its own files, and cannot write another user's 0644 file."""
    if os.geteuid() != 0:
        pytest.skip("needs root: files of another user are made with chown")
    monkeypatch.delenv("PLX_LINK_INPUTS")
    secret, theirs = tmp_path / "secret", tmp_path / "theirs"
    secret.write_text("s3cret\n")
    theirs.write_text("x\n")
    for p, mode in ((secret, 0o600), (theirs, 0o644)):
        os.chown(p, 65534, 65534)
        os.chmod(p, mode)
    project.write(
        "operations/peek.yaml",
        f"""\
        kind: operation
        name: peek
        runner: command
        outputs: [{{name: out, type: text}}]
        cmd: |
          cat {secret} > "$OUTPUT_OUT"
          if echo y >> {theirs}; then echo wrote >> "$OUTPUT_OUT"; else echo refused >> "$OUTPUT_OUT"; fi
        """,
    )
    project.write("graphs/g.yaml", "kind: graph\nname: g\nnodes:\n  peek: {operation: peek}\n")
    r = project.plx("run", "graphs/g.yaml")
    assert r.code == 0, r
    assert project.plx("get", "last", "peek.out", "-o", "-").out == "s3cret\nrefused\n"
    assert theirs.read_text() == "x\n"


def test_a_process_left_behind_holding_an_input_copy_never_writes_into_the_next_nodes_input(project: Project) -> None:
    """A finished node's private copy of a user's file is reused (renamed) for the next node's copy
    only when no process has it open: here the first node leaves a process (out of its group, deaf
    to TERM) that keeps appending to its copy; the next node's copy must hold only its own bytes."""
    project.write("data/a.txt", "for a\n")
    project.write("data/b.txt", "for b\n")
    project.write(
        "operations/leave.yaml",
        """\
        kind: operation
        name: leave
        runner: command
        inputs: [{name: src, type: text}]
        outputs: [{name: out, type: text}]
        cmd: |
          setsid sh -c 'trap "" TERM; exec 3>>"$0"; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do echo LEFTOVER >&3; sleep 0.1; done' "$INPUT_SRC" </dev/null >/dev/null 2>&1 &
          sleep 0.3
          cat "$INPUT_SRC" > "$OUTPUT_OUT"
        """,
    )
    project.write(
        "operations/late.yaml",
        """\
        kind: operation
        name: late
        runner: command
        inputs: [{name: src, type: text}, {name: after, type: text}]
        outputs: [{name: out, type: text}]
        cmd: |
          sleep 1
          cat "$INPUT_SRC" > "$OUTPUT_OUT"
        """,
    )
    project.write(
        "graphs/g.yaml",
        "kind: graph\nname: g\ninputs: [{name: a, type: text, default: data/a.txt}, {name: b, type: text, default: data/b.txt}]\n"
        "nodes:\n  a: {operation: leave, inputs: {src: inputs.a}}\n  b: {operation: late, inputs: {src: inputs.b, after: a.out}}\n",
    )
    r = project.plx("run", "graphs/g.yaml", "-j", "1")
    assert r.code == 0, r
    assert project.plx("get", "last", "b.out", "-o", "-").out == "for b\n"
    assert (project.root / "data/a.txt").read_text() == "for a\n"
