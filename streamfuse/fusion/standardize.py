"""Running z-scores of each modality's signal-quality indices, for the fusion learners.

The indices of :mod:`streamfuse.features.quality` live on different scales (a clipped fraction
of 0.06 can be as bad as a flat-channel share of 1), so the learners that take them as inputs
(:class:`~streamfuse.fusion.attention.ModalityGate`,
:class:`~streamfuse.fusion.bayes.BayesianFusion`) see each one z-scored against its own
running mean and spread per modality (Welford), clipped to ``±clip``. An index that has not
varied yet gives 0, as does a non-finite value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


class QualityScaler:
    """Per (modality, index) running mean and spread; :meth:`transform` z-scores.

    Parameters
    ----------
    clip
        Bound on a z-score.

    Examples
    --------
    >>> s = QualityScaler()
    >>> for v in (0.0, 0.0, 0.1, 0.0):
    ...     s.learn("eeg", {"clipped": v})
    >>> round(s.transform("eeg", {"clipped": 0.1, "new": 3.0})["clipped"], 3)
    1.732
    """

    def __init__(self, clip: float = 5.0) -> None:
        self.clip = float(clip)
        self.moments: dict[str, dict[str, list[float]]] = {}

    def transform(self, modality: str, quality: Mapping[str, float] | None) -> dict[str, float]:
        """``{index: z}`` of the finite values of ``quality``."""
        if not quality:
            return {}
        moments = self.moments.get(modality, {})
        out: dict[str, float] = {}
        for k, v in quality.items():
            if not math.isfinite(v):
                continue
            st = moments.get(k)
            n = st[0] if st else 0.0
            sd = math.sqrt(st[2] / n) if st and n > 1 else 0.0
            out[k] = min(max((v - st[1]) / sd, -self.clip), self.clip) if st and sd > 1e-12 \
                else 0.0
        return out

    def learn(self, modality: str, quality: Mapping[str, float] | None) -> None:
        """Add one window's finite values to the moments."""
        if not quality:
            return
        moments = self.moments.setdefault(modality, {})
        for k, v in quality.items():
            if math.isfinite(v):
                st = moments.setdefault(k, [0.0, 0.0, 0.0])
                st[0] += 1.0
                d = v - st[1]
                st[1] += d / st[0]
                st[2] += d * (v - st[1])
