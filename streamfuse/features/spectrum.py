"""Power spectra of masked multichannel blocks (Welch over fully valid segments).

Welch, P. (1967), "The use of fast Fourier transform for the estimation of power spectra",
IEEE Trans. Audio Electroacoust. 15(2):70-73.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..kernels.spectral import welch_psd, welch_segments

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class WelchPlan:
    """What one segment length at one rate needs: window, density scale and frequencies."""

    nperseg: int
    fs: float
    win: F64  # Hann without zero end points
    scale: float  # 1 / (fs * sum(win**2))
    freqs: F64  # shared: do not modify


_PLANS: dict[tuple[int, float], WelchPlan] = {}

_SCRATCH = threading.local()


def scratch(tag: str, shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
    """A work array shared by every extractor of this thread: written and read within one
    call of an extractor's ``update``, never kept across calls (tags keep two arrays of one
    call apart).

    Segments, spectra and PSDs are work, not state: per device they made each device's
    window write ~70 KB of memory no other device's window had touched (EEG segments alone
    are 48 KB), and they went into every checkpoint. Shared, the same few arrays stay in
    cache. Per thread, so engines in two threads never share one.
    """
    arrays = getattr(_SCRATCH, "arrays", None)
    if arrays is None:
        arrays = _SCRATCH.arrays = {}
    key = (tag, shape, dtype)
    a = arrays.get(key)
    if a is None:
        if len(arrays) > 256:
            arrays.clear()
        a = arrays[key] = np.empty(shape, dtype)
    return a


def welch_plan(nperseg: int, fs: float) -> WelchPlan:
    """The (cached, shared) :class:`WelchPlan` of ``nperseg`` samples at ``fs`` Hz.

    Its arrays stay writeable (a read-only array is another type to Numba, and pickling does
    not keep the flag), so callers must not modify them.
    """
    key = (int(nperseg), float(fs))
    plan = _PLANS.get(key)
    if plan is None:
        win = np.hanning(nperseg + 2)[1:-1]  # periodic-free Hann without zero end points
        scale = 1.0 / (fs * float(np.sum(win * win)))
        freqs = np.fft.rfftfreq(nperseg, d=1.0 / fs).astype(np.float64)
        plan = WelchPlan(int(nperseg), float(fs), win, scale, freqs)
        if len(_PLANS) > 256:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def welch_into(
    x: F64, valid: npt.NDArray[np.bool_], n: int, plan: WelchPlan, segs: F64, psd: F64
) -> bool:
    """Welch PSD of ``x[:n]`` (``[*, ch]`` float64, C-ordered) into ``psd`` (``[ch, nf]``).

    ``segs`` is scratch of at least ``segments * ch`` rows of ``plan.nperseg``. Returns False
    (``psd`` untouched) when no fully valid segment exists. See :func:`masked_welch`.
    """
    ch = x.shape[1]
    q = welch_segments(x, valid, n, plan.nperseg, plan.win, segs)
    if q == 0:
        return False
    mag = np.abs(np.fft.rfft(segs[: q * ch], axis=-1))
    welch_psd(mag, q, ch, plan.scale, plan.nperseg, psd)
    return True


def segment_count(n: int, nperseg: int) -> int:
    """How many segments of ``nperseg`` (half overlap) start in ``n`` samples."""
    step = max(1, nperseg // 2)
    return max(0, (n - nperseg) // step + 1)


def masked_welch(
    x: npt.ArrayLike, mask: npt.ArrayLike, fs: float, nperseg: int
) -> tuple[F64, F64] | None:
    """One-sided power spectral density (units²/Hz) from the fully valid segments of ``x``.

    Parameters
    ----------
    x : array_like
        ``[n, ch]`` samples.
    mask : array_like
        ``bool[n]``, True where a sample is backed by data; segments touching a False sample
        are skipped so gaps (zero-filled) add no false power.
    fs : float
        Sampling rate (Hz).
    nperseg : int
        Segment length; segments overlap by half, each is mean-removed and Hann-windowed.

    Returns
    -------
    (freqs, psd) or None
        ``psd`` is ``[ch, nperseg // 2 + 1]``; None when no valid segment exists.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    a = np.ascontiguousarray(a)
    m = np.ascontiguousarray(mask, dtype=bool)
    n = a.shape[0]
    if m.shape != (n,):
        raise ValueError(f"mask shape {m.shape} does not match {n} samples; one bool per row")
    nperseg = int(min(nperseg, n))
    if nperseg < 4:
        return None
    plan = welch_plan(nperseg, fs)
    segs = np.empty((segment_count(n, nperseg) * a.shape[1], nperseg))
    psd = np.empty((a.shape[1], plan.freqs.size))
    if not welch_into(a, m, n, plan, segs, psd):
        return None
    return plan.freqs.copy(), psd


def band_power(freqs: F64, psd: F64, lo: float, hi: float) -> F64:
    """Power in ``[lo, hi)`` Hz per channel (PSD summed times the bin width)."""
    if freqs.size < 2:
        return np.zeros(psd.shape[0])
    df = float(freqs[1] - freqs[0])
    sel = (freqs >= lo) & (freqs < hi)
    return psd[:, sel].sum(axis=1) * df
