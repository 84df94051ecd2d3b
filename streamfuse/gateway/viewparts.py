"""The live web view's data parts: pure functions from what :class:`~.viewmodel.ViewModel`
keeps (fused windows, predictions, stage latencies) to JSON-ready dicts for the page."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..types import FusedWindow, Prediction

#: stages of a prediction's latency, in the order they happen
STAGES = ("decode", "align", "features", "predict")


@dataclass(frozen=True, slots=True)
class ViewLimits:
    """How much the view keeps and sends.

    ``signal_s`` seconds of aligned signal per watched device, drawn with at most
    ``buckets_per_s`` min/max pairs per second per channel; the heatmap at most
    ``heat_columns`` columns wide; ``predictions_kept`` predictions per watched device (the
    timeline); ``latencies_kept`` recent stage latencies (all devices) for the percentiles;
    ``max_watched`` devices watched at once (further requests fall back to an already
    watched one).
    """

    signal_s: float = 8.0
    buckets_per_s: float = 25.0
    heat_columns: int = 128
    predictions_kept: int = 240
    latencies_kept: int = 4096
    max_watched: int = 16

    def __post_init__(self) -> None:
        if not (self.signal_s > 0 and self.buckets_per_s > 0):
            raise ValueError("signal_s and buckets_per_s must be positive")
        if min(self.heat_columns, self.predictions_kept, self.latencies_kept) < 1:
            raise ValueError("heat_columns, predictions_kept and latencies_kept must be >= 1")
        if self.max_watched < 1:
            raise ValueError("max_watched must be >= 1")


class LatencyRing:
    """The stage latencies of the last ``size`` predictions, for percentiles.

    :meth:`add` (per prediction) only keeps a reference (bounded); :meth:`percentiles` moves
    what was added since into a NumPy table first, so the per-stage figures cost one pass of
    NumPy over at most ``size`` rows however often they are asked for.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.table = np.full((size, len(STAGES)), np.nan)
        self.written = 0
        self.pending: deque[Mapping[str, float]] = deque(maxlen=size)

    def add(self, latency: Mapping[str, float]) -> None:
        self.pending.append(latency)

    def __len__(self) -> int:
        return min(self.written + len(self.pending), self.size)

    def clear(self) -> None:
        self.table.fill(np.nan)
        self.written = 0
        self.pending.clear()

    def percentiles(self) -> dict[str, dict[str, float]]:
        """p50/p99 (ms) of each stage and of their sum."""
        nan = math.nan
        table, size = self.table, self.size
        for latency in self.pending:
            table[self.written % size] = [latency.get(stage, nan) for stage in STAGES]
            self.written += 1
        self.pending.clear()
        rows = table[: min(self.written, size)]
        if not len(rows):
            return {}
        out: dict[str, dict[str, float]] = {}
        for j, stage in enumerate(STAGES):
            col = rows[:, j]
            col = col[np.isfinite(col)]
            if col.size:
                p50, p99 = np.percentile(col, (50, 99)) * 1e3
                out[stage] = {"p50": round(float(p50), 4), "p99": round(float(p99), 4)}
        total = np.where(np.isfinite(rows), rows, 0.0).sum(axis=1) * 1e3
        p50, p99 = np.percentile(total, (50, 99))
        out["total"] = {"p50": round(float(p50), 4), "p99": round(float(p99), 4), "n": len(rows)}
        return out


def min_max(values: np.ndarray, bucket: int) -> np.ndarray:
    """``float32[n, ch]`` (NaN: no data) -> ``float32[2 * (n // bucket), ch]``: each bucket's
    minimum then maximum, NaN where the bucket has no data (what a plot needs to keep every
    peak at any zoom; the tail shorter than a bucket is left out)."""
    nb = values.shape[0] // bucket
    if nb == 0:
        return np.empty((0, values.shape[1]), np.float32)
    cut = values[values.shape[0] - nb * bucket :].reshape(nb, bucket, values.shape[1])
    out = np.empty((2 * nb, values.shape[1]), np.float32)
    out[0::2] = np.fmin.reduce(cut, axis=1)  # fmin/fmax skip NaN, and warn of nothing
    out[1::2] = np.fmax.reduce(cut, axis=1)
    return out


def stitched(windows: deque[FusedWindow]) -> tuple[float, float, np.ndarray, tuple[str, ...]]:
    """The windows' matrices on one uniform grid (``t0``, ``fs``, ``float32[n, C]`` with NaN
    where no data, column names); a later window overwrites the samples it shares."""
    last = windows[-1]
    fs = last.window.fs
    t0 = windows[0].window.t_start
    n = int(round((last.window.t_end - t0) * fs))
    grid = np.full((n, last.matrix.shape[1]), np.nan, np.float32)
    for fused in windows:
        w = fused.window
        if fused.matrix.shape[1] != grid.shape[1] or w.fs != fs:
            continue  # a different layout (another configuration): not drawn
        start = int(round((w.t_start - t0) * fs))
        k = fused.matrix.shape[0]
        if start < 0 or start + k > n:
            continue
        grid[start : start + k] = np.where(fused.mask, fused.matrix, np.nan)
    return t0, fs, grid, last.channels


