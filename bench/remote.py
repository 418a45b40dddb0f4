"""The remote tier and the Dask executor, measured: python bench/remote.py [N]

1. no-op re-run of the wide graph (N trivial nodes + 1) with a remote configured vs without, and
   the number of remote calls it makes (target: zero);
2. cold pull throughput from a local S3 server (moto on 127.0.0.1): one large artifact, many small ones;
3. Dask per-node overhead over the local pool on the wide graph (a scheduler and two workers on
   this machine, one thread each, vs -j2; target <= 3 ms per node).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import PLX, print_table, temp_project, timed  # noqa: E402
from wide import plx_project  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 300
BIN = Path(sys.executable).parent
JOBS = [int(j) for j in os.environ.get("BENCH_DASK_JOBS", "0").split(",")]
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


def dask(tmp: Path) -> None:
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
        timed([PLX, "run", "graphs/wide.yaml", "-j2"], root)  # warm: interpreters, page cache
        local = timed([PLX, "run", "graphs/wide.yaml", "-j2", "--no-cache"], root, repeat=3)
        rows = [["local -j2", f"{local:.2f}", "-"]]
        for jobs in JOBS:
            on_dask = timed(
                [PLX, "run", "graphs/wide.yaml", "--no-cache", "--executor", "dask", "--scheduler", address, *(["-j", str(jobs)] if jobs else [])], root, repeat=3
            )
            rows.append([f"dask -j {jobs or 'default'}", f"{on_dask:.2f}", f"{(on_dask - local) / (N + 1) * 1000:.1f}"])
        print_table(f"Dask vs the local pool, cold runs of {N} nodes + 1 (median of 3; 2 workers x 1 thread vs -j2)", rows, ["executor", "seconds", "overhead ms/node"])
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
