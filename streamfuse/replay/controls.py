"""Controls of the eegmat comparison: what the same protocol gives when the inputs or the
labels carry no physiology.

The evaluation's engine records, with :class:`RecordingHub`, every window's inputs
(:class:`~streamfuse.fusion.levels.Evidence`, label-free) in the order they were decided, and
every label it learnt, when. A control replays exactly that schedule (same windows, same
test-then-train order, same label delay) with one thing changed:

- ``majority``: for each device, the class seen most among the labels learnt before its first
  window, with probability 1 for the whole device (every window of a subject gets the same
  score, so its AUC is 0.5 by construction; accuracy is the figure to read);
- ``time-only``: the same online model fed one input, the seconds since the device's first
  window (its session start). Under ``rest-first`` it shows what order alone is worth;
- ``subject-only``: the same online model fed a fixed random vector per subject, as many
  inputs as the intermediate level (seeded from the subject's name): no physiology and no
  time, only "who is this". Any AUC above 0.5 here comes from the model following the
  subject's own labels, learnt one window late (label persistence), not from reading the
  signals;
- ``permuted``: every level re-run on the recorded inputs with the labels shuffled within
  each subject (seeded), scored against the shuffled labels: the null every level must fall to.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from river import base

from ..config import EngineConfig
from ..fusion.levels import Evidence, FusionHub, RiverX, Verdict
from ..types import FusedWindow

Proba = dict[str, float]
#: a window's outcome for scoring: (probabilities, decided class), or None (no prediction)
Said = tuple[Proba, str | None] | None


@dataclass(slots=True)
class WindowRecord:
    """One decided window: its device, span and the inputs every level saw."""

    device: str
    t_start: float
    t_end: float
    evidence: Evidence


class RecordingHub(FusionHub):
    """A :class:`FusionHub` that also keeps the schedule the controls replay.

    ``windows`` holds each window's :class:`WindowRecord` in decision order; ``schedule``
    the events in the order they happened: ``(i, None)`` window ``i`` decided, ``(i, y)``
    window ``i`` learnt with label ``y``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.windows: list[WindowRecord] = []
        self.schedule: list[tuple[int, str | None]] = []
        self._index: dict[int, int] = {}

    def evidence(self, fused: FusedWindow, features: Any, device: Any) -> Evidence:
        e = super().evidence(fused, features, device)
        w = fused.window
        self._index[id(e)] = len(self.windows)
        self.windows.append(WindowRecord(w.device, w.t_start, w.t_end, e))
        self.schedule.append((len(self.windows) - 1, None))
        return e

    def learn(self, evidence: Evidence, verdict: Verdict, y: str, now: float = math.nan) -> None:
        i = self._index.pop(id(evidence), None)
        if i is not None:
            self.schedule.append((i, y))
        super().learn(evidence, verdict, y, now)


def _argmax(proba: Proba) -> str | None:
    return min(proba, key=lambda c: (-proba[c], c)) if proba else None


def replay_single(
    model: base.Classifier,
    inputs: Sequence[dict[str, float]],
    schedule: Sequence[tuple[int, str | None]],
    relabel: Callable[[int, str], str | None] | None = None,
) -> list[Said]:
    """One online model on ``inputs[i]`` for window ``i``, test-then-train in ``schedule``."""
    said: list[Said] = [None] * len(inputs)
    for i, y in schedule:
        x = cast(RiverX, inputs[i])
        if y is None:
            p = {str(c): float(v) for c, v in model.predict_proba_one(x).items()}
            said[i] = (p, _argmax(p)) if p else None
            continue
        target = relabel(i, y) if relabel is not None else y
        if target is not None:
            model.learn_one(x, target)
    return said


def majority(
    devices: Sequence[str], schedule: Sequence[tuple[int, str | None]], classes: Sequence[str]
) -> list[Said]:
    """Per device, the class most often learnt before its first window was decided (ties:
    the first of ``classes``), probability 1; None for a device that came before any label."""
    seen: Counter[str] = Counter()
    chosen: dict[str, str | None] = {}
    said: list[Said] = [None] * len(devices)
    for i, y in schedule:
        if y is not None:
            seen[y] += 1
            continue
        d = devices[i]
        if d not in chosen:
            chosen[d] = (
                max(classes, key=lambda c: (seen[c], -classes.index(c))) if seen else None
            )
        best = chosen[d]
        if best is not None:
            said[i] = ({c: float(c == best) for c in classes}, best)
    return said


def time_inputs(windows: Sequence[WindowRecord]) -> list[dict[str, float]]:
    """Seconds from the device's first window start to each window's end."""
    first: dict[str, float] = {}
    out = []
    for w in windows:
        t0 = first.setdefault(w.device, w.t_start)
        out.append({"session_s": w.t_end - t0})
    return out


def subject_inputs(windows: Sequence[WindowRecord], dims: int, seed: int) -> list[dict[str, float]]:
    """A fixed standard-normal vector of ``dims`` inputs per device (seeded by its name)."""
    vectors: dict[str, dict[str, float]] = {}
    out = []
    for w in windows:
        v = vectors.get(w.device)
        if v is None:
            rng = np.random.default_rng([seed, zlib.crc32(w.device.encode())])
            v = vectors[w.device] = {
                f"s{k}": float(x) for k, x in enumerate(rng.standard_normal(max(1, dims)))
            }
        out.append(v)
    return out


def replay_levels(
    config: EngineConfig,
    factory: Callable[[], base.Classifier],
    windows: Sequence[WindowRecord],
    schedule: Sequence[tuple[int, str | None]],
    relabel: Callable[[int, str], str | None],
) -> list[Verdict | None]:
    """Every level of a fresh :class:`FusionHub` on the recorded inputs, learning
    ``relabel(i, y)`` (None: not learnt) in place of each recorded label."""
    hub = FusionHub(config, factory, config.model)
    verdicts: list[Verdict | None] = [None] * len(windows)
    for i, y in schedule:
        if y is None:
            verdicts[i] = hub.decide(windows[i].evidence)
            continue
        v = verdicts[i]
        target = relabel(i, y)
        if v is not None and target is not None:
            hub.learn(windows[i].evidence, v, target)
    return verdicts


def permutation(
    truths: Sequence[str | None], devices: Sequence[str], seed: int
) -> list[str | None]:
    """``truths`` shuffled within each device (windows without a truth stay without)."""
    rng = np.random.default_rng(seed)
    out = list(truths)
    by_device: dict[str, list[int]] = {}
    for i, (t, d) in enumerate(zip(truths, devices, strict=True)):
        if t is not None:
            by_device.setdefault(d, []).append(i)
    for d in sorted(by_device):
        idx = by_device[d]
        values = [truths[i] for i in idx]
        order = rng.permutation(len(idx))
        for i, j in zip(idx, order.tolist(), strict=True):
            out[i] = values[j]
    return out


def verdict_said(level: str, v: Verdict | None) -> Said:
    """What ``level`` (a fusion level, a late member, or ``selected``) said in ``v``."""
    if v is None:
        return None
    if level == "selected":
        p = dict(v.decision.proba)
        return (p, v.decision.label) if p else None
    p = dict(v.levels.get(level) or v.members.get(level) or {})
    return (p, _argmax(p)) if p else None
