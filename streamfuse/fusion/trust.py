"""Which modalities of a window are too damaged to use: fixed limits on the quality indices.

The quality-aware levels (``attention``, ``bayes``) treat a modality whose signal-quality
indices (:mod:`streamfuse.features.quality`) cross one of these limits as missing from the
window: it gets no gate weight and no log-odds term, and its member model does not learn from
the window (a member that learns from flat lines and saturated blocks learns to be wrong on
clean ones too; on eegmat with 30 % corrupted EEG the gate then distrusted EEG everywhere).
The gate still learns softer trust from the indices' values below the limits.

The limits sit beyond anything the clean eegmat recordings show (8 s windows on a 250 Hz grid;
clean maximum over 8 subjects in brackets): ``gap`` 0.5 (0), ``flat`` 0.4 (0.25: the ECG's
quantised plateaus), ``clipped`` 0.05 (0.021), ``flat_channels`` 0.5 (0), ``beyond`` 0.02
(0.0067). Over all 20 clean subjects they mark one window of 1198 (an ECG with over 5 % of its
samples held at its extreme). They are absolute, not learnt: a stream whose every window is
damaged must not teach the rule that damage is normal.

The ECG beat-template correlation has no limit (its clean 1st percentile is 0.95, but it is 0
whenever a window holds fewer than two complete beats, as a 2 s window at 50 beats a minute
does): the gate weighs it, softly. Nor has the ECG
``wander`` (clean median 0.003, maximum 0.73; half a window of 0.3 Hz wander gives about 0.94):
with a limit at 0.8, ``--corrupt ecg`` on eegmat cost attention 0.037 AUC instead of 0.026
without it, probably because the ECG features carry 8-30 s of history (heart rate, HRV), so
the damage reaches windows whose own block is clean, and leaving the ECG out of some windows
and not others puts each subject's windows on two probability scales.

With member smoothing (``EngineConfig.member_smoothing``), an unusable modality is not silent
for those levels: it speaks with its smoothed decision held from its earlier usable windows
(:func:`heard`). On eegmat the ``--corrupt ecg`` loss of ``attention`` came from the windows
whose ECG was left out (the gate then gives EEG, on its own probability scale, all the
weight), not from the ECG history reaching later windows; ``docs/evaluation.md`` has the
figures.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

#: ``index: (limit, above)``: unusable when the index is above (or, ``above`` False, below)
#: the limit
LIMITS: dict[str, tuple[float, bool]] = {
    "gap": (0.5, True),
    "flat": (0.4, True),
    "clipped": (0.05, True),
    "flat_channels": (0.5, True),
    "beyond": (0.02, True),
}


def damage(quality: Mapping[str, float] | None) -> tuple[str, ...]:
    """The indices of one modality's window that cross their limit (sorted); () if none.

    >>> damage({"gap": 0.0, "flat": 1.0, "clipped": 0.2, "template": 0.0})
    ('clipped', 'flat')
    >>> damage({"clipped": 0.01, "line_noise": 0.9})
    ()
    """
    if not quality:
        return ()
    out = []
    for k, v in quality.items():
        rule = LIMITS.get(k)
        if rule is None or not math.isfinite(v):
            continue
        limit, above = rule
        if (v > limit) if above else (v < limit):
            out.append(k)
    return tuple(sorted(out))


def unusable(quality: Mapping[str, Mapping[str, float]]) -> tuple[str, ...]:
    """The modalities of a window (sorted) whose indices cross a limit."""
    return tuple(sorted(m for m, q in quality.items() if damage(q)))


def heard(
    members: Mapping[str, Mapping[str, float]],
    bad: Collection[str],
    held: Collection[str],
    quality: Mapping[str, Mapping[str, float]],
) -> tuple[dict[str, Mapping[str, float]], dict[str, Mapping[str, float]]]:
    """The members the quality-aware levels hear in one window, and the quality the gate sees.

    A member whose window is unusable (``bad``) is left out, unless its decision is ``held``:
    its smoothed decision over the device's earlier usable windows
    (:meth:`~streamfuse.fusion.smoothing.DecisionSmoother.smooth_held`), which did not see this
    window's damage; the gate scores a held member by its bias (its usual quality), not by the
    damaged window's indices. When every member is unusable, all are heard (a damaged
    decision beats none; the explanation says so).

    >>> p = {"ecg": {"a": 0.8, "b": 0.2}, "eeg": {"a": 0.4, "b": 0.6}}
    >>> q = {"ecg": {"flat": 1.0}, "eeg": {"gap": 0.0}}
    >>> sorted(heard(p, ("ecg",), (), q)[0]), sorted(heard(p, ("ecg",), ("ecg",), q)[1])
    (['eeg'], ['eeg'])
    """
    if not bad:
        return dict(members), dict(quality)
    trusted = {m: p for m, p in members.items() if m not in bad or m in held}
    if not trusted:
        trusted = dict(members)
    return trusted, {m: q for m, q in quality.items() if m not in held}


def unheard_marks(
    bad: Collection[str], members: Collection[str], held: Collection[str]
) -> dict[str, float]:
    """What the quality-aware levels' explanations add for one window: ``unusable.<m>`` for
    each unusable modality ``m`` whose member spoke, then ``held.<m>`` when its decision was
    held (:func:`heard`).

    >>> unheard_marks(("ecg", "acc"), {"ecg": {}, "eeg": {}}, ("ecg",))
    {'unusable.ecg': 1.0, 'held.ecg': 1.0}
    """
    out: dict[str, float] = {}
    for m in bad:
        if m in members:
            out[f"unusable.{m}"] = 1.0
            if m in held:
                out[f"held.{m}"] = 1.0
    return out
