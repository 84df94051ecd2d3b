"""The gateway's part in a federation: the ``[federated]`` section turned into a client task.

:func:`join_federation` starts a :class:`~streamfuse.federated.client.FederatedClient` beside
ingest in the gateway's event loop (so merged models are loaded between two messages, and
prediction never pauses), or returns None when the section names no federation.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..errors import ConfigError

log = logging.getLogger("streamfuse.gateway.federation")


def join_federation(gateway: Any, stop: asyncio.Event) -> asyncio.Task[None] | None:
    f = gateway.config.federated
    if not f.federation:
        return None
    from ..federated.client import ClientSettings, FederatedClient
    from ..federated.learners import NotMergeable

    try:
        settings = ClientSettings(
            server=f.server or gateway.config.mqtt.broker, federation=f.federation,
            site=f.site, round_interval_s=f.round_interval_s, min_parties=f.min_parties,
            dp_clip=f.dp_clip, dp_noise=f.dp_noise, round_every=f.round_every,
            round_quiet_s=f.round_quiet_s or None,
        )
        client = FederatedClient(gateway.engine, settings)
    except (ValueError, NotMergeable) as exc:  # a bad name, or a model that cannot federate
        raise ConfigError(f"[federated]: {exc}") from None
    gateway.federation = client
    log.info("federation %s: joining as site %s via %s", f.federation, f.site, settings.server)
    return asyncio.create_task(client.run(stop), name="streamfuse[gateway].federation")
