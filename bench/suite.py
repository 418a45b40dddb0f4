"""The benchmark suite: plx against make, doit and Snakemake on generated workloads identical for each tool.

Workloads (each tool runs the same commands on the same files, into its own output folder):
  wide-N     N leaves `tr a-z A-Z < data/s/I.txt` + one concatenation of their outputs
  chain-N    N steps, each appends a line to the previous step's output (the first reads data/seed.txt)
  sleep      16 x `sleep 0.5` (cold only; ideal with -j2: 4 s)
  bigfile    a 1 GiB input hashed (`wc -c`) then re-checked (no-op); its "leaf changed" is a touch
  ml         a small ML pipeline (make data, split, 4 trainings, 4 evaluations, pick the best), python scripts
  scale-N    N leaves (wide-N without the concatenation) at 10,000 and 100,000 (plus plx validate and --dry-run)
Scenarios: cold (a fresh copy of the project), no-op (run again), leaf (one leaf input changed, run again).
Before the first workload each tool runs a chain-20 once, not measured (warm_up): a tool's first run after its
installation pays costs no later run does.
Each figure is the median of --repeat runs (3; 1 at 100,000 nodes), the tools taking turns in a rotating
order, with the peak memory (max RSS of the tool and what it waited for) from wait4. Writes BENCHMARKS.md.

KEPT: every project stays until the suite ends, none is removed between runs. On a filesystem that
is slow to reuse freed inodes (ext4 without a journal, as on this project's machines: for 1 to 6
minutes after a delete, every file or folder made scans past the freed ones), removing one run's
project slowed the next run by what it created, whichever tool deleted and whichever ran next:
plx's cold chain-200 took 651 ms right after a removal against 613 ms without one, make's 339
against 337 (medians of 5, 2026-11-27). A suite started right after another is measured in the
shadow of the first one's final removal: leave a few minutes between them, or pass --keep.

Run: `make bench` (installs doit and Snakemake, pinned, into bench/.venv), or
     bench/.venv/bin/python bench/suite.py [--only wide,chain] [--repeat 3] [--no-100k] [--keep] [--out BENCHMARKS.md]
Not part of the tests: figures from a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PATH"] = f"{BIN}{os.pathsep}{ENV.get('PATH', '')}"
TOOLS = ("make", "make-bash", "doit", "snakemake", "plx")
WORKLOADS = ("wide", "chain", "sleep", "bigfile", "ml", "scale")
# make-bash: the same Makefile, its recipes run by `bash -e -o pipefail -c` as the SPEC has plx run every
# command, instead of make's /bin/sh (dash here: 0.5-1 ms less per command). A reference, not a peer: it
# separates what the shell costs from what plx costs ("plx / make (bash)"; "best peer" leaves it out).
MAKE_BASH = ["make", "-j2", "-s", "SHELL=/bin/bash", ".SHELLFLAGS=-e -o pipefail -c"]
DOIT = ["doit", "-n", "2"]
SNAKEMAKE = ["snakemake", "--quiet", "all", "-c", "2"]  # `--quiet all` silences it; the default target is rule `all`

UPPER = "tr a-z A-Z < {src} > {dst}"


def _tool_path(name: str) -> str:
    found = shutil.which(name, path=ENV["PATH"])
    return found or name


# -- workloads: each writes one project (its data and the four tools' files) into root -----------------


def _plx_files(root: Path, ops: dict[str, str], graph: str) -> None:
    (root / "operations").mkdir(exist_ok=True)
    (root / "graphs").mkdir(exist_ok=True)
    for name, text in ops.items():
        (root / f"operations/{name}.yaml").write_text(text)
    (root / "graphs/g.yaml").write_text(graph)


GATHER_OP = (
    "kind: operation\nname: gather\nrunner: command\ninputs: [{name: parts, type: text, max: -1}]\noutputs: [{name: all, type: text}]\n"
    "cmd: printf '%s\\n' \"$INPUT_PARTS\" | tr '\\n' '\\0' | xargs -0 cat > \"$OUTPUT_ALL\"\n"
)


def wide(root: Path, n: int) -> None:
    (root / "data/s").mkdir(parents=True)
    names = [f"{i:06d}" for i in range(n)]
    for i, name in enumerate(names):
        (root / f"data/s/{name}.txt").write_text(f"sample {i}\n")
    _plx_files(
        root,
        {
            "upper": "kind: operation\nname: upper\nrunner: command\ninputs: [{name: src, type: text}]\noutputs: [{name: out, type: text}]\n"
            'cmd: tr a-z A-Z < "$INPUT_SRC" > "$OUTPUT_OUT"\n',
            "gather": GATHER_OP,
        },
        'kind: graph\nname: wide\ninputs: [{name: samples, type: text, max: -1, default: "data/s/*.txt"}]\nnodes:\n'
        "  up: {operation: upper, foreach: inputs.samples, inputs: {src: item}}\n"
        '  all: {operation: gather, inputs: {parts: "up[*].out"}}\n',
    )
    (root / "Makefile").write_text(
        "S := $(sort $(wildcard data/s/*.txt))\nall: mout/all.txt\nmout/all.txt: $(S:data/s/%=mout/%)\n\tcat $^ > $@\n"
        "mout/%.txt: data/s/%.txt | mout\n\ttr a-z A-Z < $< > $@\nmout:\n\tmkdir -p mout\n"
    )
    (root / "dodo.py").write_text(
        "import glob, os\nS = sorted(glob.glob('data/s/*.txt'))\nT = ['dout/' + os.path.basename(s) for s in S]\n"
        "def task_up():\n    for s, t in zip(S, T):\n"
        "        yield {'name': t, 'actions': ['mkdir -p dout && tr a-z A-Z < %s > %s' % (s, t)], 'file_dep': [s], 'targets': [t]}\n"
        "def task_all():\n    return {'actions': ['cat ' + ' '.join(T) + ' > dout/all.txt'], 'file_dep': T, 'targets': ['dout/all.txt']}\n"
    )
    (root / "Snakefile").write_text(
        "S = sorted(glob_wildcards('data/s/{s}.txt').s)\n"
        "rule all:\n    input: 'sout/all.txt'\n"
        "rule gather:\n    input: expand('sout/{s}.txt', s=S)\n    output: 'sout/all.txt'\n    shell: 'cat {input} > {output}'\n"
        "rule up:\n    input: 'data/s/{s}.txt'\n    output: 'sout/{s}.txt'\n    shell: 'tr a-z A-Z < {input} > {output}'\n"
    )


def leaves(root: Path, n: int) -> None:
    """wide-N without the concatenation: at 10,000 files, one command line naming them all exceeds the
    kernel's limit for one argument string (make's `cat $^`, doit's and Snakemake's shell commands)."""
    wide(root, n)
    (root / "graphs/g.yaml").write_text(
        'kind: graph\nname: wide\ninputs: [{name: samples, type: text, max: -1, default: "data/s/*.txt"}]\nnodes:\n'
        "  up: {operation: upper, foreach: inputs.samples, inputs: {src: item}}\n"
    )
    mk = (root / "Makefile").read_text().replace("all: mout/all.txt\nmout/all.txt: $(S:data/s/%=mout/%)\n\tcat $^ > $@\n", "all: $(S:data/s/%=mout/%)\n")
    (root / "Makefile").write_text(mk)
    dodo = (root / "dodo.py").read_text()
    (root / "dodo.py").write_text(dodo[: dodo.index("def task_all")])
    (root / "Snakefile").write_text(
        "S = sorted(glob_wildcards('data/s/{s}.txt').s)\n"
        "rule all:\n    input: expand('sout/{s}.txt', s=S)\n"
        "rule up:\n    input: 'data/s/{s}.txt'\n    output: 'sout/{s}.txt'\n    shell: 'tr a-z A-Z < {input} > {output}'\n"
    )


def wide_leaf(root: Path) -> None:
    _replace(root / "data/s/000000.txt", "sample zero, changed\n")


def chain(root: Path, n: int) -> None:
    (root / "data").mkdir()
    (root / "data/seed.txt").write_text("seed\n")
    step = "cat {src} > {dst} && echo {i} >> {dst}"
    nodes = ["  c0: {operation: step, inputs: {src: inputs.seed}, params: {i: 0}}"]
    nodes += [f"  c{i}: {{operation: step, inputs: {{src: c{i - 1}.out}}, params: {{i: {i}}}}}" for i in range(1, n)]
    _plx_files(
        root,
        {
            "step": "kind: operation\nname: step\nrunner: command\ninputs: [{name: src, type: text}]\nparams: [{name: i, type: int}]\n"
            'outputs: [{name: out, type: text}]\ncmd: cat "$INPUT_SRC" > "$OUTPUT_OUT" && echo $PARAM_I >> "$OUTPUT_OUT"\n'
        },
        "kind: graph\nname: chain\ninputs: [{name: seed, type: text, default: data/seed.txt}]\nnodes:\n" + "\n".join(nodes) + "\n",
    )
    mk = ["all: mout/c%d.txt" % (n - 1), "mout:\n\tmkdir -p mout", "mout/c0.txt: data/seed.txt | mout\n\t" + step.format(src="$<", dst="$@", i=0)]
    mk += [f"mout/c{i}.txt: mout/c{i - 1}.txt\n\t" + step.format(src="$<", dst="$@", i=i) for i in range(1, n)]
    (root / "Makefile").write_text("\n".join(mk) + "\n")
    (root / "dodo.py").write_text(
        f"N = {n}\ndef task_c():\n    for i in range(N):\n        src = 'data/seed.txt' if i == 0 else 'dout/c%d.txt' % (i - 1)\n"
        "        dst = 'dout/c%d.txt' % i\n"
        "        yield {'name': str(i), 'actions': ['mkdir -p dout && cat %s > %s && echo %d >> %s' % (src, dst, i, dst)], 'file_dep': [src], 'targets': [dst]}\n"
    )
    (root / "Snakefile").write_text(
        f"N = {n}\nrule all:\n    input: 'sout/c%d.txt' % (N - 1)\n"
        "rule c0:\n    input: 'data/seed.txt'\n    output: 'sout/c0.txt'\n    shell: 'cat {input} > {output} && echo 0 >> {output}'\n"
        "rule c:\n    input: lambda w: 'sout/c%d.txt' % (int(w.i) - 1)\n    output: 'sout/c{i,[1-9][0-9]*}.txt'\n"
        "    shell: 'cat {input} > {output} && echo {wildcards.i} >> {output}'\n"
    )


# The stamp a step writes first and last: bash's clock in microseconds (EPOCHREALTIME, bash 5; its
# decimal point follows the locale, hence the substitution).
STAMP = 'echo "{0} ${{EPOCHREALTIME/[.,]/}}" >> "$STAMPS"'


def stamped_chain(root: Path, n: int) -> None:
    """chain-N for make (with bash) and plx whose steps stamp the time first and last (hop_latency)."""
    chain(root, n)
    first, last = STAMP.format("s"), STAMP.format("e")
    op = root / "operations/step.yaml"
    cmd = 'cat "$INPUT_SRC" > "$OUTPUT_OUT" && echo $PARAM_I >> "$OUTPUT_OUT"'
    text = op.read_text()
    if f"cmd: {cmd}\n" not in text:  # chain() changed its command: this would measure unstamped steps
        raise SystemExit(f"stamped_chain: chain()'s step command is no longer {cmd!r}; update bench/suite.py")
    op.write_text(text.replace(f"cmd: {cmd}\n", f"cmd: {first}; {cmd}; {last}\n"))
    mk = root / "Makefile"
    lines = [("\t" + first.replace("$", "$$") + "; " + ln[1:] + "; " + last.replace("$", "$$")) if ln.startswith("\tcat ") else ln for ln in mk.read_text().splitlines()]
    mk.write_text("\n".join(lines) + "\n")


def hop_latency(n: int, repeat: int, work: Path) -> dict[str, tuple[float, float]]:
    """The issue's measure of a chain: from a step's last line to the next step's first, make (with
    bash) against plx: (median, mean) in ms over a run's n-1 hops, each the median of `repeat` runs.
    Both tools run the same bash, so its start and exit weigh the same on both sides."""
    template = Path(tempfile.mkdtemp(prefix="stamped-", dir=work))
    stamped_chain(template, n)
    got: dict[str, list[tuple[float, float]]] = {"make-bash": [], "plx": []}
    for r in range(repeat):
        for tool in list(got)[r % 2 :] + list(got)[: r % 2]:
            root = Path(tempfile.mkdtemp(prefix=f"{tool}-", dir=work))
            subprocess.run(["cp", "-al", f"{template}/.", str(root)], check=True)
            git_init(root)
            stamps = root / "stamps.txt"
            env = {**ENV, "STAMPS": str(stamps)}
            done = subprocess.run(command(tool), cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if done.returncode != 0:
                raise SystemExit(f"failed in {root}: {' '.join(command(tool))}\n{done.stderr[-3000:]}")
            marks = [line.split() for line in stamps.read_text().splitlines()]
            if any(len(m) != 2 or not m[1].isdigit() for m in marks):  # bash before 5.0 has no EPOCHREALTIME: "s " alone
                raise SystemExit(f"{tool}: the steps wrote no time: the hop latency needs bash 5 (EPOCHREALTIME); {versions(['make-bash'])}")
            starts = [int(v) for k, v in marks if k == "s"]
            ends = [int(v) for k, v in marks if k == "e"]
            if len(starts) != n or len(ends) != n:
                raise SystemExit(f"{tool}: expected {n} stamped steps, found {len(starts)} starts and {len(ends)} ends")
            gaps = [(b - a) / 1000 for a, b in zip(ends[:-1], starts[1:], strict=True)]
            got[tool].append((statistics.median(gaps), statistics.mean(gaps)))
    return {t: (statistics.median(m for m, _ in v), statistics.median(a for _, a in v)) for t, v in got.items()}


def chain_leaf(root: Path) -> None:
    _replace(root / "data/seed.txt", "seed, changed\n")


def sleep(root: Path, n: int) -> None:
    _plx_files(
        root,
        {"nap": "kind: operation\nname: nap\nrunner: command\nparams: [{name: i, type: int}]\noutputs: [{name: out}]\ncmd: sleep 0.5; echo $PARAM_I > $OUTPUT_OUT\n"},
        "kind: graph\nname: naps\nnodes:\n" + "".join(f"  s{i}: {{operation: nap, params: {{i: {i}}}}}\n" for i in range(n)),
    )
    (root / "Makefile").write_text(f"all: $(patsubst %,mout/%.txt,$(shell seq 0 {n - 1}))\nmout/%.txt: | mout\n\tsleep 0.5; echo $* > $@\nmout:\n\tmkdir -p mout\n")
    (root / "dodo.py").write_text(
        f"def task_nap():\n    for i in range({n}):\n"
        "        yield {'name': str(i), 'actions': ['mkdir -p dout && sleep 0.5; echo %d > dout/%d.txt' % (i, i)], 'targets': ['dout/%d.txt' % i], 'uptodate': [True]}\n"
    )
    (root / "Snakefile").write_text(
        f"rule all:\n    input: expand('sout/{{i}}.txt', i=range({n}))\nrule nap:\n    output: 'sout/{{i}}.txt'\n    shell: 'sleep 0.5; echo {{wildcards.i}} > {{output}}'\n"
    )


def bigfile(root: Path, n: int) -> None:
    (root / "data").mkdir()
    block = os.urandom(1 << 20)
    with open(root / "data/big.bin", "wb") as f:
        for i in range(n):  # n MiB, each block different
            f.write(i.to_bytes(8, "little") + block[8:])
    _plx_files(
        root,
        {"size": 'kind: operation\nname: size\nrunner: command\ninputs: [{name: src}]\noutputs: [{name: out, type: text}]\ncmd: wc -c < "$INPUT_SRC" > "$OUTPUT_OUT"\n'},
        "kind: graph\nname: big\ninputs: [{name: big, default: data/big.bin}]\nnodes:\n  size: {operation: size, inputs: {src: inputs.big}}\n",
    )
    (root / "Makefile").write_text("all: mout/size.txt\nmout/size.txt: data/big.bin\n\tmkdir -p mout && wc -c < $< > $@\n")
    (root / "dodo.py").write_text(
        "def task_size():\n    return {'actions': ['mkdir -p dout && wc -c < data/big.bin > dout/size.txt'], 'file_dep': ['data/big.bin'], 'targets': ['dout/size.txt']}\n"
    )
    (root / "Snakefile").write_text(
        "rule all:\n    input: 'sout/size.txt'\nrule size:\n    input: 'data/big.bin'\n    output: 'sout/size.txt'\n    shell: 'wc -c < {input} > {output}'\n"
    )


def bigfile_leaf(root: Path) -> None:
    os.utime(root / "data/big.bin")  # touched, same bytes: a content-addressed tool re-hashes and does nothing


ML_SCRIPTS = {
    "make_data.py": """\
