"""What the engine keeps per device (:class:`DeviceSession`) and per predicted window still
waiting for its label (:class:`Pending`)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from .align.device import DeviceAligner
from .features import DeviceFeatures
from .fusion.levels import DeviceFusion, Evidence, Verdict


@dataclass(slots=True)
class Pending:
    """A predicted window waiting for its label (test-then-train): what every level saw
    (``evidence``) and said (``verdict``) before the label was known."""

    t_start: float
    t_end: float
    index: int
    evidence: Evidence
    verdict: Verdict


@dataclass(slots=True)
class DeviceSession:
    """Everything the engine keeps about one device."""

    device: str
    aligner: DeviceAligner
    features: DeviceFeatures
    fusion: DeviceFusion
    pending: deque[Pending] = field(default_factory=deque)
    labels: deque[tuple[float, float, str]] = field(default_factory=lambda: deque(maxlen=512))
    last_seen: float = -math.inf
    windows: int = 0
    #: creation order (ties in the deadline heap and the order devices are ticked in)
    order: int = 0
    #: start of the last window made (gateway time; later windows start after it)
    last_start: float = -math.inf
    #: the deadline this session holds in the engine's heap (``inf``: none)
    scheduled: float = math.inf
    #: engine ticks so far when the session was made (ticks before it never reach it)
    born_tick: int = 0

