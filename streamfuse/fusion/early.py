"""Early (data-level) fusion input: a compact description of the raw early-fusion matrix.

The early-fusion matrix of a window (:class:`~streamfuse.types.FusedWindow`) holds every
aligned channel of every modality on one grid, e.g. ``float32[2000, 20]`` for 8 s of eegmat at
250 Hz. Tens of thousands of raw samples are far too many inputs for an online linear or
rule-based model that sees one window at a time, so the early level summarises *each raw
channel* with a handful of signal statistics that need no physiology (no R-peaks, no EEG bands:
those belong to the feature level):

- ``<channel>.lv<s>``: log10 variance in each of ``segments`` equal sub-windows (the window's
  energy envelope, kept in time order, so a change inside the window is visible);
- ``<channel>.ll``: log10 line length (mean absolute sample-to-sample difference);
- ``<channel>.zc``: zero-crossing rate of the mean-removed channel, per sample pair;
- ``<channel>.mob``: log10 Hjorth mobility, ``sqrt(var(dx) / var(x))`` (a mean-frequency
  proxy).

Only samples the mask marks valid count; differences use consecutive valid pairs only. A
statistic without enough valid samples (fewer than two, or no valid pair) is omitted, so a
missing modality contributes no keys at all and river models treat it as absent.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..types import FusedWindow

#: floor added before taking logs (variance units of the raw signal)
EPS = 1e-12


def early_keys(channels: tuple[str, ...], segments: int) -> list[list[str]]:
    """Feature names per channel, in the order :func:`early_features` fills them."""
    return [
        [f"{c}.lv{s}" for s in range(segments)] + [f"{c}.ll", f"{c}.zc", f"{c}.mob"]
        for c in channels
    ]


class EarlyFeatures:
    """Turns a :class:`FusedWindow` into the early level's input dict (stateless, vectorised).

    Parameters
    ----------
    segments
        Sub-windows for the log-variance envelope (``>= 1``).

    Examples
    --------
    >>> import numpy as np
    >>> from streamfuse.types import FusedWindow, Window
    >>> t = (np.arange(8) + 0.5) / 8.0  # one period: one zero crossing in 7 pairs
    >>> m = np.stack([np.sin(2 * np.pi * t), np.ones(8)], axis=1).astype(np.float32)
    >>> mask = np.ones((8, 2), dtype=bool)
    >>> mask[:, 1] = False  # the second modality is missing
    >>> w = Window("d", 0.0, 1.0, 8.0, {}, {})
    >>> x = EarlyFeatures(segments=2)(FusedWindow(w, m, ("a:x", "b:y"), mask))
    >>> sorted(x), round(x["a:x.zc"], 3)
    (['a:x.ll', 'a:x.lv0', 'a:x.lv1', 'a:x.mob', 'a:x.zc'], 0.143)

    """

    def __init__(self, segments: int = 4) -> None:
        if not isinstance(segments, int) or segments < 1:
            raise ConfigError(f"EarlyFeatures: segments={segments!r}; pass an int >= 1, e.g. 4")
        self.segments = segments
        self._keys: dict[tuple[str, ...], list[str]] = {}

    def __call__(
        self, fused: FusedWindow, normalizer: ArrayNormalizer | None = None
    ) -> dict[str, float]:
        """The early level's features of one window (see the module docstring).

        With ``normalizer`` (one per device) the values are that device's running z-scores,
        the normaliser updated with this window first.
        """
        keys, values = self.arrays(fused)
        if normalizer is not None:
            values = normalizer.update_transform(fused.channels, values)
        ok = np.isfinite(values)
        return {keys[i]: float(values[i]) for i in np.flatnonzero(ok)}

    def arrays(self, fused: FusedWindow) -> tuple[list[str], np.ndarray]:
        """Feature names and float64 values of one window (NaN where a value is undefined)."""
        x = np.asarray(fused.matrix, dtype=np.float64)
        m = np.asarray(fused.mask, dtype=bool)
        k, n_ch = x.shape
        if k == 0 or n_ch == 0 or not m.any():
            names = [name for ks in early_keys(fused.channels, self.segments) for name in ks]
            return names, np.full(len(names), np.nan)
        keys = self._keys.get(fused.channels)
        if keys is None:
            nested = early_keys(fused.channels, self.segments)
            keys = self._keys[fused.channels] = [name for ks in nested for name in ks]
        per = self.segments + 3
        mf = m.astype(np.float64)
        n = mf.sum(axis=0)
        mean = np.divide((x * mf).sum(axis=0), n, out=np.zeros(n_ch), where=n > 0)
        xc = (x - mean) * mf  # centred, zero where invalid
        segs = min(self.segments, k)
        edges = np.linspace(0, k, segs + 1).astype(np.int64)[:-1]
        n_s = np.add.reduceat(mf, edges, axis=0)
        s1 = np.add.reduceat(xc, edges, axis=0)
        s2 = np.add.reduceat(xc * xc, edges, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            var_s = s2 / n_s - (s1 / n_s) ** 2
            lv = np.log10(np.maximum(var_s, 0.0) + EPS)
            pair = m[1:] & m[:-1]
            n_p = pair.sum(axis=0)
            d = np.diff(x, axis=0) * pair
            ll = np.log10(np.abs(d).sum(axis=0) / n_p + EPS)
            zc = ((xc[1:] * xc[:-1] < 0) & pair).sum(axis=0) / n_p
            var_x = (xc * xc).sum(axis=0) / n
            var_d = (d * d).sum(axis=0) / n_p
            mob = np.log10(np.sqrt(var_d / (var_x + EPS)) + EPS)
        out = np.full((n_ch, per), np.nan)
        out[:, :segs] = np.where(n_s >= 2, lv, np.nan).T
        ok = (n_p >= 1) & (n >= 2)
        out[:, -3] = np.where(ok, ll, np.nan)
        out[:, -2] = np.where(ok, zc, np.nan)
        out[:, -1] = np.where(ok, mob, np.nan)
        return keys, out.ravel()


class ArrayNormalizer:
    """Running z-scores of a fixed-layout float vector (Welford per element), vectorised.

    The array twin of :class:`~streamfuse.features.OnlineNormalizer`, same rules: NaN entries
    are skipped (not learnt, stay NaN); an entry seen fewer than ``warmup`` times, or without
    spread, maps to 0.0; z-scores are clipped to ``±clip``. The layout is tied to the channel
    names; a new layout restarts the statistics.

    Examples
    --------
    >>> import numpy as np
    >>> norm = ArrayNormalizer(warmup=2)
    >>> for v in (1.0, 2.0, 3.0):
    ...     z = norm.update_transform(("a",), np.array([v, np.nan]))
    >>> z.tolist()[0], bool(np.isnan(z[1]))
    (1.0, True)

    """

    def __init__(self, warmup: int = 10, clip: float = 5.0, eps: float = 1e-9) -> None:
        self.warmup = warmup
        self.clip = clip
        self.eps = eps
        self._layout: tuple[str, ...] | None = None
        self._n = np.zeros(0)
        self._mean = np.zeros(0)
        self._m2 = np.zeros(0)

    def update_transform(self, layout: tuple[str, ...], x: np.ndarray) -> np.ndarray:
        """Learn ``x`` (its finite entries), then return its z-scores."""
        if layout != self._layout or self._n.shape != x.shape:
            self._layout = layout
            self._n = np.zeros(x.shape)
            self._mean = np.zeros(x.shape)
            self._m2 = np.zeros(x.shape)
        ok = np.isfinite(x)
        xv = np.where(ok, x, 0.0)
        n = self._n + ok
        d = np.where(ok, xv - self._mean, 0.0)
        mean = self._mean + np.divide(d, n, out=np.zeros_like(d), where=n > 0)
        self._m2 = self._m2 + d * (xv - mean) * ok
        self._n, self._mean = n, mean
        with np.errstate(divide="ignore", invalid="ignore"):
            sd = np.sqrt(self._m2 / (n - 1))
            z = np.clip((xv - mean) / sd, -self.clip, self.clip)
        z = np.where((n >= max(self.warmup, 2)) & (sd >= self.eps), z, 0.0)
        return np.where(ok, z, np.nan)
