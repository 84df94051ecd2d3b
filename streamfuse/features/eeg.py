"""EEG features: absolute and relative band powers, ratios, asymmetry, spectral entropy.

Band edges follow common clinical usage (e.g. Niedermeyer's Electroencephalography); frontal
alpha asymmetry is ln(alpha right) - ln(alpha left) (Davidson 1988; Allen, Coan and Nazarian
2004, Biol. Psychol. 67:183-218); spectral entropy is the normalised Shannon entropy of the
PSD (Inouye et al. 1991, Electroencephalogr. Clin. Neurophysiol. 79:204-210).
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

from .spectrum import band_power, masked_welch
from .stream import Cursor, tail

BANDS: dict[str, tuple[float, float]] = {
    "delta": (0.5, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 45.0),
}
#: floor for powers before taking logarithms (units²)
POWER_FLOOR = 1e-12
_ASYMMETRY_PAIRS = (("f3", "f4"), ("fp1", "fp2"))


def channel_key(name: str) -> str:
    """A key-safe, lower-case channel name: ``"EEG Fp1-A1"`` -> ``"fp1"``."""
    s = name.strip().lower()
    s = re.sub(r"^eeg[\s_:]*", "", s)
    s = re.split(r"[-/]", s)[0] if re.split(r"[-/]", s)[0] else s
    s = re.sub(r"[^0-9a-z]+", "_", s).strip("_")
    return s or "ch"


def unique_keys(names: tuple[str, ...]) -> list[str]:
    """:func:`channel_key` of each name, suffixed with its position when two collide."""
    keys = [channel_key(n) for n in names]
    return [f"{k}{i}" if keys.count(k) > 1 else k for i, k in enumerate(keys)]


def band_features(
    prefix: str,
    keys: list[str],
    freqs: npt.NDArray[np.float64],
    psd: npt.NDArray[np.float64],
) -> dict[str, float]:
    """EEG feature dict from a PSD ``[ch, f]`` (see :class:`EEGFeatures` for the keys)."""
    nyq = float(freqs[-1])
    bands = {b: (lo, min(hi, nyq + 1e-9)) for b, (lo, hi) in BANDS.items() if lo < nyq}
    power = {b: band_power(freqs, psd, lo, hi) for b, (lo, hi) in bands.items()}
    total = np.sum(list(power.values()), axis=0)
    safe_total = np.maximum(total, POWER_FLOOR)
    lo_all = min(lo for lo, _ in bands.values())
    hi_all = max(hi for _, hi in bands.values())
    sel = (freqs >= lo_all) & (freqs < hi_all)
    p = psd[:, sel]
    ps = p.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(ps > 0, p / np.where(ps > 0, ps, 1.0), 0.0)
        h = -np.sum(np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0), axis=1)
    nbins = max(2, int(sel.sum()))
    entropy = h / np.log(nbins)
    out: dict[str, float] = {}
    for c, key in enumerate(keys):
        for b, pw in power.items():
            out[f"{prefix}_{key}_{b}"] = float(np.log10(max(pw[c], POWER_FLOOR)))
            out[f"{prefix}_{key}_{b}_rel"] = float(pw[c] / safe_total[c]) if total[c] > 0 else 0.0
        out[f"{prefix}_{key}_sent"] = float(entropy[c])
    for b, pw in power.items():
        out[f"{prefix}_{b}"] = float(np.log10(max(float(pw.mean()), POWER_FLOOR)))
        rel = np.where(total > 0, pw / safe_total, 0.0)
        out[f"{prefix}_{b}_rel"] = float(rel.mean())
    out[f"{prefix}_sent"] = float(entropy.mean())
    if "theta" in power and "beta" in power:
        out[f"{prefix}_theta_beta"] = float(
            max(float(power["theta"].mean()), POWER_FLOOR)
            / max(float(power["beta"].mean()), POWER_FLOOR)
        )
    if "alpha" in power:
        for left, right in _ASYMMETRY_PAIRS:
            if left in keys and right in keys:
                a = power["alpha"]
                la = max(float(a[keys.index(left)]), POWER_FLOOR)
                ra = max(float(a[keys.index(right)]), POWER_FLOOR)
                out[f"{prefix}_faa"] = float(np.log(ra) - np.log(la))
                break
    return out


class EEGFeatures:
    """Stateful EEG band-power features of one device.

    The extractor keeps the last ``span_s`` seconds of grid samples it has consumed (each grid
    sample once, whatever the window overlap) and computes a Welch PSD (1 s Hann segments,
    half overlap, only segments free of gaps) over them at each window.

    Notes
    -----
    Keys (``<p>`` the prefix, ``<c>`` a channel key from :func:`channel_key`, ``<b>`` a band of
    :data:`BANDS` below Nyquist): ``<p>_<c>_<b>`` log10 absolute power (units²),
    ``<p>_<c>_<b>_rel`` relative power (share of the summed bands), ``<p>_<c>_sent`` normalised
    spectral entropy (0-1); channel means ``<p>_<b>``, ``<p>_<b>_rel``, ``<p>_sent``;
    ``<p>_theta_beta`` (ratio of mean powers); ``<p>_faa`` frontal alpha asymmetry when F3/F4
    (else Fp1/Fp2) exist. No keys at all while no gap-free second of data has been seen.
    """

    def __init__(
        self, prefix: str, channel_names: tuple[str, ...], fs: float, *, span_s: float = 2.0
    ) -> None:
        self.prefix = prefix
        self.fs = float(fs)
        self.keys = unique_keys(channel_names)
        self.span = max(4, int(round(span_s * self.fs)))
        self.nperseg = max(4, min(self.span, int(round(self.fs))))
        self._cursor = Cursor(self.fs)
        self._x = np.zeros((0, len(self.keys)), dtype=np.float64)
        self._m = np.zeros(0, dtype=bool)

    def update(
        self, t_start: float, block: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]
    ) -> dict[str, float]:
        """Consume the new samples of one window and return the features."""
        new = self._cursor.advance(t_start, block.shape[0])
        x = np.asarray(block, dtype=np.float64)
        m = np.asarray(mask, dtype=bool)
        if new.gap:
            gx = np.zeros((min(new.gap, self.span), x.shape[1]))
            self._x = tail(self._x, gx, self.span)
            self._m = tail(self._m, np.zeros(gx.shape[0], dtype=bool), self.span)
        self._x = tail(self._x, x[new.start :], self.span)
        self._m = tail(self._m, m[new.start :], self.span)
        res = masked_welch(self._x, self._m, self.fs, self.nperseg)
        if res is None:
            return {}
        return band_features(self.prefix, self.keys, *res)
