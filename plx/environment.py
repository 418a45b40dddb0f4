"""The python runner's interpreter: which one (docs/reference.md), and its fingerprint for the cache key.

A fingerprint is the interpreter's version and the names and versions of the distributions
installed in it, read by importlib.metadata inside that interpreter. Running it costs about a
tenth of a second, so it is done once per interpreter and kept under the store
(`envs/<hash of the interpreter's path>.json`) with the stat signatures of the interpreter and of
its site-packages folders: `pip install` changes those folders, so the fingerprint is read again
exactly when something was installed, upgraded or removed. Within one run, each interpreter is
looked at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .deferred import find_program
from .errors import RunError
from .hashing import canonical, hash_bytes

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)
if TYPE_CHECKING:
    from typing import Any

FORMAT = 1

# Run inside the interpreter being fingerprinted: its version, its distributions, the folders they live in.
_PROBE = """\
import json, os, platform, re, site, sys
import importlib.metadata as md
pk = {}
for d in md.distributions():
    name = d.metadata["Name"]
    if name:
        pk.setdefault(re.sub(r"[-_.]+", "-", name).lower(), d.version)
paths = [p for p in sys.path if p and os.path.isdir(p)]
try:
    paths += site.getsitepackages() + [site.getusersitepackages()]
except AttributeError:
    pass
print(json.dumps({"python": platform.python_version(), "implementation": sys.implementation.name, "packages": dict(sorted(pk.items())), "paths": sorted(set(paths))}))
"""


def resolve_python(project: Any, written: str | None) -> str:
    """The interpreter of a python operation: its `python:`, else plx.yaml's, else the one plx runs
    under. A path is relative to the project root (or absolute); a bare name is looked up on PATH."""
    written = written or getattr(project, "python", None)
    if not written:
        return sys.executable
    if os.sep in written or written.startswith("~"):
        p = project.path(written)
        return str(p if p.is_absolute() else p.absolute())
    found = find_program(written)
    return found or written  # not found: the fingerprint reports it


def fingerprint(store_root: Path, interpreter: str, where: str = "") -> dict[str, Any] | None:
    """{"hash", "python", "implementation", "packages", "executable"} of an interpreter (cached).

    None when there is no such interpreter: the nodes that use it then fail to start, with the reason.
    The caller keeps it for the rest of the run (extras.Extras): this looks at the disk each time."""
    real = os.path.realpath(interpreter)
    if not os.path.isfile(real) or not os.access(real, os.X_OK):
        return None
    cache = store_root / "envs" / f"{hash_bytes(interpreter.encode())[:32]}.json"
    try:
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved.get("format") == FORMAT and saved.get("signature") == _signature(interpreter, saved.get("paths", [])):
            return dict(saved["fingerprint"])
    except (OSError, ValueError, AttributeError, KeyError):
        pass
    stderr = ""
    try:
        proc = subprocess.run([interpreter, "-c", _PROBE], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=store_root)
        stderr = proc.stderr
        info = json.loads(proc.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        last = stderr.strip().splitlines()
        raise RunError(
            f"{where + ': ' if where else ''}cannot list the packages of python interpreter '{interpreter}'"
            + (f": {last[-1]}" if last else "")
            + " (Python 3.8 or newer is needed)"
        ) from None
    ident = {"python": info["python"], "implementation": info["implementation"], "packages": info["packages"]}
    fp = {"hash": hash_bytes(canonical(ident).encode()), "executable": interpreter, **ident}
    paths = info.get("paths", [])
    _write(cache, {"format": FORMAT, "interpreter": interpreter, "paths": paths, "signature": _signature(interpreter, paths), "fingerprint": fp})
    return fp


def _signature(interpreter: str, paths: list[str]) -> list[Any]:
    """Stat signatures of the interpreter and of the folders its distributions live in (None: absent)."""
    out: list[Any] = []
    for p in [os.path.realpath(interpreter), *paths]:
        try:
            st = os.stat(p)
            out.append([p, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns])
        except OSError:
            out.append([p, None])
    return out


def _write(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # not cached: looked at again next time


def differences(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[str]:
    """What changed between two fingerprints, in words: `numpy 1.26.4 → 2.0.0`, `+ rich 13.7`."""
    if not old or not new:
        return []
    out = []
    if old.get("python") != new.get("python"):
        out.append(f"python {old.get('python')} → {new.get('python')}")
    a, b = old.get("packages", {}), new.get("packages", {})
    for name in sorted(set(a) | set(b)):
        if name not in a:
            out.append(f"+ {name} {b[name]}")
        elif name not in b:
            out.append(f"- {name} {a[name]}")
        elif a[name] != b[name]:
            out.append(f"{name} {a[name]} → {b[name]}")
    return out
