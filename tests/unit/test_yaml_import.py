"""yamldoc imports PyYAML without compiling the pattern only its pure-Python Reader uses; that pattern
still works, and `re`'s cache is left as it was. In a fresh interpreter (this one imported PyYAML long ago)."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = r"""
import json, re
from plx import yamldoc
yamldoc._parser()
import yaml
np = yaml.reader.Reader.NON_PRINTABLE
try:
    yaml.load("a: \x01", Loader=yaml.SafeLoader)  # the pure-Python loader: it reads the pattern
    error = None
except yaml.YAMLError as exc:
    error = str(exc).splitlines()[0]
print(json.dumps({
    "kind": type(np).__name__,
    "found": [np.search("text\x01").start(), np.search("plain text é ✓") is None],
    "error": error,
    "stand_in_left": any(type(v).__name__ == "_CompiledOnUse" for c in (getattr(re, "_cache", {}), getattr(re, "_cache2", {})) for v in c.values()),
    "c_loader": yamldoc._parser().__name__,
    "doc": yamldoc.load_text("a: [1, 2.5, yes, ~]\nb: |\n  text\n", "f.yaml").data,
}))
"""


def test_pyyaml_is_imported_without_compiling_its_printable_pattern() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, check=True).stdout
    got = json.loads(out)
    assert got["kind"] == "_CompiledOnUse", "the import compiled the pattern (PyYAML or re changed: the stand-in no longer applies)"
    assert got["found"] == [4, True]
    assert got["error"] == "unacceptable character #x0001: special characters are not allowed"
    assert got["stand_in_left"] is False
    assert got["c_loader"] == "CSafeLoader"
    assert got["doc"] == {"a": [1, 2.5, True, None], "b": "text\n"}
