"""Slow, obviously-correct references for the Numba kernels (one section per owner).

Each reference is written from the method (plain loops or NumPy) and imports nothing from
``streamfuse``. Frozen copies of earlier production code are golden masters, not references:
they live in ``tests/golden/``.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# features (issue 4): plain references for streamfuse.kernels.qrs.qrs_kernel and
# streamfuse.features.acc.step_kernel, written over whole arrays with no ring buffers.


def naive_qrs_peaks(bp, fs, win, confirm, refractory, twave, learn, delay, learn_cap=64, rr_n=8):
    """R-peak locations from a whole band-passed ECG, following the streaming rules."""
    n_total = len(bp)
    d = [0.0] * n_total
    for n in range(4, n_total):
        d[n] = (2.0 * bp[n] + bp[n - 1] - bp[n - 3] - 2.0 * bp[n - 4]) * (fs / 8.0)
    y = []
    for n in range(n_total):
        lo = max(0, n - win + 1)
        y.append(sum(d[j] * d[j] for j in range(lo, n + 1)) / win)

    def localize(hi):
        best, arg = -1.0, hi
        for j in range(hi - (win + 2) + 1, hi + 1):
            if j >= 0 and abs(bp[j]) > best:
                best, arg = abs(bp[j]), j
        return max(arg - delay, 0)

    st = {"spki": 0.0, "npki": 0.0, "last": -1, "last_slope": 0.0, "noise": None, "rr": []}
    peaks = []

    def accept(val, loc, slope, searchback):
        w = 0.25 if searchback else 0.125
        st["spki"] = w * val + (1 - w) * st["spki"]
        if st["last"] >= 0:
            st["rr"] = (st["rr"] + [loc - st["last"]])[-rr_n:]
        st["last"], st["last_slope"], st["noise"] = loc, slope, None
        peaks.append(loc)

    def classify(val, loc, slope):
        last = st["last"]
        thr1 = st["npki"] + 0.25 * (st["spki"] - st["npki"])
        outside = last < 0 or loc - last >= refractory
        beat = outside and val > thr1
        if beat and last >= 0 and loc - last < twave and slope < 0.5 * st["last_slope"]:
            beat = False
        if beat:
            accept(val, loc, slope, False)
            return
        st["npki"] = 0.125 * val + 0.875 * st["npki"]
        best = st["noise"][0] if st["noise"] else 0.0
        if outside and val > best:
            st["noise"] = (val, loc, slope)

    cand = None  # (index, value, location, slope)
    buffered = []
    for n in range(n_total):
        if cand is not None and n - cand[0] > confirm:
            _, val, loc, slope = cand
            cand = None
            if n <= learn:
                if len(buffered) < learn_cap:
                    buffered.append((val, loc, slope))
            else:
                classify(val, loc, slope)
        m = n - 1
        if m >= 1 and y[m] > y[m - 1] and y[m] >= y[n] and y[m] > 1e-10:
            if cand is None or y[m] > cand[1]:
                slope = max(abs(d[j]) for j in range(max(0, m - win + 1), m + 1))
                cand = (m, y[m], localize(m - 2), slope)
        if n == learn:
            st["spki"] = max(y[: learn + 1]) / 3.0
            st["npki"] = 0.5 * sum(y[: learn + 1]) / (learn + 1)
            for c in buffered:
                classify(*c)
        if n > learn and st["last"] >= 0 and st["rr"] and st["noise"] is not None:
            rr_mean = sum(st["rr"]) / len(st["rr"])
            thr1 = st["npki"] + 0.25 * (st["spki"] - st["npki"])
            if n - st["last"] > 1.66 * rr_mean and st["noise"][0] > 0.5 * thr1:
                val, loc, slope = st["noise"]
                accept(val, loc, slope, True)
    return peaks


def naive_steps(bp, valid, min_amp, min_gap):
    """Step indices: valid local maxima over an adaptive threshold, ``min_gap`` apart."""
    steps, level = [], 0.0
    prev = [0.0 if not v else x for x, v in zip(bp, valid, strict=True)]
    for n in range(2, len(bp)):
        p1, p2 = prev[n - 1], prev[n - 2]
        if valid[n] and p1 > p2 and p1 >= bp[n]:
            if p1 > max(min_amp, 0.5 * level) and (not steps or (n - 1) - steps[-1] >= min_gap):
                steps.append(n - 1)
                level = 0.8 * level + 0.2 * p1 if level > 0 else p1
    return steps


# --- learn/metrics.py ------------------------------------------------------------------------


def naive_auc(scores, labels):
    """AUC as the share of (positive, negative) pairs ranked right (ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    won = 0.0
    for p in pos:
        for q in neg:
            won += 1.0 if p > q else 0.5 if p == q else 0.0
    return won / (len(pos) * len(neg))


def naive_binary_metrics(y_true, y_pred, positive):
    """Precision, recall, F1, specificity of ``positive`` vs the rest, and accuracy."""
    tp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == positive and p == positive)
    fp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t != positive and p == positive)
    fn = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == positive and p != positive)
    tn = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t != positive and p != positive)
    nan = float("nan")
    precision = tp / (tp + fp) if tp + fp else nan
    recall = tp / (tp + fn) if tp + fn else nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan
    return {
        "accuracy": sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == p) / len(y_true),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "specificity": tn / (tn + fp) if tn + fp else nan,
    }


