"""What one latency benchmark run is (:class:`BenchSettings`) and the names its roles share:
stage names, the modality codes of the publisher's log, the relay's echo topics.

See :mod:`streamfuse.latency.orchestration` for the run and ``docs/performance.md`` for the
definitions of every figure.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from .. import topics
from ..errors import ConfigError

STAGES: tuple[str, ...] = ("receive", "decode", "align", "features", "predict", "publish")
MODALITIES: tuple[str, ...] = ("ecg", "eeg", "acc")
LABEL_CODE = len(MODALITIES)
BUNDLE_CODE = LABEL_CODE + 1
#: p99 end-to-end latency a device count must hold to count as sustained
P99_TARGET_MS = 50.0
_T0_OFFSET = 32  # byte offset of t0 (float64) in the binary frame header
_SEQ = struct.Struct("<Q")
_SEQ_OFFSET = 24
_NAME_OFFSET = 4  # the modality name (12 bytes) in the binary frame header
_CODES = {m: i for i, m in enumerate(MODALITIES)}
#: the topic level the relay appends to a data topic to republish it (see :func:`echo_topic`)
ECHO = "echo"
_ECHO_SUFFIX = "/" + ECHO
#: the publisher's log: one row per chunk (a bundle's parts share ``msg`` and ``published``)
#: or label; ``kind`` is the modality's index in MODALITIES, or LABEL_CODE
LOG_DTYPE = np.dtype(
    [
        ("device", "i4"), ("kind", "i1"), ("seq", "i8"), ("t0", "f8"), ("n", "i4"),
        ("fs", "f8"), ("scheduled", "f8"), ("published", "f8"), ("msg", "i4"),
    ]
)


@dataclass(frozen=True, slots=True)
class BenchSettings:
    """One benchmark run.

    Parameters
    ----------
    devices
        Simulated devices (ECG 250 Hz, EEG 8 x 256 Hz, ACC 3 x 50 Hz, 100 ms chunks, labels 1/s).
    duration
        Seconds of publishing (wall clock = simulated time).
    broker_url
        The broker every process connects to.
    prefix
        Topic prefix (a unique one keeps runs on a shared broker apart).
    seed
        Fleet seed.
    model
        The engine's online model.
    floor_devices
        How many devices' data messages the subscriber also receives (the one-hop floor) and
        the relay echoes (the round trip).
    settle_s
        Seconds to keep listening after the last publish (the lateness budget is added).
    start_delay_s
        Seconds between the go signal and the first sample (lets every client settle).
    bundle
        Each device publishes its chunks of one period as one bundle instead of one message
        per modality.
    lockstep
        Every device on chunk phase 0 (the whole fleet's chunks due at the same instants)
        instead of each on its own seeded phase.
    warmup_s
        Seconds at the start whose windows are timed apart, as ``startup``, and left out of
        every other figure: the whole fleet connects in the same instant, every device's
        session is made and its first (partial) window waits out its lateness budget, all in
        the first seconds. ``0``: everything is timed as one.
    shards
        With ``S`` > 0 devices publish under ``{prefix}/{shard}/{device}/...``
        (:func:`streamfuse.topics.device_prefix`), as a fleet of shard owners expects.
    """

    devices: int
    duration: float
    broker_url: str
    prefix: str = "sfbench"
    seed: int = 0
    model: str = "logreg"
    floor_devices: int = 20
    settle_s: float = 1.0
    start_delay_s: float = 0.5
    bundle: bool = False
    lockstep: bool = False
    warmup_s: float = 0.0
    shards: int = 0
    #: the broker's process when the bench started it (its CPU is measured beside the gateway's)
    broker_pid: int | None = None

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ConfigError(f"devices must be at least 1, got {self.devices}")
        if not (math.isfinite(self.duration) and self.duration >= 2.0):
            raise ConfigError(
                f"duration must be at least 2 s (one 2 s window), got {self.duration}"
            )
        if not (math.isfinite(self.warmup_s) and 0.0 <= self.warmup_s <= self.duration - 2.0):
            raise ConfigError(
                f"warmup must be between 0 and the duration less one 2 s window "
                f"({self.duration - 2.0:g} s), got {self.warmup_s}"
            )
        topics.check_prefix(self.prefix)

    @property
    def mode(self) -> str:
        """What the publisher does, e.g. ``"bundle, staggered"``."""
        return (
            f"{'bundle' if self.bundle else 'per-modality'}, "
            f"{'lockstep' if self.lockstep else 'staggered'}"
        )


def echo_topic(topic: str) -> str:
    """The topic the relay republishes a message received on ``topic`` to.

    One level below the data topic (``{prefix}/{device}/{kind}/echo``): the gateway subscribes
    to ``{prefix}/+/+`` (:func:`streamfuse.topics.subscription`), exactly two levels below the
    prefix, so an echo never reaches it as data.
    """
    return topic + _ECHO_SUFFIX


def floor_topics(settings: BenchSettings) -> list[str]:
    """The data topics of the first ``floor_devices`` devices (per modality, or bundles)."""
    kinds = (topics.BUNDLE,) if settings.bundle else MODALITIES
    return [
        f"{device_topic_prefix(settings, d)}/dev{d:03d}/{k}"
        for d in range(min(settings.floor_devices, settings.devices))
        for k in kinds
    ]


def device_topic_prefix(settings: BenchSettings, index: int) -> str:
    """The prefix device ``index`` (``dev{index:03d}``) publishes under."""
    return topics.device_prefix(settings.prefix, f"dev{index:03d}", settings.shards)


def any_device(settings: BenchSettings) -> str:
    """The topic levels that stand for any device: ``+``, or ``+/+`` (shard, device)."""
    return "+/+" if settings.shards else "+"
