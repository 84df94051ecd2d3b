"""Loading a :class:`~.config.GatewayConfig`: TOML file, ``STREAMFUSE_`` environment, flags.

Precedence, lowest first: built-in defaults, the TOML file (``--config``), environment variables
``STREAMFUSE_<SECTION>_<KEY>`` (e.g. ``STREAMFUSE_MQTT_BROKER``,
``STREAMFUSE_CHECKPOINT_INTERVAL_S``), then command-line flags. Every value is checked: an
unknown section or key, a value of the wrong type, or a modality without a rate is a
:class:`~streamfuse.errors.ConfigError` naming the key and saying what is expected.
"""

from __future__ import annotations

import math
import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from .. import topics
from ..config import DEFAULT_MODALITIES, ModalitySpec
from ..errors import BrokerError, ConfigError, TopicError
from ..mqtt.address import parse_broker_url, redact
from .config import SECTIONS, GatewayConfig

ENV_PREFIX = "STREAMFUSE_"


def _coerce(where: str, value: Any, kind: type, *, from_text: bool) -> Any:
    """Check (or, for environment/flag text, parse) one value against its field type."""
    if from_text and isinstance(value, str):
        text = value.strip()
        try:
            if kind is bool:
                low = text.lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(text)
            if kind is int:
                return int(text)
            if kind is float:
                return float(text)
        except ValueError:
            raise ConfigError(
                f"{where} must be {_kind_name(kind)}, got {value!r}"
            ) from None
        return value
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(
            f"{where} must be {_kind_name(kind)}, got {type(value).__name__} {value!r}"
        )
    return value


def _kind_name(kind: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind]


def _field_types(cls: type) -> dict[str, type]:
    hints = {"str": str, "int": int, "float": float, "bool": bool}
    return {f.name: hints[f.type] if isinstance(f.type, str) else f.type for f in fields(cls)}


def _section(
    name: str, raw: Mapping[str, Any], base: Any, where: str, *, from_text: bool = False
) -> Any:
    cls = SECTIONS[name]
    types = _field_types(cls)
    values = {f.name: getattr(base, f.name) for f in fields(cls)}
    for key, value in raw.items():
        if key not in types:
            raise ConfigError(
                f"unknown key {name}.{key} in {where}; known keys of [{name}]: "
                f"{', '.join(sorted(types))}"
            )
        values[key] = _coerce(f"{name}.{key} ({where})", value, types[key], from_text=from_text)
    return cls(**values)


def _modalities(raw: Any, where: str) -> dict[str, ModalitySpec]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(
            f"[modalities] in {where} must hold one table per modality, e.g. "
            "[modalities.ecg] with channels = [\"ecg\"] and fs = 250.0"
        )
    out: dict[str, ModalitySpec] = {}
    for name, spec in raw.items():
        try:
            topics.check_modality(name)
        except TopicError as exc:
            raise ConfigError(f"modalities.{name} in {where}: {exc}") from None
        if not isinstance(spec, Mapping):
            raise ConfigError(f"modalities.{name} in {where} must be a table")
        unknown = set(spec) - {"channels", "fs", "unit"}
        if unknown:
            raise ConfigError(
                f"unknown key modalities.{name}.{sorted(unknown)[0]} in {where}; "
                "known keys: channels, fs, unit"
            )
        if "fs" not in spec:
            raise ConfigError(
                f"modalities.{name} in {where} has no rate: add fs = <samples per second>"
            )
        fs = _coerce(f"modalities.{name}.fs ({where})", spec["fs"], float, from_text=False)
        channels = spec.get("channels")
        if (
            not isinstance(channels, list)
            or not channels
            or not all(isinstance(c, str) and c for c in channels)
        ):
            raise ConfigError(
                f"modalities.{name}.channels in {where} must be a non-empty list of names, "
                f"e.g. [\"x\", \"y\", \"z\"], got {channels!r}"
            )
        unit = _coerce(f"modalities.{name}.unit ({where})", spec.get("unit", ""), str,
                       from_text=False)
        out[name] = ModalitySpec(name, tuple(channels), fs, unit)
    return out


