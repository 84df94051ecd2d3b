"""Numba kernels of the evolving Takagi–Sugeno model (arrays and scalars only).

The Python wrappers in :mod:`streamfuse.learn.neurofuzzy` own validation and the mapping from
feature dicts to fixed-order vectors; these kernels never validate. Every array is ``float64``.

State layout (``R`` = rule capacity, ``d`` = features, ``o`` = outputs):

- scaler: ``mean[d]``, ``m2[d]``, ``cnt[d]`` (Welford, per feature, present values only) and
  the reference ``ref_mean[d]``, ``ref_std[d]`` the rules are expressed in; when the running
  statistics drift more than ``rescale`` (relative) from the reference, every rule is rewritten
  exactly in the new units (centres, radii, scatter, consequents and RLS matrices), so the model
  as a function of the raw features does not change when the scaler moves;
- rules: ``centers[R, d]`` and ``radii[R, d]`` (standardised units), ``scatter[R, d]``
  (running mean squared deviation from the centre), ``theta[R, d + 1, o]`` (first-order
  consequents, bias first), ``cov[R, d + 1, d + 1]`` (RLS inverse-correlation matrices),
  ``support[R]``, ``birth[R]``, ``usum[R]`` (accumulated normalised firing);
- ``counters = [n_rules, k]`` (int64).

``params`` (float64) holds, in order: radius, radius_rate, min_radius, coverage_radius,
replace_radius, omega, forgetting, utility_threshold, min_age, merge_distance, rescale.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

P_RADIUS = 0
P_RHO = 1
P_MIN_RADIUS = 2
P_COVERAGE = 3
P_REPLACE = 4
P_OMEGA = 5
P_FORGET = 6
P_UTILITY = 7
P_MIN_AGE = 8
P_MERGE = 9
P_RESCALE = 10
N_PARAMS = 11

EVENT_NONE = 0
EVENT_CREATED = 1
EVENT_REPLACED = 2

_VAR_FLOOR = 1e-12
_LAMBDA_SKIP = 1e-9


@njit(cache=True)
def standardize(x, mask, ref_mean, ref_std, z):
    """Fill ``z`` with ``(x - ref_mean) / ref_std`` on present features, 0 elsewhere or where
    the reference std is 0."""
    for j in range(x.shape[0]):
        z[j] = 0.0
        if mask[j] and ref_std[j] > 0.0:
            z[j] = (x[j] - ref_mean[j]) / ref_std[j]


@njit(cache=True)
def rescale_kernel(mean, m2, cnt, ref_mean, ref_std, centers, radii, scatter, theta, cov,
                   n_rules, tol, u):
    """Move the reference scaler to the running statistics if they drifted more than ``tol``,
    rewriting the rules exactly in the new units. Returns True if it rescaled.

    With ``z = s z' + delta`` (``s = std'/std``, ``delta = (mean' - mean)/std``) a consequent
    ``theta`` becomes ``A theta`` (``A[0,0] = 1``, ``A[0,j] = delta_j``, ``A[j,j] = s_j``) and
    its RLS matrix ``A C A^T``; centres ``(c - delta)/s``, radii ``r/s``, scatter ``/s^2``.
    ``u`` is float64 work space of length ``d + 1``.
    """
    d = mean.shape[0]
    drift = False
    for j in range(d):
        std = math.sqrt(m2[j] / cnt[j]) if cnt[j] > 1.0 else 0.0
        if std * std <= _VAR_FLOOR:
            continue
        if ref_std[j] == 0.0:
            drift = True
        elif (abs(mean[j] - ref_mean[j]) > tol * ref_std[j]
              or abs(std - ref_std[j]) > tol * ref_std[j]):
            drift = True
    if not drift:
        return False
    s = np.ones(d)
    delta = np.zeros(d)
    fresh = np.zeros(d, dtype=np.bool_)
    for j in range(d):
        std = math.sqrt(m2[j] / cnt[j]) if cnt[j] > 1.0 else 0.0
        if std * std <= _VAR_FLOOR:
            continue
        if ref_std[j] == 0.0:
            fresh[j] = True  # z was 0 for this feature: centres sat at the reference mean
        else:
            s[j] = std / ref_std[j]
            delta[j] = (mean[j] - ref_mean[j]) / ref_std[j]
    for i in range(n_rules):
        for j in range(d):
            if fresh[j]:
                std = math.sqrt(m2[j] / cnt[j])
                centers[i, j] = (ref_mean[j] - mean[j]) / std
            else:
                centers[i, j] = (centers[i, j] - delta[j]) / s[j]
                radii[i, j] = radii[i, j] / s[j]
                scatter[i, j] = scatter[i, j] / (s[j] * s[j])
        for o in range(theta.shape[2]):
            t0 = theta[i, 0, o]
            for j in range(d):
                t0 += delta[j] * theta[i, j + 1, o]
                theta[i, j + 1, o] *= s[j]
            theta[i, 0, o] = t0
        # u = first row of A C
        for b in range(d + 1):
            v = cov[i, 0, b]
            for j in range(d):
                v += delta[j] * cov[i, j + 1, b]
            u[b] = v
        c00 = u[0]
        for j in range(d):
            c00 += u[j + 1] * delta[j]
        for a in range(d):
            for b in range(d):
                cov[i, a + 1, b + 1] *= s[a] * s[b]
        for b in range(d):
            cov[i, 0, b + 1] = u[b + 1] * s[b]
            cov[i, b + 1, 0] = cov[i, 0, b + 1]
        cov[i, 0, 0] = c00
    for j in range(d):
        std = math.sqrt(m2[j] / cnt[j]) if cnt[j] > 1.0 else 0.0
        if std * std > _VAR_FLOOR:
            ref_mean[j] = mean[j]
            ref_std[j] = std
    return True


@njit(cache=True)
def log_firing(z, mask, centers, radii, n_rules, out):
    """``out[i] = -0.5 * sum_j ((z_j - c_ij) / r_ij)^2`` over present features (log of the
    product of Gaussian memberships)."""
    for i in range(n_rules):
        s = 0.0
        for j in range(z.shape[0]):
            if mask[j]:
                u = (z[j] - centers[i, j]) / radii[i, j]
                s += u * u
        out[i] = -0.5 * s


@njit(cache=True)
def normalise(logtau, n_rules, lam):
    """Normalised firing strengths (a softmax of the log firings; never all zero)."""
    if n_rules == 0:
        return
    m = logtau[0]
    for i in range(1, n_rules):
        if logtau[i] > m:
            m = logtau[i]
    s = 0.0
    for i in range(n_rules):
        lam[i] = math.exp(logtau[i] - m)
        s += lam[i]
    for i in range(n_rules):
        lam[i] /= s


@njit(cache=True)
def ts_output(z, theta, lam, n_rules, out):
    """First-order Takagi–Sugeno output: ``out[o] = sum_i lam_i (theta_i0o + z . theta_i,1:,o)``."""
    n_out = out.shape[0]
    d = z.shape[0]
    for o in range(n_out):
        out[o] = 0.0
    for i in range(n_rules):
        if lam[i] <= 0.0:
            continue
        for o in range(n_out):
            v = theta[i, 0, o]
            for j in range(d):
                v += z[j] * theta[i, j + 1, o]
            out[o] += lam[i] * v


@njit(cache=True)
def predict_kernel(x, mask, ref_mean, ref_std, centers, radii, theta, counters, z, logtau, lam,
                   out):
    """Standardise ``x`` and fill ``out`` with the model's output (zeros with no rule)."""
    n_rules = counters[0]
    standardize(x, mask, ref_mean, ref_std, z)
    if n_rules == 0:
        for o in range(out.shape[0]):
            out[o] = 0.0
        return
    log_firing(z, mask, centers, radii, n_rules, logtau)
    normalise(logtau, n_rules, lam)
    ts_output(z, theta, lam, n_rules, out)


@njit(cache=True)
def _rms_distance(z, mask, centers, radii, i):
    s = 0.0
    n = 0
    for j in range(z.shape[0]):
        if mask[j]:
            u = (z[j] - centers[i, j]) / radii[i, j]
            s += u * u
            n += 1
    if n == 0:
        return 0.0
    return math.sqrt(s / n)


@njit(cache=True)
def _density_sq(v, mask):
    # Cauchy global density under the running standardisation: mean squared distance of v to
    # every seen sample equals |v|^2 + (number of scaled features); only |v|^2 varies, so we
    # compare squared norms (larger norm = lower density).
    s = 0.0
    for j in range(v.shape[0]):
        if mask[j]:
            s += v[j] * v[j]
    return s


@njit(cache=True)
def _remove_rule(i, centers, radii, scatter, theta, cov, support, birth, usum, counters):
    n = counters[0]
    for r in range(i, n - 1):
        centers[r] = centers[r + 1]
        radii[r] = radii[r + 1]
        scatter[r] = scatter[r + 1]
        theta[r] = theta[r + 1]
        cov[r] = cov[r + 1]
        support[r] = support[r + 1]
        birth[r] = birth[r + 1]
        usum[r] = usum[r + 1]
    counters[0] = n - 1


@njit(cache=True)
def _add_rule(z, centers, radii, scatter, theta, cov, support, birth, usum, counters, params, lam):
    n = counters[0]
    d = z.shape[0]
    n_out = theta.shape[2]
    # Consequent of the new rule: the current model's local consequent at z (eTS).
    for a in range(d + 1):
        for o in range(n_out):
            v = 0.0
            for r in range(n):
                v += lam[r] * theta[r, a, o]
            theta[n, a, o] = v
    r0 = params[P_RADIUS]
    for j in range(d):
        centers[n, j] = z[j]
        radii[n, j] = r0
        scatter[n, j] = r0 * r0
    for a in range(d + 1):
        for b in range(d + 1):
            cov[n, a, b] = 0.0
        cov[n, a, a] = params[P_OMEGA]
    support[n] = 1.0
    birth[n] = counters[1]
    usum[n] = 0.0
    counters[0] = n + 1


@njit(cache=True)
def _merge_into(keep, drop, centers, radii, scatter, theta, cov, support, birth, usum, counters):
    sk = support[keep]
    sd = support[drop]
    w = sk + sd
    for j in range(centers.shape[1]):
        centers[keep, j] = (sk * centers[keep, j] + sd * centers[drop, j]) / w
        scatter[keep, j] = (sk * scatter[keep, j] + sd * scatter[drop, j]) / w
        radii[keep, j] = math.sqrt((sk * radii[keep, j] ** 2 + sd * radii[drop, j] ** 2) / w)
    for a in range(theta.shape[1]):
        for o in range(theta.shape[2]):
            theta[keep, a, o] = (sk * theta[keep, a, o] + sd * theta[drop, a, o]) / w
    if sd > sk:
        cov[keep] = cov[drop]
    support[keep] = w
    birth[keep] = min(birth[keep], birth[drop])
    usum[keep] = usum[keep] + usum[drop]
    _remove_rule(drop, centers, radii, scatter, theta, cov, support, birth, usum, counters)


@njit(cache=True)
def learn_kernel(
    x, mask, y, mean, m2, cnt, ref_mean, ref_std, centers, radii, scatter, theta, cov, support,
    birth, usum, counters, params, z, logtau, lam, cx,
):
    """One eTS-style learning step on sample ``x`` (present where ``mask``) with target ``y``.

    Returns the structural event (``EVENT_NONE``, ``EVENT_CREATED``, ``EVENT_REPLACED``).
    """
    d = x.shape[0]
    n_out = y.shape[0]
    cap = centers.shape[0]
    # 1. running standardisation (Welford), then the standardised sample
    for j in range(d):
        if mask[j]:
            cnt[j] += 1.0
            delta = x[j] - mean[j]
            mean[j] += delta / cnt[j]
            m2[j] += delta * (x[j] - mean[j])
    rescale_kernel(mean, m2, cnt, ref_mean, ref_std, centers, radii, scatter, theta, cov,
                   counters[0], params[P_RESCALE], cx)
    standardize(x, mask, ref_mean, ref_std, z)
    counters[1] += 1
    k = counters[1]
    event = EVENT_NONE

    # 2. structure: create / replace rules from density and coverage
    n = counters[0]
    if n == 0:
        _add_rule(z, centers, radii, scatter, theta, cov, support, birth, usum, counters,
                  params, lam)
        event = EVENT_CREATED
    else:
        log_firing(z, mask, centers, radii, n, logtau)
        normalise(logtau, n, lam)
        dens_x = _density_sq(z, mask)
        lo = np.inf
        hi = -np.inf
        nearest = 0
        nearest_d = np.inf
        for i in range(n):
            dc = _density_sq(centers[i], mask)
            if dc < lo:
                lo = dc
            if dc > hi:
                hi = dc
            di = _rms_distance(z, mask, centers, radii, i)
            if di < nearest_d:
                nearest_d = di
                nearest = i
        # potential higher than every centre's (closer to the bulk) or lower than every
        # centre's (a new, outlying region), as in eTS / eTS+
        extreme = dens_x < lo or dens_x > hi
        if extreme and nearest_d < params[P_REPLACE]:
            for j in range(d):
                if mask[j]:
                    centers[nearest, j] = z[j]
            event = EVENT_REPLACED
        elif extreme or nearest_d > params[P_COVERAGE]:
            if n >= cap:
                # make room: drop the rule with the lowest utility
                worst = 0
                worst_u = np.inf
                for i in range(n):
                    u = usum[i] / (k - birth[i] + 1.0)
                    if u < worst_u:
                        worst_u = u
                        worst = i
                _remove_rule(worst, centers, radii, scatter, theta, cov, support, birth, usum,
                             counters)
                n = counters[0]
                log_firing(z, mask, centers, radii, n, logtau)
                normalise(logtau, n, lam)
            _add_rule(z, centers, radii, scatter, theta, cov, support, birth, usum, counters,
                      params, lam)
            event = EVENT_CREATED

    # 3. firing after the structural change
    n = counters[0]
    log_firing(z, mask, centers, radii, n, logtau)
    normalise(logtau, n, lam)
    win = 0
    for i in range(1, n):
        if lam[i] > lam[win]:
            win = i

    # 4. adaptive radii of the winning rule (eTS+: r <- rho r + (1 - rho) local scatter)
    support[win] += 1.0
    rho = params[P_RHO]
    for j in range(d):
        if mask[j]:
            dev = z[j] - centers[win, j]
            scatter[win, j] += (dev * dev - scatter[win, j]) / support[win]
            r = rho * radii[win, j] + (1.0 - rho) * math.sqrt(scatter[win, j])
            radii[win, j] = max(r, params[P_MIN_RADIUS])

    # 5. utility and per-rule weighted RLS (local learning) of the consequents
    forget = params[P_FORGET]
    for i in range(n):
        usum[i] += lam[i]
        w = lam[i]
        if w < _LAMBDA_SKIP:
            continue
        # cx = C xe with xe = [1, z]
        xcx = 0.0
        for a in range(d + 1):
            v = cov[i, a, 0]
            for b in range(d):
                v += cov[i, a, b + 1] * z[b]
            cx[a] = v
            xcx += v * (1.0 if a == 0 else z[a - 1])
        g = w / (forget + w * xcx)
        for o in range(n_out):
            pred = theta[i, 0, o]
            for b in range(d):
                pred += theta[i, b + 1, o] * z[b]
            err = y[o] - pred
            for a in range(d + 1):
                theta[i, a, o] += g * cx[a] * err
        for a in range(d + 1):
            for b in range(d + 1):
                cov[i, a, b] = (cov[i, a, b] - g * cx[a] * cx[b]) / forget

    # 6. prune rules that are old enough and rarely fire (eTS+ utility), keep at least one
    min_age = params[P_MIN_AGE]
    thr = params[P_UTILITY]
    i = 0
    while i < counters[0] and counters[0] > 1:
        age = k - birth[i]
        if age >= min_age and usum[i] / (age + 1.0) < thr:
            _remove_rule(i, centers, radii, scatter, theta, cov, support, birth, usum, counters)
            if win > i:
                win -= 1
            elif win == i:
                win = 0
        else:
            i += 1

    # 7. merge the winner with a rule whose centre lies within merge_distance radii
    md = params[P_MERGE]
    if md > 0.0:
        n = counters[0]
        for i in range(n):
            if i == win:
                continue
            s = 0.0
            for j in range(d):
                u = (centers[win, j] - centers[i, j]) / (0.5 * (radii[win, j] + radii[i, j]))
                s += u * u
            if d > 0 and math.sqrt(s / d) < md:
                keep = min(i, win)
                drop = max(i, win)
                _merge_into(keep, drop, centers, radii, scatter, theta, cov, support, birth,
                            usum, counters)
                break
    return event
