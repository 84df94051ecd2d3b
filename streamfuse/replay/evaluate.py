"""The fusion-level comparison on real EEG + ECG (PhysioNet eegmat), prequential and online.

Protocol (issue 6):

- each subject is one device; its rest recording then its arithmetic recording on one timeline
  (device clock = gateway clock, subject ``i`` starting after subject ``i-1`` ended plus a gap of
  two windows so no label of one subject arrives during the next);
- subjects in sorted order; one shared model per level learns across subjects, test-then-train;
- one label per window (the class covering most of it), arriving ``label_delay_s`` after the
  window's end (default: one window length);
- one engine run over the item stream gives every level at once: each prediction carries the
  probabilities of ``early``, ``intermediate`` and ``late`` (``Prediction.levels``), of each
  late-fusion member (``Prediction.modality_proba``: the unimodal ``eeg`` and ``ecg`` models,
  each trained on its own modality's features only) and of the published level, ``selected``
  (the engine's level selector, choosing by recent prequential log-loss);
- every device's inputs are z-scored online against its own running statistics (the engine's
  ``normalize``), the same for every level;
- every prediction is scored against the truth of its own window (the class covering most of
  it, from the known timeline), per subject; windows predicted before any model had learnt (no
  probabilities yet) are counted as ``unscored``, not scored;
- figures: AUC (exact, rank based), accuracy, F-score, precision, recall and specificity with
  ``arithmetic`` as the positive class, mean ± sample sd (ddof = 1) over subjects.

Chosen windows: 8 s long every 4 s on a 250 Hz grid. 8 s holds several heart beats for HRV-type
ECG features and gives 0.125 Hz EEG spectral resolution; 250 Hz keeps EEG up to the gamma band
(the recordings are 500 Hz, 0.5–45 Hz filtered per the dataset description) at half the cost.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..config import FUSION_LEVELS, EngineConfig
from ..engine import Engine
from ..errors import DataSourceError
from ..learn.metrics import PrequentialMetrics
from ..types import Chunk, Label, Prediction
from .readers import EEGMAT_MAP, EEGMAT_MODALITIES, read_edf
from .replay import Timed

log = logging.getLogger("streamfuse.replay.evaluate")

REST, TASK = "rest", "arithmetic"
POSITIVE = TASK
LEVELS = ("eeg", "ecg", "early", "intermediate", "late", "selected")
METRICS = ("auc", "accuracy", "f1", "precision", "recall", "specificity")


@dataclass(frozen=True, slots=True)
class EvalSettings:
    """How the evaluation is run (defaults: the documented choice)."""

    window_s: float = 8.0
    hop_s: float = 4.0
    grid_fs: float = 250.0
    chunk_s: float = 0.1
    label_delay_s: float | None = None  # None: one window
    model: str = "logreg"
    levels: tuple[str, ...] = LEVELS
    subjects: int | None = None  # first N subjects only
    seconds: float | None = None  # cut each recording to this many seconds (tests)

    @property
    def delay(self) -> float:
        return self.window_s if self.label_delay_s is None else self.label_delay_s


@dataclass(slots=True)
class Subject:
    """One subject's timeline: ``[start, boundary)`` rest, ``[boundary, end)`` arithmetic."""

    name: str
    start: float
    boundary: float
    end: float

    def truth(self, t_start: float, t_end: float) -> str | None:
        """The class covering most of ``[t_start, t_end)`` (ties: the later, arithmetic)."""
        rest = max(0.0, min(t_end, self.boundary) - max(t_start, self.start))
        task = max(0.0, min(t_end, self.end) - max(t_start, self.boundary))
        if rest + task < 0.5 * (t_end - t_start):
            return None
        return REST if rest > task else TASK


def eval_config(s: EvalSettings) -> EngineConfig:
    """The configuration of the evaluation's single engine: both modalities, every fusion
    level that the requested levels need, the selector publishing."""
    need = {lv for lv in s.levels if lv in FUSION_LEVELS}
    if {"eeg", "ecg"} & set(s.levels):
        need.add("late")  # the unimodal models are late fusion's members
    if "selected" in s.levels or not need:
        need = set(FUSION_LEVELS)
    levels = tuple(lv for lv in FUSION_LEVELS if lv in need)
    return EngineConfig(
        modalities=dict(EEGMAT_MODALITIES),
        window_s=s.window_s,
        hop_s=s.hop_s,
        grid_fs=s.grid_fs,
        classes=(REST, TASK),
        model=s.model,
        levels=levels,
        level="selected" if len(levels) > 1 else levels[0],
        positive=POSITIVE,
    )