# --- kernels/fuzzy.py -------------------------------------------------------------------------
# (imports are local so this section stands alone in the shared file)


def naive_standardize(x, mask, ref_mean, ref_std):
    return [(x[j] - ref_mean[j]) / ref_std[j] if mask[j] and ref_std[j] > 0 else 0.0
            for j in range(len(x))]


def naive_rescale(st, tol):
    """Move the reference scaler to the running stats if they drifted, rewriting every rule so
    the model, as a function of raw features, is unchanged (explicit matrices)."""
    import math

    import numpy as np

    d = len(st["mean"])
    std = [math.sqrt(st["m2"][j] / st["cnt"][j]) if st["cnt"][j] > 1 else 0.0 for j in range(d)]
    ok = [std[j] ** 2 > 1e-12 for j in range(d)]
    drift = any(ok[j] and (st["ref_std"][j] == 0
                           or abs(st["mean"][j] - st["ref_mean"][j]) > tol * st["ref_std"][j]
                           or abs(std[j] - st["ref_std"][j]) > tol * st["ref_std"][j])
                for j in range(d))
    if not drift:
        return
    fresh = [ok[j] and st["ref_std"][j] == 0 for j in range(d)]
    s = np.array([std[j] / st["ref_std"][j] if ok[j] and not fresh[j] else 1.0 for j in range(d)])
    delta = np.array([(st["mean"][j] - st["ref_mean"][j]) / st["ref_std"][j]
                      if ok[j] and not fresh[j] else 0.0 for j in range(d)])
    a = np.eye(d + 1)
    a[0, 1:] = delta
    a[1:, 1:] = np.diag(s)
    for i in range(st["n"]):
        for j in range(d):
            if fresh[j]:
                st["centers"][i][j] = (st["ref_mean"][j] - st["mean"][j]) / std[j]
            else:
                st["centers"][i][j] = (st["centers"][i][j] - delta[j]) / s[j]
                st["radii"][i][j] /= s[j]
                st["scatter"][i][j] /= s[j] ** 2
        st["theta"][i] = a @ st["theta"][i]
        st["cov"][i] = a @ st["cov"][i] @ a.T
    for j in range(d):
        if ok[j]:
            st["ref_mean"][j] = st["mean"][j]
            st["ref_std"][j] = std[j]


def naive_firing(z, mask, centers, radii, n_rules):
    """Normalised firing: product of Gaussians, divided by the sum (via logs, as the kernel)."""
    import math

    logs = []
    for i in range(n_rules):
        s = sum(((z[j] - centers[i][j]) / radii[i][j]) ** 2 for j in range(len(z)) if mask[j])
        logs.append(-0.5 * s)
    if not logs:
        return []
    m = max(logs)
    e = [math.exp(v - m) for v in logs]
    return [v / sum(e) for v in e]


