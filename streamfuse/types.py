"""The data that flows through streamfuse (frozen, slotted dataclasses).

Times: ``t0`` of a :class:`Chunk` is on the *device* clock; everything else (window bounds,
arrival, label bounds after mapping) is on the *gateway* clock, in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Chunk:
    """A run of samples from one stream of one device.

    ``data`` is ``float32[n, ch]`` (C-contiguous), sample ``i`` taken at device time
    ``t0 + i / fs``. ``arrival`` is the gateway clock reading when the chunk arrived
    (NaN until the shell stamps it).
    """

    device: str
    modality: str
    seq: int
    t0: float
    fs: float
    data: F32
    arrival: float = float("nan")

    @property
    def n(self) -> int:
        return int(self.data.shape[0])

    @property
    def channels(self) -> int:
        return int(self.data.shape[1])

    @property
    def duration(self) -> float:
        return self.n / self.fs


@dataclass(frozen=True, slots=True)
class Label:
    """Ground truth for ``[t_start, t_end)`` of one device, on the device clock."""

    device: str
    t_start: float
    t_end: float
    value: str


@dataclass(frozen=True, slots=True)
class RawMessage:
    """An undecoded MQTT message as the shells receive or replay it.

    ``arrival`` is the gateway clock reading when a socket read yielded its bytes (NaN when
    no shell stamped it; the gateway then reads its clock when the engine takes it). It is
    not part of a message's identity: equal topic and payload are the same message."""

    topic: str
    payload: bytes
    arrival: float = field(default=math.nan, compare=False)


@dataclass(frozen=True, slots=True)
class Window:
    """One device's data for ``[t_start, t_end)`` on the gateway clock.

    ``blocks[m]`` is ``float32[k, ch_m]`` resampled onto the common grid
    ``t_start + j / fs`` (``j < k``); ``masks[m]`` is ``bool[k]``, True where the sample is
    backed by data. A modality absent from the window is absent from ``blocks``.
    ``quality[m]`` holds the gap fraction and lateness of each modality.
    """

    device: str
    t_start: float
    t_end: float
    fs: float
    blocks: Mapping[str, F32]
    masks: Mapping[str, Mask]
    quality: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    index: int = 0

    @property
    def k(self) -> int:
        return int(round((self.t_end - self.t_start) * self.fs))

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.blocks)


@dataclass(frozen=True, slots=True)
class FusedWindow:
    """The early-fusion matrix: every channel of every modality on one grid.

    ``matrix`` is ``float32[k, C]``; ``channels[c]`` names column ``c`` as ``"modality:name"``;
    ``mask`` is ``bool[k, C]`` (False where the column's modality had no data).
    """

    window: Window
    matrix: F32
    channels: tuple[str, ...]
    mask: npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the engine says about one window.

    ``level``, ``proba``, ``label`` and ``rules`` are those of the published fusion level;
    ``levels`` holds every running level's probabilities (``{level: {class: p}}``, empty for a
    level that cannot predict yet) and ``modality_proba`` each modality model's own (the late
    fusion members: the unimodal decisions). ``metrics`` are the engine's prequential figures
    when the window was decided, flat (``"early.auc"``, ``"eeg.accuracy"``,
    ``"selector.late"`` ...). ``prediction_set`` is the published level's conformal set (two
    or more classes: abstain; empty when sets are off); ``explanation`` what each modality
    contributed under the published level (``"weight.<modality>"`` for late and attention,
    ``"weight.<modality>:<gamma>"`` for mkl, ``"logodds.<modality>"`` and
    ``"logodds.prior"`` for bayes, ``"unusable.<modality>"`` for a modality the
    quality-aware levels left out, or heard by its held decision, ``"held.<modality>"``);
    ``interval`` the credible interval of each class's
    probability (bayes only).
    ``"selector.late"`` ...). ``t_start``/``t_end`` bound the window on the gateway clock;
    ``device_t_start``/``device_t_end`` are the same bounds on the device's own clock, mapped
    back by the device's clock model when the window closed (NaN before it has one), so a
    client can join its own ground truth.
    """

    device: str
    t_start: float
    t_end: float
    level: str
    label: str | None
    proba: Mapping[str, float]
    model: str
    rules: tuple[str, ...] = ()
    latency: Mapping[str, float] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    modalities: tuple[str, ...] = ()
    index: int = 0
    arrival: float = float("nan")
    levels: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    modality_proba: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    prediction_set: tuple[str, ...] = ()
    explanation: Mapping[str, float] = field(default_factory=dict)
    interval: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    device_t_start: float = float("nan")
    device_t_end: float = float("nan")

    def to_json_dict(self) -> dict[str, object]:
        """A JSON-ready dict (the prediction topic's payload)."""
        return {
            "device": self.device,
            "index": self.index,
            "t_start": self.t_start,
            "t_end": self.t_end,
            "device_t_start": _finite_or_none(self.device_t_start),
            "device_t_end": _finite_or_none(self.device_t_end),
            "level": self.level,
            "label": self.label,
            "proba": dict(self.proba),
            "levels": {k: dict(v) for k, v in self.levels.items()},
            "modality_proba": {k: dict(v) for k, v in self.modality_proba.items()},
            "model": self.model,
            "rules": list(self.rules),
            "prediction_set": list(self.prediction_set),
            "explanation": dict(self.explanation),
            "interval": {k: list(v) for k, v in self.interval.items()},
            "modalities": list(self.modalities),
            "latency_ms": {k: v * 1e3 for k, v in self.latency.items()},
            "metrics": dict(self.metrics),
            "closed_at": _finite_or_none(self.arrival),
        }


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message the engine refused, with why (an output so shells can log or count it)."""

    reason: str
    message: str
    device: str | None = None
    modality: str | None = None
    seq: int | None = None
