"""What damage costs each level: AUC on the same windows, undamaged and damaged
(``streamfuse evaluate --corrupt MODALITY`` / ``--drop MODALITY``, :mod:`.artefacts`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..learn.metrics import PrequentialMetrics
from ..types import Prediction
from .artefacts import overlap
from .eegmat import POSITIVE, EvalSettings, Subject
from .evaluate import Pass
from .scoring import level_decision, rounded


def _window_aucs(
    run: Pass, level: str, keep: Callable[[Prediction, Subject], bool]
) -> tuple[list[float], int, int]:
    """Per-subject AUCs of ``level`` over the windows ``keep`` accepts; how many such windows
    had a truth, and how many of those the level gave no probabilities for."""
    by_name = {subj.name: subj for subj in run.subjects}
    scores: dict[str, PrequentialMetrics] = {}
    windows = silent = 0
    for p, truth in run.seen:
        subj = by_name.get(p.device)
        if subj is None or truth is None or not keep(p, subj):
            continue
        windows += 1
        proba, label, _ = level_decision(level, p)
        if not proba:
            silent += 1
            continue
        m = scores.setdefault(p.device, PrequentialMetrics(positive=POSITIVE, window=10**6))
        m.update(truth, proba, label)
    aucs = [float(m.get()["auc"]) for m in scores.values() if m.n]
    return [a for a in aucs if math.isfinite(a)], windows, silent


def robustness(clean: Pass, damaged: Pass, s: EvalSettings) -> dict[str, object]:
    """Every level's AUC (mean over subjects) on the same windows, undamaged and damaged:
    over all windows, and over the windows at least half inside a damaged span; the loss
    (clean minus damaged); and how many windows each level left without a prediction."""
    spans = {subj.name: subj.damaged for subj in damaged.subjects}

    def hit(p: Prediction, subj: Subject) -> bool:
        return overlap(spans.get(subj.name, []), p.t_start, p.t_end) >= 0.5

    def everywhere(p: Prediction, subj: Subject) -> bool:
        return True

    levels: dict[str, dict[str, Any]] = {}
    for level in s.levels:
        entry: dict[str, Any] = {}
        for name, keep in (("all", everywhere), ("damaged_windows", hit)):
            a_clean, n_clean, silent_clean = _window_aucs(clean, level, keep)
            a_dmg, n_dmg, silent_dmg = _window_aucs(damaged, level, keep)
            mc = float(np.mean(a_clean)) if a_clean else math.nan
            md = float(np.mean(a_dmg)) if a_dmg else math.nan
            entry[name] = {
                "auc_clean": rounded(mc),
                "auc_damaged": rounded(md),
                "loss": rounded(mc - md),
                "subjects": len(a_dmg),
                "windows": n_dmg,
                "unpredicted_clean": silent_clean,
                "unpredicted_damaged": silent_dmg,
            }
        levels[level] = entry
    ref = levels.get("intermediate")
    if ref is not None:
        base = ref["all"]["loss"]
        for entry in levels.values():
            loss = entry["all"]["loss"]
            entry["within_half_of_intermediate"] = (
                None if loss is None or base is None else bool(loss <= max(base / 2, 0.01))
            )
    n_hit = sum(
        1 for p, truth in damaged.seen
        if truth is not None and hit(p, next(x for x in damaged.subjects if x.name == p.device))
    )
    return {
        "corrupt": s.corrupt,
        "drop": s.drop,
        "fraction": s.damage_fraction,
        "seed": s.seed,
        "damaged_windows": n_hit,
        "windows_clean": sum(1 for _, t in clean.seen if t is not None),
        "windows_damaged": sum(1 for _, t in damaged.seen if t is not None),
        "levels": levels,
    }
