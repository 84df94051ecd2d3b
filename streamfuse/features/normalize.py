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
        self._n: dict[str, int] = {}
        self._mean: dict[str, float] = {}
        self._m2: dict[str, float] = {}

    @classmethod
    def _unit_test_params(cls):
        yield {"warmup": 2}

    def learn_one(self, x: dict) -> None:
        """Update the running statistics with the finite values of ``x``."""
        for k, v in x.items():
            v = float(v)
            if not math.isfinite(v):
                continue
            n = self._n.get(k, 0) + 1
            mean = self._mean.get(k, 0.0)
            d = v - mean
            mean += d / n
            self._n[k] = n
            self._mean[k] = mean
            self._m2[k] = self._m2.get(k, 0.0) + d * (v - mean)

    def transform_one(self, x: dict) -> dict:
        """z-scores of ``x`` (0.0 for features still warming up or without spread)."""
        out = {}
        for k, v in x.items():
            n = self._n.get(k, 0)
            v = float(v)
            if n < max(self.warmup, 2) or not math.isfinite(v):
                out[k] = 0.0
                continue
            sd = math.sqrt(self._m2[k] / (n - 1))
            if sd < self.eps:
                out[k] = 0.0
                continue
            z = (v - self._mean[k]) / sd
            out[k] = max(-self.clip, min(self.clip, z))
        return out

    def count(self, key: str) -> int:
        """How many values of ``key`` were learned."""
        return self._n.get(key, 0)