import random, sys
rng = random.Random(int(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    f.write("x1,x2,x3,y\\n")
    for _ in range(20000):
        x = [rng.gauss(0, 1) for _ in range(3)]
        y = int(0.8 * x[0] - 0.5 * x[1] + 0.3 * x[2] + rng.gauss(0, 0.5) > 0)
        f.write(",".join(f"{v:.5f}" for v in x) + f",{y}\\n")
""",
    "split.py": """\
import sys
rows = open(sys.argv[1]).read().splitlines()
head, body = rows[0], rows[1:]
cut = int(len(body) * 0.8)
open(sys.argv[2], "w").write("\\n".join([head] + body[:cut]) + "\\n")
open(sys.argv[3], "w").write("\\n".join([head] + body[cut:]) + "\\n")
""",
    "train.py": """\
import json, math, sys
lr = float(sys.argv[2])
rows = [list(map(float, r.split(","))) for r in open(sys.argv[1]).read().splitlines()[1:]]
w = [0.0, 0.0, 0.0, 0.0]
for epoch in range(5):
    for *x, y in rows:
        z = sum(a * b for a, b in zip(w, x + [1.0]))
        p = 1 / (1 + math.exp(-max(min(z, 30), -30)))
        w = [wi + lr * (y - p) * xi for wi, xi in zip(w, x + [1.0])]
json.dump({"lr": lr, "w": w}, open(sys.argv[3], "w"))
""",
    "evaluate.py": """\
import json, sys
m = json.load(open(sys.argv[1]))
rows = [list(map(float, r.split(","))) for r in open(sys.argv[2]).read().splitlines()[1:]]
ok = sum((sum(a * b for a, b in zip(m["w"], x + [1.0])) > 0) == (y > 0.5) for *x, y in rows)
json.dump({"lr": m["lr"], "accuracy": ok / len(rows)}, open(sys.argv[3], "w"))
""",
    "best.py": """\
import json, sys
scores = [json.load(open(p)) for p in sys.argv[1:-1]]
json.dump(max(scores, key=lambda s: s["accuracy"]), open(sys.argv[-1], "w"))
""",
}
LRS = ("0.001", "0.01", "0.1", "0.5")


def ml(root: Path, n: int) -> None:
    (root / "scripts").mkdir()
    (root / "data").mkdir()
    (root / "data/seed.txt").write_text("7\n")
    for name, text in ML_SCRIPTS.items():
        (root / "scripts" / name).write_text(text)
    py = "python3"
    ops = {
        "make_data": "kind: operation\nname: make_data\nrunner: command\nsources: [scripts/make_data.py]\ninputs: [{name: seed, type: text}]\n"
        f'outputs: [{{name: data, type: csv}}]\ncmd: {py} scripts/make_data.py $(cat "$INPUT_SEED") "$OUTPUT_DATA"\n',
        "split": "kind: operation\nname: split\nrunner: command\nsources: [scripts/split.py]\ninputs: [{name: data, type: csv}]\n"
        f'outputs: [{{name: train, type: csv}}, {{name: test, type: csv}}]\ncmd: {py} scripts/split.py "$INPUT_DATA" "$OUTPUT_TRAIN" "$OUTPUT_TEST"\n',
        "train": "kind: operation\nname: train\nrunner: command\nsources: [scripts/train.py]\ninputs: [{name: train, type: csv}]\nparams: [{name: lr, type: str}]\n"
        f'outputs: [{{name: model, type: json}}]\ncmd: {py} scripts/train.py "$INPUT_TRAIN" $PARAM_LR "$OUTPUT_MODEL"\n',
        "evaluate": "kind: operation\nname: evaluate\nrunner: command\nsources: [scripts/evaluate.py]\ninputs: [{name: model, type: json}, {name: test, type: csv}]\n"
        f'outputs: [{{name: score, type: json}}]\ncmd: {py} scripts/evaluate.py "$INPUT_MODEL" "$INPUT_TEST" "$OUTPUT_SCORE"\n',
        "best": "kind: operation\nname: best\nrunner: command\nsources: [scripts/best.py]\ninputs: [{name: scores, type: json, max: -1}]\n"
        f'outputs: [{{name: best, type: json}}]\ncmd: {py} scripts/best.py $INPUT_SCORES "$OUTPUT_BEST"\n',
    }
    nodes = ["  data: {operation: make_data, inputs: {seed: inputs.seed}}", "  split: {operation: split, inputs: {data: data.data}}"]
    for i, lr in enumerate(LRS):
        nodes.append(f"  train{i}: {{operation: train, inputs: {{train: split.train}}, params: {{lr: '{lr}'}}}}")
        nodes.append(f"  eval{i}: {{operation: evaluate, inputs: {{model: train{i}.model, test: split.test}}}}")
    nodes.append("  best: {operation: best, inputs: {scores: [" + ", ".join(f"eval{i}.score" for i in range(len(LRS))) + "]}}")
    _plx_files(root, ops, "kind: graph\nname: ml\ninputs: [{name: seed, type: text, default: data/seed.txt}]\nnodes:\n" + "\n".join(nodes) + "\n")
    idx = range(len(LRS))
    mk = [
        "all: mout/best.json",
        "mout/data.csv: data/seed.txt scripts/make_data.py\n\tmkdir -p mout && python3 scripts/make_data.py $$(cat $<) $@",
        "mout/train.csv mout/test.csv &: mout/data.csv scripts/split.py\n\tpython3 scripts/split.py $< mout/train.csv mout/test.csv",
    ]
    for i in idx:
        mk.append(f"mout/model{i}.json: mout/train.csv scripts/train.py\n\tpython3 scripts/train.py $< {LRS[i]} $@")
        mk.append(f"mout/score{i}.json: mout/model{i}.json mout/test.csv scripts/evaluate.py\n\tpython3 scripts/evaluate.py $< mout/test.csv $@")
    mk.append("mout/best.json: " + " ".join(f"mout/score{i}.json" for i in idx) + " scripts/best.py\n\tpython3 scripts/best.py $(filter %.json,$^) $@")
    (root / "Makefile").write_text("\n".join(mk) + "\n")
    (root / "dodo.py").write_text(
        f"LRS = {LRS!r}\n"
        "def task_data():\n    return {'actions': ['mkdir -p dout && python3 scripts/make_data.py $(cat data/seed.txt) dout/data.csv'], 'file_dep': ['data/seed.txt', 'scripts/make_data.py'], 'targets': ['dout/data.csv']}\n"
        "def task_split():\n    return {'actions': ['python3 scripts/split.py dout/data.csv dout/train.csv dout/test.csv'], 'file_dep': ['dout/data.csv', 'scripts/split.py'], 'targets': ['dout/train.csv', 'dout/test.csv']}\n"
        "def task_train():\n    for i, lr in enumerate(LRS):\n        yield {'name': str(i), 'actions': ['python3 scripts/train.py dout/train.csv %s dout/model%d.json' % (lr, i)], 'file_dep': ['dout/train.csv', 'scripts/train.py'], 'targets': ['dout/model%d.json' % i]}\n"
        "def task_evaluate():\n    for i in range(len(LRS)):\n        yield {'name': str(i), 'actions': ['python3 scripts/evaluate.py dout/model%d.json dout/test.csv dout/score%d.json' % (i, i)], 'file_dep': ['dout/model%d.json' % i, 'dout/test.csv', 'scripts/evaluate.py'], 'targets': ['dout/score%d.json' % i]}\n"
        "def task_best():\n    s = ['dout/score%d.json' % i for i in range(len(LRS))]\n    return {'actions': ['python3 scripts/best.py ' + ' '.join(s) + ' dout/best.json'], 'file_dep': s + ['scripts/best.py'], 'targets': ['dout/best.json']}\n"
    )
    (root / "Snakefile").write_text(
        f"LRS = {LRS!r}\n"
        "rule all:\n    input: 'sout/best.json'\n"
        "rule data:\n    input: 'data/seed.txt', 'scripts/make_data.py'\n    output: 'sout/data.csv'\n    shell: 'python3 scripts/make_data.py $(cat {input[0]}) {output}'\n"
        "rule split:\n    input: 'sout/data.csv', 'scripts/split.py'\n    output: 'sout/train.csv', 'sout/test.csv'\n    shell: 'python3 scripts/split.py {input[0]} {output}'\n"
        "rule train:\n    input: 'sout/train.csv', 'scripts/train.py'\n    output: 'sout/model{i}.json'\n    params: lr=lambda w: LRS[int(w.i)]\n    shell: 'python3 scripts/train.py {input[0]} {params.lr} {output}'\n"
        "rule evaluate:\n    input: 'sout/model{i}.json', 'sout/test.csv', 'scripts/evaluate.py'\n    output: 'sout/score{i}.json'\n    shell: 'python3 scripts/evaluate.py {input[0]} {input[1]} {output}'\n"
        "rule best:\n    input: scores=expand('sout/score{i}.json', i=range(len(LRS))), script='scripts/best.py'\n    output: 'sout/best.json'\n"
        "    shell: 'python3 scripts/best.py {input.scores} {output}'\n"
    )


def ml_leaf(root: Path) -> None:
    _replace(root / "data/seed.txt", "8\n")


def _replace(path: Path, text: str) -> None:
    """A new file by rename: the template's copy (a hard link) is left alone."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- running ------------------------------------------------------------------------------------------


def command(tool: str) -> list[str]:
    return {
        "make": ["make", "-j2", "-s"],
        "make-bash": MAKE_BASH,
        "doit": [_tool_path(DOIT[0]), *DOIT[1:]],
        "snakemake": [_tool_path(SNAKEMAKE[0]), *SNAKEMAKE[1:]],
        "plx": [_tool_path("plx"), "run", "graphs/g.yaml", "-j", "2"],
    }[tool]


def measure(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB of the process and the children it waited for)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed in {cwd}: {' '.join(cmd)}\n{err.decode(errors='replace')[-3000:]}")
    return took, usage.ru_maxrss / 1024


def git_init(root: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / ".gitignore").write_text(".plx/\nmout/\ndout/\nsout/\n.doit.db*\n.snakemake/\n")


class Result:
    def __init__(self) -> None:
        self.times: dict[tuple[str, str], list[float]] = {}
        self.peaks: dict[tuple[str, str], list[float]] = {}

    def add(self, tool: str, scenario: str, took: float, peak: float) -> None:
        self.times.setdefault((tool, scenario), []).append(took)
        self.peaks.setdefault((tool, scenario), []).append(peak)

    def median(self, tool: str, scenario: str) -> float | None:
        t = self.times.get((tool, scenario))
        return statistics.median(t) if t else None

    def peak(self, tool: str, scenario: str) -> float | None:
        p = self.peaks.get((tool, scenario))
        return max(p) if p else None


def run_workload(make_project: Callable[[Path, int], None], size: int, leaf: Callable[[Path], None] | None, tools: list[str], repeat: int, work: Path) -> Result:
    template = Path(tempfile.mkdtemp(prefix="template-", dir=work))
    make_project(template, size)
    result = Result()
    for r in range(repeat):
        order = tools[r % len(tools) :] + tools[: r % len(tools)]  # the tools take turns going first
        for tool in order:
            root = Path(tempfile.mkdtemp(prefix=f"{tool}-", dir=work))
            subprocess.run(["cp", "-al", f"{template}/.", str(root)], check=True)  # inputs hard-linked: no copy cost
            git_init(root)
            result.add(tool, "cold", *measure(command(tool), root))
            if leaf is not None:
                result.add(tool, "no-op", *measure(command(tool), root))
                leaf(root)
                result.add(tool, "leaf", *measure(command(tool), root))
    return result


def warm_up(tools: list[str], work: Path) -> None:
    """Run each tool once on a chain-20, unmeasured, before the suite. What a tool's first run after it was
    installed pays once (its files not yet in the page cache, its interpreter's caches written, the disk
    still writing out the installation) is no part of any workload: right after `make bench` installed
    plx, its first cold chain-200 took 0.98 s, then 0.62 s (make's 0.36 and 0.35 s)."""
    template = Path(tempfile.mkdtemp(prefix="warm-up-", dir=work))
    chain(template, 20)
    for tool in tools:
        root = Path(tempfile.mkdtemp(prefix=f"warm-up-{tool}-", dir=work))
        subprocess.run(["cp", "-al", f"{template}/.", str(root)], check=True)
        git_init(root)
        measure(command(tool), root)


def plx_planning(size: int, repeat: int, work: Path) -> dict[str, tuple[float, float]]:
    """plx validate and --dry-run on a cold wide-N project (no cache yet)."""
    root = Path(tempfile.mkdtemp(prefix="plan-", dir=work))
    leaves(root, size)
    git_init(root)
    plx = _tool_path("plx")
    out = {}
    for label, cmd in (("validate", [plx, "validate", "graphs/g.yaml"]), ("dry-run", [plx, "run", "graphs/g.yaml", "--dry-run"])):
        runs = [measure(cmd, root) for _ in range(repeat)]
        out[label] = (statistics.median(t for t, _ in runs), max(p for _, p in runs))
    return out


def fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def table(name: str, result: Result, tools: list[str], scenarios: list[str]) -> list[str]:
    bash = "make-bash" in tools
    lines = [
        f"### {name}",
        "",
        "| scenario | " + " | ".join(tools) + " | plx / make" + (" | plx / make (bash)" if bash else "") + " | plx / best peer | peak MB (" + ", ".join(tools) + ") |",
    ]
    lines.append("|" + "---|" * (len(tools) + 4 + bash))
    for sc in scenarios:
        cells = [fmt(result.median(t, sc)) for t in tools]
        plx, mk, mkb = result.median("plx", sc), result.median("make", sc), result.median("make-bash", sc)
        peers = [v for t in tools if t not in ("plx", "make", "make-bash") and (v := result.median(t, sc)) is not None]
        ratios = [f"{plx / mk:.2f}×" if plx and mk else "–"] + ([f"{plx / mkb:.2f}×" if plx and mkb else "–"] if bash else [])
        ratios.append(f"{plx / min(peers):.2f}×" if plx and peers else "–")
        peaks = ", ".join(fmt(result.peak(t, sc), 0) for t in tools)
        lines.append(f"| {sc} | " + " | ".join(cells + ratios) + f" | {peaks} |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--no-100k", action="store_true", help="scale at 10,000 nodes only")
    ap.add_argument("--bigfile-mib", type=int, default=1024)
    ap.add_argument("--out", default=str(HERE.parent / "BENCHMARKS.md"))
    ap.add_argument("--work", default=None, help="folder for the projects (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="leave the projects in place (removed otherwise when the suite ends; see KEPT)")
    args = ap.parse_args()
    only = [w for w in args.only.split(",") if w]
    tools = [t for t in args.tools.split(",") if t]
    # A typo would otherwise run nothing and write an empty file over BENCHMARKS.md, or end in a traceback.
    for what, given, known in (("--only", only, WORKLOADS), ("--tools", tools, TOOLS)):
        unknown = [x for x in given if x not in known]
        if unknown or not given:
            ap.error(f"{what}: {', '.join(unknown) or 'nothing given'}: choose among {', '.join(known)}")
    if args.repeat < 1 or args.bigfile_mib < 1:
        ap.error("--repeat and --bigfile-mib take a number of at least 1")
    missing = [t for t in tools if shutil.which(command(t)[0], path=ENV["PATH"]) is None]
    if missing:
        raise SystemExit(f"not found: {', '.join(missing)} (run `make bench`, which installs them into bench/.venv)")
    work = Path(tempfile.mkdtemp(prefix="plx-bench-", dir=args.work))
    lines = [
        "# Benchmarks",
        "",
        f"`make bench` on {platform.node() and 'this machine'}: {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d', time.gmtime())}. Seconds, median of {args.repeat} "
        "runs (1 at 100,000 nodes), tools taking turns; `-j2` for every tool; peak MB is the largest max RSS of a tool's run.",
        "Scenarios: cold = fresh project; no-op = run again; leaf = one leaf input changed (bigfile: touched, same bytes), run again.",
        f"Tool versions: {versions(tools)}.",
        "",
    ]
    plan = [
        ("wide", "wide-1000 (1,000 leaves + 1 concatenation)", wide, 1000, wide_leaf, args.repeat),
        ("chain", "chain-200 (each step reads the previous one's output)", chain, 200, chain_leaf, args.repeat),
        ("sleep", "16 × sleep 0.5 (ideal with -j2: 4.000 s)", sleep, 16, None, args.repeat),
        ("bigfile", f"a {args.bigfile_mib} MiB input hashed, then re-checked", bigfile, args.bigfile_mib, bigfile_leaf, args.repeat),
        ("ml", "small ML pipeline (data, split, 4 trainings, 4 evaluations, best)", ml, 0, ml_leaf, args.repeat),
    ]
    if "scale" in only:
        plan.append(("scale", "scale: 10,000 leaves", leaves, 10_000, wide_leaf, args.repeat))
        if not args.no_100k:
            plan.append(("scale", "scale: 100,000 leaves", leaves, 100_000, wide_leaf, 1))
    try:
        print("warming up each tool (a chain-20, not measured) ...", file=sys.stderr, flush=True)
        warm_up(tools, work)
        for key, title, maker, size, leaf, repeat in plan:
            if key not in only:
                continue
            print(f"{title} ...", file=sys.stderr, flush=True)
            result = run_workload(maker, size, leaf, tools, repeat, work)
            lines += table(title, result, tools, ["cold", "no-op", "leaf"] if leaf else ["cold"])
            if key == "chain" and {"make-bash", "plx"} <= set(tools):
                h = hop_latency(size, repeat, work)
                (mm, ma), (pm, pa) = h["make-bash"], h["plx"]
                lines += [
                    f"Hop latency, from a step's last line to the next step's first (the same bash for both; {size - 1} hops, "
                    f"median of {repeat} runs): make (bash) {mm:.3f} ms (mean {ma:.3f}), plx {pm:.3f} ms (mean {pa:.3f}): {pm / mm:.2f}×.",
                    "",
                ]
            if key == "scale" and "plx" in tools:
                p = plx_planning(size, repeat, work)
                lines += [
                    f"plx on the same graph: validate {p['validate'][0]:.3f} s ({p['validate'][1]:.0f} MB), "
                    f"`--dry-run` {p['dry-run'][0]:.3f} s ({p['dry-run'][1]:.0f} MB).",
                    "",
                ]
            print("\n".join(lines[-8:]), file=sys.stderr, flush=True)
            Path(args.out).write_text("\n".join(lines))  # what is done so far, should a later workload fail
    finally:
        if args.keep:
            print(f"projects kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)


def versions(tools: list[str]) -> str:
    out = []
    for tool in tools:
        cmd = {
            "make": ["make", "--version"],
            "make-bash": ["bash", "--version"],
            "doit": [_tool_path("doit"), "--version"],
            "snakemake": [_tool_path("snakemake"), "--version"],
            "plx": [_tool_path("plx"), "--version"],
        }[tool]
        try:
            first = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=60).stdout.strip().splitlines()
        except (OSError, subprocess.TimeoutExpired):
            first = []
        out.append(f"{tool} {first[0] if first else '?'}")
    return "; ".join(out)


if __name__ == "__main__":
    main()
