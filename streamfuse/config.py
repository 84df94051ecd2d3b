"""Configuration of the core: modalities, windows, limits.

Plain frozen dataclasses; the gateway's file/flag/environment loading builds these.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import ConfigError


@dataclass(frozen=True, slots=True)
class ModalitySpec:
    """What a modality's chunks look like: channel names and nominal rate (Hz)."""

    name: str
    channel_names: tuple[str, ...]
    fs: float
    unit: str = ""

    @property
    def channels(self) -> int:
        return len(self.channel_names)

    def __post_init__(self) -> None:
        if not self.channel_names:
            raise ConfigError(f"modality {self.name!r} needs at least one channel")
        if not (math.isfinite(self.fs) and self.fs > 0):
            raise ConfigError(f"modality {self.name!r} needs a positive finite rate, got {self.fs}")


ECG = ModalitySpec("ecg", ("ecg",), 250.0, "mV")
EEG = ModalitySpec("eeg", ("Fp1", "Fp2", "F3", "F4", "C3", "C4", "O1", "O2"), 256.0, "uV")
ACC = ModalitySpec("acc", ("x", "y", "z"), 50.0, "g")

DEFAULT_MODALITIES: Mapping[str, ModalitySpec] = {m.name: m for m in (ECG, EEG, ACC)}


@dataclass(frozen=True, slots=True)
class Limits:
    """Hard limits applied while decoding, before anything is allocated."""

    max_payload_bytes: int = 1 << 20
    max_samples: int = 65_536
    max_fs: float = 20_000.0
    min_fs: float = 0.01
    max_abs_t0: float = 1e11
    # NaN policy: "reject" refuses a chunk holding any non-finite sample.
    nan_policy: str = "reject"


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything the :class:`~streamfuse.engine.Engine` needs to know.

    Windows are ``window_s`` long, start every ``hop_s`` seconds on the gateway clock
    (aligned to multiples of ``hop_s``) and are resampled onto a ``grid_fs`` Hz grid.
    A window closes when every live modality has passed its end, or ``lateness_s`` after its
    end on the gateway clock, whichever comes first.
    """

    modalities: Mapping[str, ModalitySpec] = field(default_factory=lambda: dict(DEFAULT_MODALITIES))
    window_s: float = 2.0
    hop_s: float = 1.0
    grid_fs: float = 256.0
    lateness_s: float = 0.5
    min_modalities: int = 1
    max_gap_s: float = 0.25
    reorder_s: float = 2.0
    classes: tuple[str, ...] = ()
    model: str = "logreg"
    level: str = "intermediate"
    max_pending: int = 4096
    silence_s: float = 5.0
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        for name in ("window_s", "hop_s", "grid_fs", "lateness_s", "max_gap_s", "reorder_s"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} must be a finite non-negative number, got {v!r}")
        if self.window_s <= 0 or self.hop_s <= 0 or self.grid_fs <= 0:
            raise ConfigError("window_s, hop_s and grid_fs must be positive")
        if self.hop_s > self.window_s:
            raise ConfigError(f"hop_s ({self.hop_s}) must not exceed window_s ({self.window_s})")
        k = self.window_s * self.grid_fs
        if abs(k - round(k)) > 1e-9:
            raise ConfigError(
                f"window_s * grid_fs must be a whole number of samples, got {k}"
            )
        if not self.modalities:
            raise ConfigError("at least one modality is needed")
        for key, spec in self.modalities.items():
            if key != spec.name:
                raise ConfigError(f"modality key {key!r} differs from its spec name {spec.name!r}")
        if not 1 <= self.min_modalities <= len(self.modalities):
            raise ConfigError(
                f"min_modalities must be between 1 and {len(self.modalities)}, "
                f"got {self.min_modalities}"
            )

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.grid_fs))
