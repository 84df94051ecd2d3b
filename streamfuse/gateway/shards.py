"""Serving a set of device shards in one process: one :class:`~.server.Server` per shard.

A shard ``k`` of a deployment with shards is an ordinary gateway under the prefix
``{prefix}/{k}`` (``streamfuse.topics.shard_prefix``) with its own persistent MQTT session
(client id ``{client_id}-s{k}``, clean session off, QoS 1), its own checkpoints and its own
journal (``{checkpoint.dir}/shard-{k}``, ``{journal.dir}/shard-{k}``), and in a federation
(``[federated]``) it is a site of its own (``{site}-{k}``), so the shards' models are merged
with each other's (``streamfuse cluster run --merge-every``): everything a shard's
devices have is in that folder and that session, so the shard can stop here and start in another
process (:meth:`ShardHost.release`, then :meth:`ShardHost.add` there) while the broker queues
what its devices send meanwhile.

:class:`ShardHost` adds and releases shards at run time on one event loop; its
:class:`ShardMetrics` serves every shard's Prometheus figures on one endpoint with a ``shard``
label. ``streamfuse gateway`` hosts one when ``[shards] count`` is set; each actor of
``streamfuse cluster`` hosts one for the shards it owns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Metric
from prometheus_client.registry import Collector

from .. import topics
from ..errors import BrokerError
from ..types import Prediction, RawMessage
from .config import GatewayConfig
from .metrics import MetricsEndpoint

log = logging.getLogger("streamfuse.gateway.shards")


def shard_folder(root: str, shard: int) -> str:
    """The folder of ``shard`` under ``root`` (checkpoints or journal)."""
    return os.path.join(root, f"shard-{shard}")


def shard_config(config: GatewayConfig, shard: int) -> GatewayConfig:
    """The settings of one shard's gateway, derived from the deployment's ``config``."""
    m, c, j, f = config.mqtt, config.checkpoint, config.journal, config.federated
    return dataclasses.replace(
        config,
        # a shard waits for its broker as long as it takes; its host decides when to give up
        mqtt=dataclasses.replace(
            m,
            prefix=topics.shard_prefix(m.prefix, shard),
            client_id=f"{m.client_id}-s{shard}",
            connect_timeout_s=0.0,
        ),
        checkpoint=dataclasses.replace(c, dir=shard_folder(c.dir, shard) if c.dir else ""),
        journal=dataclasses.replace(j, dir=shard_folder(j.dir, shard) if j.dir else ""),
        metrics=dataclasses.replace(config.metrics, port=0),  # the host serves them all
        shards=dataclasses.replace(config.shards, own=str(shard)),
        # in a federation each shard is a site of its own: the shards' models learn together
        federated=dataclasses.replace(f, site=f"{f.site or 'shard'}-{shard}"),
    )


@dataclasses.dataclass(slots=True)
class Tenure:
    """One stretch of a shard served here: when it started, when the first and the last
    message went to its engine, when it stopped (wall-clock seconds; ``None``: not yet)."""

    shard: int
    pid: int
    started: float
    first: float | None = None
    last: float | None = None
    stopped: float | None = None
    processed: int = 0

    def saw(self, _: RawMessage) -> None:
        now = time.time()
        if self.first is None:
            self.first = now
        self.last = now
        self.processed += 1


class ShardHost:
    """The shards one process serves, each a :class:`~.server.Server` on this event loop.

    Parameters
    ----------
    config
        The deployment's settings (``[shards] count`` > 0); each shard's are derived by
        :func:`shard_config`.
    on_prediction
        Sees every prediction of every shard.
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        on_prediction: Callable[[Prediction], None] | None = None,
    ) -> None:
        if config.shards.count <= 0:
            raise ValueError("a ShardHost needs [shards] count > 0")
        self.config = config
        self.on_prediction = on_prediction
        self.servers: dict[int, Any] = {}  # shard -> Server
        self.tasks: dict[int, asyncio.Task[int]] = {}
        self.tenures: list[Tenure] = []
        self.metrics = ShardMetrics(self)
        self._warm = True
        self._lock = asyncio.Lock()

    def warm_up(self) -> float:
        """Compile (or load) the engine's kernels now, before any shard is added, so that the
        first shard moved here later is not held up by it (3.7 s under load here); returns
        the seconds it took. Blocks: call it before serving."""
        from ..warmup import warm_up
        from . import server  # noqa: F401 - imported now, not when the first shard arrives

        took = warm_up(self.config.engine_config())
        self._warm = False
        return took

    @property
    def shards(self) -> tuple[int, ...]:
        return tuple(sorted(self.servers))

    async def add(self, shard: int, *, connect_timeout: float = 60.0) -> None:
        """Start serving ``shard``: restore its checkpoint and journal, connect its session;
        returns once it is connected. After ``connect_timeout`` it raises
        :class:`TimeoutError`, and the shard stays, connecting (the broker may come back)."""
        from .server import Server  # the server imports this module's users, not this module

        async with self._lock:
            if shard in self.servers:
                return
            count = self.config.shards.count
            if not 0 <= shard < count:
                raise ValueError(f"shard {shard} is outside 0..{count - 1}")
            tenure = Tenure(shard, os.getpid(), time.time())
            server = Server(
                shard_config(self.config, shard),
                handle_signals=False,
                warm=self._warm,
                on_prediction=self.on_prediction,
                on_message=tenure.saw,
            )
            self._warm = False  # one warm-up per process compiles for every shard
            self.servers[shard] = server
            self.tenures.append(tenure)
            self.tasks[shard] = asyncio.create_task(
                server.serve(), name=f"streamfuse[shard {shard}]"
            )
        await self._connected(shard, connect_timeout)
        log.info("shard %d served here (session %s)", shard, server.config.client_id)

    async def _connected(self, shard: int, timeout: float) -> None:
        server, task = self.servers[shard], self.tasks[shard]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if task.done():
                self.servers.pop(shard, None)
                self.tasks.pop(shard, None)
                task.result()  # its exception, if any
                raise RuntimeError(f"shard {shard} stopped during start-up")
            gateway = server.gateway
            if gateway is not None and gateway.connected.is_set():
                return
            await asyncio.sleep(0.02)
        raise TimeoutError(f"shard {shard} did not connect within {timeout:g} s")

    async def release(self, shard: int) -> Tenure | None:
        """Stop serving ``shard``: take nothing more (the broker keeps what arrives for the
        shard's session), drain what was queued, publish, write the final checkpoint and
        disconnect. Returns the shard's tenure here (``None`` if it was not served)."""
        async with self._lock:
            server = self.servers.get(shard)
            if server is None:
                return None
            server.should_exit.set()
            try:
                await self.tasks[shard]
            finally:
                del self.servers[shard], self.tasks[shard]
            tenure = next(t for t in reversed(self.tenures) if t.shard == shard)
            tenure.stopped = time.time()
        log.info("shard %d released after %d messages", shard, tenure.processed)
        return tenure

    async def release_all(self) -> list[Tenure]:
        done = await asyncio.gather(*(self.release(s) for s in self.shards))
        return [t for t in done if t is not None]

    def status(self) -> dict[int, dict[str, Any]]:
        """Per shard: devices, messages processed, predictions published, queued messages
        (the lag: what arrived and waits for the engine), connected."""
        out: dict[int, dict[str, Any]] = {}
        for shard, server in sorted(self.servers.items()):
            gateway = server.gateway
            if gateway is None:
                out[shard] = {"state": "starting"}
                continue
            out[shard] = {
                "state": "serving" if gateway.connected.is_set() else "connecting",
                "devices": len(gateway.engine.sessions),
                "processed": gateway.processed,
                "published": gateway.published,
                "queued": gateway.inbox.qsize() + len(gateway.ingest.labels),
                "restored": str(gateway.restored.path) if gateway.restored else None,
            }
        return out

    def totals(self) -> dict[str, Any]:
        """Predictions published, messages processed and the engines' counters, summed over
        the shards served here."""
        from collections import Counter

        sums: dict[str, Counter[str]] = {}
        published = processed = 0
        for server in self.servers.values():
            gateway = server.gateway
            if gateway is None:
                continue
            published += gateway.published
            processed += gateway.processed
            for part, counts in gateway.engine.stats().items():
                sums.setdefault(part, Counter()).update(counts)
        return {
            "published": published,
            "processed": processed,
            "stats": {part: dict(c) for part, c in sums.items()},
        }