def naive_ts_predict(x, mask, ref_mean, ref_std, centers, radii, theta, n_rules):
    """Takagi–Sugeno output: firing-weighted sum of each rule's linear consequent."""
    n_out = theta.shape[2]
    if n_rules == 0:
        return [0.0] * n_out
    z = naive_standardize(x, mask, ref_mean, ref_std)
    lam = naive_firing(z, mask, centers, radii, n_rules)
    out = []
    for o in range(n_out):
        total = 0.0
        for i in range(n_rules):
            local = theta[i][0][o] + sum(z[j] * theta[i][j + 1][o] for j in range(len(z)))
            total += lam[i] * local
        out.append(total)
    return out


def naive_ts_learn(st, x, mask, y, p):
    """One learning step of the evolving TS model on a dict of numpy arrays ``st`` (in place).

    ``p`` is a dict: radius, rho, min_radius, coverage, replace, omega, forget, utility,
    min_age, merge, rescale. Mirrors :func:`streamfuse.kernels.fuzzy.learn_kernel`
    step by step with plain loops and numpy linear algebra.
    """
    import math

    import numpy as np

    d = len(x)
    cap = st["centers"].shape[0]
    for j in range(d):
        if mask[j]:
            st["cnt"][j] += 1
            delta = x[j] - st["mean"][j]
            st["mean"][j] += delta / st["cnt"][j]
            st["m2"][j] += delta * (x[j] - st["mean"][j])
    naive_rescale(st, p["rescale"])
    z = np.array(naive_standardize(x, mask, st["ref_mean"], st["ref_std"]))
    st["k"] += 1
    k = st["k"]
    keys = ("centers", "radii", "scatter", "theta", "cov", "support", "birth", "usum")

    def remove(i):
        for key in keys:
            a = st[key]
            a[i : st["n"] - 1] = a[i + 1 : st["n"]].copy()
        st["n"] -= 1

    def add():
        n = st["n"]
        lam = naive_firing(z, mask, st["centers"], st["radii"], n)
        st["theta"][n] = sum(
            (lam[i] * st["theta"][i] for i in range(n)), np.zeros(st["theta"].shape[1:])
        )
        st["centers"][n] = z
        st["radii"][n] = p["radius"]
        st["scatter"][n] = p["radius"] ** 2
        st["cov"][n] = p["omega"] * np.eye(d + 1)
        st["support"][n] = 1.0
        st["birth"][n] = k
        st["usum"][n] = 0.0
        st["n"] = n + 1

    def rms(i):
        u = [((z[j] - st["centers"][i][j]) / st["radii"][i][j]) ** 2 for j in range(d) if mask[j]]
        return math.sqrt(sum(u) / len(u)) if u else 0.0

    event = 0
    if st["n"] == 0:
        add()
        event = 1
    else:
        n = st["n"]
        dens = [sum(st["centers"][i][j] ** 2 for j in range(d) if mask[j]) for i in range(n)]
        dx = sum(z[j] ** 2 for j in range(d) if mask[j])
        dists = [rms(i) for i in range(n)]
        nearest = int(np.argmin(dists))
        extreme = dx < min(dens) or dx > max(dens)
        if extreme and dists[nearest] < p["replace"]:
            for j in range(d):
                if mask[j]:
                    st["centers"][nearest][j] = z[j]
            event = 2
        elif extreme or dists[nearest] > p["coverage"]:
            if n >= cap:
                util = [st["usum"][i] / (k - st["birth"][i] + 1.0) for i in range(n)]
                remove(int(np.argmin(util)))
            add()
            event = 1
    n = st["n"]
    lam = naive_firing(z, mask, st["centers"], st["radii"], n)
    win = int(np.argmax(lam))
    st["support"][win] += 1
    for j in range(d):
        if mask[j]:
            dev = z[j] - st["centers"][win][j]
            st["scatter"][win][j] += (dev * dev - st["scatter"][win][j]) / st["support"][win]
            r = p["rho"] * st["radii"][win][j] + (1 - p["rho"]) * math.sqrt(st["scatter"][win][j])
            st["radii"][win][j] = max(r, p["min_radius"])
    xe = np.concatenate([[1.0], z])
    for i in range(n):
        st["usum"][i] += lam[i]
        if lam[i] < 1e-9:
            continue
        c = st["cov"][i]
        cx = c @ xe
        g = lam[i] / (p["forget"] + lam[i] * xe @ cx)
        err = y - xe @ st["theta"][i]
        st["theta"][i] += g * np.outer(cx, err)
        st["cov"][i] = (c - g * np.outer(cx, cx)) / p["forget"]
    i = 0
    while i < st["n"] and st["n"] > 1:
        age = k - st["birth"][i]
        if age >= p["min_age"] and st["usum"][i] / (age + 1.0) < p["utility"]:
            remove(i)
            win = win - 1 if win > i else 0 if win == i else win
        else:
            i += 1
    if p["merge"] > 0:
        for i in range(st["n"]):
            if i == win:
                continue
            half = 0.5 * (st["radii"][win] + st["radii"][i])
            dist = math.sqrt(np.mean(((st["centers"][win] - st["centers"][i]) / half) ** 2))
            if d > 0 and dist < p["merge"]:
                keep, drop = min(i, win), max(i, win)
                sk, sd = st["support"][keep], st["support"][drop]
                w = sk + sd
                st["centers"][keep] = (sk * st["centers"][keep] + sd * st["centers"][drop]) / w
                st["scatter"][keep] = (sk * st["scatter"][keep] + sd * st["scatter"][drop]) / w
                st["radii"][keep] = np.sqrt(
                    (sk * st["radii"][keep] ** 2 + sd * st["radii"][drop] ** 2) / w
                )
                st["theta"][keep] = (sk * st["theta"][keep] + sd * st["theta"][drop]) / w
                if sd > sk:
                    st["cov"][keep] = st["cov"][drop]
                st["support"][keep] = w
                st["birth"][keep] = min(st["birth"][keep], st["birth"][drop])
                st["usum"][keep] += st["usum"][drop]
                remove(drop)
                break
    return event


