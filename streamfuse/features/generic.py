"""Features for modalities this package has no physiology for: mean, std, band powers."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from .eeg import unique_keys
from .spectrum import band_power, masked_welch

#: relative bands as fractions of Nyquist: [0, 1/8), [1/8, 1/4), [1/4, 1/2), [1/2, 1]
REL_BANDS = ((0.0, 0.125), (0.125, 0.25), (0.25, 0.5), (0.5, 1.0001))


class GenericFeatures:
    """Window statistics of an unknown modality (stateless: it depends on the window only).

    Keys: ``<p>_<c>_mean``, ``<p>_<c>_std`` over valid samples and ``<p>_<c>_bp<i>``, the
    share of power (mean removed) in the ``i``-th band of :data:`REL_BANDS`; the band shares
    are omitted when the window has no gap-free stretch, everything when it has no valid sample.
    """

    def __init__(self, prefix: str, channel_names: tuple[str, ...], fs: float) -> None:
        self.prefix = prefix
        self.fs = float(fs)
        self.keys = unique_keys(channel_names)

    def update(
        self, t_start: float, block: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]
    ) -> dict[str, float]:
        """Features of one window (finite values only)."""
        del t_start
        x = np.asarray(block, dtype=np.float64)
        m = np.asarray(mask, dtype=bool)
        if not m.any():
            return {}
        p = self.prefix
        xv = x[m]
        out: dict[str, float] = {}
        mean = xv.mean(axis=0)
        std = xv.std(axis=0)
        for c, key in enumerate(self.keys[: x.shape[1]]):
            out[f"{p}_{key}_mean"] = float(mean[c])
            out[f"{p}_{key}_std"] = float(std[c])
        res = masked_welch(x, m, self.fs, x.shape[0])
        if res is not None:
            freqs, psd = res
            nyq = 0.5 * self.fs
            bands = [band_power(freqs, psd, lo * nyq, hi * nyq) for lo, hi in REL_BANDS]
            total = np.sum(bands, axis=0)
            for c, key in enumerate(self.keys[: x.shape[1]]):
                for i, bp in enumerate(bands):
                    out[f"{p}_{key}_bp{i}"] = float(bp[c] / total[c]) if total[c] > 0 else 0.0
        return {k: v for k, v in out.items() if math.isfinite(v)}
