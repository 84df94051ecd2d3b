"""Per-device online normalisation of feature dicts (running z-scores with a warm-up)."""

from __future__ import annotations

import math
from collections.abc import Hashable

import numpy as np
import numpy.typing as npt
from river import base

from ..kernels.welford import welford_indexed, welford_indexed_learn_transform

#: distinct key sequences remembered before the cache of their slots starts afresh
_MAX_LAYOUTS = 256


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

    Notes
    -----
    Each feature name gets a slot in flat count/mean/M2 arrays; the slots of a dict's key
    sequence are cached, so a window with the usual keys costs a tuple lookup and one kernel
    call (:func:`streamfuse.kernels.welford.welford_indexed`) instead of a Python loop.

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
        self._slot: dict[Hashable, int] = {}
        self._layouts: dict[tuple[Hashable, ...], npt.NDArray[np.int64]] = {}
        self._count = np.zeros(0, dtype=np.int64)
        self._mean = np.zeros(0)
        self._m2 = np.zeros(0)

    @classmethod
    def _unit_test_params(cls):
        yield {"warmup": 2}

    def _slots(self, keys: tuple[Hashable, ...]) -> npt.NDArray[np.int64]:
        """Slots of ``keys`` (new features get fresh ones)."""
        slots = self._layouts.get(keys)
        if slots is None:
            slot = self._slot
            slots = np.array([slot.setdefault(k, len(slot)) for k in keys], dtype=np.int64)
            grow = len(slot) - self._count.size
            if grow > 0:
                self._count = np.concatenate([self._count, np.zeros(grow, dtype=np.int64)])
                self._mean = np.concatenate([self._mean, np.zeros(grow)])
                self._m2 = np.concatenate([self._m2, np.zeros(grow)])
            if len(self._layouts) >= _MAX_LAYOUTS:
                self._layouts.clear()
            self._layouts[keys] = slots
        return slots

    def _run(
        self, x: dict, *passes: bool
    ) -> tuple[tuple[Hashable, ...], npt.NDArray[np.float64]]:
        """One kernel pass over ``x`` per entry of ``passes`` (True: learn, False: z-scores
        into the returned array), with its keys looked up once."""
        keys = tuple(x)
        values = np.fromiter(x.values(), dtype=np.float64, count=len(keys))
        return keys, self._arrays(keys, values, *passes)

    def _arrays(
        self, keys: tuple[Hashable, ...], values: npt.NDArray[np.float64], *passes: bool
    ) -> npt.NDArray[np.float64]:
        """:meth:`_run` of the features ``keys`` with ``values``."""
        slots = self._slots(keys)
        out = np.empty(len(keys))
        need, clip, eps = math.ceil(max(self.warmup, 2)), float(self.clip), float(self.eps)
        for learn in passes:
            welford_indexed(
                slots, values, self._count, self._mean, self._m2, learn, need, clip, eps, out
            )
        return out

    def learn_transform(self, x: dict) -> tuple[tuple[Hashable, ...], list[float]]:
        """:meth:`learn_one` then :meth:`transform_one` of ``x``, sharing the lookups: its
        keys and their z-scores, in order."""
        keys, z = self._run(x, True, False)
        return keys, z.tolist()

    def learn_transform_array(
        self, keys: tuple[Hashable, ...], values: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """:meth:`learn_transform` of the dict with ``keys`` and ``values`` (float64, in
        order), as an array: no dict is built or walked."""
        slots = self._slots(keys)
        out = np.empty(len(keys))
        need, clip, eps = math.ceil(max(self.warmup, 2)), float(self.clip), float(self.eps)
        welford_indexed_learn_transform(
            slots, values, self._count, self._mean, self._m2, need, clip, eps, out
        )
        return out

    def learn_one(self, x: dict) -> None:
        """Update the running statistics with the finite values of ``x``."""
        self._run(x, True)

    def transform_one(self, x: dict) -> dict:
        """z-scores of ``x`` (0.0 for features still warming up or without spread)."""
        keys, z = self._run(x, False)
        return dict(zip(keys, z.tolist(), strict=True))

    def count(self, key: str) -> int:
        """How many values of ``key`` were learned."""
        i = self._slot.get(key)
        return 0 if i is None else int(self._count[i])
