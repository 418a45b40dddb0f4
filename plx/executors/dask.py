"""The Dask executor: each node's process runs on a worker of a Dask distributed cluster.

Workers must see the store at the same path as plx (a shared folder): they write the node's
logs and outputs there, and plx checks and stores the outputs as with the local executor.
On the worker, the node runs exactly as locally: in its own process group, with the timeout
enforced there, and killed (TERM, then KILL) when plx cancels the run.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
import uuid
from typing import Any

from ..errors import RunError
from .local import GRACE_SECONDS, Finished, Job, stop_group

# On each worker: the processes it is running for plx, by task key, so plx can cancel them.
_RUNNING: dict[str, subprocess.Popen[bytes]] = {}
_LOCK = threading.Lock()


def run_on_worker(
    key: str, argv: list[str], extra_env: dict[str, str], cwd: str, stdout: str, stderr: str, timeout: float | None, grace: float
) -> tuple[int | None, bool, float, float]:
    """Runs on a Dask worker: one node's process; returns (exit code, timed out, start, end)."""
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        started = time.time()
        proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **extra_env}, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
    with _LOCK:
        _RUNNING[key] = proc
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        stop_group(proc.pid, grace)
        proc.wait()
    finally:
        with _LOCK:
            _RUNNING.pop(key, None)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return proc.returncode, timed_out, started, time.time()


def kill_on_worker(keys: list[str], hard: bool, grace: float) -> int:
    """Runs on every worker (client.run): stop the process groups of these tasks."""
    with _LOCK:
        procs = [p for k, p in _RUNNING.items() if k in keys]
    for p in procs:
        if hard:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        else:
            stop_group(p.pid, grace)
    return len(procs)


class DaskExecutor:
    """Submits each job as a Dask task (not pure: a node's process is never deduplicated by Dask)."""

    def __init__(self, results: queue.Queue[Any], scheduler: str):
        try:
            from distributed import Client
        except ImportError:
            raise RunError("the Dask executor needs the `dask` extra: pip install 'plx[dask]'") from None
        try:
            self.client = Client(scheduler, timeout=5, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise RunError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        self.results = results
        self.running: dict[str, Any] = {}  # job id -> future
        self.keys: dict[str, str] = {}
        self.stderr: dict[str, str] = {}
        self._lock = threading.Lock()

    def submit(self, job: Job) -> None:
        if job.before is not None:  # the inputs go to the shared store folder the workers see
            job.before()
        key = f"plx-node-{uuid.uuid4().hex}"
        # A node's declared resources become Dask worker resources (CPU, MEMORY, GPU): the scheduler
        # runs it only on a worker started with enough of them (`dask worker --resources "CPU=4,GPU=1"`).
        extra = {"resources": job.resources} if job.resources else {}
        future = self.client.submit(
            run_on_worker, key, job.argv, job.env, str(job.cwd), str(job.stdout), str(job.stderr), job.timeout, GRACE_SECONDS, key=key, pure=False, **extra
        )
        with self._lock:
            self.running[job.id] = future
            self.keys[job.id] = key
            self.stderr[job.id] = str(job.stderr)
        future.add_done_callback(lambda f, job_id=job.id: self._done(job_id, f))

    def _done(self, job_id: str, future: Any) -> None:
        now = time.time()
        try:
            code, timed_out, started, ended = future.result()
        except Exception as exc:  # the worker died or the task was cancelled: the node failed
            code, timed_out, started, ended = -1, False, now, now
            try:
                with open(self.stderr[job_id], "ab") as f:
                    f.write(f"plx: the Dask task failed: {exc!r}\n".encode())
            except OSError:
                pass
        self.results.put(Finished(job_id, code, timed_out, started, ended))  # queued before it leaves `running`
        with self._lock:
            self.running.pop(job_id, None)
            self.keys.pop(job_id, None)
            self.stderr.pop(job_id, None)

    def check_resources(self, requests: dict[str, Any]) -> list[str]:
        """Why some nodes' resources could never be met by the cluster's workers (a node Dask cannot
        place would wait forever), or nothing."""
        try:
            workers = self.client.scheduler_info().get("workers", {}).values()
        except Exception as exc:
            return [f"cannot ask the Dask scheduler about its workers: {exc}"]
        offers = [w.get("resources") or {} for w in workers]
        problems = []
        for node, r in requests.items():
            need = {"CPU": r.cpus, **({"MEMORY": r.memory} if r.memory else {}), **({"GPU": r.gpus} if r.gpus else {})}
            if not any(all(offer.get(k, 0) >= v for k, v in need.items()) for offer in offers):
                wanted = ",".join(f"{k}={v}" for k, v in need.items())
                problems.append(
                    f"node '{node}' needs the Dask worker resources {wanted}, and no worker of the cluster has them (start workers with --resources \"{wanted}\")"
                )
        return problems

    def cancel_all(self, hard: bool = False) -> None:
        with self._lock:
            keys = list(self.keys.values())
        if keys:
            try:
                self.client.run(kill_on_worker, keys, hard, GRACE_SECONDS)
            except Exception:  # a worker that is gone has nothing left to kill
                pass

    def close(self) -> None:
        self.client.close()
