"""Compile a module's source once per process, not once per import, and keep that code: the
workflow sandbox imports `varia.workflows` afresh for every workflow run (and, with
`PYTHONDONTWRITEBYTECODE` set, no `.pyc` exists to load), which cost a compile per run.

The code a process first loaded for a file is the code every later import of it runs, even if
the file changed since: a worker runs the workflow code it started with, which matches the
modules it already holds (the sandbox passes them through). Re-reading an edited
`varia/workflows.py` under a running worker (a `git pull`, an upgrade in place) imported the
new code against the old modules: `ImportError`, and new jobs stuck until a restart.

Only the compile is shared. The sandbox still executes the module anew in each run, with its
own restricted modules, so every determinism check stays as it was.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, SourceFileLoader
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

_codes: dict[str, CodeType] = {}
"""{source path: the code this process first compiled for it}."""
_lock = threading.Lock()


class CachingSourceLoader(SourceFileLoader):
    """A `SourceFileLoader` that runs the code this process first compiled for each file."""

    def source_to_code(  # type: ignore[override]
        self, data: bytes, path: str, *, _optimize: int = -1
    ) -> CodeType:
        """The code this process first compiled for `path` (compiled now if none)."""
        with _lock:
            cached = _codes.get(path)
        if cached is not None:
            return cached
        code: CodeType = super().source_to_code(data, path, _optimize=_optimize)
        with _lock:
            return _codes.setdefault(path, code)


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
    """Load the modules of `packages` through the cache from now on (idempotent); the ones
    already imported keep the code of their source as it is now."""
    for finder in sys.meta_path:
        if isinstance(finder, CachingFinder) and set(packages) <= set(finder.packages):
            return
    finder = CachingFinder(packages)
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if finder.covers(name) and path and path.endswith(".py"):
            with contextlib.suppress(OSError, SyntaxError):
                source = Path(path).read_bytes()
                with _lock:
                    _codes.setdefault(path, compile(source, path, "exec", dont_inherit=True))
    sys.meta_path.insert(0, finder)
