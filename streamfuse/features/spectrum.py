"""Power spectra of masked multichannel blocks (Welch over fully valid segments).

Welch, P. (1967), "The use of fast Fourier transform for the estimation of power spectra",
IEEE Trans. Audio Electroacoust. 15(2):70-73.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


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
    m = np.asarray(mask, dtype=bool)
    n = a.shape[0]
    nperseg = int(min(nperseg, n))
    if nperseg < 4:
        return None
    step = max(1, nperseg // 2)
    starts = [s for s in range(0, n - nperseg + 1, step) if m[s : s + nperseg].all()]
    if not starts:
        return None
    win = np.hanning(nperseg + 2)[1:-1]  # periodic-free Hann without zero end points
    scale = 1.0 / (fs * float(np.sum(win * win)))
    segs = np.stack([a[s : s + nperseg] for s in starts])  # [seg, nperseg, ch]
    segs = segs - segs.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(segs * win[None, :, None], axis=1)
    psd = (np.abs(spec) ** 2).mean(axis=0).T * scale  # [ch, f]
    if nperseg % 2 == 0:
        psd[:, 1:-1] *= 2.0
    else:
        psd[:, 1:] *= 2.0
    freqs = np.fft.rfftfreq(nperseg, d=1.0 / fs).astype(np.float64)
    return freqs, np.asarray(psd, dtype=np.float64)


def band_power(freqs: F64, psd: F64, lo: float, hi: float) -> F64:
    """Power in ``[lo, hi)`` Hz per channel (PSD summed times the bin width)."""
    if freqs.size < 2:
        return np.zeros(psd.shape[0])
    df = float(freqs[1] - freqs[0])
    sel = (freqs >= lo) & (freqs < hi)
    return psd[:, sel].sum(axis=1) * df
