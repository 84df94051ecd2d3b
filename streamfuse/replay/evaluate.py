"""The fusion-level comparison on real EEG + ECG (PhysioNet eegmat), prequential and online.

Protocol (issues 6 and 15; the timeline and the recording order are in
:mod:`streamfuse.replay.eegmat`):

- subjects in sorted order, each one device, its two recordings in the order ``--order``
  says (``balanced`` by default); one shared model per level learns across subjects,
  test-then-train; by default (``labels="session"``) a subject's labels arrive only after its
  session, so every subject is a person the models never had labels for (``"window"``:
  each window's label one window after its end);
- one engine run over the item stream gives every level at once: each prediction carries the
  probabilities of ``early``, ``intermediate`` and ``late`` (``Prediction.levels``), of each
  late-fusion member (``Prediction.modality_proba``: the unimodal ``eeg`` and ``ecg`` models,
  each trained on its own modality's features only) and of the published level, ``selected``
  (the engine's level selector, by recent ranking quality);
- inputs are standardised by each model's own running statistics over every device seen so
  far (population statistics); the per-device normaliser is off (``EvalSettings.normalize``),
  as it turns "distance from whatever this person did first" into the signal;
- every prediction is scored against the truth of its own window (the class covering most of
  it, from the known timeline), per subject; windows predicted before any model had learnt are
  counted as ``unscored``;
- figures: AUC (exact, rank based), accuracy, F-score, precision, recall and specificity with
  ``arithmetic`` as the positive class, mean ± sample sd (ddof = 1) over subjects;
- controls (:mod:`streamfuse.replay.controls`) replay the engine's exact schedule with
  inputs or labels that carry no physiology; ``paired`` compares the best fusion level with
  the best single modality subject by subject (:mod:`streamfuse.replay.paired`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from ..config import FUSION_LEVELS
from ..engine import Engine
from ..errors import DataSourceError
from ..learn.metrics import PrequentialMetrics
from ..learn.models import make_model
from ..types import Prediction
from . import controls as ctl
from .eegmat import (
    LABEL_MODES,
    LEVELS,
    METRICS,
    ORDERS,
    POSITIVE,
    REST,
    TASK,
    EvalSettings,
    Subject,
    eval_config,
    first_class,
    level_config,
    subject_items,
    subject_names,
)
from .paired import best_of, paired
from .report import plot, table
from .scoring import LevelRun, rounded, score_run, summary

__all__ = [
    "LEVELS", "METRICS", "ORDERS", "EvalSettings", "Subject", "evaluate_eegmat", "level_config",
    "plot", "subject_items", "table",
]  # fmt: skip

log = logging.getLogger("streamfuse.replay.evaluate")

CONTROLS = ("majority", "time-only", "subject-only", "permuted")
UNIMODAL = ("eeg", "ecg")


@dataclass(slots=True)
class Pass:
    """One engine run over every subject: the levels' scores, the subjects' timelines, the
    recording hub and every prediction with its window's truth."""

    runs: list[LevelRun]
    subjects: list[Subject]
    hub: ctl.RecordingHub
    engine: Engine
    seen: list[tuple[Prediction, str | None]]


def evaluate_eegmat(
    data_dir: str | Path,
    settings: EvalSettings | None = None,
    *,
    on_subject: Callable[[str], None] | None = None,
    on_item: Callable[[], None] | None = None,
) -> dict[str, object]:
    """Run the comparison (and its controls); return the results in the issue's JSON shape.

    With ``settings.corrupt`` or ``settings.drop`` the figures are those of the damaged
    stream, and ``"robustness"`` compares every level with a second, undamaged run of the
    same windows (:func:`robustness`)."""
    s = settings or EvalSettings()
    first_class(s.order, 0)  # an unknown order fails before any file is read
    if s.labels not in LABEL_MODES:
        raise DataSourceError(f"labels={s.labels!r}; choose one of {LABEL_MODES}")
    if s.corrupt is not None and s.drop is not None:
        raise DataSourceError("pass --corrupt or --drop, not both")
    root = Path(data_dir)
    names = subject_names(root)
    if s.subjects is not None:
        names = names[: s.subjects]
    run = _pass(root, names, s, on_subject, on_item)
    results = _results(run.runs, run.subjects, s)
    results["conformal"] = conformal_figures(run, s)
    if s.corrupt is not None or s.drop is not None:
        clean = _pass(root, names, replace(s, corrupt=None, drop=None), on_subject, on_item)
        from .robustness import robustness  # it reads this module's Pass

        results["robustness"] = robustness(clean, run, s)
    if s.controls:
        config = eval_config(s)
        factory = partial(make_model, config.model)
        results["controls"] = _controls(run.hub, run.subjects, s, config, factory)
    results["paired"] = _paired(results, s)
    return results