def columns_by_modality(channels: tuple[str, ...]) -> dict[str, list[int]]:
    by: dict[str, list[int]] = {}
    for i, name in enumerate(channels):
        by.setdefault(name.partition(":")[0], []).append(i)
    return by


def signals(windows: deque[FusedWindow], limits: ViewLimits | None = None) -> dict[str, Any]:
    """Each modality's aligned signal over the kept windows, min/max decimated."""
    limits = limits or ViewLimits()
    t0, fs, grid, channels = stitched(windows)
    keep = int(round(limits.signal_s * fs))
    if grid.shape[0] > keep:
        t0 += (grid.shape[0] - keep) / fs
        grid = grid[-keep:]
    bucket = max(1, int(fs // limits.buckets_per_s))
    trimmed = grid.shape[0] % bucket
    t0 += trimmed / fs
    dec = np.ascontiguousarray(min_max(grid, bucket).T)  # a row per channel
    modalities = []
    for modality, cols in columns_by_modality(channels).items():
        modalities.append(
            {
                "name": modality,
                "channels": [channels[c].partition(":")[2] for c in cols],
                "y": [dec[c] for c in cols],
            }
        )
    return {
        "t0": t0,
        "dt": bucket / fs / 2,
        "t_end": t0 + grid.shape[0] / fs,
        "modalities": modalities,
    }


def heatmap(windows: deque[FusedWindow], limits: ViewLimits | None = None) -> dict[str, Any]:
    """The last early-fusion matrix, channels x time, each channel z-scored over the window and
    mapped to 0..255 (-3..+3 sd), ``null`` where masked."""
    limits = limits or ViewLimits()
    fused = windows[-1]
    x = np.where(fused.mask, fused.matrix, np.nan).astype(np.float64)
    k = x.shape[0]
    bucket = max(1, math.ceil(k / limits.heat_columns))
    nb = k // bucket
    x = x[: nb * bucket].reshape(nb, bucket, x.shape[1])
    valid = np.isfinite(x)
    count = valid.sum(axis=1)
    mean = np.where(count > 0, np.where(valid, x, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan)
    ok = np.isfinite(mean)
    n_ok = ok.sum(axis=0)
    filled = np.where(ok, mean, 0.0)
    mu = filled.sum(axis=0) / np.maximum(n_ok, 1)
    sd = np.sqrt(np.where(ok, (mean - mu) ** 2, 0.0).sum(axis=0) / np.maximum(n_ok, 1))
    z = np.divide(filled - mu, sd, out=np.zeros_like(mean), where=ok & (sd > 0))
    q = np.clip(np.round((z + 3.0) / 6.0 * 255.0), 0, 255).astype(np.int64).T.tolist()
    present = ok.T.tolist()
    rows = [
        [v if has else None for v, has in zip(qs, oks, strict=True)]
        for qs, oks in zip(q, present, strict=True)
    ]
    w = fused.window
    return {
        "t_start": w.t_start,
        "t_end": w.t_end,
        "index": w.index,
        "channels": list(fused.channels),
        "z": rows,
        "quality": {m: dict(q) for m, q in w.quality.items()},
    }


def timeline(predictions: deque[Prediction], truth: Mapping[int, str]) -> dict[str, Any]:
    """Per kept prediction: window end, each level's probability of each class, the published
    level and class, and the ground truth once the engine has matched a label to it."""
    classes: list[str] = []
    levels: list[str] = []
    seen_c: set[str] = set()
    seen_l: set[str] = set()
    for p in predictions:
        for level, pr in p.levels.items():
            if level not in seen_l:
                seen_l.add(level)
                levels.append(level)
            for c in pr:
                if c not in seen_c:
                    seen_c.add(c)
                    classes.append(c)
    classes.sort()
    n = len(predictions)
    proba: dict[str, dict[str, list[float | None]]] = {
        lv: {c: [None] * n for c in classes} for lv in levels
    }
    for i, p in enumerate(predictions):
        for level, pr in p.levels.items():
            row = proba[level]
            for c, v in pr.items():
                row[c][i] = round(float(v), 4)
    return {
        "t": [p.t_end for p in predictions],
        "index": [p.index for p in predictions],
        "classes": classes,
        "levels": levels,
        "proba": proba,
        "published": [p.level for p in predictions],
        "label": [p.label for p in predictions],
        "truth": [truth.get(p.index) for p in predictions],
    }


def latest(predictions: deque[Prediction]) -> dict[str, Any]:
    """The last prediction in full, with its metrics regrouped per level."""
    p = predictions[-1]
    metrics: dict[str, dict[str, float]] = {}
    for key, value in p.metrics.items():
        group, _, name = key.rpartition(".")
        if group and math.isfinite(value):
            metrics.setdefault(group, {})[name] = round(float(value), 4)
    d = p.to_json_dict()
    d["metrics"] = metrics
    return d