def level_config(level: str, s: EvalSettings) -> EngineConfig:
    """An engine running ``level`` alone (``eeg``/``ecg``: that modality only, feature level;
    ``selected``: every level). The evaluation itself runs one engine, :func:`eval_config`;
    this is for measuring what one level costs."""
    if level in ("eeg", "ecg"):
        modalities = {level: EEGMAT_MODALITIES[level]}
        levels: tuple[str, ...] = ("intermediate",)
    else:
        modalities = dict(EEGMAT_MODALITIES)
        levels = FUSION_LEVELS if level == "selected" else (level,)
    return EngineConfig(
        modalities=modalities,
        window_s=s.window_s,
        hop_s=s.hop_s,
        grid_fs=s.grid_fs,
        classes=(REST, TASK),
        model=s.model,
        levels=levels,
        level="selected" if level == "selected" else levels[0],
        positive=POSITIVE,
    )


def subject_names(data_dir: Path) -> list[str]:
    """Subjects with both recordings, sorted; :class:`DataSourceError` if there are none."""
    if not data_dir.is_dir():
        raise DataSourceError(f"{data_dir}: no such eegmat folder")
    names = sorted(p.name[: -len("_1.edf")] for p in data_dir.glob("Subject*_1.edf"))
    names = [n for n in names if (data_dir / f"{n}_2.edf").is_file()]
    if not names:
        raise DataSourceError(f"{data_dir}: no SubjectNN_1.edf / SubjectNN_2.edf pairs")
    return names


def subject_items(
    data_dir: Path, name: str, start: float, s: EvalSettings
) -> tuple[Subject, list[Timed]]:
    """Chunks of rest then arithmetic from ``start``, and the delayed window labels, by arrival."""
    from .readers import chunk_stream

    rest = read_edf(data_dir / f"{name}_1.edf", EEGMAT_MAP)
    task = read_edf(data_dir / f"{name}_2.edf", EEGMAT_MAP)
    d_rest = min(rest.duration, s.seconds) if s.seconds else rest.duration
    d_task = min(task.duration, s.seconds) if s.seconds else task.duration
    subj = Subject(name, start, start + d_rest, start + d_rest + d_task)
    items: list[tuple[float, int, int, Chunk | Label]] = []
    k = 0
    for rec, off, stop in ((rest, start, d_rest), (task, subj.boundary, d_task)):
        for chunk in chunk_stream(rec, name, chunk_s=s.chunk_s, t_offset=off, t_stop=stop):
            items.append((chunk.arrival, 0, k, chunk))
            k += 1
    # re-number seq per modality across the two files (one device, one stream per modality)
    seqs: dict[str, int] = {}
    for i, (t, o, kk, item) in enumerate(items):
        assert isinstance(item, Chunk)  # labels are added below
        n = seqs.get(item.modality, 0)
        seqs[item.modality] = n + 1
        items[i] = (t, o, kk, replace(item, seq=n))
    first = math.ceil(subj.start / s.hop_s - 1e-9)
    j = first
    while j * s.hop_s + s.window_s <= subj.end + 1e-9:
        w0, w1 = j * s.hop_s, j * s.hop_s + s.window_s
        value = subj.truth(w0, w1)
        if value is not None:
            items.append((w1 + s.delay, 1, j, Label(name, w0, w1, value)))
        j += 1
    items.sort(key=lambda r: r[:3])
    return subj, [(item, t) for t, _, _, item in items]


def _only(modalities: Sequence[str], items: list[Timed]) -> Iterator[Timed]:
    for item, now in items:
        if isinstance(item, Chunk) and item.modality not in modalities:
            continue
        yield item, now


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


def _score(run: LevelRun, subj: Subject, preds: list[Prediction]) -> None:
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