def _pass(
    root: Path,
    names: list[str],
    s: EvalSettings,
    on_subject: Callable[[str], None] | None,
    on_item: Callable[[], None] | None,
) -> Pass:
    """One engine over every subject in turn; each level scored per subject."""
    config = eval_config(s)
    engine = Engine(config)
    factory = partial(make_model, config.model)
    hub = ctl.RecordingHub(config, factory, config.model)
    engine.hub = hub  # the same hub, keeping the schedule the controls replay
    runs = [LevelRun(level, engine) for level in s.levels]
    seen: list[tuple[Prediction, str | None]] = []
    gap = 2 * s.window_s + s.delay
    start = 0.0
    subjects: list[Subject] = []
    for position, name in enumerate(names):
        if on_subject is not None:
            on_subject(name)
        subj, items = subject_items(root, name, start, s, first_class(s.order, position))
        subjects.append(subj)
        preds: list[Prediction] = []
        for item, now in items:
            preds.extend(o for o in engine.push(item, now) if isinstance(o, Prediction))
            if on_item is not None:
                on_item()
        # the subject is over: close its last windows before the next one starts
        preds.extend(engine.tick(subj.end + gap - s.hop_s))
        for run in runs:
            score_run(run, subj, preds)
        seen.extend((p, subj.truth(p.t_start, p.t_end)) for p in preds if p.device == subj.name)
        # next subject starts on a whole hop after the gap
        start = math.ceil((subj.end + gap) / s.hop_s) * s.hop_s
    late = engine.flush()
    by_name = {subj.name: subj for subj in subjects}
    for run in runs:
        for subj in subjects:
            score_run(run, subj, late)
    seen.extend(
        (p, by_name[p.device].truth(p.t_start, p.t_end)) for p in late if p.device in by_name
    )
    return Pass(runs, subjects, hub, engine, seen)


# ---------------------------------------------------------------------------- conformal
def conformal_figures(run: Pass, s: EvalSettings) -> dict[str, object]:
    """The published decisions' conformal sets scored against each window's truth: coverage,
    mean set size and abstain rate (sets of both classes) over every window the published
    level could predict, and the engine's own running figures (over the labels it learnt)."""
    if s.conformal_target is None:
        return {"target": None}
    n = covered = size = abstained = 0
    for p, truth in run.seen:
        if truth is None or not p.proba:
            continue
        n += 1
        covered += truth in p.prediction_set
        size += len(p.prediction_set)
        abstained += len(p.prediction_set) > 1
    hub = run.engine.hub
    engine = hub.conformal.metrics() if hub.conformal is not None else {}
    return {
        "target": s.conformal_target,
        "coverage": covered / n if n else None,
        "mean_set_size": size / n if n else None,
        "abstain_rate": abstained / n if n else None,
        "windows": n,
        "gamma": run.engine.config.conformal_gamma,
        "engine": {k: rounded(v) for k, v in engine.items()},
    }


# ---------------------------------------------------------------------------- controls
def _per_subject(
    said: Sequence[ctl.Said],
    windows: Sequence[ctl.WindowRecord],
    truths: Sequence[str | None],
    subjects: Sequence[Subject],
) -> dict[str, PrequentialMetrics]:
    known = {subj.name for subj in subjects}
    scores = {n: PrequentialMetrics(positive=POSITIVE, window=10**6) for n in known}
    for w, out, truth in zip(windows, said, truths, strict=True):
        if out is None or truth is None or w.device not in known:
            continue
        scores[w.device].update(truth, out[0], out[1])
    return scores


def _entry(scores: dict[str, PrequentialMetrics], names: Sequence[str]) -> dict[str, object]:
    figs = [scores[n].get() for n in names if n in scores and scores[n].n]
    entry: dict[str, object] = {k: summary([f[k] for f in figs]) for k in METRICS}
    entry["per_subject_auc"] = [
        rounded(scores[n].get()["auc"]) if n in scores and scores[n].n else None for n in names
    ]
    entry["windows"] = sum(m.n for m in scores.values())
    return entry


