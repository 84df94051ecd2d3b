"""Numba kernels of the streaming QRS detector.

:class:`streamfuse.features.qrs.StreamingQRSDetector` holds their state, validates input and
documents the method.

The detector's state is two vectors, ``float64[NF]`` and ``int64[NI]``, indexed by the ``F_*``
and ``I_*`` constants below, plus rings of the band-passed, squared and slope signals and of
the last ``RR_N`` RR intervals. The kernels never validate.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# indices into the float64 state vector
F_SPKI = 0
F_NPKI = 1
F_CAND_VAL = 2
F_NOISE_VAL = 3
F_NOISE_SLOPE = 4
F_LAST_SLOPE = 5
F_LEARN_MAX = 6
F_LEARN_SUM = 7
F_CAND_SLOPE = 8
F_PREV1 = 9  # integrated signal one sample back
F_PREV2 = 10  # two samples back
NF = 11

# indices into the int64 state vector
I_N = 0  # samples consumed so far
I_CAND_IDX = 1  # sample index of the pending local maximum (-1: none)
I_CAND_LOC = 2  # its R-peak location
I_LAST_QRS = 3  # location of the last accepted beat (-1: none)
I_NOISE_LOC = 4  # location of the largest noise peak since the last beat (-1: none)
I_RR_COUNT = 5  # number of RR intervals in the RR ring (capped at RR_N)
I_RR_POS = 6
I_LEARN_COUNT = 7  # candidates buffered during the learning phase
I_STARTED = 8  # 1 once the band-pass state was set from the first sample
NI = 9

RR_N = 8
#: integrated-signal floor (units²/s²): below it a flat line's rounding noise, not a beat
MIN_ENERGY = 1e-10
LEARN_CAP = 64


@njit(cache=True)
def _localize(bp_ring: np.ndarray, hi: int, span: int, delay: int) -> int:
    """Index of the largest |band-passed| sample in ``(hi - span, hi]``, shifted by ``delay``."""
    r = bp_ring.shape[0]
    best = -1.0
    arg = hi
    j0 = max(hi - span + 1, 0)
    pos = j0 % r  # one modulo, then the ring position steps along with j
    for j in range(j0, hi + 1):
        v = abs(bp_ring[pos])
        if v > best:
            best = v
            arg = j
        pos += 1
        if pos == r:
            pos = 0
    loc = arg - delay
    return loc if loc > 0 else 0


@njit(cache=True)
def _accept(fst, ist, rr_ring, val, loc, slope, searchback, out, n_out):
    if searchback:
        fst[F_SPKI] = 0.25 * val + 0.75 * fst[F_SPKI]
    else:
        fst[F_SPKI] = 0.125 * val + 0.875 * fst[F_SPKI]
    last = ist[I_LAST_QRS]
    if last >= 0:
        rr_ring[ist[I_RR_POS]] = loc - last
        ist[I_RR_POS] = (ist[I_RR_POS] + 1) % RR_N
        if ist[I_RR_COUNT] < RR_N:
            ist[I_RR_COUNT] += 1
    ist[I_LAST_QRS] = loc
    fst[F_LAST_SLOPE] = slope
    ist[I_NOISE_LOC] = -1
    fst[F_NOISE_VAL] = 0.0
    out[n_out] = loc
    return n_out + 1


@njit(cache=True)
def _classify(fst, ist, rr_ring, val, loc, slope, refractory, twave, out, n_out):
    """Decide whether one confirmed integrated-signal peak is a beat; returns the new n_out."""
    last = ist[I_LAST_QRS]
    thr1 = fst[F_NPKI] + 0.25 * (fst[F_SPKI] - fst[F_NPKI])
    is_beat = False
    if last < 0 or loc - last >= refractory:
        if val > thr1:
            is_beat = True
            if last >= 0 and loc - last < twave and slope < 0.5 * fst[F_LAST_SLOPE]:
                is_beat = False  # a T wave: too soon and too gentle
    if is_beat:
        return _accept(fst, ist, rr_ring, val, loc, slope, False, out, n_out)
    fst[F_NPKI] = 0.125 * val + 0.875 * fst[F_NPKI]
    if (last < 0 or loc - last >= refractory) and val > fst[F_NOISE_VAL]:
        fst[F_NOISE_VAL] = val
        ist[I_NOISE_LOC] = loc
        fst[F_NOISE_SLOPE] = slope
    return n_out


@njit(cache=True)
def qrs_kernel(
    bp: np.ndarray,
    fst: np.ndarray,
    ist: np.ndarray,
    bp_ring: np.ndarray,
    sq_ring: np.ndarray,
    slope_ring: np.ndarray,
    rr_ring: np.ndarray,
    learn_val: np.ndarray,
    learn_loc: np.ndarray,
    learn_slope: np.ndarray,
    win: int,
    confirm: int,
    refractory: int,
    twave: int,
    learn: int,
    delay: int,
    fs: float,
    out: np.ndarray,
) -> int:
    """Run the detector over band-passed samples ``bp``; write beat locations to ``out``.

    All state lives in the arrays passed in; returns how many entries of ``out`` were written.
    """
    r = bp_ring.shape[0]
    n_out = 0
    total = bp.shape[0]
    # Blocks of samples: the derivative and its square for a whole block, then the block's
    # moving-window integrals side by side (each sums its window oldest first, as one loop per
    # sample did, but the sums no longer wait on each other), then the decisions sample by
    # sample. The rings are written at most `r - win - 4` samples ahead of the sample being
    # decided, so nothing the decisions read (back to `n - win - 4`) is overwritten early.
    # Ring positions step along with the sample index (one modulo per block).
    block = r - win - 4
    lin = np.empty(win - 1 + min(block, total))
    ys = np.empty(min(block, total))
    for b0 in range(0, total, block):
        nb = min(block, total - b0)
        n_base = ist[I_N]
        # the squared derivatives the block's integrals need, oldest first; 0.0 before the
        # stream's start (adding 0.0 to a sum that starts at 0.0 changes nothing)
        for j in range(win - 1):
            m = n_base - win + 1 + j
            lin[j] = sq_ring[m % r] if m >= 0 else 0.0
        pos = n_base % r
        for i in range(nb):
            n = n_base + i
            x = bp[b0 + i]
            bp_ring[pos] = x
            # five-point derivative (Pan-Tompkins), zero until four past samples exist
            d = 0.0
            if n >= 4:
                p1 = pos - 1 if pos >= 1 else pos - 1 + r
                p3 = pos - 3 if pos >= 3 else pos - 3 + r
                p4 = pos - 4 if pos >= 4 else pos - 4 + r
                d = (2.0 * x + bp_ring[p1] - bp_ring[p3] - 2.0 * bp_ring[p4]) * (fs / 8.0)
            sq_ring[pos] = d * d
            slope_ring[pos] = abs(d)
            lin[win - 1 + i] = d * d
            pos += 1
            if pos == r:
                pos = 0
        # moving-window integration, summed afresh (no drift over long streams)
        for i in range(nb):
            ys[i] = 0.0
        for j in range(win):
            for i in range(nb):
                ys[i] += lin[i + j]
        for i in range(nb):
            n = n_base + i
            y = ys[i] / win
            ist[I_N] = n + 1

            # learning phase statistics
            if n <= learn:
                if y > fst[F_LEARN_MAX]:
                    fst[F_LEARN_MAX] = y
                fst[F_LEARN_SUM] += y

            # confirm a pending local maximum once `confirm` samples passed without a higher one
            if ist[I_CAND_IDX] >= 0 and n - ist[I_CAND_IDX] > confirm:
                val = fst[F_CAND_VAL]
                loc = ist[I_CAND_LOC]
                slope = fst[F_CAND_SLOPE]
                ist[I_CAND_IDX] = -1
                if n <= learn:
                    k = ist[I_LEARN_COUNT]
                    if k < LEARN_CAP:  # beyond the cap (a 500 bpm signal) candidates are dropped
                        learn_val[k] = val
                        learn_loc[k] = loc
                        learn_slope[k] = slope
                        ist[I_LEARN_COUNT] = k + 1
                else:
                    n_out = _classify(
                        fst, ist, rr_ring, val, loc, slope, refractory, twave, out, n_out
                    )

            # local maximum of the integrated signal at n - 1
            p1 = fst[F_PREV1]
            p2 = fst[F_PREV2]
            if n >= 2 and p1 > p2 and p1 >= y and p1 > MIN_ENERGY:
                m = n - 1
                if ist[I_CAND_IDX] < 0 or p1 > fst[F_CAND_VAL]:
                    ist[I_CAND_IDX] = m
                    fst[F_CAND_VAL] = p1
                    ist[I_CAND_LOC] = _localize(bp_ring, m - 2, win + 2, delay)
                    sl = 0.0
                    j0 = max(m - win + 1, 0)
                    sp = j0 % r
                    for _ in range(j0, m + 1):
                        if slope_ring[sp] > sl:
                            sl = slope_ring[sp]
                        sp += 1
                        if sp == r:
                            sp = 0
                    fst[F_CAND_SLOPE] = sl
            fst[F_PREV2] = p1
            fst[F_PREV1] = y

            # end of learning: set levels, then judge the buffered candidates in order
            if n == learn:
                fst[F_SPKI] = fst[F_LEARN_MAX] / 3.0
                fst[F_NPKI] = 0.5 * fst[F_LEARN_SUM] / (learn + 1)
                for k in range(ist[I_LEARN_COUNT]):
                    n_out = _classify(
                        fst,
                        ist,
                        rr_ring,
                        learn_val[k],
                        learn_loc[k],
                        learn_slope[k],
                        refractory,
                        twave,
                        out,
                        n_out,
                    )

            # search-back: no beat for 1.66 mean RR, take the largest noise peak over thr2
            if n > learn and ist[I_LAST_QRS] >= 0 and ist[I_RR_COUNT] > 0:
                c = ist[I_RR_COUNT]
                rr_mean = 0.0
                for k in range(c):
                    rr_mean += rr_ring[k]
                rr_mean /= c
                if n - ist[I_LAST_QRS] > 1.66 * rr_mean and ist[I_NOISE_LOC] >= 0:
                    thr1 = fst[F_NPKI] + 0.25 * (fst[F_SPKI] - fst[F_NPKI])
                    if fst[F_NOISE_VAL] > 0.5 * thr1:
                        n_out = _accept(
                            fst,
                            ist,
                            rr_ring,
                            fst[F_NOISE_VAL],
                            ist[I_NOISE_LOC],
                            fst[F_NOISE_SLOPE],
                            True,
                            out,
                            n_out,
                        )
    return n_out
