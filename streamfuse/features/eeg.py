"""EEG features: absolute and relative band powers, ratios, asymmetry, spectral entropy.

Band edges follow common clinical usage (e.g. Niedermeyer's Electroencephalography); frontal
alpha asymmetry is ln(alpha right) - ln(alpha left) (Davidson 1988; Allen, Coan and Nazarian
2004, Biol. Psychol. 67:183-218); spectral entropy is the normalised Shannon entropy of the
PSD (Inouye et al. 1991, Electroencephalogr. Clin. Neurophysiol. 79:204-210).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..kernels.spectral import band_summary, push_segments, welch_bands, welch_segments
from .spectrum import WelchPlan, scratch, segment_count, welch_plan
from .stream import Cursor, finite_dict

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


@dataclass(frozen=True, slots=True)
class _BandPlan:
    """Bins and key names of :func:`band_features` for one frequency grid and channel set."""

    keys: list[str]
    band_lo: npt.NDArray[np.int64]
    band_hi: npt.NDArray[np.int64]
    df: float
    ent_lo: int
    ent_hi: int
    log_nbins: float
    theta: int
    beta: int
    alpha: int
    faa_left: int
    faa_right: int


def _band_plan(prefix: str, keys: list[str], freqs: npt.NDArray[np.float64]) -> _BandPlan:
    """The bins :func:`band_features` sums and the keys it writes, in its order."""
    nyq = float(freqs[-1])
    bands = {b: (lo, min(hi, nyq + 1e-9)) for b, (lo, hi) in BANDS.items() if lo < nyq}
    names = list(bands)

    def bins(lo: float, hi: float) -> tuple[int, int]:
        idx = np.flatnonzero((freqs >= lo) & (freqs < hi))
        return (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0)

    edges = [bins(lo, hi) for lo, hi in bands.values()]
    lo_all = min(lo for lo, _ in bands.values())
    hi_all = max(hi for _, hi in bands.values())
    ent_lo, ent_hi = bins(lo_all, hi_all)
    out = []
    for key in keys:
        for b in names:
            out += [f"{prefix}_{key}_{b}", f"{prefix}_{key}_{b}_rel"]
        out.append(f"{prefix}_{key}_sent")
    for b in names:
        out += [f"{prefix}_{b}", f"{prefix}_{b}_rel"]
    out.append(f"{prefix}_sent")
    theta = names.index("theta") if "theta" in names else -1
    beta = names.index("beta") if "beta" in names else -1
    if theta >= 0 and beta >= 0:
        out.append(f"{prefix}_theta_beta")
    alpha = names.index("alpha") if "alpha" in names else -1
    left = right = -1
    if alpha >= 0:
        for lk, rk in _ASYMMETRY_PAIRS:
            if lk in keys and rk in keys:
                left, right = keys.index(lk), keys.index(rk)
                out.append(f"{prefix}_faa")
                break
    return _BandPlan(
        keys=out,
        band_lo=np.array([e[0] for e in edges], dtype=np.int64),
        band_hi=np.array([e[1] for e in edges], dtype=np.int64),
        df=float(freqs[1] - freqs[0]),
        ent_lo=ent_lo,
        ent_hi=ent_hi,
        log_nbins=float(np.log(max(2, ent_hi - ent_lo))),
        theta=theta,
        beta=beta,
        alpha=alpha,
        faa_left=left,
        faa_right=right,
    )


def _summarise(
    plan: _BandPlan,
    psd: npt.NDArray[np.float64],
    power: npt.NDArray[np.float64],
    out: npt.NDArray[np.float64],
) -> dict[str, float]:
    n_ok = band_summary(
        psd,
        plan.band_lo,
        plan.band_hi,
        plan.df,
        plan.ent_lo,
        plan.ent_hi,
        plan.log_nbins,
        plan.theta,
        plan.beta,
        plan.alpha,
        plan.faa_left,
        plan.faa_right,
        POWER_FLOOR,
        power,
        out,
    )
    return finite_dict(plan.keys, out, n_ok)


def band_features(
    prefix: str,
    keys: list[str],
    freqs: npt.NDArray[np.float64],
    psd: npt.NDArray[np.float64],
) -> dict[str, float]:
    """EEG feature dict from a PSD ``[ch, f]`` (see :class:`EEGFeatures` for the keys);
    non-finite values are left out."""
    plan = _band_plan(prefix, keys, np.asarray(freqs, dtype=np.float64))
    p = np.ascontiguousarray(psd, dtype=np.float64)
    power = np.empty((plan.band_lo.size, p.shape[0]))
    return _summarise(plan, p, power, np.empty(len(plan.keys)))


@dataclass(frozen=True, slots=True)
class _Buffers:
    """What one segment length needs: plans, band powers, outputs, and the shapes of the
    segments and the PSD (work arrays shared by all devices: :func:`~.spectrum.scratch`)."""

    welch: WelchPlan
    bands: _BandPlan
    power: npt.NDArray[np.float64]
    out: npt.NDArray[np.float64]
    segs: tuple[int, int]
    psd: tuple[int, int]


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
    The history, the segments and the spectra live in preallocated buffers; the kernels of
    :mod:`streamfuse.kernels.spectral` compute them (the FFT is NumPy's).
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
        ch = len(self.keys)
        self._x = np.zeros((self.span, ch), dtype=np.float64)  # history, filled to _fill[0]
        self._m = np.zeros(self.span, dtype=bool)
        self._fill = np.zeros(1, dtype=np.int64)
        # per segment length (shorter than nperseg only while the history fills)
        self._buffers: dict[int, _Buffers] = {}
        self._steady = self._buffers_for(self.nperseg)

    def _buffers_for(self, nperseg: int) -> _Buffers:
        got = self._buffers.get(nperseg)
        if got is None:
            welch = welch_plan(nperseg, self.fs)
            bands = _band_plan(self.prefix, self.keys, welch.freqs)
            ch = len(self.keys)
            got = self._buffers[nperseg] = _Buffers(
                welch,
                bands,
                power=np.empty((bands.band_lo.size, ch)),
                out=np.empty(len(bands.keys)),
                segs=(segment_count(self.span, nperseg) * ch, nperseg),
                psd=(ch, welch.freqs.size),
            )
        return got

    def update(
        self, t_start: float, block: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]
    ) -> dict[str, float]:
        """Consume the new samples of one window and return the features (finite values)."""
        if block.shape[1] != self._x.shape[1]:
            raise ValueError(
                f"{self.prefix}: a block of {block.shape[1]} channels, but this extractor was "
                f"made for {self._x.shape[1]} ({', '.join(self.keys)})"
            )
        new = self._cursor.advance(t_start, block.shape[0])
        b = self._steady
        segs = scratch("welch_segments", b.segs)
        # the history and the segments in one kernel call; only while the history is shorter
        # than a segment does the segment length (and its plan) differ
        q = push_segments(
            block,
            np.asarray(mask, dtype=bool),
            new.start,
            new.gap,
            self._x,
            self._m,
            self._fill,
            b.welch.nperseg,
            b.welch.win,
            segs,
        )
        if q < 0:
            n = int(self._fill[0])
            nperseg = min(self.nperseg, n)
            if nperseg < 4:
                return {}
            b = self._buffers_for(nperseg)
            segs = scratch("welch_segments", b.segs)
            q = welch_segments(self._x, self._m, n, nperseg, b.welch.win, segs)
        if q == 0:
            return {}
        bp, w = b.bands, b.welch
        rows = q * len(self.keys)
        nf = w.freqs.size
        spectrum = np.fft.rfft(
            segs[:rows], axis=-1, out=scratch("spectrum", (rows, nf), np.complex128)
        )
        mag = np.abs(spectrum, out=scratch("magnitude", (rows, nf)))
        n_ok = welch_bands(
            mag,
            q,
            w.scale,
            w.nperseg,
            scratch("psd", b.psd),
            bp.band_lo,
            bp.band_hi,
            bp.df,
            bp.ent_lo,
            bp.ent_hi,
            bp.log_nbins,
            bp.theta,
            bp.beta,
            bp.alpha,
            bp.faa_left,
            bp.faa_right,
            POWER_FLOOR,
            b.power,
            b.out,
        )
        return finite_dict(bp.keys, b.out, n_ok)
