"""Slow, obviously-correct references for the Numba kernels (one section per owner)."""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# features (issue 4): plain references for streamfuse.features.qrs.qrs_kernel and
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


# --- learn/fuzzy_kernels.py --------------------------------------------------------------------
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
    min_age, merge, rescale. Mirrors :func:`streamfuse.learn.fuzzy_kernels.learn_kernel`
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


# --- align (issue 8): frozen per-chunk bookkeeping of streamfuse.align before its fast path ---
# A plain copy of DeviceAligner / ClockModel / StreamBuffer / Windower as they stood at commit
# a66a243 (dict lookups per chunk, completeness recomputed for every live stream on every
# chunk). tests/test_align_equivalence.py drives it and the real aligner with the same calls
# and requires bit-identical windows, counters and clock estimates. Do not optimise it.


class NaiveWindower:
    def __init__(self, config, phase=0.0):
        self.phase = float(phase)
        self.window_s = float(config.window_s)
        self.hop_s = float(config.hop_s)
        self.lateness_s = float(config.lateness_s)
        self.next_index = None
        self.closed_end = float("-inf")

    def bounds(self, w):
        t0 = self.phase + w * self.hop_s
        return t0, t0 + self.window_s

    def first_containing(self, t):
        import math

        return math.floor((t - self.phase - self.window_s) / self.hop_s) + 1

    def start(self, t_first):
        if self.next_index is None:
            self.next_index = self.first_containing(t_first)

    def timed_out(self, w, now):
        return now >= self.bounds(w)[1] + self.lateness_s

    def first_open(self, now):
        import math

        return math.floor((now - self.phase - self.lateness_s - self.window_s) / self.hop_s) + 1

    def closed(self, w):
        self.closed_end = self.bounds(w)[1]
        self.next_index = w + 1


class NaiveStreamBuffer:
    def __init__(self, channels, fs, origin, retain_s, reorder_s):
        import math

        from streamfuse.kernels.ring import new_ring

        self.fs = float(fs)
        self.origin = float(origin)
        self.reorder = int(math.ceil(reorder_s * self.fs))
        self.values, self.slot_pos = new_ring(int(math.ceil(retain_s * self.fs)) + 1, channels)
        self.end_pos = 0
        self.gaps = 0
        self.gap_samples = 0
        self.reordered = 0
        self.overlaps = 0

    @property
    def end_time(self):
        return self.origin + self.end_pos / self.fs

    def position(self, t_device):
        return (t_device - self.origin) * self.fs

    def put(self, t0, data):
        import numpy as np

        from streamfuse.kernels.ring import ring_write

        n = int(data.shape[0])
        cap = int(self.values.shape[0])
        if n > cap // 2:
            return "too_long"
        pos0 = int(round((t0 - self.origin) * self.fs))
        end = pos0 + n
        if end <= self.end_pos - self.reorder or pos0 < self.end_pos - cap:
            return "stale"
        overlap = int(ring_write(self.values, self.slot_pos, data, np.int64(pos0)))
        self.overlaps += overlap
        if pos0 > self.end_pos:
            self.gaps += 1
            self.gap_samples += pos0 - self.end_pos
        elif pos0 < self.end_pos:
            self.reordered += 1
            below = min(end, self.end_pos) - pos0
            self.gap_samples -= max(0, below - overlap)
        self.end_pos = max(self.end_pos, end)
        return "ok"

    def count(self, lo, hi):
        import numpy as np

        from streamfuse.kernels.ring import ring_count

        return int(ring_count(self.slot_pos, np.int64(lo), np.int64(hi)))


