"""docs/python-api.md's examples run and print what the guide says (issue 20, Done-when 4).

pandas is not a dependency of streamfuse: where it is not installed, the examples that use it
(every example after ``import pandas`` that names ``pd`` or ``frame``) are skipped, and the rest
still run.
"""

from __future__ import annotations

import doctest
import importlib.util
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"
HAVE_PANDAS = importlib.util.find_spec("pandas") is not None


def _uses_pandas(example: doctest.Example) -> bool:
    return any(word in example.source for word in ("pandas", "pd.", "frame"))


def test_the_python_guide_runs() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    parser = doctest.DocTestParser()
    test = parser.get_doctest(text, {}, GUIDE.name, str(GUIDE), 0)
    assert len(test.examples) >= 25
    skipped = 0
    if not HAVE_PANDAS:
        for example in test.examples:
            if _uses_pandas(example):
                example.options[doctest.SKIP] = True
                skipped += 1
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
    assert skipped <= 5  # pandas only in the DataFrame section
