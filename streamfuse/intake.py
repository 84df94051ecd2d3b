"""Checks of what enters the engine without going through the decoder.

A :class:`~streamfuse.types.Chunk` or :class:`~streamfuse.types.Label` built in-process (a
notebook, a file reader, a test) skipped :mod:`streamfuse.codec`, so nothing has checked its
shape, dtype, values or rate yet. :func:`chunk_problem` and :func:`label_problem` apply the
decoder's rules to them and say, for a human, how to fix the input; the engine answers a
failed check with a :class:`~streamfuse.types.Rejection`, as it does for a bad wire message.

:func:`rate_problem` is the one check a decoded chunk still needs: the decoder knows the
configured modalities' channels but not whether a chunk's declared rate fits its modality.

Rate tolerance
--------------
A chunk's ``fs`` may differ from its modality's configured rate by at most
:data:`RATE_TOLERANCE` (2 %, relative). Devices report their nominal rate (a crystal-timed
ADC is within ±100 ppm of it) or a rate measured against their own clock; RC oscillators
stray by up to about a percent. Beyond 2 % the declared rate names another rate: 256 Hz
for a 250 Hz modality (2.4 %) is the typical mix-up of an EEG stream sent as ECG, and the
aligner would stretch such a chunk's samples in time without a word.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import topics
from .config import EngineConfig, Limits, ModalitySpec
from .errors import PayloadError
from .kernels.finite import all_finite
from .types import Chunk, Label

#: how far (relative) a chunk's ``fs`` may be from its modality's configured rate
RATE_TOLERANCE = 0.02


def item_problem(item: object, config: EngineConfig) -> PayloadError | None:
    """What is wrong with an in-process chunk or label under ``config``, or ``None``; a
    ``TypeError`` for anything else (a programming error, not bad data)."""
    if isinstance(item, Chunk):
        return chunk_problem(item, config.modalities.get(item.modality), config.limits)
    if isinstance(item, Label):
        return label_problem(item)
    raise TypeError(
        f"push takes a Chunk, Label or RawMessage and the arrival time, got "
        f"{type(item).__name__}; pass push(item, now) (push_many takes (item, now) pairs)"
    )


def _device_problem(device: str) -> PayloadError | None:
    """The topic rules for device ids (predictions are published under the device's id);
    ``check_device`` refuses a non-string too."""
    try:
        topics.check_device(device)
    except PayloadError as exc:
        return exc
    return None


def _finite(x: object) -> bool:
    """A finite real number (NumPy scalars included), not a string or None."""
    if type(x) is float:  # the common case, without the ABC check (0.2 us)
        return math.isfinite(x)
    return isinstance(x, numbers.Real) and math.isfinite(x)


def _refuse(chunk: Chunk, reason: str, message: str) -> PayloadError:
    return PayloadError(
        reason, message, device=chunk.device, modality=chunk.modality, seq=chunk.seq
    )


def _fix(spec: ModalitySpec) -> str:
    return (
        f"pass float32 shaped [n, {spec.channels}], e.g. "
        f"x.astype(np.float32).reshape(-1, {spec.channels})"
    )


def chunk_problem(
    chunk: Chunk, spec: ModalitySpec | None, limits: Limits
) -> PayloadError | None:
    """What is wrong with an in-process ``chunk`` for modality ``spec``, or ``None``.

    Checks, in order: a valid device id and an int ``seq``, a known modality, ``data`` a 2-D
    float32 array with the modality's channels and between 1 and ``limits.max_samples`` rows,
    ``fs`` within ``limits`` and within :data:`RATE_TOLERANCE` of ``spec.fs``, a finite
    ``t0``, and (with ``limits.nan_policy == "reject"``) finite samples.
    """

    def refuse(reason: str, message: str) -> PayloadError:
        return _refuse(chunk, reason, message)

    device = _device_problem(chunk.device)
    if device is not None:
        return device
    if type(chunk.seq) is not int and not isinstance(chunk.seq, numbers.Integral):
        return refuse("bad_field", f"seq={chunk.seq!r}: pass the chunk's sequence number, an int")
    if spec is None:
        return refuse(
            "unknown_modality",
            f"modality {chunk.modality!r} is not configured; pass one of the "
            "EngineConfig's modalities or add a ModalitySpec for it",
        )
    data = chunk.data
    if not isinstance(data, np.ndarray):
        return refuse("bad_shape", f"data is a {type(data).__name__}, not an array; {_fix(spec)}")
    if data.ndim != 2:
        return refuse("bad_shape", f"data has shape {data.shape}, not [n, channels]; {_fix(spec)}")
    if data.dtype != np.float32:
        return refuse("bad_dtype", f"data is {data.dtype}, not float32; {_fix(spec)}")
    if data.shape[1] != spec.channels:
        return refuse(
            "channel_mismatch",
            f"{data.shape[1]} channels, but modality {spec.name!r} has {spec.channels} "
            f"({', '.join(spec.channel_names)}); {_fix(spec)}",
        )
    if data.shape[0] == 0:
        return refuse("empty", "chunk holds no samples; pass at least one row")
    if data.shape[0] > limits.max_samples:
        return refuse(
            "too_many_samples",
            f"{data.shape[0]} samples exceed the limit of {limits.max_samples} per chunk; "
            "split the data into smaller chunks",
        )
    fs = chunk.fs
    if not (_finite(fs) and limits.min_fs <= fs <= limits.max_fs):
        return refuse(
            "bad_rate",
            f"sampling rate {fs!r} Hz is outside [{limits.min_fs}, {limits.max_fs}]; "
            f"pass the modality's rate in Hz (configured: {spec.fs})",
        )
    rate = rate_problem(chunk, spec)
    if rate is not None:
        return rate
    if not (_finite(chunk.t0) and abs(chunk.t0) <= limits.max_abs_t0):
        return refuse(
            "bad_t0",
            f"device timestamp t0={chunk.t0!r} is not a finite time in seconds",
        )
    if limits.nan_policy == "reject" and not all_finite(data):
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        return refuse(
            "nonfinite",
            f"{bad} of {data.size} samples are NaN or infinite; drop or interpolate them "
            "(e.g. np.nan_to_num) before pushing",
        )
    return None


def rate_problem(chunk: Chunk, spec: ModalitySpec) -> PayloadError | None:
    """A ``rate_mismatch`` when ``chunk.fs`` strays more than :data:`RATE_TOLERANCE` from
    ``spec.fs``, else ``None``."""
    if abs(chunk.fs - spec.fs) <= RATE_TOLERANCE * spec.fs:
        return None
    return PayloadError(
        "rate_mismatch",
        f"chunk declares {chunk.fs:g} Hz but modality {spec.name!r} is configured at "
        f"{spec.fs:g} Hz (tolerance {RATE_TOLERANCE:.0%}); send the stream under its own "
        "modality or configure the device's rate",
        device=chunk.device,
        modality=chunk.modality,
        seq=chunk.seq,
    )


def label_problem(label: Label) -> PayloadError | None:
    """What is wrong with an in-process ``label``, or ``None`` (the decoder's rules)."""
    device = _device_problem(label.device)
    if device is not None:
        return device
    t_start, t_end = label.t_start, label.t_end
    if not (_finite(t_start) and _finite(t_end) and t_end > t_start):
        return PayloadError(
            "bad_field",
            f"label needs finite t_start < t_end (device clock, s), got [{t_start}, {t_end})",
            device=label.device,
            modality="label",
        )
    if not isinstance(label.value, str) or not 0 < len(label.value) <= 64:
        return PayloadError(
            "bad_field",
            f"label value must be a short string (1-64 characters), got {label.value!r}",
            device=label.device,
            modality="label",
        )
    return None


def device_cap_problem(chunk: Chunk, live: int, config: EngineConfig) -> PayloadError:
    """A chunk of a new device that the live-device cap refuses (``device_policy="refuse"``)."""
    return _refuse(
        chunk,
        "too_many_devices",
        f"{live} devices are live, the most max_devices={config.max_devices} allows; a new "
        "device is let in once one is evicted as idle (or raise max_devices, or set "
        "device_policy='evict')",
    )
