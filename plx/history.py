"""Run records under the store: one folder per run, JSON written atomically, git facts.

  runs/<id>/run.json      the run as planned and, at the end, as finished (atomic rewrite)
  runs/<id>/events.jsonl  one line per node state change, appended (never rewritten)
  runs/<id>/lock          flock held by the live plx process: a free lock on a `running`
                          run means that process died, so the run is `interrupted`
  runs/<id>/logs/<node>/{stdout,stderr,worker}
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import RunError, did_you_mean

FINAL_NODE_STATES = {"success", "cached", "failed", "timeout", "skipped", "canceled"}


def new_run_id() -> str:
    """A run id that sorts by start time: UTC date, time, milliseconds, then random."""
    now = datetime.now(UTC)
    return now.strftime("%Y%m%d-%H%M%S-") + f"{now.microsecond // 1000:03d}-" + secrets.token_hex(2)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that a crash leaves either the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=False, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def git_facts(root: Path) -> dict[str, Any]:
    """Commit, branch and dirty flag (tracked files changed, staged or not; untracked files don't count)."""
    facts: dict[str, Any] = {"commit": None, "branch": None, "dirty": None}
    try:
        import git

        repo = git.Repo(root, search_parent_directories=True)
    except Exception:  # not a git work tree, or git missing: the facts stay null
        return facts
    try:
        facts["commit"] = repo.head.commit.hexsha
    except Exception:  # a repository without commits yet
        pass
    try:
        facts["branch"] = repo.active_branch.name
    except Exception:  # detached HEAD
        pass
    try:
        facts["dirty"] = repo.is_dirty(untracked_files=False)
    except Exception:
        pass
    finally:
        repo.close()
    return facts


class RunRecord:
    """The live record of one run, written by the plx process that runs it."""

    def __init__(self, runs_dir: Path, data: dict[str, Any]):
        self.dir = runs_dir / data["id"]
        self.dir.mkdir(parents=True, exist_ok=False)
        self.data = data
        self._t0 = time.time()
        self._lock_fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        write_json_atomic(self.dir / "run.json", data)
        self._events = open(self.dir / "events.jsonl", "a", encoding="utf-8")

    @property
    def id(self) -> str:
        return str(self.data["id"])

    def log_dir(self, node: str) -> Path:
        d = self.dir / "logs" / node
        d.mkdir(parents=True, exist_ok=True)
        return d

    def node_event(self, node: str, **fields: Any) -> None:
        """Record a node's change: appended and flushed, so readers and `log -f` see it at once."""
        self.data["nodes"].setdefault(node, {}).update(fields)
        self._events.write(json.dumps({"node": node, **fields}, default=str) + "\n")
        self._events.flush()

    def finish(self, status: str) -> None:
        self.data["status"] = status
        self.data["finished"] = now_iso()
        self.data["duration"] = round(time.time() - self._t0, 3)
        write_json_atomic(self.dir / "run.json", self.data)
        self._events.close()
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)


class History:
    """Reads run records; marks runs whose plx process died as `interrupted`."""

    def __init__(self, store_root: Path):
        self.dir = store_root / "runs"

    def ids(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted((p.name for p in self.dir.iterdir() if (p / "run.json").is_file()), reverse=True)

    def resolve(self, ref: str) -> str:
        ids = self.ids()
        if not ids:
            raise RunError("there are no runs yet; start one with `plx run GRAPH`")
        if ref == "last":
            return ids[0]
        if ref in ids:
            return ref
        matches = [i for i in ids if i.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise RunError(f"'{ref}' matches {len(matches)} runs ({', '.join(matches[:3])}...); give more of the id")
        hint = did_you_mean(ref, ids)
        raise RunError(f"no run '{ref}'" + (f" ({hint})" if hint else "; `plx log` lists the runs"))

    def load(self, run_id: str) -> dict[str, Any]:
        d = self.dir / run_id
        data: dict[str, Any] = json.loads((d / "run.json").read_text(encoding="utf-8"))
        if data.get("status") == "running":
            events = d / "events.jsonl"
            if events.exists():
                for line in events.read_text(encoding="utf-8").splitlines():
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a crash
                    data["nodes"].setdefault(ev.pop("node"), {}).update(ev)
            if not self._alive(d):
                self._mark_interrupted(d, data)
        return data

    @staticmethod
    def _alive(d: Path) -> bool:
        try:
            fd = os.open(d / "lock", os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    @staticmethod
    def _mark_interrupted(d: Path, data: dict[str, Any]) -> None:
        data["status"] = "interrupted"
        for node in data["nodes"].values():
            if node.get("state") not in FINAL_NODE_STATES:
                node["state"] = "canceled"
        data.setdefault("finished", None)
        write_json_atomic(d / "run.json", data)

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        out = []
        for run_id in self.ids()[: limit or None]:
            try:
                out.append(self.load(run_id))
            except (OSError, ValueError):
                continue  # a damaged record is skipped, not fatal
        return out

    def log_path(self, run_id: str, node: str, stream: str) -> Path:
        return self.dir / run_id / "logs" / node / stream