class NaiveClockModel:
    def __init__(self, *, bin_s=0.5, horizon_s=300.0, min_span_s=10.0, jump_s=1.0, confirm=6,
                 confirm_s=1.0, max_drift=0.01):
        import math

        import numpy as np

        from streamfuse.kernels.ring import EMPTY

        self.bin_s = bin_s
        self.min_span_s = min_span_s
        self.jump_s = jump_s
        self.confirm = confirm
        self.confirm_s = confirm_s
        self.max_drift = max_drift
        self.previous = None  # (d_ref, offset, drift) of the epoch before the last reset
        nb = max(2, int(math.ceil(horizon_s / bin_s)))
        self._bx = np.zeros(nb)
        self._by = np.zeros(nb)
        self._bid = np.full(nb, EMPTY, np.int64)
        self._xs = np.zeros(nb)
        self._ys = np.zeros(nb)
        self._hull = np.zeros(nb, np.int64)
        self._newest = int(EMPTY)
        self._pending = []
        self.resets = 0
        self.epoch = 0
        self.d_ref = math.nan
        self.offset = math.nan
        self.drift = 0.0
        self._ymin = math.inf

    @property
    def ready(self):
        import math

        return math.isfinite(self.offset)

    def to_gateway(self, t_device):
        return t_device + self.offset + self.drift * (t_device - self.d_ref)

    def to_device(self, t_gateway):
        return self.d_ref + (t_gateway - self.d_ref - self.offset) / (1.0 + self.drift)

    def residual(self, t_device, arrival):
        return arrival - self.to_gateway(t_device)

    def observe(self, t_device, arrival):
        if not self.ready:
            self.d_ref = t_device
            self._add(t_device, arrival)
            return "ok"
        r = self.residual(t_device, arrival)
        if abs(r) <= self.jump_s:
            for d, a in self._pending:
                if self.residual(d, a) > 0:
                    self._add(d, a)
            self._pending.clear()
            self._add(t_device, arrival)
            return "ok"
        self._pending.append((t_device, arrival))
        if len(self._pending) > 8 * self.confirm:
            del self._pending[0]
        ys = sorted(a - d for d, a in self._pending)
        agree = sum(1 for y in ys if y - ys[0] <= self.jump_s / 10)
        # the span of arrival times of the agreeing ones only
        times = [a for d, a in self._pending if (a - d) - ys[0] <= self.jump_s / 10]
        span = max(times) - min(times)
        if agree >= self.confirm and span >= self.confirm_s:
            import math

            from streamfuse.kernels.ring import EMPTY

            held = self._pending
            self._pending = []
            self.previous = (self.d_ref, self.offset, self.drift)
            self._bid.fill(EMPTY)
            self._newest = int(EMPTY)
            self.offset = math.nan
            self.drift = 0.0
            self._ymin = math.inf
            self.d_ref = min(d for d, _ in held)
            for d, a in held:
                self._add(d, a)
            self.resets += 1
            self.epoch += 1
            return "reset"
        return "outlier"

    def _add(self, t_device, arrival):
        import math

        from streamfuse.kernels.clockfit import envelope_fit

        x = t_device - self.d_ref
        y = arrival - t_device
        k = int(math.floor(x / self.bin_s))
        nb = self._bid.shape[0]
        if k <= self._newest - nb:
            return
        s = k % nb
        if self._bid[s] == k and self._by[s] <= y:
            return
        saved = (self._bid.copy(), self._bx.copy(), self._by.copy(), self._newest)
        self._bid[s] = k
        self._bx[s] = x
        self._by[s] = y
        self._newest = max(self._newest, k)
        a, b, n, span = envelope_fit(
            self._bx, self._by, self._bid, self._newest, self._xs, self._ys, self._hull
        )
        if span >= self.min_span_s and abs(b) > self.max_drift:
            # an implausible drift: the point stays out, the bins as they were
            self._bid, self._bx, self._by, self._newest = saved
            return
        if span < self.min_span_s:
            self._ymin = min(self._ymin, y)
            self.offset, self.drift = self._ymin, 0.0
        else:
            self.offset, self.drift = float(a), float(b)


NAIVE_ALIGN_COUNTERS = (
    "chunks", "duplicates", "gaps", "gap_samples", "late_chunks", "reordered", "overlaps",
    "clock_resets", "clock_outliers", "rejected", "windows", "windows_dropped", "windows_empty",
    "held_dropped",
)


class _NaiveOldEpoch:
    """A retired epoch's mapping (d_ref, offset, drift), mapped the same way."""

    def __init__(self, d_ref, offset, drift):
        self.d_ref, self.offset, self.drift = d_ref, offset, drift

    def to_gateway(self, t_device):
        return t_device + self.offset + self.drift * (t_device - self.d_ref)

    def to_device(self, t_gateway):
        return self.d_ref + (t_gateway - self.d_ref - self.offset) / (1.0 + self.drift)


