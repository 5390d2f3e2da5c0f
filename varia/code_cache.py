"""Compile a module's source once per process, not once per import: the workflow sandbox
imports `varia.workflows` afresh for every workflow run (and, with `PYTHONDONTWRITEBYTECODE`
set, no `.pyc` exists to load), which cost a compile of the module per run.

Only the compile is shared. The sandbox still executes the module anew in each run, with its
own restricted modules, so every determinism check stays as it was. The cache is keyed by
the source's bytes (a digest), like a `.pyc` checked by hash: an edited file is compiled again.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, SourceFileLoader
from types import CodeType, ModuleType
from typing import Any

_codes: dict[str, tuple[bytes, CodeType]] = {}
"""{source path: (digest of the source, its code)}: the latest version of each file only."""
_lock = threading.Lock()


class CachingSourceLoader(SourceFileLoader):
    """A `SourceFileLoader` that reuses the code compiled from identical source bytes."""

    def source_to_code(  # type: ignore[override]
        self, data: bytes, path: str, *, _optimize: int = -1
    ) -> CodeType:
        """The code of `data`, compiled once per distinct source of `path`."""
        digest = hashlib.blake2b(data, digest_size=16).digest()
        with _lock:
            cached = _codes.get(path)
        if cached is not None and cached[0] == digest:
            return cached[1]
        code: CodeType = super().source_to_code(data, path, _optimize=_optimize)
        with _lock:
            _codes[path] = (digest, code)
        return code


class CachingFinder(MetaPathFinder):
    """Finds the modules of some packages as the other finders do, loading their source
    through `CachingSourceLoader`; anything else is left to the other finders."""

    def __init__(self, packages: Sequence[str]) -> None:
        self.packages = tuple(packages)

    def covers(self, name: str) -> bool:
        """Whether module `name` belongs to one of the packages."""
        return any(name == p or name.startswith(p + ".") for p in self.packages)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """The spec the next finder gives, with a caching loader for plain source files."""
        if not self.covers(fullname):
            return None
        for finder in sys.meta_path:
            find: Any = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec: ModuleSpec | None = find(fullname, path, target)
            if spec is None:
                continue
            if type(spec.loader) is SourceFileLoader:
                spec.loader = CachingSourceLoader(spec.loader.name, spec.loader.path)
            return spec
        return None


def install(packages: Sequence[str] = ("varia",)) -> None:
    """Load the modules of `packages` through the cache from now on (idempotent)."""
    for finder in sys.meta_path:
        if isinstance(finder, CachingFinder) and set(packages) <= set(finder.packages):
            return
    sys.meta_path.insert(0, CachingFinder(packages))
