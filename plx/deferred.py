"""What `plx run` keeps off its start: patterns compiled when first used, and a PATH search without shutil.

Each `plx run` is a new interpreter, and whatever it imports or compiles before its first node
starts delays that node. Two such costs that few runs need at once:
* `re.compile` of the long patterns of the warm shells and of direct starts (~2 ms), needed only by
  the second bash node or by a lone command: `lazy_compile` compiles a pattern at its first use;
* `import shutil` (~2 ms: it imports zlib, bz2 and lzma for its archive formats), where plx needs
  only its PATH search on the way to a node: `find_program` searches as `shutil.which` does, and
  the modules that need shutil for anything else import it where they use it.
"""

from __future__ import annotations

import os
import re
import stat

TYPE_CHECKING = False  # `plx run` never imports typing (docs/design.md)


class _Lazy:
    """A compiled pattern's stand-in: compiles it at the first use of any attribute, then holds the
    pattern's methods as its own (later calls cost what the pattern's own do)."""

    def __init__(self, source: str, flags: int = 0) -> None:
        self._source = source
        self._flags = flags

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):  # copy, pickle and the like look for these: not a use of the pattern
            raise AttributeError(name)
        pattern = re.compile(self._source, self._flags)
        for attr in ("match", "fullmatch", "search", "sub", "subn", "split", "findall", "finditer", "pattern", "flags", "groups", "groupindex"):
            setattr(self, attr, getattr(pattern, attr))
        return getattr(pattern, name)


if TYPE_CHECKING:
    from re import compile as lazy_compile
else:

    def lazy_compile(source: str, flags: int = 0) -> _Lazy:
        """re.compile(source, flags), done at the pattern's first use."""
        return _Lazy(source, flags)


def find_program(word: str, path: str | None = None) -> str | None:
    """What `shutil.which(word, path=path)` returns on POSIX: word itself if it names a folder part,
    else the first PATH entry (each once) holding an executable file of that name, or None."""
    if os.path.dirname(word):
        return word if _runnable(word) else None
    if path is None:
        path = os.environ.get("PATH")
        if path is None:
            try:
                path = os.confstr("CS_PATH")
            except (AttributeError, ValueError):
                path = os.defpath
    if not path:
        return None
    seen = set()
    for folder in path.split(os.pathsep):
        if folder in seen:
            continue
        seen.add(folder)
        name = os.path.join(folder, word)
        if _runnable(name):
            return name
    return None


def _runnable(name: str) -> bool:
    """shutil's check: the file exists, may be executed (os.access, X_OK), and is not a folder."""
    try:
        st = os.stat(name)
    except (OSError, ValueError):
        return False
    return os.access(name, os.F_OK | os.X_OK) and not stat.S_ISDIR(st.st_mode)
