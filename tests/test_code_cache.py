"""The sandbox's per-run import of the workflow module compiles it once per process, runs the
code the process started with, and still executes it afresh for every run (the sandbox's
isolation and checks are unchanged)."""

from __future__ import annotations

import importlib
import sys
from collections import Counter
from collections.abc import Iterator
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

import pytest
import temporalio.workflow
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from varia import code_cache
from varia.workflows import VariationJob


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Counter[str], Counter[str]]]:
    """(compiles, executions) of module files, counted from now on."""
    compiled: Counter[str] = Counter()
    executed: Counter[str] = Counter()
    compile_source = SourceFileLoader.source_to_code
    execute = SourceFileLoader.exec_module

    def counting_compile(self: Any, data: bytes, path: str, **kwargs: Any) -> CodeType:
        compiled[Path(path).name] += 1
        return compile_source(self, data, path, **kwargs)

    def counting_execute(self: Any, module: ModuleType) -> None:
        executed[Path(module.__file__ or "").name] += 1
        execute(self, module)

    monkeypatch.setattr(SourceFileLoader, "source_to_code", counting_compile)
    monkeypatch.setattr(SourceFileLoader, "exec_module", counting_execute)
    yield compiled, executed


async def test_sandbox_compiles_the_workflow_module_once(
    loads: tuple[Counter[str], Counter[str]],
) -> None:
    code_cache.install()
    compiled, executed = loads
    runner = SandboxedWorkflowRunner()
    definition = temporalio.workflow._Definition.from_class(VariationJob)
    assert definition is not None
    for _ in range(3):  # what a worker does for each new workflow run
        runner.prepare_workflow(definition)
    assert executed["workflows.py"] == 3, executed  # a fresh module in every sandbox
    assert compiled["workflows.py"] <= 1, compiled  # compiled once, not per run


def test_an_edited_module_keeps_the_code_this_process_first_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loads: tuple[Counter[str], Counter[str]]
) -> None:
    """A worker runs the workflow code it started with: an edit under a running worker (a
    `git pull`, an upgrade in place) made the sandbox's next import run new workflow code
    against the old modules it holds (ImportError: new jobs stuck until a restart)."""
    package = tmp_path / "cachedpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    module = package / "mod.py"
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))  # the finder goes afterwards
    module.write_text("VALUE = 1\n")
    importlib.import_module("cachedpkg.mod")  # imported before the cache is installed
    code_cache.install(["cachedpkg"])
    compiled, _ = loads

    def fresh_value() -> object:
        for name in ("cachedpkg.mod", "cachedpkg"):
            sys.modules.pop(name, None)
        importlib.invalidate_caches()
        return importlib.import_module("cachedpkg.mod").VALUE

    module.write_text("VALUE = 2\n")  # edited after the process started
    assert fresh_value() == 1
    assert fresh_value() == 1
    assert compiled["mod.py"] == 1  # only the first import; later ones run the code of then
    for name in ("cachedpkg.mod", "cachedpkg"):
        sys.modules.pop(name, None)