def _controls(
    hub: ctl.RecordingHub,
    subjects: list[Subject],
    s: EvalSettings,
    config: object,
    factory: Callable[[], object],
) -> dict[str, object]:
    by_name = {subj.name: subj for subj in subjects}
    windows, schedule = hub.windows, hub.schedule
    truths = [
        by_name[w.device].truth(w.t_start, w.t_end) if w.device in by_name else None
        for w in windows
    ]
    names = [subj.name for subj in subjects]
    out: dict[str, object] = {}
    said = ctl.majority([w.device for w in windows], schedule, (REST, TASK))
    out["majority"] = _entry(_per_subject(said, windows, truths, subjects), names)
    said = ctl.replay_single(make_model(s.model), ctl.time_inputs(windows), schedule)
    out["time-only"] = _entry(_per_subject(said, windows, truths, subjects), names)
    dims = max((len(w.evidence.x_intermediate) for w in windows), default=1)
    inputs = ctl.subject_inputs(windows, dims, s.seed)
    said = ctl.replay_single(make_model(s.model), inputs, schedule)
    out["subject-only"] = _entry(_per_subject(said, windows, truths, subjects), names)
    out["subject-only"]["inputs"] = dims  # type: ignore[index]
    shuffled = ctl.permutation(truths, [w.device for w in windows], s.seed)
    verdicts = ctl.replay_levels(
        config,  # type: ignore[arg-type]
        factory,  # type: ignore[arg-type]
        windows,
        schedule,
        lambda i, y: shuffled[i],
    )
    permuted: dict[str, object] = {"seed": s.seed}
    for level in s.levels:
        said = [ctl.verdict_said(level, v) for v in verdicts]
        permuted[level] = _entry(_per_subject(said, windows, shuffled, subjects), names)
    out["permuted"] = permuted
    return out


def _paired(results: dict[str, object], s: EvalSettings) -> dict[str, object]:
    levels = results["levels"]
    assert isinstance(levels, dict)
    fusion = best_of(levels, [lv for lv in FUSION_LEVELS if lv in levels])
    unimodal = best_of(levels, [lv for lv in UNIMODAL if lv in levels])
    if fusion is None or unimodal is None:
        return {"fusion": fusion, "unimodal": unimodal, "diff_mean": None,
                "ci95": [None, None], "p": None}  # fmt: skip
    subjects = results["subjects"]
    assert isinstance(subjects, list)

    def aucs(level: str) -> list[float | None]:
        return [x["levels"].get(level, {}).get("auc") for x in subjects]

    return {"fusion": fusion, "unimodal": unimodal, **paired(aucs(fusion), aucs(unimodal), s.seed)}


# ---------------------------------------------------------------------------- results
def _results(runs: list[LevelRun], subjects: list[Subject], s: EvalSettings) -> dict[str, object]:
    levels: dict[str, object] = {}
    per_subject: dict[str, dict[str, dict[str, float | None]]] = {}  # None: undefined figure
    for run in runs:
        figs = {name: run.scores[name].get() for name in run.scores}
        for name, f in figs.items():
            per_subject.setdefault(name, {})[run.level] = {
                k: rounded(f[k]) for k in METRICS
            } | {"windows": run.scores[name].n}
        entry: dict[str, object] = {k: summary([f[k] for f in figs.values()]) for k in METRICS}
        entry["windows"] = sum(m.n for m in run.scores.values())
        entry["unscored"] = run.unscored
        entry["learned"] = run.engine.counters.get("learned", 0)
        # what the engine says it published: shows when a level is not (yet) implemented
        entry["published_levels"] = dict(sorted(run.published.items()))
        levels[run.level] = entry
    windows = max((e["windows"] for e in levels.values()), default=0)  # type: ignore[index]
    return {
        "dataset": "eegmat (PhysioNet EEG During Mental Arithmetic Tasks 1.0.0, Zyma et al. 2019)",
        "protocol": {
            "order": s.order,
            "order_rule": {
                "balanced": "sorted subjects; even positions rest first, odd arithmetic first",
                "rest-first": "every subject rest first",
                "task-first": "every subject arithmetic first",
            }[s.order],
            "window_s": s.window_s,
            "hop_s": s.hop_s,
            "grid_fs": s.grid_fs,
            "label_delay_s": s.delay,
            "labels": s.labels,
            "model": s.model,
            "normalize": s.normalize,
            "selector_score": s.selector_score,
            "selector_horizon": s.selector_horizon,
            "member_smoothing": s.member_smoothing,
            "positive": POSITIVE,
            "sd": "sample (ddof=1) over subjects",
            "seconds_per_recording": s.seconds,
            "seed": s.seed,
        },
        "levels": levels,
        "subjects": [
            {
                "name": subj.name,
                "first": subj.first,
                "rest_s": subj.seconds(REST),
                "arithmetic_s": subj.seconds(TASK),
                "levels": per_subject.get(subj.name, {}),
            }
            for subj in subjects
        ],  # fmt: skip
        "windows": windows,
    }
