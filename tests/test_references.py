"""The references in ``tests/naive*.py`` stand apart from the code they check: they import
nothing from ``streamfuse`` (frozen copies of old production code are golden masters and live
in ``tests/golden/``, labelled so)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
REFERENCES = sorted(TESTS.glob("naive*.py"))


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_there_are_references() -> None:
    assert TESTS / "naive.py" in REFERENCES


@pytest.mark.parametrize("path", REFERENCES, ids=lambda p: p.name)
def test_a_reference_imports_no_streamfuse_code(path: Path) -> None:
    ours = sorted(m for m in _imported_modules(path) if m.split(".")[0] == "streamfuse")
    assert ours == [], f"{path.name} imports {ours}: write the reference from the method"


GOLDEN = sorted(p for p in (TESTS / "golden").glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_a_golden_master_says_what_it_is(path: Path) -> None:
    assert path.read_text(encoding="utf-8").startswith('"""GOLDEN MASTER, not a reference')


def _runs(path: Path, n: int = 6) -> set[tuple[str, ...]]:
    """Every run of ``n`` consecutive non-blank, non-comment lines of ``path``, stripped."""
    lines = [
        s
        for s in (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
        if s and not s.startswith("#")
    ]
    return {tuple(lines[i : i + n]) for i in range(len(lines) - n + 1)}


def test_no_reference_repeats_six_lines_of_the_package() -> None:
    """A reference written from the method shares no run of six lines with the code it checks
    (the ``duplicates`` tool also finds runs of the same shape; this keeps the exact ones out)."""
    package: set[tuple[str, ...]] = set()
    for path in sorted((TESTS.parent / "streamfuse").rglob("*.py")):
        package |= _runs(path)
    shared = {p.name: len(_runs(p) & package) for p in REFERENCES}
    assert all(v == 0 for v in shared.values()), shared
