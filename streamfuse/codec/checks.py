"""Checks every decoder applies to what a payload claims, before anything is allocated.

Each raises :class:`PayloadError` with its ``reason`` (a counter key) and a message naming the
device, modality and seq. Messages quote a payload's values through :func:`brief`, which never
walks a container nor copies more than a few dozen characters: a value sent to be quoted (a
list nested a thousand levels deep, a megabyte string) cannot make the message itself fail or
balloon.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..config import Limits, ModalitySpec
from ..errors import PayloadError

DEFAULT_LIMITS = Limits()
#: characters of a value quoted in an error message
_QUOTED = 40


def brief(v: Any) -> str:
    """A short, bounded description of a decoded JSON value for an error message.

    Containers are described by type and length only (``repr`` of a deeply nested list
    recurses once per level and raises ``RecursionError`` near a thousand); strings and other
    scalars are quoted up to 40 characters.
    """
    if isinstance(v, dict | list | tuple):
        return f"a {type(v).__name__} of {len(v)} items"
    if isinstance(v, str) and len(v) > _QUOTED:
        return repr(v[:_QUOTED]) + f"... ({len(v)} characters)"
    text = repr(v)
    return text if len(text) <= _QUOTED else text[:_QUOTED] + "..."


def number(v: Any, name: str, device: str, modality: str, seq: int) -> float:
    """``v`` as a float if it is a JSON number (a bool is not), else ``bad_field``."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise PayloadError(
            "bad_field",
            f"{name} must be a number, got {brief(v)}",
            device=device,
            modality=modality,
            seq=seq,
        )
    try:
        return float(v)
    except OverflowError as exc:  # an int beyond the float range (no JSON parser here makes one)
        raise PayloadError(
            "bad_field",
            f"{name} is beyond the range of a float",
            device=device,
            modality=modality,
            seq=seq,
        ) from exc


def check_finite(device: str, modality: str, seq: int, data: np.ndarray, limits: Limits) -> None:
    if limits.nan_policy == "reject" and not np.isfinite(data).all():
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise PayloadError(
            "nonfinite",
            f"{bad} of {data.size} samples are NaN or infinite",
            device=device,
            modality=modality,
            seq=seq,
        )


def check_shape(
    device: str, modality: str, seq: int, n: int, ch: int, spec: ModalitySpec, limits: Limits
) -> None:
    if ch != spec.channels:
        raise PayloadError(
            "channel_mismatch",
            f"{ch} channels, but modality {modality!r} has {spec.channels} "
            f"({', '.join(spec.channel_names)})",
            device=device,
            modality=modality,
            seq=seq,
        )
    if n == 0:
        raise PayloadError(
            "empty", "chunk holds no samples", device=device, modality=modality, seq=seq
        )
    if n > limits.max_samples:
        raise PayloadError(
            "too_many_samples",
            f"{n} samples exceed the limit of {limits.max_samples} per chunk",
            device=device,
            modality=modality,
            seq=seq,
        )


def check_times(
    device: str, modality: str, seq: int, t0: float, fs: float, limits: Limits
) -> None:
    if not (math.isfinite(fs) and limits.min_fs <= fs <= limits.max_fs):
        raise PayloadError(
            "bad_rate",
            f"sampling rate {fs!r} Hz is outside [{limits.min_fs}, {limits.max_fs}]",
            device=device,
            modality=modality,
            seq=seq,
        )
    if not (math.isfinite(t0) and abs(t0) <= limits.max_abs_t0):
        raise PayloadError(
            "bad_t0",
            f"device timestamp t0={t0!r} is not a finite time in seconds",
            device=device,
            modality=modality,
            seq=seq,
        )
