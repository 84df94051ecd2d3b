"""Plain-loop references for the web view's data parts (share no code with
``streamfuse.gateway.viewmodel``)."""

from __future__ import annotations

import math


def naive_stitch(windows, signal_s):
    """Per grid sample time index (``round(t * fs)``) the value of each column, later windows
    winning, masked samples ``None``; only the last ``signal_s`` seconds. Returns
    ``(fs, sorted list of (time index, [values]))``."""
    fs = windows[-1].window.fs
    samples = {}
    for fused in windows:
        w = fused.window
        first = round(w.t_start * fs)
        for j in range(fused.matrix.shape[0]):
            row = []
            for c in range(fused.matrix.shape[1]):
                row.append(float(fused.matrix[j, c]) if fused.mask[j, c] else None)
            samples[first + j] = row
    last = max(samples)
    n_cols = len(windows[-1].channels)
    keep = round(signal_s * fs)
    out = []
    for idx in range(last - keep + 1, last + 1):
        out.append((idx, samples.get(idx, [None] * n_cols)))
    return fs, out


def naive_min_max(series, bucket):
    """Min then max of each full bucket, counted from the end (``None`` ignored; a bucket with
    no value gives ``None`` twice)."""
    n = len(series) // bucket
    start = len(series) - n * bucket
    out = []
    for b in range(n):
        vals = [v for v in series[start + b * bucket : start + (b + 1) * bucket] if v is not None]
        if vals:
            out.extend([min(vals), max(vals)])
        else:
            out.extend([None, None])
    return out


def naive_heat(values, columns):
    """One channel of the heatmap: bucket means (``None`` ignored), then z-scored over the
    buckets that have data, mapped from -3..3 sd to 0..255 and rounded."""
    k = len(values)
    bucket = max(1, -(-k // columns))
    n = k // bucket
    means = []
    for b in range(n):
        vals = [v for v in values[b * bucket : (b + 1) * bucket] if v is not None]
        means.append(sum(vals) / len(vals) if vals else None)
    present = [m for m in means if m is not None]
    if not present:
        return [None] * n
    mu = sum(present) / len(present)
    sd = math.sqrt(sum((m - mu) ** 2 for m in present) / len(present))
    out = []
    for m in means:
        if m is None:
            out.append(None)
            continue
        z = (m - mu) / sd if sd > 0 else 0.0
        q = round((z + 3.0) / 6.0 * 255.0)
        out.append(min(255, max(0, q)))
    return out
