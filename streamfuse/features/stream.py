"""Bookkeeping shared by the stateful extractors: which grid samples of a window are new.

Windows overlap (hop < length), so each extractor remembers the time of the next grid sample
it has not consumed and takes only the samples from there on; a jump forward (a window that
never closed) is reported as a gap so the extractor can bridge or reset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(slots=True)
class NewSamples:
    """The part of one window an extractor has not seen yet."""

    start: int  # first new row of the window's block
    gap: int  # grid samples missing between the last consumed one and ``start``


class Cursor:
    """Tracks the next unconsumed grid time of one stream."""

    def __init__(self, fs: float) -> None:
        self.fs = float(fs)
        self.t_next = math.nan

    def advance(self, t_start: float, k: int) -> NewSamples:
        """Which rows of a ``k``-row window starting at ``t_start`` are new; marks them consumed."""
        if math.isnan(self.t_next):
            self.t_next = t_start + k / self.fs
            return NewSamples(0, 0)
        offset = (self.t_next - t_start) * self.fs
        j0 = int(round(offset))
        gap = 0
        if j0 < 0:
            gap = -j0
            j0 = 0
        j0 = min(j0, k)
        end = t_start + k / self.fs
        if end > self.t_next:
            self.t_next = end
        return NewSamples(j0, gap)


def finite_dict(
    keys: list[str], values: npt.NDArray[np.float64], n_finite: int
) -> dict[str, float]:
    """``{key: value}`` of the finite values (``n_finite`` of them), in key order."""
    if n_finite == len(keys):
        return dict(zip(keys, values.tolist(), strict=True))
    return {k: v for k, v in zip(keys, values.tolist(), strict=True) if math.isfinite(v)}