def evaluate_eegmat(
    data_dir: str | Path,
    settings: EvalSettings | None = None,
    *,
    on_subject: Callable[[str], None] | None = None,
    on_item: Callable[[], None] | None = None,
) -> dict[str, object]:
    """Run the comparison; return the results in the issue's JSON shape."""
    s = settings or EvalSettings()
    root = Path(data_dir)
    names = subject_names(root)
    if s.subjects is not None:
        names = names[: s.subjects]
    engine = Engine(eval_config(s))
    runs = [LevelRun(level, engine) for level in s.levels]
    gap = 2 * s.window_s + s.delay
    start = 0.0
    subjects: list[Subject] = []
    for name in names:
        if on_subject is not None:
            on_subject(name)
        subj, items = subject_items(root, name, start, s)
        subjects.append(subj)
        preds: list[Prediction] = []
        for item, now in items:
            preds.extend(o for o in engine.push(item, now) if isinstance(o, Prediction))
            if on_item is not None:
                on_item()
        # the subject is over: close its last windows before the next one starts
        preds.extend(engine.tick(subj.end + gap - s.hop_s))
        for run in runs:
            _score(run, subj, preds)
        # next subject starts on a whole hop after the gap
        start = math.ceil((subj.end + gap) / s.hop_s) * s.hop_s
    late = engine.flush()
    for run in runs:
        for subj in subjects:
            _score(run, subj, late)
    return _results(runs, subjects, s)


def _summary(values: list[float]) -> dict[str, float | int | None]:
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return {"mean": None, "sd": None, "n": 0}
    sd = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return {"mean": float(np.mean(v)), "sd": sd, "n": int(v.size)}


def _results(runs: list[LevelRun], subjects: list[Subject], s: EvalSettings) -> dict[str, object]:
    levels: dict[str, object] = {}
    per_subject: dict[str, dict[str, dict[str, float | None]]] = {}  # None: undefined figure
    for run in runs:
        figs = {name: run.scores[name].get() for name in run.scores}
        for name, f in figs.items():
            per_subject.setdefault(name, {})[run.level] = {
                k: (None if not math.isfinite(f[k]) else round(float(f[k]), 6)) for k in METRICS
            } | {"windows": run.scores[name].n}
        entry: dict[str, object] = {k: _summary([f[k] for f in figs.values()]) for k in METRICS}
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
            "window_s": s.window_s,
            "hop_s": s.hop_s,
            "grid_fs": s.grid_fs,
            "label_delay_s": s.delay,
            "model": s.model,
            "positive": POSITIVE,
            "sd": "sample (ddof=1) over subjects",
            "seconds_per_recording": s.seconds,
        },
        "levels": levels,
        "subjects": [
            {
                "name": subj.name,
                "rest_s": subj.boundary - subj.start,
                "arithmetic_s": subj.end - subj.boundary,
                "levels": per_subject.get(subj.name, {}),
            }
            for subj in subjects
        ],  # fmt: skip
        "windows": windows,
    }


def table(results: dict[str, object]) -> str:
    """The comparison as a Markdown table (mean ± sd over subjects)."""
    levels = results["levels"]
    assert isinstance(levels, dict)
    head = "| level | " + " | ".join(METRICS) + " | windows |"
    rule = "|---" * (len(METRICS) + 2) + "|"
    rows = [head, rule]
    for level, entry in levels.items():
        cells = []
        for k in METRICS:
            m = entry[k]
            cells.append("n/a" if m["mean"] is None else f"{m['mean']:.3f} ± {m['sd']:.3f}")
        published = sorted(entry.get("published_levels", {}))
        name = level
        if level in FUSION_LEVELS and published and published != [level]:
            name = f"{level} (engine gave {', '.join(published)})"
        elif level == "selected" and published:
            counts = entry["published_levels"]
            name = "selected (" + ", ".join(f"{k} {counts[k]}" for k in published) + ")"
        rows.append(f"| {name} | " + " | ".join(cells) + f" | {entry['windows']} |")
    return "\n".join(rows)


def plot(results: dict[str, object], path: str | Path) -> None:
    """Grouped bars: one group per metric, one bar per level, sd as error bars (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = results["levels"]
    assert isinstance(levels, dict)
    names = list(levels)
    x = np.arange(len(METRICS))
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
    for i, level in enumerate(names):
        means = [levels[level][k]["mean"] for k in METRICS]
        sds = [levels[level][k]["sd"] for k in METRICS]
        ax.bar(
            x + (i - (len(names) - 1) / 2) * width,
            [np.nan if m is None else m for m in means],
            width,
            yerr=[0.0 if v is None else v for v in sds],
            capsize=2,
            label=level,
        )
    ax.set_xticks(x, [m.upper() if m == "auc" else m for m in METRICS])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean ± sd over subjects")
    n = len(results.get("subjects", []))  # type: ignore[arg-type]
    ax.set_title(f"eegmat rest vs arithmetic, prequential, {n} subjects: fusion levels")
    ax.legend(ncol=len(names), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