# --- align (issue 3): plain references for streamfuse.kernels.{ring,align,clockfit} ----------


def naive_resample(samples, p0, step, k, max_missing=0):
    """Resample a stream given as ``{position: row}`` onto ``p0 + j * step`` (``j < k``).

    Linear interpolation when ``step <= 1 + 1e-3``, otherwise a normalised tent of half-width
    ``step``. A value is needed at a position that is missing: it is bridged linearly between
    the nearest present positions around it when at most ``max_missing`` positions are missing
    between them, else the grid sample is invalid. Returns ``(out float64[k, ch], valid
    bool[k])``; invalid rows are 0.
    """
    import math

    import numpy as np

    ch = len(next(iter(samples.values())))
    out = np.zeros((k, ch))
    valid = np.zeros(k, bool)

    def around(x):
        """Nearest present positions lo <= x <= hi, or None when the gap is too long."""
        lo = math.floor(x)
        while lo not in samples and x - lo <= max_missing + 1:
            lo -= 1
        hi = math.ceil(x)
        while hi not in samples and hi - x <= max_missing + 1:
            hi += 1
        if lo not in samples or hi not in samples or hi - lo - 1 > max_missing:
            return None
        return lo, hi

    def value(x):
        """Row at real position x by linear interpolation, or None."""
        if x == math.floor(x) and int(x) in samples:
            return np.asarray(samples[int(x)], float)
        lohi = around(x)
        if lohi is None:
            return None
        lo, hi = lohi
        a = np.asarray(samples[lo], float)
        b = np.asarray(samples[hi], float)
        return a + (x - lo) / (hi - lo) * (b - a)

    for j in range(k):
        p = p0 + j * step
        if step <= 1.0 + 1e-3:
            v = value(p)
            if v is not None:
                out[j] = v
                valid[j] = True
        else:
            taps = [
                (i, 1 - abs(i - p) / step)
                for i in range(math.ceil(p - step), math.floor(p + step) + 1)
                if abs(i - p) < step
            ]
            vals = [value(i) for i, _ in taps]
            if taps and all(v is not None for v in vals):
                wsum = sum(w for _, w in taps)
                out[j] = sum(w * v for (_, w), v in zip(taps, vals, strict=True)) / wsum
                valid[j] = True
    return out, valid