class ShardMetrics(Collector):
    """Every shard's gateway metrics as one exposition, each sample labelled ``shard``."""

    def __init__(self, host: ShardHost) -> None:
        self.host = host
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        # ``serve`` is given metrics.port (plus the owner's index in a cluster; 0: any port)
        self.endpoint = MetricsEndpoint(
            self.registry,
            what="metrics of the shards served here",
            port_setting="the shards' metrics port",
            port_hint="choose a free port, or 0 for any",
        )

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for shard, server in list(self.host.servers.items()):
            gateway = server.gateway
            if gateway is None:
                continue
            for family in gateway.metrics.registry.collect():
                out = merged.get(family.name)
                if out is None:
                    out = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for s in family.samples:
                    out.add_sample(
                        s.name, {**s.labels, "shard": str(shard)}, s.value, s.timestamp, s.exemplar
                    )
        yield from merged.values()

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``port`` (0: a free one); returns the port."""
        return self.endpoint.serve(port, host)

    @property
    def port(self) -> int | None:
        """The port ``/metrics`` is served on (None: not served)."""
        return self.endpoint.port

    def close(self) -> None:
        self.endpoint.close()


async def serve_shards(config: GatewayConfig, *, duration: float | None = None) -> int:
    """``streamfuse gateway`` with ``[shards]``: serve the shards ``shards.own`` names until
    SIGINT/SIGTERM (or ``duration``), then release each (drain, checkpoint, disconnect)."""
    import signal

    host = ShardHost(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if config.metrics.port:
            host.metrics.serve(config.metrics.port, config.metrics.host)
        owned = topics.parse_shard_set(config.shards.own, config.shards.count)
        limit = config.mqtt.connect_timeout_s or float("inf")
        try:
            await asyncio.gather(*(host.add(s, connect_timeout=limit) for s in owned))
        except TimeoutError:
            raise BrokerError(
                f"could not connect the shards to the broker at {config.mqtt.broker} within "
                f"{limit:g} s; is it running and reachable? (mqtt.connect_timeout_s, "
                "--connect-timeout; 0 waits forever)"
            ) from None
        log.info("serving shards %s of %d", list(owned), config.shards.count)
        try:
            await asyncio.wait_for(stop.wait(), duration)
        except TimeoutError:
            pass
    finally:
        tenures = await host.release_all()
        host.metrics.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print(
        f"shards stopped: {sum(t.processed for t in tenures)} messages over {len(tenures)} shards"
    )
    return 0
