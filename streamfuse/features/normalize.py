"""Per-device online normalisation of feature dicts (running z-scores with a warm-up)."""

from __future__ import annotations

import math

from river import base


class OnlineNormalizer(base.Transformer):
    """Running mean/variance per feature (Welford), z-scores clipped to ``±clip``.

    Physiology differs between people, so one normaliser per device turns "72 bpm" into
    "about this person's usual". A feature seen fewer than ``warmup`` times maps to 0.0 (the
    neutral value of a z-score); so does one whose spread is below ``eps``.

    Parameters
    ----------
    warmup : int
        Observations of a feature before its z-score is used.
    clip : float
        Bound on the absolute z-score.
    eps : float
        Smallest standard deviation treated as spread.

    Examples
    --------
    >>> norm = OnlineNormalizer(warmup=2)
    >>> for v in (1.0, 2.0, 3.0):
    ...     norm.learn_one({"hr": v})
    >>> norm.transform_one({"hr": 4.0})
    {'hr': 2.0}
    """

    def __init__(self, warmup: int = 10, clip: float = 5.0, eps: float = 1e-9) -> None:
        self.warmup = warmup
        self.clip = clip
        self.eps = eps
        # per feature [n, mean, m2]: one lookup per value on the per-window hot path
        self._stats: dict[str, list[float]] = {}

    @classmethod
    def _unit_test_params(cls):
        yield {"warmup": 2}

    def learn_one(self, x: dict) -> None:
        """Update the running statistics with the finite values of ``x``."""
        stats = self._stats
        isfinite = math.isfinite
        for k, v in x.items():
            v = float(v)
            if not isfinite(v):
                continue
            st = stats.get(k)
            if st is None:
                st = stats[k] = [0, 0.0, 0.0]
            n = st[0] + 1
            mean = st[1]
            d = v - mean
            mean += d / n
            st[0] = n
            st[1] = mean
            st[2] += d * (v - mean)

    def transform_one(self, x: dict) -> dict:
        """z-scores of ``x`` (0.0 for features still warming up or without spread)."""
        out = {}
        stats = self._stats
        isfinite, sqrt = math.isfinite, math.sqrt
        need = max(self.warmup, 2)
        clip, eps = self.clip, self.eps
        for k, v in x.items():
            st = stats.get(k)
            v = float(v)
            if st is None or st[0] < need or not isfinite(v):
                out[k] = 0.0
                continue
            sd = sqrt(st[2] / (st[0] - 1))
            if sd < eps:
                out[k] = 0.0
                continue
            z = (v - st[1]) / sd
            out[k] = max(-clip, min(clip, z))
        return out

    def count(self, key: str) -> int:
        """How many values of ``key`` were learned."""
        st = self._stats.get(key)
        return 0 if st is None else int(st[0])
