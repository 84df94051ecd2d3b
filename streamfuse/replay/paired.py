"""Per-subject paired comparison of two levels: mean difference, bootstrap interval, Wilcoxon.

Subjects are the unit: each gives one AUC per level, and the question is whether one level's
AUC exceeds the other's *in the same subject* by more than the subject-to-subject scatter
explains. The interval is a percentile bootstrap of the mean difference over subjects
(Efron and Tibshirani 1993, ch. 13); the p-value is the two-sided Wilcoxon signed-rank test
(Wilcoxon 1945), from :func:`scipy.stats.wilcoxon`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

#: bootstrap resamples of the subjects
RESAMPLES = 10_000


def paired(
    a: Sequence[float | None], b: Sequence[float | None], seed: int = 0
) -> dict[str, object]:
    """``a - b`` per subject (subjects where either is undefined are left out): mean, 95 %
    percentile-bootstrap interval, Wilcoxon signed-rank p, subjects where ``a`` is higher."""
    from scipy.stats import wilcoxon

    pairs = [
        (float(x), float(y))
        for x, y in zip(a, b, strict=True)
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
    ]
    d = np.array([x - y for x, y in pairs])
    if d.size == 0:
        return {"diff_mean": None, "ci95": [None, None], "p": None, "n": 0, "wins": 0}
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(RESAMPLES, d.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    p = 1.0 if not np.any(d != 0) else float(wilcoxon(d).pvalue)
    return {
        "diff_mean": round(float(d.mean()), 6),
        "ci95": [round(float(lo), 6), round(float(hi), 6)],
        "p": round(p, 6),
        "n": int(d.size),
        "wins": int(np.sum(d > 0)),
    }


def best_of(levels: Mapping[str, Mapping[str, object]], names: Sequence[str]) -> str | None:
    """The one of ``names`` with the highest mean AUC (ties: the first listed)."""
    best, score = None, -math.inf
    for n in names:
        entry = levels.get(n)
        if entry is None:
            continue
        auc = entry["auc"]
        m = auc.get("mean") if isinstance(auc, Mapping) else None
        if isinstance(m, float) and m > score:
            best, score = n, m
    return best
