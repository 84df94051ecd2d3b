"""Accelerometer features: magnitude, ENMO, activity counts, variance, dominant frequency, cadence.

ENMO (Euclidean norm minus one, negatives set to zero) follows van Hees et al. (2013), PLoS ONE
8(2):e61691. Activity counts band-pass the magnitude around 0.29-1.63 Hz and rectify it, after
the ActiGraph filter described by Brønd, Andersen and Arvidsson (2017), Med. Sci. Sports Exerc.
49(11):2351-2360 (a simplified Butterworth version, not count-for-count compatible).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit
from scipy import signal

from .spectrum import masked_welch
from .stream import Cursor, tail

STANDARD_GRAVITY = 9.80665
#: minimum band-passed magnitude (g) of a step peak
STEP_MIN_G = 0.05
#: shortest time between steps (s)
STEP_MIN_S = 0.25


@njit(cache=True)
def step_kernel(
    bp: np.ndarray,
    valid: np.ndarray,
    state: np.ndarray,
    min_amp: float,
    min_gap: int,
    out: np.ndarray,
) -> int:
    """Steps as local maxima of the band-passed magnitude above an adaptive threshold.

    ``state`` = [samples seen, previous value, value before it, last step index, peak level].
    A peak at sample ``n - 1`` counts when it exceeds ``max(min_amp, 0.5 * level)`` (``level``
    an exponential average of accepted peaks) and comes ``min_gap`` samples after the last
    step. Writes step indices (since the start) to ``out``; returns how many.
    """
    n_out = 0
    for i in range(bp.shape[0]):
        n = int(state[0])
        y = bp[i]
        p1 = state[1]
        p2 = state[2]
        if n >= 2 and valid[i] and p1 > p2 and p1 >= y:
            thr = max(min_amp, 0.5 * state[4])
            if p1 > thr and (state[3] < 0 or (n - 1) - state[3] >= min_gap):
                out[n_out] = n - 1
                n_out += 1
                state[3] = n - 1
                state[4] = 0.8 * state[4] + 0.2 * p1 if state[4] > 0 else p1
        state[2] = p1
        state[1] = y if valid[i] else 0.0
        state[0] = n + 1
    return n_out


def _band_sos(lo: float, hi: float, fs: float) -> np.ndarray:
    hi = min(hi, 0.45 * fs)
    lo = min(lo, 0.5 * hi)
    return signal.butter(2, [lo, hi], btype="bandpass", fs=fs, output="sos")


class AccFeatures:
    """Stateful accelerometer features of one device.

    Parameters
    ----------
    prefix : str
        Key prefix (the modality name).
    fs : float
        Grid rate (Hz).
    unit : str
        ``"g"`` (default) or ``"m/s2"``; converted to g.
    span_s : float
        Samples kept for the dominant frequency.
    cadence_s : float
        Trailing span (s) over which steps are counted for the cadence.

    Notes
    -----
    Keys: ``<p>_mag`` mean magnitude (g), ``<p>_mag_std``, ``<p>_enmo`` (g), ``<p>_var`` summed
    per-axis variance (g²), ``<p>_activity`` its square root (g), ``<p>_counts`` mean rectified
    0.29-1.63 Hz band-passed magnitude (g), ``<p>_dom_freq`` dominant frequency of the magnitude
    in 0.3-5 Hz (Hz; 0.0 when the signal is flat), ``<p>_cadence`` steps per minute. Window
    statistics use valid samples only; all keys are omitted when the window has none.
    """

    def __init__(
        self,
        prefix: str,
        fs: float,
        *,
        unit: str = "g",
        span_s: float = 4.0,
        cadence_s: float = 6.0,
    ) -> None:
        self.prefix = prefix
        self.fs = float(fs)
        u = unit.strip().lower().replace(" ", "")
        self.scale = 1.0 / STANDARD_GRAVITY if u in ("m/s2", "m/s^2", "ms-2", "m/s²") else 1.0
        self.span = max(8, int(round(span_s * self.fs)))
        self.cadence_s = float(cadence_s)
        self._cursor = Cursor(self.fs)
        self._count_sos = _band_sos(0.29, 1.63, self.fs)
        self._step_sos = _band_sos(0.5, 3.0, self.fs)
        self._count_zi: np.ndarray | None = None
        self._step_zi: np.ndarray | None = None
        self._step_state = np.array([0.0, 0.0, 0.0, -1.0, 0.0])
        self._origin = float("nan")
        self._steps: list[float] = []
        self._mag = np.zeros(0)
        self._counts = np.zeros(0)
        self._m = np.zeros(0, dtype=bool)
        self._last_mag = 0.0

    def _consume(self, mag: npt.NDArray[np.float64], m: npt.NDArray[np.bool_]) -> None:
        held = mag.copy()
        last = self._last_mag
        for i in range(held.size):  # hold the last valid magnitude over gaps
            if m[i]:
                last = held[i]
            else:
                held[i] = last
        self._last_mag = last
        if self._count_zi is None:
            self._count_zi = signal.sosfilt_zi(self._count_sos) * held[0]
            self._step_zi = signal.sosfilt_zi(self._step_sos) * held[0]
        counts, self._count_zi = signal.sosfilt(self._count_sos, held, zi=self._count_zi)
        steps_bp, self._step_zi = signal.sosfilt(self._step_sos, held, zi=self._step_zi)
        out = np.empty(held.size + 1, dtype=np.int64)
        k = step_kernel(
            steps_bp, m, self._step_state, STEP_MIN_G, int(round(STEP_MIN_S * self.fs)), out
        )
        self._steps.extend(self._origin + out[:k] / self.fs)
        self._mag = tail(self._mag, mag, self.span)
        self._counts = tail(self._counts, np.abs(counts), self.span)
        self._m = tail(self._m, m, self.span)

    def update(
        self, t_start: float, block: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]
    ) -> dict[str, float]:
        """Consume the new samples of one window and return its features."""
        k = block.shape[0]
        x = np.asarray(block, dtype=np.float64) * self.scale
        m = np.asarray(mask, dtype=bool)
        mag = np.sqrt(np.sum(x * x, axis=1))
        if np.isnan(self._origin):
            self._origin = t_start
        new = self._cursor.advance(t_start, k)
        if new.gap:
            self._consume(np.zeros(new.gap), np.zeros(new.gap, dtype=bool))
        if new.start < k:
            self._consume(mag[new.start :], m[new.start :])
        t_end = t_start + k / self.fs
        self._steps = [s for s in self._steps if s >= t_end - self.cadence_s]
        if not m.any():
            return {}
        p = self.prefix
        xv = x[m]
        mv = mag[m]
        var = float(np.sum(xv.var(axis=0)))
        nk = min(k, self._counts.size)
        cm = self._m[-nk:]
        counts = float(self._counts[-nk:][cm].mean()) if cm.any() else 0.0
        out = {
            f"{p}_mag": float(mv.mean()),
            f"{p}_mag_std": float(mv.std()),
            f"{p}_enmo": float(np.maximum(mv - 1.0, 0.0).mean()),
            f"{p}_var": var,
            f"{p}_activity": float(np.sqrt(var)),
            f"{p}_counts": counts,
        }
        res = masked_welch(self._mag, self._m, self.fs, self._mag.size)
        dom = 0.0
        if res is not None:
            freqs, psd = res
            sel = (freqs >= 0.3) & (freqs <= min(5.0, 0.5 * self.fs))
            if sel.any() and psd[0, sel].max() > 1e-10:
                dom = float(freqs[sel][np.argmax(psd[0, sel])])
        out[f"{p}_dom_freq"] = dom
        covered = min(self.cadence_s, t_end - self._origin)
        steps = sum(1 for s in self._steps if s < t_end)
        out[f"{p}_cadence"] = float(steps * 60.0 / covered) if covered > 0 else 0.0
        return out
