"""A :class:`~streamfuse.replay.readers.Recording` cut into a deterministic, time-ordered chunk
stream: each chunk's ``arrival`` is the moment it would have arrived in real time (its last
sample's time plus one sample period), nothing more."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataSourceError
from ..types import F32, Chunk

if TYPE_CHECKING:
    from .readers import Recording, Stream


def chunk_stream(
    recording: Recording,
    device: str,
    *,
    chunk_s: float = 0.1,
    t_offset: float = 0.0,
    seq_start: int = 0,
    t_stop: float | None = None,
) -> Iterator[Chunk]:
    """Cut ``recording`` into chunks ordered by arrival (ties: modality order, then seq).

    Chunk ``k`` of a stream holds samples ``[k*m, (k+1)*m)`` with ``m = round(chunk_s * fs)``
    (the last may be shorter); ``t0 = t_offset + stream.t0 + k*m/fs`` on the device clock and
    ``arrival = t0 + n/fs``: the moment its last sample was complete. ``t_stop`` (seconds from
    the recording's start) cuts the recording short. Rows holding an invalid (NaN) sample are
    left out, so they reach the engine as a gap, never as a chunk it must reject.
    """
    if not chunk_s > 0:
        raise DataSourceError(f"chunk_s must be positive, got {chunk_s}")
    order = {m: i for i, m in enumerate(recording.streams)}

    def one(stream: Stream) -> Iterator[tuple[float, int, int, Chunk]]:
        m = max(1, int(round(chunk_s * stream.fs)))
        total = stream.data.shape[0]
        if t_stop is not None:
            total = min(total, int(math.floor(t_stop * stream.fs + 1e-9)))
        k = 0
        for start in range(0, total, m):
            for a, b in _finite_runs(stream.data, start, min(start + m, total)):
                block = np.ascontiguousarray(stream.data[a:b])
                t0 = t_offset + stream.t0 + a / stream.fs
                arrival = t0 + block.shape[0] / stream.fs
                chunk = Chunk(device, stream.modality, seq_start + k, t0, stream.fs, block, arrival)
                yield arrival, order[stream.modality], k, chunk
                k += 1

    merged = heapq.merge(*(one(s) for s in recording.streams.values()), key=lambda r: r[:3])
    for _, _, _, chunk in merged:
        yield chunk


def _finite_runs(data: F32, start: int, stop: int) -> list[tuple[int, int]]:
    """``[a, b)`` runs of rows in ``[start, stop)`` whose samples are all finite."""
    ok = np.isfinite(data[start:stop]).all(axis=1)
    if ok.all():
        return [(start, stop)]
    edges = np.flatnonzero(np.diff(np.concatenate(([False], ok, [False])).astype(np.int8)))
    return [(start + int(a), start + int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]