def naive_lower_envelope(x, y):
    """The LP minimum-delay line: maximise a + b * mean(x) s.t. a + b * x_i <= y_i, by trying
    every line through two points (and the flat line through the lowest point)."""
    import math

    import numpy as np

    xm = float(np.mean(x))
    best = (float(np.min(y)), 0.0) if len(x) == 1 else None
    best_val = -math.inf
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            if x[j] == x[i]:
                continue
            b = (y[j] - y[i]) / (x[j] - x[i])
            a = y[i] - b * x[i]
            if np.all(a + b * np.asarray(x) <= np.asarray(y) + 1e-12) and a + b * xm > best_val:
                best, best_val = (a, b), a + b * xm
    return best


# ---------------------------------------------------------------------------------------------
# features (issue 8): plain loops for streamfuse.kernels.moments.pairwise_sum and
# streamfuse.kernels.filters (hold_kernel, push_rows, push_valid). The NumPy/SciPy code the
# per-window feature kernels replaced is frozen in tests/golden/features.py.


def naive_pairwise_sum(values) -> float:
    """NumPy's pairwise summation order written out (blocks of 128, eight partial sums)."""
    v = [float(a) for a in values]
    n = len(v)
    if n < 8:
        res = 0.0
        for a in v:
            res += a
        return res
    if n <= 128:
        r = v[:8]
        i = 8
        while i < n - n % 8:
            for j in range(8):
                r[j] += v[i + j]
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for a in v[i:]:
            res += a
        return res
    half = n // 2
    half -= half % 8
    return naive_pairwise_sum(v[:half]) + naive_pairwise_sum(v[half:])


def naive_hold(x, valid, last):
    """Each sample replaced by the latest valid one at or before it (``last`` before any)."""
    out = []
    for v, ok in zip(x, valid, strict=True):
        if ok:
            last = v
        out.append(last)
    return out, last


def naive_tail(buf, new, n):
    """The last ``n`` rows of ``buf`` followed by ``new``."""
    import numpy as np

    out = np.concatenate([buf, new], axis=0)
    return out[-n:] if out.shape[0] > n else out


def naive_smoothed(decisions, half_life, skipped=None):
    """``decisions``: a list of (device, {modality: {class: p}}); each modality's class
    probabilities replaced by the normalised exp of an exponential average (weight of the
    newest 1 - 2**(-1/half_life)) of its log-probabilities over that device's earlier
    decisions of the same modality, the first one as it is (and again whenever the classes it
    names change). ``skipped[k]``: the modalities of decision ``k`` left out of the average,
    which say the average so far instead (their own decision when there is none)."""
    import math

    keep = 0.5 ** (1.0 / half_life)
    last = {}
    out = []
    for k, (device, members) in enumerate(decisions):
        now = {}
        for m, p in members.items():
            logs = {c: math.log(max(v, 1e-12)) for c, v in p.items()}
            before = last.get((device, m))
            usable = before is not None and set(before) == set(logs)
            if skipped is not None and m in skipped[k]:
                if usable:
                    logs = before
            else:
                if usable:
                    logs = {c: keep * before[c] + (1 - keep) * v for c, v in logs.items()}
                last[(device, m)] = logs
            z = sum(math.exp(v) for v in logs.values())
            now[m] = {c: math.exp(v) / z for c, v in logs.items()}
        out.append(now)
    return out
