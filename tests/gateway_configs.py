"""Gateway configurations for tests, from a few keyword arguments.

Tests that host a :class:`~streamfuse.gateway.app.Gateway` in-process name only what they
need; everything else is the daemon's default, except two settings every such test wants
unless it says otherwise: a random client id with a clean session (``client_id=""``; tests
share one broker, and two gateways on one fixed id would take each other's session) and
predictions at QoS 0 (``publish_qos=0``, the direct write path most tests look at).
"""

from __future__ import annotations

from typing import Any

from streamfuse.gateway.config import GatewayConfig
from streamfuse.gateway.loading import from_mapping

#: keyword -> "section.key"
KEYS = {
    "broker_url": "mqtt.broker",
    "prefix": "mqtt.prefix",
    "client_id": "mqtt.client_id",
    "qos": "mqtt.qos",
    "publish_qos": "mqtt.publish_qos",
    "backoff_initial_s": "mqtt.backoff_initial_s",
    "backoff_max_s": "mqtt.backoff_max_s",
    "max_queued_incoming": "mqtt.max_queued_incoming",
    "arrival": "mqtt.arrival",
    "checkpoint_dir": "checkpoint.dir",
    "checkpoint_keep": "checkpoint.keep",
    "journal": "journal.enabled",
    "journal_fsync": "journal.fsync",
    "journal_prune": "journal.prune",
    "journal_segment_bytes": "journal.segment_bytes",
    "idle_evict_s": "resources.idle_evict_s",
    "max_outbox": "resources.max_outbox",
    "metrics_port": "metrics.port",
    "metrics_refresh_s": "metrics.refresh_s",
    "drain_timeout_s": "shutdown.drain_timeout_s",
}


def gateway_config(**settings: Any) -> GatewayConfig:
    """A validated :class:`GatewayConfig` from ``KEYS``' keywords (see the module's note)."""
    tables: dict[str, dict[str, Any]] = {"mqtt": {"client_id": "", "publish_qos": 0}}
    for name, value in settings.items():
        section, _, key = KEYS[name].partition(".")
        tables.setdefault(section, {})[key] = value
    return from_mapping(tables, where="a test", env={})
