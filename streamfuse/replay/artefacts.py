"""Damaged recordings for the robustness experiment: artefacts injected, or a modality removed,
in a seeded share of each subject's windows (``streamfuse evaluate --corrupt/--drop``).

A subject's recordings are cut into ``window_s`` segments from each recording's start; a seeded
``fraction`` of them (exactly ``round(fraction * n)``, drawn without replacement from a
generator seeded by the run's seed and the subject's name) is damaged. Each damaged segment
gets one artefact, drawn with equal odds:

- EEG: an *electrode pop* (an abrupt step of 300 µV on three random channels decaying with a
  0.5 s time constant: an electrode's impedance jumping), *saturation* (the amplifier's gain
  eight times too high and its output held at ±100 µV) or a *flat line* (every channel stuck at
  its first sample: a dead amplifier or a stalled stream);
- ECG: *lead off* (the signal stuck at its first sample) or *baseline wander* (a 0.3 Hz
  sine three times the segment's largest amplitude: a loose electrode moving with breathing).

The artefacts follow the usual catalogue of EEG and ECG artefacts (e.g. Tatum, Dworetzky and
Schomer 2011, "Artifact and recording concepts in EEG", J. Clin. Neurophysiol. 28(3):252-263;
Satija, Ramkumar and Manikandan 2018, "A review of signal processing techniques for
electrocardiogram signal quality assessment", IEEE Rev. Biomed. Eng. 11:36-52); their sizes are
chosen, not measured. ``drop`` sets the modality's samples in the segment to NaN, which the
replay's chunker leaves out (:func:`~streamfuse.replay.chunks.chunk_stream`): the engine sees
the modality go silent there.
"""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np

from ..errors import DataSourceError
from .readers import Recording

KINDS = ("eeg", "ecg")


def _artefact(x: np.ndarray, kind: str, fs: float, rng: np.random.Generator) -> np.ndarray:
    """One segment ``x`` (``[n, ch]``) with one artefact of modality ``kind``."""
    y = x.astype(np.float64, copy=True)
    t = np.arange(y.shape[0]) / fs
    if kind == "eeg":
        art = int(rng.integers(0, 3))
        if art == 0:  # electrode pop
            chans = rng.choice(y.shape[1], size=min(3, y.shape[1]), replace=False)
            for c in chans:
                y[:, c] += 300.0 * np.exp(-t / 0.5)
        elif art == 1:  # saturation
            y = np.clip(y * 8.0, -100.0, 100.0)
        else:  # flat line
            y[:] = y[0]
    else:
        if int(rng.integers(0, 2)) == 0:  # lead off
            y[:] = y[0]
        else:  # baseline wander
            amp = 3.0 * float(np.abs(y).max()) + 1e-3
            y += amp * np.sin(2.0 * np.pi * 0.3 * t)[:, None]
    return y.astype(x.dtype)


def damage(
    recordings: list[tuple[Recording, float, float]],
    modality: str,
    how: str,
    window_s: float,
    fraction: float,
    seed: int,
    subject: str,
) -> tuple[list[Recording], list[tuple[float, float]]]:
    """Damage ``modality`` in a seeded ``fraction`` of the subject's segments.

    Parameters
    ----------
    recordings
        ``(recording, timeline start, seconds played)`` of each of the subject's recordings.
    how
        ``"corrupt"`` (an artefact) or ``"drop"`` (the samples removed).

    Returns
    -------
    (recordings, spans)
        The recordings with the damage applied (copies; the inputs are not changed) and the
        damaged spans on the timeline, sorted.
    """
    if modality not in KINDS:
        raise DataSourceError(f"cannot damage {modality!r}; choose one of {KINDS}")
    if how not in ("corrupt", "drop"):
        raise DataSourceError(f"how={how!r}; pass 'corrupt' or 'drop'")
    if not 0.0 <= fraction <= 1.0:
        raise DataSourceError(f"fraction={fraction!r}; pass a share in [0, 1]")
    segs: list[tuple[int, float]] = []  # (recording number, seconds from its start)
    for r, (_, _, played) in enumerate(recordings):
        k = 0
        while (k + 1) * window_s <= played + 1e-9:
            segs.append((r, k * window_s))
            k += 1
    rng = np.random.default_rng([seed, zlib.crc32(subject.encode()), len(how)])
    chosen = sorted(int(i) for i in rng.choice(len(segs), size=round(fraction * len(segs)),
                                                replace=False))
    out: list[Recording] = []
    spans: list[tuple[float, float]] = []
    for r, (rec, start, _) in enumerate(recordings):
        stream = rec.streams.get(modality)
        if stream is None:
            out.append(rec)
            continue
        data = np.array(stream.data, copy=True)
        for i in chosen:
            rr, off = segs[i]
            if rr != r:
                continue
            a = int(round(off * stream.fs))
            b = min(data.shape[0], int(round((off + window_s) * stream.fs)))
            if how == "drop":
                data[a:b] = np.nan
            else:
                data[a:b] = _artefact(data[a:b], modality, stream.fs, rng)
            spans.append((start + off, start + off + window_s))
        streams = dict(rec.streams)
        streams[modality] = replace(stream, data=data)
        out.append(replace(rec, streams=streams))
    return out, sorted(spans)


def overlap(spans: list[tuple[float, float]], t_start: float, t_end: float) -> float:
    """Share of ``[t_start, t_end)`` inside ``spans``."""
    if not t_end > t_start:
        return 0.0
    inside = sum(max(0.0, min(t_end, b) - max(t_start, a)) for a, b in spans)
    return min(1.0, inside / (t_end - t_start))
