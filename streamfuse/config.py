"""Configuration of the core: modalities, windows, limits.

Plain frozen dataclasses; the gateway's file/flag/environment loading builds these.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import topics
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


#: the fusion levels the engine can run side by side, in selector tie-break order: the three
#: classic levels, then the review's techniques (:mod:`streamfuse.fusion.levels`)
FUSION_LEVELS: tuple[str, ...] = ("early", "intermediate", "late", "attention", "mkl", "bayes")
#: the levels an engine runs unless told otherwise
DEFAULT_LEVELS: tuple[str, ...] = ("early", "intermediate", "late")
#: names a modality may not take (they name metrics of the levels)
RESERVED_NAMES = frozenset((*FUSION_LEVELS, "selected", "selector", "conformal"))

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

    Windows are ``window_s`` long, start every ``hop_s`` seconds on the gateway clock and are
    resampled onto a ``grid_fs`` Hz grid. ``window_phase`` places each device's grid:
    ``"device"`` (default) starts its windows at ``phase + w * hop_s`` with a fixed
    ``phase`` in ``[0, hop_s)`` derived from the device id (CRC-32; see
    :func:`streamfuse.align.windower.window_phase`), so a fleet's windows close spread over the
    hop rather than all in the same instant; ``"aligned"`` starts every device's windows at
    multiples of ``hop_s`` (one grid shared by all devices).
    A window closes when every live modality has passed its end, or ``lateness_s`` after its
    end on the gateway clock, whichever comes first. It is emitted only when at least
    ``min_modalities`` modalities, and every one of ``required_modalities``, have data in it.

    Fusion and learning (see :mod:`streamfuse.fusion.levels`): every window is decided by each
    of ``levels`` (a subset of :data:`FUSION_LEVELS`) with a fresh ``model`` per level (one per
    modality for ``late``, combined by ``late_combine``: ``"weighted"`` or ``"vote"``).
    ``level`` is the level published: ``"selected"`` lets the selector choose the level with
    the best ``selector_score`` (mean ``"log_loss"`` or ``"accuracy"``, or ranking quality
    ``"auc"``) over the last
    ``selector_horizon`` labelled windows; a level name pins it. ``normalize`` z-scores each
    device's inputs online (per-device baselines), giving 0 for a device's first
    ``normalize_warmup`` windows (3: on the simulators, 10 cost a third of a 30 s demo's
    accuracy); ``early_segments`` sub-windows describe each
    raw channel's envelope at the early level. Prequential metrics treat ``positive`` as the
    positive class (None: macro averages), AUC over the last ``metrics_window`` windows; the
    copy published with each prediction is recomputed at most once per ``metrics_refresh_s``
    of gateway time, the selector's scores with the rest (0: after every label; the level
    published is always chosen on current scores).
    ``rules_top`` fired rules are published when the model is neuro-fuzzy.
    ``member_smoothing`` (0: off) is the half-life, in a device's windows, of an exponential
    average of each late member's log-probabilities, which ``late``, ``attention`` and
    ``bayes`` then combine and which are published as the modalities' own decisions
    (:mod:`streamfuse.fusion.smoothing`).

    ``conformal_target`` (None: off) gives every published decision an adaptive conformal
    prediction set meant to hold the true class that often (Gibbs and Candès 2021; step
    ``conformal_gamma`` per label, scores of the last ``conformal_window`` labelled windows;
    :mod:`streamfuse.fusion.conformal`).

    ``max_devices`` caps the live devices (sessions; per-device memory is bounded by the
    modalities' configured rates, so this bounds the engine's): a chunk of a new device beyond
    it is refused with reason ``too_many_devices`` under ``device_policy = "refuse"`` (the
    default: a flood of junk ids cannot push out honest devices; idle ones leave through
    ``Engine.evict_idle``), or makes room under ``"evict"`` by forgetting the least recently
    seen hundredth of the devices (counted in ``devices_evicted_at_cap``).

    Examples
    --------
    The defaults run ECG, EEG and a wrist accelerometer; a study of one modality names it:

    >>> from streamfuse import EngineConfig, ModalitySpec
    >>> sorted(EngineConfig().modalities)
    ['acc', 'ecg', 'eeg']
    >>> eeg = ModalitySpec("eeg", ("Fz", "Cz", "Pz"), 500.0, "uV")
    >>> config = EngineConfig(modalities={"eeg": eeg}, window_s=8.0, hop_s=4.0, grid_fs=128.0)
    >>> config.window_samples
    1024

    A value that cannot work is refused with what to change:

    >>> EngineConfig(window_s=2.0, hop_s=3.0)
    Traceback (most recent call last):
    ...
    streamfuse.errors.ConfigError: hop_s (3.0) must not exceed window_s (2.0)
    """

    modalities: Mapping[str, ModalitySpec] = field(default_factory=lambda: dict(DEFAULT_MODALITIES))
    window_s: float = 2.0
    hop_s: float = 1.0
    grid_fs: float = 256.0
    lateness_s: float = 0.5
    min_modalities: int = 1
    required_modalities: tuple[str, ...] = ()
    max_gap_s: float = 0.0
    reorder_s: float = 2.0
    classes: tuple[str, ...] = ()
    model: str = "logreg"
    level: str = "selected"
    levels: tuple[str, ...] = DEFAULT_LEVELS
    selector_horizon: int = 50
    selector_score: str = "log_loss"
    late_combine: str = "weighted"
    member_smoothing: float = 0.0
    normalize: bool = True
    normalize_warmup: int = 3
    early_segments: int = 4
    positive: str | None = None
    metrics_window: int = 500
    metrics_refresh_s: float = 1.0
    rules_top: int = 3
    conformal_target: float | None = 0.9
    conformal_gamma: float = 0.005
    conformal_window: int = 500
    max_pending: int = 4096
    silence_s: float = 5.0
    max_devices: int = 10_000
    device_policy: str = "refuse"
    window_phase: str = "device"
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        for name in (
            "window_s", "hop_s", "grid_fs", "lateness_s", "max_gap_s", "reorder_s",
            "metrics_refresh_s",
        ):
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
        bad = sorted(set(self.modalities) & RESERVED_NAMES)
        if bad:
            raise ConfigError(f"modality names {bad} are reserved for fusion levels; rename them")
        taken = sorted(set(self.modalities) & topics.RESERVED)
        if taken:
            raise ConfigError(
                f"modality names {taken} are reserved topic levels ({sorted(topics.RESERVED)}): "
                "a device's data on them would be read as something else; rename them"
            )
        if not self.levels or not set(self.levels) <= set(FUSION_LEVELS) or len(
            set(self.levels)
        ) != len(self.levels):
            raise ConfigError(
                f"levels={self.levels!r}: pass distinct names from {FUSION_LEVELS}"
            )
        if self.level != "selected" and self.level not in self.levels:
            raise ConfigError(
                f"level={self.level!r}: pass 'selected' or one of the running levels "
                f"{self.levels}"
            )
        if self.selector_score not in ("log_loss", "accuracy", "auc"):
            raise ConfigError(
                f"selector_score={self.selector_score!r}: pass 'log_loss', 'accuracy' or 'auc'"
            )
        if self.window_phase not in ("device", "aligned"):
            raise ConfigError(
                f"window_phase={self.window_phase!r}: pass 'device' or 'aligned'"
            )
        if not isinstance(self.max_devices, int) or self.max_devices < 1:
            raise ConfigError(f"max_devices={self.max_devices!r}: pass an int >= 1")
        if self.device_policy not in ("refuse", "evict"):
            raise ConfigError(
                f"device_policy={self.device_policy!r}: pass 'refuse' or 'evict'"
            )
        h = self.member_smoothing
        if not (isinstance(h, int | float) and math.isfinite(h) and h >= 0):
            raise ConfigError(f"member_smoothing={h!r}: pass a half-life in windows >= 0 (0: off)")
        if self.late_combine not in ("weighted", "vote"):
            raise ConfigError(f"late_combine={self.late_combine!r}: pass 'weighted' or 'vote'")
        t = self.conformal_target
        if t is not None and not (isinstance(t, int | float) and 0 < t < 1):
            raise ConfigError(
                f"conformal_target={t!r}: pass a coverage in (0, 1), e.g. 0.9, or None for off"
            )
        g = self.conformal_gamma
        if not (isinstance(g, int | float) and math.isfinite(g) and g >= 0):
            raise ConfigError(f"conformal_gamma={g!r}: pass a finite float >= 0, e.g. 0.005")
        for name in ("selector_horizon", "early_segments", "metrics_window", "conformal_window"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name}={v!r}: pass an int >= 1")
        if self.normalize_warmup < 1:
            raise ConfigError(f"normalize_warmup={self.normalize_warmup!r}: pass an int >= 1")
        unknown = [m for m in self.required_modalities if m not in self.modalities]
        if unknown:
            raise ConfigError(
                f"required_modalities {unknown} are not configured modalities "
                f"{sorted(self.modalities)}"
            )
        if not 1 <= self.min_modalities <= len(self.modalities):
            raise ConfigError(
                f"min_modalities must be between 1 and {len(self.modalities)}, "
                f"got {self.min_modalities}"
            )

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.grid_fs))