def _validate(cfg: GatewayConfig) -> GatewayConfig:
    m = cfg.mqtt
    try:
        parse_broker_url(m.broker)
    except BrokerError as exc:
        raise ConfigError(f"mqtt.broker: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - anything else a URL parser may raise
        raise ConfigError(f"mqtt.broker {redact(m.broker)!r} is malformed: "
                          f"{type(exc).__name__}") from None
    try:
        topics.check_prefix(m.prefix)
    except TopicError as exc:
        raise ConfigError(f"mqtt.prefix: {exc}") from None
    if m.client_id and not topics._DEVICE_RE.match(m.client_id):
        raise ConfigError(
            f"mqtt.client_id {m.client_id!r} must be 1-64 characters of A-Z a-z 0-9 _ . -"
        )
    if m.arrival not in ("take", "read"):
        raise ConfigError(f'mqtt.arrival must be "take" or "read", got {m.arrival!r}')
    for key in ("qos", "publish_qos"):
        if getattr(m, key) not in (0, 1, 2):
            raise ConfigError(f"mqtt.{key} must be 0, 1 or 2, got {getattr(m, key)!r}")
    positive = [
        ("mqtt.keepalive_s", m.keepalive_s),
        ("mqtt.max_queued_incoming", m.max_queued_incoming),
        ("mqtt.backoff_initial_s", m.backoff_initial_s),
        ("mqtt.backoff_max_s", m.backoff_max_s),
        ("checkpoint.interval_s", cfg.checkpoint.interval_s),
        ("checkpoint.keep", cfg.checkpoint.keep),
        ("journal.segment_bytes", cfg.journal.segment_bytes),
        ("journal.fsync_interval_s", cfg.journal.fsync_interval_s),
        ("resources.idle_evict_s", cfg.resources.idle_evict_s),
        ("resources.evict_every_s", cfg.resources.evict_every_s),
        ("resources.max_outbox", cfg.resources.max_outbox),
        ("resources.tick_s", cfg.resources.tick_s),
        ("metrics.refresh_s", cfg.metrics.refresh_s),
        ("shutdown.drain_timeout_s", cfg.shutdown.drain_timeout_s),
        ("engine.max_pending", cfg.engine.max_pending),
        ("engine.max_devices", cfg.engine.max_devices),
        ("engine.max_payload_bytes", cfg.engine.max_payload_bytes),
        ("engine.max_samples", cfg.engine.max_samples),
        ("engine.max_fs", cfg.engine.max_fs),
    ]
    for key, value in positive:
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{key} must be positive, got {value!r}")
    if cfg.journal.fsync not in ("interval", "always", "never"):
        raise ConfigError(
            f"journal.fsync must be \"interval\", \"always\" or \"never\", got "
            f"{cfg.journal.fsync!r}"
        )
    if cfg.engine.device_policy not in ("refuse", "evict"):
        raise ConfigError(
            f"engine.device_policy must be \"refuse\" or \"evict\", got "
            f"{cfg.engine.device_policy!r}"
        )
    refreeze = cfg.resources.gc_refreeze_s
    if not (math.isfinite(refreeze) and refreeze >= 0):
        raise ConfigError(f"resources.gc_refreeze_s must be 0 (off) or positive, got {refreeze!r}")
    if m.backoff_max_s < m.backoff_initial_s:
        raise ConfigError("mqtt.backoff_max_s must be at least mqtt.backoff_initial_s")
    if not 0 <= cfg.metrics.port < 65536:
        raise ConfigError(f"metrics.port must be 0 (off) to 65535, got {cfg.metrics.port}")
    if m.password and m.password_file:
        raise ConfigError("give mqtt.password or mqtt.password_file, not both")
    if m.cert_file and not m.key_file:
        raise ConfigError("mqtt.cert_file needs mqtt.key_file (the client's private key)")
    sh = cfg.shards
    try:
        if sh.count or sh.own:
            topics.parse_shard_set(sh.own, sh.count)
    except ValueError as exc:
        raise ConfigError(f"shards.own {sh.own!r} with shards.count {sh.count}: {exc}") from None
    if sh.count and not m.client_id:
        raise ConfigError("shards need a fixed mqtt.client_id: each shard's persistent session "
                          "is {client_id}-s{shard}")
    try:
        cfg.engine_config()  # EngineConfig's own checks (window/hop/grid, limits)
    except ConfigError as exc:
        raise ConfigError(f"[engine] in {cfg.source}: {exc}") from None
    return cfg


def check_paths(cfg: GatewayConfig) -> GatewayConfig:
    """Check the files and folders the gateway will use before it starts serving.

    The certificates (``mqtt.ca_file``, ``cert_file``, ``key_file``) and ``mqtt.password_file``
    must be readable files, and ``checkpoint.dir`` a folder the gateway can create and write
    to (a file is created and removed there). Kept out of :func:`load`, which only reads
    settings (``streamfuse replay --config`` loads the gateway's file on another machine);
    ``streamfuse gateway`` calls it right after loading, before compiling anything.

    Raises
    ------
    ConfigError
        Naming the key, the path and the operating system's reason.
    """
    m = cfg.mqtt
    for key in ("ca_file", "cert_file", "key_file", "password_file"):
        path = getattr(m, key)
        if not path:
            continue
        try:
            with open(path, "rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise ConfigError(
                f"mqtt.{key} {path!r} cannot be read ({exc.strerror or exc}); give the path of "
                "a readable file or leave it empty"
            ) from None
    folder = cfg.checkpoint.dir
    if folder:
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
                pass
        except OSError as exc:
            raise ConfigError(
                f"checkpoint.dir {folder!r} is not a folder the gateway can write to "
                f"({exc.strerror or exc}); give a writable folder, or \"\" for no checkpoints"
            ) from None
    return cfg


# --------------------------------------------------------------------------- loading


def from_mapping(
    raw: Mapping[str, Any],
    *,
    where: str = "the configuration",
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """A validated :class:`GatewayConfig` from TOML-shaped tables, the environment and flags.

    Parameters
    ----------
    raw
        ``{"mqtt": {"broker": ...}, "engine": {...}, "modalities": {...}, ...}``, as a TOML
        file holds them.
    where
        Named in error messages (the file name).
    env
        Environment to read ``STREAMFUSE_<SECTION>_<KEY>`` from (``None``: none).
    overrides
        ``{"section.key": value}`` from command-line flags; ``None`` values are ignored.

    Examples
    --------
    >>> cfg = from_mapping({"mqtt": {"prefix": "ward7", "client_id": ""}})
    >>> cfg.prefix, cfg.client_id, cfg.engine_config().max_gap_s
    ('ward7', None, 0.25)
    """
    unknown = set(raw) - set(SECTIONS) - {"modalities"}
    if unknown:
        raise ConfigError(
            f"unknown section [{sorted(unknown)[0]}] in {where}; known sections: "
            f"{', '.join(sorted([*SECTIONS, 'modalities']))}"
        )
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"[{name}] in {where} must be a table")
        sections[name] = _section(name, table, cls(), where)
    modalities = _modalities(raw["modalities"], where) if "modalities" in raw else dict(
        DEFAULT_MODALITIES
    )
    # environment: STREAMFUSE_<SECTION>_<KEY>
    for var, value in sorted((env or {}).items()):
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        section = next((s for s in SECTIONS if rest.startswith(s + "_")), None)
        if section is None:
            continue  # other STREAMFUSE_ variables (STREAMFUSE_DATA, ...) are not ours
        key = rest[len(section) + 1 :]
        sections[section] = _section(
            section, {key: value}, sections[section], f"environment variable {var}",
            from_text=True,
        )
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        name, _, key = dotted.partition(".")
        if name not in sections:
            raise ConfigError(
                f"unknown setting {dotted!r}; known sections: {', '.join(sorted(SECTIONS))}"
            )
        sections[name] = _section(name, {key: value}, sections[name], "command line")
    return _validate(GatewayConfig(**sections, modalities=modalities, source=where))


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """The gateway configuration from a TOML file, the environment and flag overrides.

    Parameters
    ----------
    path
        A TOML file (``None``: defaults only).
    env
        Environment to read ``STREAMFUSE_<SECTION>_<KEY>`` from (default ``os.environ``).
    overrides
        ``{"section.key": value}`` from command-line flags; ``None`` values are ignored.

    Raises
    ------
    ConfigError
        On an unreadable or malformed file, an unknown key, a wrong type or an invalid value.
    """
    raw: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {where}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {where} is not valid TOML: {exc}") from exc
    return from_mapping(
        raw, where=where, env=os.environ if env is None else env, overrides=overrides
    )
