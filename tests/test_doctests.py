"""The examples in the package's docstrings run, and print what they say they print.

Only modules whose source holds an example (``>>>``) are imported, so the shells' optional
dependencies are needed here only by a shell that has examples.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import streamfuse

ROOT = Path(streamfuse.__file__).parent


def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted(ROOT.rglob("*.py")):
        if ">>>" not in path.read_text(encoding="utf-8"):
            continue
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


MODULES = _modules_with_examples()


def test_the_public_classes_carry_examples() -> None:
    assert {"streamfuse.engine", "streamfuse.config", "streamfuse.offline"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(module, name)
    assert any(t.examples for t in tests), f"{name} mentions >>> but has no runnable example"
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
