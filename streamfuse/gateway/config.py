"""The gateway's one configuration: :class:`GatewayConfig`, from which the engine's is derived.

Every host of the gateway reads it: ``streamfuse gateway`` (TOML, then ``STREAMFUSE_*``
environment variables, then flags: :mod:`.loading`), the demo, the latency bench and
``streamfuse replay --config`` (same file, same engine). Each setting has one default, here;
``deploy/gateway.toml`` is a commented example.

Defaults that used to differ between the daemon, the in-process ``GatewaySettings`` and
``EngineConfig``, settled on the daemon's: ``mqtt.client_id = "streamfuse-gateway"`` (a
persistent session; ``""`` for a random id and a clean one), ``mqtt.publish_qos = 1``,
``engine.max_gap_s = 0.25`` (gaps up to a quarter second are filled, longer ones masked;
``EngineConfig`` alone keeps 0), ``resources.idle_evict_s = 300``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import topics
from ..config import DEFAULT_MODALITIES, EngineConfig, Limits, ModalitySpec
from ..errors import ConfigError

#: the engine's defaults, the one source of every [engine] default but max_gap_s
_ENGINE = EngineConfig()


@dataclass(frozen=True, slots=True)
class MqttSection:
    """How to reach the broker and how to behave on it."""

    broker: str = "mqtt://127.0.0.1:1883"
    prefix: str = topics.DEFAULT_PREFIX
    #: fixed id: the broker keeps the session (subscriptions, queued QoS 1 messages) across
    #: restarts of the gateway; empty means a random id and a clean session
    client_id: str = "streamfuse-gateway"
    qos: int = 1
    publish_qos: int = 1
    username: str = ""
    #: a file holding the password (first line); ``STREAMFUSE_MQTT_PASSWORD`` also works
    password_file: str = ""
    password: str = ""
    #: TLS even on an ``mqtt://`` URL (``mqtts://`` is always TLS)
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_insecure: bool = False
    keepalive_s: int = 30
    max_queued_incoming: int = 10_000
    #: the time the engine gets for a message: "take" (the clock when the engine takes it,
    #: queueing in the gateway included) or "read" (the clock when the socket read that
    #: yielded it returned; see :mod:`streamfuse.gateway.ingest`)
    arrival: str = "take"
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    #: give up (exit code 1) when the first connection has not succeeded within this many
    #: seconds, so a supervisor sees a gateway that cannot reach its broker; 0 waits forever
    connect_timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class EngineSection:
    """Windows, the model and the decoder limits (see :class:`~streamfuse.config.EngineConfig`).

    Defaults are the engine's own, except ``max_gap_s`` (the gateway fills gaps up to 0.25 s).
    """

    model: str = _ENGINE.model
    level: str = _ENGINE.level
    #: the fusion levels run side by side, comma-separated (early, intermediate, late,
    #: attention, mkl, bayes)
    levels: str = ",".join(_ENGINE.levels)
    #: what the selector ranks levels by over its last ``selector_horizon`` labelled windows
    #: ("log_loss", "accuracy" or "auc")
    selector_score: str = _ENGINE.selector_score
    selector_horizon: int = _ENGINE.selector_horizon
    #: half-life in windows of each member's decision average (0: off; see
    #: streamfuse.fusion.smoothing)
    member_smoothing: float = _ENGINE.member_smoothing
    #: per-device online z-scores of the features before the models (off: each model's own
    #: running population statistics only; see docs/evaluation.md)
    normalize: bool = _ENGINE.normalize
    window_s: float = _ENGINE.window_s
    hop_s: float = _ENGINE.hop_s
    grid_fs: float = _ENGINE.grid_fs
    lateness_s: float = _ENGINE.lateness_s
    min_modalities: int = _ENGINE.min_modalities
    max_gap_s: float = 0.25
    reorder_s: float = _ENGINE.reorder_s
    silence_s: float = _ENGINE.silence_s
    max_pending: int = _ENGINE.max_pending
    #: live devices at most; a new device beyond is refused ("refuse") or makes room by
    #: forgetting the least recently seen ("evict"); both counted
    max_devices: int = _ENGINE.max_devices
    device_policy: str = _ENGINE.device_policy
    max_payload_bytes: int = _ENGINE.limits.max_payload_bytes
    max_samples: int = _ENGINE.limits.max_samples
    max_fs: float = _ENGINE.limits.max_fs


@dataclass(frozen=True, slots=True)
class CheckpointSection:
    """Where and how often engine state (models, per-device state) is saved."""

    dir: str = ""  # empty: no checkpoints
    interval_s: float = 60.0
    keep: int = 3


@dataclass(frozen=True, slots=True)
class JournalSection:
    """The write-ahead journal (:mod:`.journal`): on wherever checkpoints are."""

    enabled: bool = True
    #: empty: ``<checkpoint.dir>/journal`` (no journal without a checkpoint folder)
    dir: str = ""
    segment_bytes: int = 64 << 20
    #: "interval" (a thread fsyncs every fsync_interval_s), "always" (before each MQTT
    #: acknowledgement), "never" (the OS decides); a kill -9 loses nothing acknowledged under
    #: any of them, a power loss up to the interval under "interval"
    fsync: str = "interval"
    fsync_interval_s: float = 0.1
    #: remove segments every kept checkpoint is past (false: keep the whole history)
    prune: bool = True


@dataclass(frozen=True, slots=True)
class ResourcesSection:
    """Bounds on what the gateway keeps."""

    idle_evict_s: float = 300.0
    evict_every_s: float = 5.0
    max_outbox: int = 10_000
    #: seconds between the engine's timer ticks (windows closed by their lateness budget)
    tick_s: float = 0.1
    #: before serving, collect once and move everything alive out of the cycle collector's
    #: view (:func:`gc.freeze`): on the 125-device bench its full collections over imported
    #: libraries, kernels and models reached 124 ms, the latency tail
    gc_freeze: bool = True
    #: with gc_freeze, every so often collect what was made since the last freeze and freeze
    #: what survives (devices' long-lived state): at 1,000 devices a 35-54 ms full collection
    #: every ~7 s otherwise; 0 freezes once only
    gc_refreeze_s: float = 10.0


@dataclass(frozen=True, slots=True)
class MetricsSection:
    """The Prometheus endpoint (port 0: disabled)."""

    port: int = 0
    host: str = "127.0.0.1"
    refresh_s: float = 1.0


@dataclass(frozen=True, slots=True)
class ShutdownSection:
    """What SIGTERM/SIGINT do: drain the incoming queue and checkpoint within a time limit."""

    drain_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class FederatedSection:
    """Joining a federation (issue 18; off while ``federation`` is empty): rounds carried over
    MQTT (``server``: the federation's broker, default ``mqtt.broker``), this gateway answering
    as ``site`` at most once per ``round_interval_s`` and adopting merged models built from at
    least ``min_parties`` sites; ``dp_clip`` > 0 turns on differential privacy with noise
    multiplier ``dp_noise`` (see :mod:`streamfuse.federated.protocol`). The site asks for a
    round once it learnt ``round_every`` windows since its last one, or when its learning was
    quiet ``round_quiet_s`` seconds with windows unmerged (0: off; see
    :mod:`streamfuse.federated.policy`)."""

    server: str = ""
    federation: str = ""
    site: str = ""
    round_interval_s: float = 0.0
    round_every: int = 20
    round_quiet_s: float = 10.0
    min_parties: int = 2
    dp_clip: float = 0.0
    dp_noise: float = 0.0


@dataclass(frozen=True, slots=True)
class ShardsSection:
    """Device shards in the topic tree (``docs/scaling.md``; off while ``count`` is 0): devices
    publish under ``{prefix}/{shard}/{device}/...`` with ``shard = crc32(device) % count``, and
    this gateway serves the shards ``own`` names (``"0-3,7"``; empty: all), each on its own
    persistent session (``{client_id}-s{shard}``), checkpoint and journal
    (``{checkpoint.dir}/shard-{shard}``), so a shard can move to another gateway."""

    #: S, the number of shards (fixed per deployment: a device's shard is crc32(id) % S); 0: none
    count: int = 0
    #: the shards this gateway serves, e.g. "0-3,7"; empty: all of them
    own: str = ""


SECTIONS: dict[str, type] = {
    "mqtt": MqttSection,
    "engine": EngineSection,
    "checkpoint": CheckpointSection,
    "journal": JournalSection,
    "resources": ResourcesSection,
    "metrics": MetricsSection,
    "shutdown": ShutdownSection,
    "federated": FederatedSection,
    "shards": ShardsSection,
}


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Everything a gateway needs, validated (build it with :func:`.loading.load` or
    :func:`.loading.from_mapping`)."""

    mqtt: MqttSection = field(default_factory=MqttSection)
    engine: EngineSection = field(default_factory=EngineSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    journal: JournalSection = field(default_factory=JournalSection)
    resources: ResourcesSection = field(default_factory=ResourcesSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    shutdown: ShutdownSection = field(default_factory=ShutdownSection)
    federated: FederatedSection = field(default_factory=FederatedSection)
    shards: ShardsSection = field(default_factory=ShardsSection)
    modalities: Mapping[str, ModalitySpec] = field(
        default_factory=lambda: dict(DEFAULT_MODALITIES)
    )
    source: str = "defaults"

    def engine_config(self) -> EngineConfig:
        """The :class:`EngineConfig` these settings describe."""
        e = self.engine
        return EngineConfig(
            modalities=dict(self.modalities),
            window_s=e.window_s,
            hop_s=e.hop_s,
            grid_fs=e.grid_fs,
            lateness_s=e.lateness_s,
            min_modalities=e.min_modalities,
            max_gap_s=e.max_gap_s,
            reorder_s=e.reorder_s,
            model=e.model,
            max_pending=e.max_pending,
            max_devices=e.max_devices,
            device_policy=e.device_policy,
            silence_s=e.silence_s,
            limits=Limits(
                max_payload_bytes=e.max_payload_bytes, max_samples=e.max_samples, max_fs=e.max_fs
            ),
            level=e.level or _ENGINE.level,
            levels=tuple(name.strip() for name in e.levels.split(",") if name.strip()),
            selector_score=e.selector_score,
            selector_horizon=e.selector_horizon,
            member_smoothing=e.member_smoothing,
            normalize=e.normalize,
        )

    def password(self) -> str | None:
        """The broker password: ``mqtt.password``, else the first line of ``password_file``."""
        m = self.mqtt
        if m.password:
            return m.password
        if m.password_file:
            try:
                text = Path(m.password_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"mqtt.password_file {m.password_file!r} cannot be read: {exc}"
                ) from exc
            return text.splitlines()[0] if text else ""
        return None

    @property
    def prefix(self) -> str:
        return self.mqtt.prefix

    @property
    def client_id(self) -> str | None:
        """The fixed client id (persistent session), or None (random id, clean session)."""
        return self.mqtt.client_id or None
