"""The figures a :class:`~streamfuse.fusion.levels.FusionHub` publishes, flat and JSON-friendly.

``"<level|modality|selected>.<metric>"`` from the prequential metrics (auc, accuracy, f1,
precision, recall, specificity, n), ``"selector.<level>"`` from the level selector's rolling
scores and ``"conformal.<coverage|mean_set_size|abstain_rate>"`` from the adaptive conformal
sets; undefined (NaN) figures are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..learn.metrics import PrequentialMetrics
from .conformal import AdaptiveConformal
from .selector import LevelSelector


def figures(
    metrics: Mapping[str, PrequentialMetrics],
    selector: LevelSelector,
    conformal: AdaptiveConformal | None,
) -> dict[str, float]:
    """Every published figure, current (prequential, then selector, then conformal)."""
    return {**prequential(metrics), **selector_scores(selector), **conformal_rates(conformal)}


def prequential(metrics: Mapping[str, PrequentialMetrics]) -> dict[str, float]:
    """``"<name>.<metric>"`` of each prequential metric set, names sorted."""
    out: dict[str, float] = {}
    for name in sorted(metrics):
        for k, v in metrics[name].get().items():
            if math.isfinite(v):
                out[f"{name}.{k}"] = float(v)
    return out


def selector_scores(selector: LevelSelector) -> dict[str, float]:
    """``"selector.<level>"``: the selector's rolling score of each level."""
    return {f"selector.{lv}": float(v) for lv, v in selector.scores().items() if math.isfinite(v)}


def conformal_rates(conformal: AdaptiveConformal | None) -> dict[str, float]:
    """``"conformal.<coverage|mean_set_size|abstain_rate>"`` (none when sets are off)."""
    if conformal is None:
        return {}
    m = conformal.metrics()
    return {
        f"conformal.{k}": float(m[k])
        for k in ("coverage", "mean_set_size", "abstain_rate")
        if math.isfinite(m[k])
    }
