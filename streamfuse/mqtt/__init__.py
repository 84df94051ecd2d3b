"""Everything MQTT, and the only package that imports aiomqtt, paho or amqtt.

- :mod:`.address`: ``mqtt[s]://`` URLs read once (TLS and credentials); standard library only;
- :mod:`.client`: :func:`connect` / :func:`open_session`, the one client factory;
- :mod:`.fastpath`: the per-message read and publish paths around paho;
- :mod:`.reader`: paho's packet reader replaced by a batched one (QoS 0 PUBLISH off the socket);
- :mod:`.queue`: the gateway's bounded, shedding incoming queue;
- :mod:`.sockets`: free ports, TCP_NODELAY, a broker probe;
- :mod:`.broker` (with :mod:`.child` and :mod:`.amqtt_main`): the embedded broker supervisor.

Names are loaded on first use, so ``from streamfuse.mqtt import parse_broker_url`` does not
import an MQTT client library.
"""

from __future__ import annotations

import importlib
from typing import Any

from .address import BrokerAddress, parse_broker_url

_LAZY = {
    "connect": "client",
    "open_session": "client",
    "MqttError": "client",
    "TlsFiles": "client",
    "EmbeddedBroker": "broker",
    "SheddingQueue": "queue",
    "free_port": "sockets",
    "set_nodelay": "sockets",
}

__all__ = ["BrokerAddress", "parse_broker_url", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'streamfuse.mqtt' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
