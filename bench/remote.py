"""The remote tier and the Dask executor, measured: python bench/remote.py [N]

1. no-op re-run of the wide graph (N trivial nodes + 1) with a remote configured vs without, and
   the number of remote calls it makes (target: zero);
2. cold pull throughput from a local S3 server (moto on 127.0.0.1): one large artifact, many small ones;
3. Dask per-node overhead over the local pool on the wide graph (a scheduler and two workers on
   this machine, one thread each, vs -j2; target <= 3 ms per node), with Dask's own cost for the same
   commands and the fixed cost of a Dask run (BENCH_REPEAT rounds, default 5, the runs taking turns).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).parent))
from common import PLX, print_table, temp_project, timed  # noqa: E402
from wide import plx_project  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
BIN = Path(sys.executable).parent
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))
S3_ENV = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def calls(trace: Path) -> int:
    return len(trace.read_text().splitlines()) if trace.exists() else 0


def noop(tmp: Path) -> None:
    root = temp_project(str(tmp))
    plx_project(root, N)
    remote = tmp / "remote-noop"
    remote.mkdir()
    env = {"PLX_REMOTE": f"file://{remote}"}
    cold = timed([PLX, "run", "graphs/wide.yaml", "-j2"], root, env=env)
    trace = tmp / "trace"
    with_remote = timed([PLX, "run", "graphs/wide.yaml", "-j2"], root, repeat=5, env={**env, "PLX_REMOTE_TRACE": str(trace)})
    without = timed([PLX, "run", "graphs/wide.yaml", "-j2"], root, repeat=5, env={"PLX_REMOTE": ""})
    print_table(
        f"No-op re-run, {N} nodes + 1 (median of 5)",
        [
            ["without a remote", f"{without:.3f}", "-"],
            ["with a file:// remote", f"{with_remote:.3f}", calls(trace)],
            [f"(the cold run that pushed {N + 1} entries)", f"{cold:.3f}", "-"],
        ],
        ["run", "seconds", "remote calls"],
    )


def big_op(root: Path, mb: int, small: int) -> None:
    (root / "operations").mkdir(exist_ok=True)
    (root / "graphs").mkdir(exist_ok=True)
    (root / "operations/big.yaml").write_text(
        f'kind: operation\nname: big\nrunner: command\noutputs: [{{name: out, type: file}}]\ncmd: head -c {mb << 20} /dev/urandom > "$OUTPUT_OUT"\n'
    )
    (root / "operations/many.yaml").write_text(
        "kind: operation\nname: many\nrunner: command\noutputs: [{name: out, type: directory}]\n"
        f'cmd: for i in $(seq {small}); do head -c 4096 /dev/urandom > "$OUTPUT_OUT/f$i"; done\n'
    )
    (root / "graphs/big.yaml").write_text("kind: graph\nname: big\nnodes:\n  big: {operation: big}\n")
    (root / "graphs/many.yaml").write_text("kind: graph\nname: many\nnodes:\n  many: {operation: many}\n")


def pull(tmp: Path) -> None:
    server = BIN / "moto_server"
    if not server.exists():
        print("\n(moto_server is not installed: pip install -e '.[test]'; cold pull skipped)")
        return
    port = free_port()
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("moto_server did not start") from None
                time.sleep(0.2)
        env = {**S3_ENV, "FSSPEC_S3_ENDPOINT_URL": endpoint, "PLX_REMOTE": "s3://bench/plx"}
        subprocess.run([sys.executable, "-c", f"import s3fs; s3fs.S3FileSystem(endpoint_url={endpoint!r}).mkdir('bench')"], check=True, env={**os.environ, **S3_ENV})
        mb, small = 256, 500
        src = temp_project(str(tmp))
        big_op(src, mb, small)
        rows = []
        for graph, size, what in (("big", mb << 20, f"1 artifact of {mb} MB"), ("many", small * 4096, f"a folder of {small} files of 4 KB")):
            timed([PLX, "run", f"graphs/{graph}.yaml"], src, env={**env, "PLX_REMOTE_PUSH": "0"})
            push = timed([PLX, "push"], src, env=env)
            times = []
            for _ in range(3):
                dst = temp_project(str(tmp))
                big_op(dst, mb, small)
                times.append(timed([PLX, "pull", f"graphs/{graph}.yaml"], dst, env=env))
                shutil.rmtree(dst)
            t = sorted(times)[1]
            rate = f"{size / t / 1e6:,.0f} MB/s" if graph == "big" else f"{small / t:,.0f} files/s ({size / t / 1e6:,.1f} MB/s)"
            rows.append([what, f"{push:.2f}", f"{t:.2f}", rate])
        wide_src = temp_project(str(tmp))
        plx_project(wide_src, N)
        timed([PLX, "run", "graphs/wide.yaml", "-j2"], wide_src, env={**env, "PLX_REMOTE_PUSH": "0"})
        push = timed([PLX, "push"], wide_src, env=env)
        dst = temp_project(str(tmp))
        plx_project(dst, N)
        t = timed([PLX, "pull", "graphs/wide.yaml"], dst, env=env)
        rows.append([f"the wide graph: {N + 1} entries of a few bytes", f"{push:.2f}", f"{t:.2f}", f"{(N + 1) / t:,.0f} entries/s"])
        print_table("Cold pull from a local S3 server (moto on 127.0.0.1; median of 3 fresh clones)", rows, ["what", "push s", "pull s", "pull throughput"])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()


def _raw_node(i: int, folder: str) -> int:
    """What plx runs per node of the wide graph, as a plain Dask task (the reference: Dask's own cost)."""
    subprocess.run(["bash", "-c", f"echo {i} > {folder}/n{i}"], start_new_session=True, check=True)
    return i


def _raw_dask(address: str, folder: Path, n: int) -> float:
    """n tasks handed to Dask at once (client.map), waited for: Dask's floor for this workload."""
    from distributed import Client

    with Client(address, timeout=10, set_as_default=False) as client:
        t0 = time.perf_counter()
        futures = client.map(_raw_node, range(n), [str(folder)] * n, pure=False)
        client.gather(futures)
        return time.perf_counter() - t0


def _tree_cpu(roots: list[int]) -> float:
    """CPU seconds (user + system, with waited-for children) of these processes and their descendants."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    kids: dict[int, list[int]] = {}
    for line in out.splitlines():
        pid, ppid = map(int, line.split())
        kids.setdefault(ppid, []).append(pid)
    todo, total = list(roots), 0.0
    while todo:
        pid = todo.pop()
        todo += kids.get(pid, [])
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return total


def _cpu_of(run: Callable[[], float], cluster: list[int]) -> tuple[float, float]:
    """(wall, CPU of everything: plx and the nodes it waits for, the scheduler, the workers and their nodes)."""
    c0, k0 = os.times(), _tree_cpu(cluster)
    wall = run()
    c1, k1 = os.times(), _tree_cpu(cluster)
    return wall, (c1.children_user + c1.children_system - c0.children_user - c0.children_system) + (k1 - k0)


def _load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def dask(tmp: Path) -> None:
    """Cold runs of the wide graph, the tools taking turns (local -j2, plx on Dask, raw Dask, and a
    one-node graph both ways for the fixed cost of a Dask run: importing distributed, connecting)."""
    try:
        from distributed import Client
    except ImportError:
        print("\n(dask[distributed] is not installed: Dask overhead skipped)")
        return
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [
        subprocess.Popen(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client = Client(address, timeout=2, set_as_default=False)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        procs.append(
            subprocess.Popen(
                [str(BIN / "dask"), "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        client.wait_for_workers(2, timeout=60)
        client.close()
        root = temp_project(str(tmp))
        plx_project(root, N)
        (root / "graphs/one.yaml").write_text("kind: graph\nname: one\nnodes:\n  n0: {operation: emit, params: {i: 0}}\n")
        raw = tmp / "raw"
        raw.mkdir()
        on_dask = ["--executor", "dask", "--scheduler", address]
        timed([PLX, "run", "graphs/wide.yaml", "-j2"], root)  # warm: interpreters, page cache
        timed([PLX, "run", "graphs/wide.yaml", "--no-cache", *on_dask], root)
        times: dict[str, list[float]] = {k: [] for k in ("local", "dask", "raw", "one local", "one dask")}
        cpu: dict[str, list[float]] = {k: [] for k in ("local", "dask", "raw")}
        cluster = [p.pid for p in procs]
        runs: dict[str, Callable[[], float]] = {
            "local": lambda: timed([PLX, "run", "graphs/wide.yaml", "-j2", "--no-cache"], root),
            "dask": lambda: timed([PLX, "run", "graphs/wide.yaml", "--no-cache", *on_dask], root),
            "raw": lambda: _raw_dask(address, raw, N + 1),
        }
        loads = [_load()]
        for _ in range(REPEAT):
            for name, run in runs.items():
                wall, used = _cpu_of(run, cluster)
                times[name].append(wall)
                cpu[name].append(used)
            times["one local"].append(timed([PLX, "run", "graphs/one.yaml", "--no-cache"], root))
            times["one dask"].append(timed([PLX, "run", "graphs/one.yaml", "--no-cache", *on_dask], root))
        loads.append(_load())
        med = {k: statistics.median(v) for k, v in times.items()}
        cmed = {k: statistics.median(v) for k, v in cpu.items()}
        fixed = med["one dask"] - med["one local"]
        per = (med["dask"] - med["local"]) / (N + 1) * 1000

        def cpu_ms(k: str) -> str:
            return f"{cmed[k]:.2f} s ({(cmed[k] - cmed['local']) / (N + 1) * 1000:+.1f} ms/node)"

        rows = [
            ["plx, local pool -j2", f"{med['local']:.2f}", "-", "-", f"{cmed['local']:.2f} s"],
            ["plx on Dask (-j 64, the default)", f"{med['dask']:.2f}", f"{per:.1f}", f"{(med['dask'] - med['local'] - fixed) / (N + 1) * 1000:.1f}", cpu_ms("dask")],
            ["Dask alone: the same commands, client.map of all at once", f"{med['raw']:.2f}", "-", "-", cpu_ms("raw")],
            ["fixed cost of a Dask run (1-node graph, Dask - local)", f"{fixed:.2f}", "-", "-", "-"],
        ]
        print_table(
            f"Dask vs the local pool, cold runs of {N} nodes + 1, 2 workers x 1 thread vs -j2 (median of {REPEAT}, tools in turn; {loads[0]} before, {loads[1]} after)",
            rows,
            ["run", "seconds", "overhead ms/node", "without the fixed cost", "CPU, all processes"],
        )
        print("all times: " + "; ".join(f"{k}: " + " ".join(f"{t:.2f}" for t in v) for k, v in times.items()))
        print("all CPU: " + "; ".join(f"{k}: " + " ".join(f"{t:.2f}" for t in v) for k, v in cpu.items()))
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait()


if __name__ == "__main__":
    tmp = Path(tempfile.mkdtemp(prefix="plx-bench-remote-"))
    try:
        which = sys.argv[2:] or ["noop", "pull", "dask"]
        for name in which:
            {"noop": noop, "pull": pull, "dask": dask}[name](tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
