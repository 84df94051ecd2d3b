"""The eegmat protocol: which recording plays first, the subjects' timelines, the engine used.

Each subject is one device; its two recordings (rest, ``SubjectNN_1.edf``, and serial
subtraction, ``SubjectNN_2.edf``) play back to back on one timeline, in the order ``order``
says:

- ``rest-first``: every subject rest then arithmetic (the dataset's own order);
- ``task-first``: every subject arithmetic then rest;
- ``balanced`` (default): subjects in sorted order, those at even positions (0, 2, ...) rest
  first and those at odd positions arithmetic first; a fixed assignment anyone can reproduce.

Subject ``i`` starts after subject ``i-1`` ended plus a gap of two windows and the label
delay, so no label of one subject arrives during the next. One label per window (the class
covering most of it) arrives ``label_delay_s`` after the window's end (``labels="window"``),
or all of a subject's labels one window plus the delay after its session ended
(``labels="session"``: every subject is then scored by models that never saw its labels).

Chosen windows: 8 s long every 4 s on a 250 Hz grid. 8 s holds several heart beats for
HRV-type ECG features and gives 0.125 Hz EEG spectral resolution; 250 Hz keeps EEG up to the
gamma band (the recordings are 500 Hz, 0.5-45 Hz filtered per the dataset description) at
half the cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import FUSION_LEVELS, EngineConfig
from ..errors import DataSourceError
from ..types import Chunk, Label
from .readers import EEGMAT_MAP, EEGMAT_MODALITIES, read_edf
from .replay import Timed

REST, TASK = "rest", "arithmetic"
POSITIVE = TASK
LEVELS = ("eeg", "ecg", "early", "intermediate", "late", "attention", "mkl", "bayes", "selected")
METRICS = ("auc", "accuracy", "f1", "precision", "recall", "specificity")


@dataclass(frozen=True, slots=True)
class EvalSettings:
    """How the evaluation is run (defaults: the documented choice)."""

    window_s: float = 8.0
    hop_s: float = 4.0
    grid_fs: float = 250.0
    chunk_s: float = 0.1
    label_delay_s: float | None = None  # None: one window
    #: online diagonal LDA (``learn/lda.py``): for a person the models never had labels
    #: for it beats the engine's default ``logreg`` at every level and order
    #: (docs/evaluation.md); the engine's own default is unchanged
    model: str = "lda"
    #: per-device online z-scores (the engine's ``normalize``); off: see docs/evaluation.md
    normalize: bool = False
    levels: tuple[str, ...] = LEVELS
    subjects: int | None = None  # first N subjects only
    order: str = "balanced"  # rest-first, task-first or balanced (see ORDERS)
    #: "session" (default): every label of a subject only after its session ended (the
    #: model scoring a subject never learnt from that subject's labels: a new person);
    #: "window": each window's label ``delay`` after its end (the model follows the subject
    #: as it goes, which a subject-only control shows is mostly label persistence)
    labels: str = "session"
    selector_score: str = "auc"
    #: about 3 subjects of windows (docs/evaluation.md: 1000 and 3000 measured lower)
    selector_horizon: int = 200
    #: half-life, in a device's windows, of the average of each member's decisions
    #: (``EngineConfig.member_smoothing``; 0: off; docs/evaluation.md has both)
    member_smoothing: float = 1.0
    controls: bool = True  # majority, time-only, subject-only, permuted
    seed: int = 0  # the permuted control's shuffle and the paired bootstrap
    seconds: float | None = None  # cut each recording to this many seconds (tests)
    #: the robustness experiment (:mod:`streamfuse.replay.artefacts`): artefacts in, or the
    #: removal of, one modality in a seeded ``damage_fraction`` of each subject's windows
    corrupt: str | None = None
    drop: str | None = None
    damage_fraction: float = 0.3
    #: the published level's conformal sets (None: off)
    conformal_target: float | None = 0.9

    @property
    def delay(self) -> float:
        return self.window_s if self.label_delay_s is None else self.label_delay_s


ORDERS = ("balanced", "rest-first", "task-first")
LABEL_MODES = ("session", "window")


def first_class(order: str, position: int) -> str:
    """Which recording subject number ``position`` (0-based, sorted names) plays first:
    ``rest-first``/``task-first`` for everyone, ``balanced`` rest at even positions and
    arithmetic at odd ones."""
    if order == "rest-first":
        return REST
    if order == "task-first":
        return TASK
    if order == "balanced":
        return REST if position % 2 == 0 else TASK
    raise DataSourceError(f"order={order!r}; choose one of {ORDERS}")


@dataclass(slots=True)
class Subject:
    """One subject's timeline: ``[start, boundary)`` the ``first`` class, ``[boundary, end)``
    the other."""

    name: str
    start: float
    boundary: float
    end: float
    first: str = REST
    #: spans of the timeline where a modality was damaged (the robustness experiment)
    damaged: list[tuple[float, float]] = field(default_factory=list)

    @property
    def second(self) -> str:
        return TASK if self.first == REST else REST

    def seconds(self, value: str) -> float:
        """How long the recording of class ``value`` plays."""
        return self.boundary - self.start if value == self.first else self.end - self.boundary

    def truth(self, t_start: float, t_end: float) -> str | None:
        """The class covering most of ``[t_start, t_end)`` (ties: arithmetic, as the engine's
        :func:`~streamfuse.labelling.window_truth` breaks them)."""
        a = max(0.0, min(t_end, self.boundary) - max(t_start, self.start))
        b = max(0.0, min(t_end, self.end) - max(t_start, self.boundary))
        if a + b < 0.5 * (t_end - t_start):
            return None
        if a == b:
            return TASK
        return self.first if a > b else self.second


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
        normalize=s.normalize,
        selector_score=s.selector_score,
        selector_horizon=s.selector_horizon,
        conformal_target=s.conformal_target,
        member_smoothing=s.member_smoothing,
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
        normalize=s.normalize,
        selector_score=s.selector_score,
        selector_horizon=s.selector_horizon,
        member_smoothing=s.member_smoothing,
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
    data_dir: Path, name: str, start: float, s: EvalSettings, first: str = REST
) -> tuple[Subject, list[Timed]]:
    """Chunks of the ``first`` recording then the other from ``start``, and the delayed
    window labels, by arrival."""
    from .readers import chunk_stream

    recs = {
        REST: read_edf(data_dir / f"{name}_1.edf", EEGMAT_MAP),
        TASK: read_edf(data_dir / f"{name}_2.edf", EEGMAT_MAP),
    }
    a = recs[first]
    b = recs[TASK if first == REST else REST]
    d_a = min(a.duration, s.seconds) if s.seconds else a.duration
    d_b = min(b.duration, s.seconds) if s.seconds else b.duration
    subj = Subject(name, start, start + d_a, start + d_a + d_b, first)
    played = [(a, start, d_a), (b, subj.boundary, d_b)]
    if s.corrupt is not None and s.drop is not None:
        raise DataSourceError("pass corrupt or drop, not both")
    target, how = (s.corrupt, "corrupt") if s.corrupt is not None else (s.drop, "drop")
    if target is not None:
        from .artefacts import damage

        recs2, subj.damaged = damage(
            played, target, how, s.window_s, s.damage_fraction, s.seed, name
        )
        played = [(r, off, stop) for r, (_, off, stop) in zip(recs2, played, strict=True)]
    items: list[tuple[float, int, int, Chunk | Label]] = []
    k = 0
    for rec, off, stop in played:
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
    j = math.ceil(subj.start / s.hop_s - 1e-9)
    while j * s.hop_s + s.window_s <= subj.end + 1e-9:
        w0, w1 = j * s.hop_s, j * s.hop_s + s.window_s
        value = subj.truth(w0, w1)
        if value is not None:
            arrival = w1 + s.delay
            if s.labels == "session":
                arrival = max(arrival, subj.end + s.window_s + s.delay)
            items.append((arrival, 1, j, Label(name, w0, w1, value)))
        j += 1
    items.sort(key=lambda r: r[:3])
    return subj, [(item, t) for t, _, _, item in items]