class NaiveDeviceAligner:
    """streamfuse.align.DeviceAligner as of a66a243 (same public interface), with issue 17's
    changes: a clock jump closes the old epoch's windows under the old epoch's mapping;
    windows without data are counted (``windows_empty``); a timed-out window that no stored
    data reaches waits for data instead of being passed over; held chunks are replayed each at
    the time the clock says it would have arrived, at most 120 s of them (at the configured
    rates) held; a chunk claiming over twice its configured rate is refused. It walks every
    window one by one."""

    def __init__(self, device, config, *, clock_per_stream=False):
        import math
        from collections import OrderedDict

        import numpy as np

        from streamfuse.align.windower import window_phase
        from streamfuse.kernels.align import new_scratch

        self.device = device
        self.config = config
        self.clock_per_stream = clock_per_stream
        self.windower = NaiveWindower(config, window_phase(device, config))
        self.k = config.window_samples
        self.counters = dict.fromkeys(NAIVE_ALIGN_COUNTERS, 0)
        cols = {}
        names = []
        for name, spec in config.modalities.items():
            cols[name] = (len(names), spec.channels)
            names.extend(f"{name}:{ch}" for ch in spec.channel_names)
        self.columns = cols
        self.channels = tuple(names)
        self.C = len(names)
        self._retain_s = (
            config.window_s + 2 * config.hop_s + config.lateness_s + config.reorder_s + 2.0
        )
        self._clocks = {}
        self._buffers = {}
        self._seen = {m: OrderedDict() for m in config.modalities}
        self._last_arrival = {}
        self._held = []
        self._now = -math.inf
        self._old_epoch = {}  # modality -> _NaiveOldEpoch while the old epoch's windows close
        self._virtual_now = math.inf  # while replaying held chunks
        self._scratch = new_scratch(self.k)
        self._params = np.zeros((len(config.modalities), 4))
        self._n_ok = np.zeros(len(config.modalities), np.int64)

    def add(self, chunk):
        import math

        import numpy as np

        c = self.counters
        c["chunks"] += 1
        spec = self.config.modalities.get(chunk.modality)
        d = chunk.data
        if spec is None or not (
            isinstance(d, np.ndarray)
            and d.ndim == 2
            and d.shape[0] > 0
            and d.shape[1] == spec.channels
            and math.isfinite(chunk.t0)
            and math.isfinite(chunk.arrival)
            and math.isfinite(chunk.fs)
            and chunk.fs > 0
            and chunk.fs <= 2.0 * spec.fs
        ):
            c["rejected"] += 1
            return []
        key = (chunk.seq, float(chunk.t0), chunk.n)
        seen = self._seen[chunk.modality]
        if key in seen:
            c["duplicates"] += 1
            return []
        seen[key] = None
        if len(seen) > 4096:
            seen.popitem(last=False)
        clock = self._clock(chunk.modality)
        status = clock.observe(chunk.t0 + chunk.duration, chunk.arrival)
        if status == "outlier":
            c["clock_outliers"] += 1
            self._held.append(chunk)
            limit = math.ceil(120.0 * sum(s.fs for s in self.config.modalities.values()))
            while sum(h.data.shape[0] for h in self._held) > limit:
                del self._held[0]
                c["held_dropped"] += 1
            return []
        out = []
        if status == "reset":
            c["clock_resets"] += 1
            sharing = (chunk.modality,) if self.clock_per_stream else tuple(self._buffers)
            old = _NaiveOldEpoch(*clock.previous)
            self._old_epoch = {m: old for m in sharing}
            out.extend(self._close_all())
            self._old_epoch = {}
            for m in sharing:
                self._buffers.pop(m, None)
        held, self._held = self._held, []
        for h in held:
            self._virtual_now = self._clock(h.modality).to_gateway(h.t0 + h.duration)
            out.extend(self._ingest(h))
        self._virtual_now = math.inf
        out.extend(self._ingest(chunk))
        return out

    def advance(self, now):
        import math

        if math.isfinite(now):
            self._now = max(self._now, now)
        return self._close_ready()

    def sync(self, now):
        import math

        if math.isfinite(now) and now > self._now:
            self._now = now

    def next_deadline(self):
        import math

        win = self.windower
        if win.next_index is None:
            return math.inf
        t = win.bounds(win.next_index)[1] + win.lateness_s
        if self._now >= t and not self._has_data_from(win.bounds(win.next_index)[0]):
            return math.inf
        silence = self.config.silence_s
        for arrival in self._last_arrival.values():
            quiet = arrival + silence - 1e-6
            if self._now <= quiet < t:
                t = quiet
        return t

    def flush(self):
        self.counters["held_dropped"] += len(self._held)
        self._held = []
        return self._close_all()

    def to_gateway(self, t_device):
        import math

        for clock in self._clocks.values():
            if clock.ready:
                return clock.to_gateway(t_device)
        return math.nan

    def _clock(self, modality):
        if modality in self._old_epoch:
            return self._old_epoch[modality]
        key = modality if self.clock_per_stream else ""
        clock = self._clocks.get(key)
        if clock is None:
            clock = self._clocks[key] = NaiveClockModel()
        return clock

    def _ingest(self, chunk):
        import numpy as np

        m = chunk.modality
        c = self.counters
        self._now = max(self._now, chunk.arrival)
        clock = self._clock(m)
        buf = self._buffers.get(m)
        if buf is None or abs(buf.fs - chunk.fs) > 1e-9 * chunk.fs:
            buf = NaiveStreamBuffer(
                chunk.channels, chunk.fs, chunk.t0, self._retain_s, self.config.reorder_s
            )
            self._buffers[m] = buf
        data = chunk.data
        if data.dtype != np.float32 or not data.flags.c_contiguous:
            data = np.ascontiguousarray(data, dtype=np.float32)
        before = (buf.gaps, buf.gap_samples, buf.reordered, buf.overlaps)
        status = buf.put(chunk.t0, data)
        c["gaps"] += buf.gaps - before[0]
        c["gap_samples"] += buf.gap_samples - before[1]
        c["reordered"] += buf.reordered - before[2]
        c["overlaps"] += buf.overlaps - before[3]
        if status != "ok":
            if status == "stale":
                c["late_chunks"] += 1
            else:
                c["rejected"] += 1
            return self._close_ready()
        self._last_arrival[m] = chunk.arrival
        g0 = clock.to_gateway(chunk.t0)
        if self.windower.next_index is None:
            self.windower.start(g0)
        elif g0 < self.windower.closed_end:
            c["late_chunks"] += 1
        return self._close_ready()

    def _needed(self, buf, clock, t_start):
        p0 = buf.position(clock.to_device(t_start))
        step = buf.fs / (self.config.grid_fs * (1.0 + clock.drift))
        return p0, step

    def _complete(self, w):
        import math

        t_start, _ = self.windower.bounds(w)
        live = [
            m
            for m, t in self._last_arrival.items()
            if t >= self._now - self.config.silence_s and m in self._buffers
        ]
        if not live:
            return False
        for m in live:
            buf = self._buffers[m]
            p0, step = self._needed(buf, self._clock(m), t_start)
            reach = max(1.0, step)
            lo = math.ceil(p0 - reach)
            hi = math.floor(p0 + (self.k - 1) * step + reach) + 1
            if hi > buf.end_pos or buf.count(lo, hi) < hi - lo:
                return False
        return True

    def _has_data_from(self, t):
        for m, buf in self._buffers.items():
            if self._clock(m).to_gateway(buf.end_time) > t:
                return True
        return False

    def _close_ready(self):
        out = []
        win = self.windower
        while win.next_index is not None:
            w = win.next_index
            t_start, _ = win.bounds(w)
            if win.timed_out(w, min(self._now, self._virtual_now)):
                if not self._has_data_from(t_start):
                    break
            elif not self._complete(w):
                break
            fw = self._emit(w)
            win.closed(w)
            if fw is not None:
                out.append(fw)
        return out

    def _close_all(self):
        out = []
        win = self.windower
        while win.next_index is not None:
            w = win.next_index
            if not self._has_data_from(win.bounds(w)[0]):
                break
            fw = self._emit(w)
            win.closed(w)
            if fw is not None:
                out.append(fw)
        return out

    def _emit(self, w):
        import math

        import numpy as np

        from streamfuse.kernels.align import align_window
        from streamfuse.types import FusedWindow, Window

        t_start, t_end = self.windower.bounds(w)
        k, cfg = self.k, self.config
        matrix = np.zeros((k, self.C), np.float32)
        mask = np.zeros((k, self.C), np.bool_)
        blocks = {}
        masks = {}
        quality = {}
        lateness = self._now - t_end if math.isfinite(self._now) else 0.0
        present = [m for m in cfg.modalities if m in self._buffers]
        valid = np.zeros((len(present), k), np.bool_)
        if present:
            params = self._params
            for i, m in enumerate(present):
                buf = self._buffers[m]
                p0, step = self._needed(buf, self._clock(m), t_start)
                max_missing = math.floor(cfg.max_gap_s * buf.fs + 1e-9)
                params[i] = (p0, step, self.columns[m][0], max_missing)
            idx, wt = self._scratch
            align_window(
                tuple(self._buffers[m].values for m in present),
                tuple(self._buffers[m].slot_pos for m in present),
                params[: len(present)],
                matrix,
                valid,
                self._n_ok,
                idx,
                wt,
            )
        for i, m in enumerate(present):
            n_ok = int(self._n_ok[i])
            if n_ok == 0:
                continue
            col0, ch = self.columns[m]
            mask[:, col0 : col0 + ch] = valid[i][:, None]
            blocks[m] = matrix[:, col0 : col0 + ch].copy()
            masks[m] = valid[i]
            quality[m] = {"gap_fraction": 1.0 - n_ok / k, "lateness_s": lateness}
        if len(blocks) < cfg.min_modalities or not all(
            m in blocks for m in cfg.required_modalities
        ):
            self.counters["windows_dropped" if blocks else "windows_empty"] += 1
            return None
        self.counters["windows"] += 1
        window = Window(
            device=self.device,
            t_start=t_start,
            t_end=t_end,
            fs=cfg.grid_fs,
            blocks=blocks,
            masks=masks,
            quality=quality,
            index=w,
        )
        return FusedWindow(window=window, matrix=matrix, channels=self.channels, mask=mask)


# ---------------------------------------------------------------------------------------------
# features (issue 8): plain loops for streamfuse.kernels.moments.pairwise_sum and
# streamfuse.kernels.filters (hold_kernel, push_rows, push_valid). The NumPy/SciPy code the
# per-window feature kernels replaced is in tests/naive_features.py.


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
