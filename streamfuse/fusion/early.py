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

import math
from itertools import compress

import numpy as np

from ..errors import ConfigError
from ..kernels.early import EPS, early_stats
from ..kernels.welford import welford_dense
from ..learn.vector import FeatureVector
from ..types import FusedWindow

__all__ = ["EPS", "ArrayNormalizer", "EarlyFeatures", "early_keys"]


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
        self._names: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._edges: dict[int, np.ndarray] = {}

    def __call__(
        self, fused: FusedWindow, normalizer: ArrayNormalizer | None = None
    ) -> dict[str, float]:
        """The early level's features of one window (see the module docstring).

        With ``normalizer`` (one per device) the values are that device's running z-scores,
        the normaliser updated with this window first.
        """
        keys, values, n_ok = self._arrays(fused)
        if normalizer is not None:
            values, n_ok = normalizer._update(fused.channels, values)
        vals = values.tolist()
        if n_ok == len(keys):
            return dict(zip(keys, vals, strict=True))
        return {k: v for k, v in zip(keys, vals, strict=True) if math.isfinite(v)}

    def vector(
        self, fused: FusedWindow, normalizer: ArrayNormalizer | None = None
    ) -> FeatureVector:
        """:meth:`__call__` as a :class:`~streamfuse.learn.vector.FeatureVector` (the same
        names and values, no dict built)."""
        keys, values, n_ok = self._arrays(fused)
        if normalizer is not None:
            values, n_ok = normalizer._update(fused.channels, values)
        cache = self.__dict__.setdefault("_names", {})  # absent from older checkpoints
        names = cache.get(fused.channels)
        if names is None:
            names = cache[fused.channels] = tuple(keys)
        if n_ok == len(names):
            return FeatureVector(names, values)
        ok = np.isfinite(values)
        return FeatureVector(tuple(compress(names, ok.tolist())), values[ok])

    def arrays(self, fused: FusedWindow) -> tuple[list[str], np.ndarray]:
        """Feature names and float64 values of one window (NaN where a value is undefined)."""
        keys, values, _ = self._arrays(fused)
        return keys, values

    def _arrays(self, fused: FusedWindow) -> tuple[list[str], np.ndarray, int]:
        keys = self._keys.get(fused.channels)
        if keys is None:
            nested = early_keys(fused.channels, self.segments)
            keys = self._keys[fused.channels] = [name for ks in nested for name in ks]
        x = np.ascontiguousarray(fused.matrix)
        m = np.ascontiguousarray(fused.mask, dtype=bool)
        if m.shape != x.shape:
            raise ValueError(f"fused mask shape {m.shape} differs from the matrix {x.shape}")
        k, n_ch = x.shape
        if k == 0 or n_ch == 0:
            return keys, np.full(len(keys), np.nan), 0
        edges = self._edges.get(k)
        if edges is None:
            segs = min(self.segments, k)
            edges = self._edges[k] = np.linspace(0, k, segs + 1).astype(np.int64)[:-1]
        out = np.empty(n_ch * (self.segments + 3))
        n_ok = early_stats(x, m, edges, self.segments + 3, out)
        return keys, out, n_ok


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
        return self._update(layout, x)[0]

    def _update(self, layout: tuple[str, ...], x: np.ndarray) -> tuple[np.ndarray, int]:
        """:meth:`update_transform` and how many of the z-scores are finite."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if layout != self._layout or self._n.shape != x.shape:
            self._layout = layout
            self._n = np.zeros(x.shape)
            self._mean = np.zeros(x.shape)
            self._m2 = np.zeros(x.shape)
        out = np.empty(x.shape)
        flat: list[np.ndarray] = [x, self._n, self._mean, self._m2, out]
        if x.ndim != 1:  # the early level's vectors are flat already: no views to make
            flat = [a.reshape(-1) for a in flat]
        n_ok = welford_dense(
            flat[0],
            flat[1],
            flat[2],
            flat[3],
            float(max(self.warmup, 2)),
            float(self.clip),
            float(self.eps),
            flat[4],
        )
        return out, n_ok
