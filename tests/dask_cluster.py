"""A real Dask scheduler and worker processes on 127.0.0.1, shared by the Dask test modules."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DASK = str(Path(sys.executable).parent / "dask")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_cluster(workers: list[tuple[list[str], list[str]]], n: int) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A scheduler and one `dask worker` process per (prefix, worker options); waits for n workers.

    The prefix wraps the worker command (e.g. `unshare -m ...`); returns the address and the processes
    to hand to stop()."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [
        subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    ]
    try:
        from distributed import Client

        deadline = time.monotonic() + 60
        client = None
        while client is None:
            try:
                client = Client(address, timeout=2, set_as_default=False)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        for prefix, options in workers:
            procs.append(
                subprocess.Popen(
                    [*prefix, DASK, "worker", address, *options, "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
                )
            )
        try:
            client.wait_for_workers(n, timeout=60)
        finally:
            client.close()
    except BaseException:
        stop(procs)
        raise
    return address, procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """TERM each process group (workers first), KILL what is still there after 15 s."""
    for p in reversed(procs):
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
