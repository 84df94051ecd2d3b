"""Plain-loop references of the signal-quality indices (``streamfuse.features.quality``).

Nothing here imports streamfuse: every index is recomputed sample by sample from its
definition, the spectra by a direct DFT sum.
"""

from __future__ import annotations

import math


def naive_flat(x, mask, min_run, tol=0.0):
    """Share of valid samples lying in a flat run: each sample is checked on its own, by
    growing the run of still, valid neighbours around it both ways and measuring its length."""
    n = len(x)
    valid = [bool(mask[i]) and math.isfinite(x[i]) for i in range(n)]
    n_valid = sum(valid)
    if n_valid == 0:
        return math.nan

    def still(a, b):  # two neighbours, both valid, within tol of each other
        return valid[a] and valid[b] and abs(x[b] - x[a]) <= tol

    count = 0
    for t in range(n):
        if not valid[t]:
            continue
        lo = t
        while lo > 0 and still(lo - 1, lo):
            lo -= 1
        hi = t
        while hi < n - 1 and still(hi, hi + 1):
            hi += 1
        if hi - lo + 1 >= min_run:
            count += 1
    return count / n_valid


def naive_clipped(block, mask, min_run=3, rel_tol=1e-3):
    n = len(block)
    ch = len(block[0])
    valid = [bool(mask[i]) and all(math.isfinite(v) for v in block[i]) for i in range(n)]
    n_valid = sum(valid)
    if n_valid == 0:
        return math.nan
    held = 0
    for c in range(ch):
        vals = [block[i][c] for i in range(n) if valid[i]]
        hi, lo = max(vals), min(vals)
        span = hi - lo
        if span <= 0:
            continue
        for top in (True, False):
            run = 0
            for i in range(n + 1):
                if i < n and valid[i]:
                    v = block[i][c]
                    ok = v >= hi - rel_tol * span if top else v <= lo + rel_tol * span
                else:
                    ok = False
                if ok:
                    run += 1
                else:
                    if run >= min_run:
                        held += run
                    run = 0
    return held / (n_valid * ch)


def naive_beyond(block, mask, limit):
    rows = [r for r, m in zip(block, mask, strict=True) if m]
    if not rows:
        return math.nan
    ch = len(rows[0])
    count = 0
    for c in range(ch):
        col = sorted(r[c] for r in rows)
        k = len(col)
        med = col[k // 2] if k % 2 else 0.5 * (col[k // 2 - 1] + col[k // 2])
        count += sum(1 for r in rows if abs(r[c] - med) > limit)
    return count / (len(rows) * ch)


def naive_flat_channels(block, mask, min_sd):
    rows = [r for r, m in zip(block, mask, strict=True) if m]
    if len(rows) < 2:
        return math.nan
    ch = len(rows[0])
    flat = 0
    for c in range(ch):
        col = [r[c] for r in rows]
        mu = sum(col) / len(col)
        sd = math.sqrt(sum((v - mu) ** 2 for v in col) / len(col))
        flat += sd < min_sd
    return flat / ch


def naive_line_noise(block, mask, fs, line_hz=(50.0, 60.0), half_width=1.0):
    n = len(block)
    ch = len(block[0])
    nyq = fs / 2
    lines = [f for f in line_hz if f + half_width < nyq]
    valid = [bool(m) for m in mask]
    if not lines or sum(valid) < 8:
        return math.nan
    hann = [0.5 - 0.5 * math.cos(2 * math.pi * i / (n - 1)) for i in range(n)]
    ratios = {f0: [] for f0 in lines}
    for c in range(ch):
        vals = [block[i][c] for i in range(n) if valid[i]]
        mu = sum(vals) / len(vals)
        z = [(block[i][c] - mu) * hann[i] if valid[i] else 0.0 for i in range(n)]
        power = []
        for k in range(n // 2 + 1):
            re = sum(z[i] * math.cos(2 * math.pi * k * i / n) for i in range(n))
            im = sum(z[i] * math.sin(2 * math.pi * k * i / n) for i in range(n))
            power.append((k * fs / n, re * re + im * im))
        total = sum(p for f, p in power if f >= 1.0)
        if total <= 0:
            continue
        for f0 in lines:
            ratios[f0].append(sum(p for f, p in power if abs(f - f0) <= half_width) / total)
    if not any(ratios.values()):
        return math.nan
    return max(sum(r) / len(r) for r in ratios.values() if r)


def naive_motion(block, mask):
    mags = [math.sqrt(sum(v * v for v in r)) for r, m in zip(block, mask, strict=True) if m]
    if len(mags) < 2:
        return math.nan
    mu = sum(mags) / len(mags)
    s = math.sqrt(sum((v - mu) ** 2 for v in mags) / len(mags))
    return s / (s + 0.1)


def naive_template_correlation(x, beats, before, after):
    """Mean Pearson correlation of the beats ``x[p - before : p + after]`` with their
    sample-wise median, for given R-peak positions."""
    segs = [x[p - before : p + after] for p in beats]
    if len(segs) < 2:
        return 0.0
    L = len(segs[0])
    template = []
    for j in range(L):
        col = sorted(s[j] for s in segs)
        k = len(col)
        template.append(col[k // 2] if k % 2 else 0.5 * (col[k // 2 - 1] + col[k // 2]))
    tm = sum(template) / L
    rs = []
    for s in segs:
        sm = sum(s) / L
        num = sum((s[j] - sm) * (template[j] - tm) for j in range(L))
        den = math.sqrt(sum((s[j] - sm) ** 2 for j in range(L))
                        * sum((template[j] - tm) ** 2 for j in range(L)))
        rs.append(num / den if den > 0 else 0.0)
    return sum(rs) / len(rs)


def naive_wander(x, mask, fs, cutoff=0.7):
    """Plain DFT: share of the power above bin 0 below ``cutoff`` Hz (Hann, demeaned valid
    samples, gaps at the mean)."""
    n = len(x)
    valid = [bool(m) for m in mask]
    if sum(valid) < 8:
        return math.nan
    vals = [x[i] for i in range(n) if valid[i]]
    mu = sum(vals) / len(vals)
    hann = [0.5 - 0.5 * math.cos(2 * math.pi * i / (n - 1)) for i in range(n)]
    z = [(x[i] - mu) * hann[i] if valid[i] else 0.0 for i in range(n)]
    low = total = 0.0
    for k in range(1, n // 2 + 1):
        re = sum(z[i] * math.cos(2 * math.pi * k * i / n) for i in range(n))
        im = sum(z[i] * math.sin(2 * math.pi * k * i / n) for i in range(n))
        p = re * re + im * im
        total += p
        if k * fs / n < cutoff:
            low += p
    return low / total if total > 0 else math.nan
