"""How one level's predictions are scored, subject by subject, in the eegmat evaluations.

Shared by the fusion-level comparison (:mod:`.evaluate`), its robustness runs
(:mod:`.robustness`) and the federated arms (:mod:`.federated_eval`): a level's decision read
from a prediction, scored against the truth of its own window, and the summaries (mean ± sample
sd over subjects) the reports print.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..config import FUSION_LEVELS
from ..engine import Engine
from ..learn.metrics import PrequentialMetrics
from ..types import Prediction
from .eegmat import POSITIVE, Subject


@dataclass(slots=True)
class LevelRun:
    """One level's per-subject scores, read from the single engine's predictions."""

    level: str
    engine: Engine
    scores: dict[str, PrequentialMetrics] = field(default_factory=dict)
    unscored: int = 0
    predictions: int = 0
    published: Counter[str] = field(default_factory=Counter)


def level_decision(level: str, p: Prediction) -> tuple[dict[str, float], str | None, str]:
    """What ``level`` said about ``p``'s window: probabilities, decided class, and where in
    the prediction it was read (``"selected"``: the published level's name)."""
    if level == "selected":
        return dict(p.proba), p.label, p.level
    if level in FUSION_LEVELS:
        proba, source = dict(p.levels.get(level, {})), level
    else:
        proba, source = dict(p.modality_proba.get(level, {})), f"late member {level}"
    label = min(proba, key=lambda c: (-proba[c], c)) if proba else None
    return proba, label, source


def score_run(run: LevelRun, subj: Subject, preds: list[Prediction]) -> None:
    """Score ``run.level``'s decisions on ``subj``'s predictions against its windows' truth."""
    metrics = run.scores.setdefault(subj.name, PrequentialMetrics(positive=POSITIVE, window=10**6))
    for p in preds:
        if p.device != subj.name:
            continue
        run.predictions += 1
        proba, label, source = level_decision(run.level, p)
        run.published[source] += 1
        truth = subj.truth(p.t_start, p.t_end)
        if truth is None or not proba:
            run.unscored += 1
            continue
        metrics.update(truth, proba, label)


def rounded(v: float) -> float | None:
    """``v`` to 6 decimals for the JSON; None where it is not finite."""
    return None if not math.isfinite(v) else round(float(v), 6)


def summary(values: list[float]) -> dict[str, float | int | None]:
    """Mean, sample sd (ddof = 1) and count of the finite ``values``."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"mean": None, "sd": None, "n": 0}
    sd = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return {"mean": float(np.mean(v)), "sd": sd, "n": int(v.size)}
