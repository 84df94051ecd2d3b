"""The shard-owner actor: a :class:`~streamfuse.gateway.shards.ShardHost` inside a Ray actor.

The host runs on an event loop of its own thread, started in ``__init__``, so the actor serves
without a caller: when Ray restarts a dead owner (``max_restarts``), ``__init__`` runs again in
the new process, claims from the controller the shards still assigned to this owner's name,
restores each from its checkpoint and journal, and reconnects each shard's persistent session
(the broker kept its messages meanwhile). Ray's calls (``acquire``, ``release``, ``status``)
come on Ray's threads and are handed to that loop.

This module imports no Ray: the controller wraps :class:`ShardOwner` with ``ray.remote``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..gateway.config import GatewayConfig
from ..gateway.shards import ShardHost

log = logging.getLogger("streamfuse.cluster.owner")
T = TypeVar("T")


class ShardOwner:
    """Serves the shards the controller gives it.

    Parameters
    ----------
    name
        The owner's name in the ledger (also its Ray actor name).
    config
        The deployment's gateway settings (``[shards] count`` set, checkpoints on a path every
        node reaches).
    claim
        Called once at start with ``(name, pid)``; returns the shards to serve at once (the
        ledger's, through the controller).
    metrics_port
        Serve every shard's metrics here with a ``shard`` label (0: a free port).
    """

    def __init__(
        self,
        name: str,
        config: GatewayConfig,
        claim: Callable[[str, int], list[int]],
        metrics_port: int = 0,
    ) -> None:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.name = name
        self.pid = os.getpid()
        self.node = socket.gethostname()
        self.born = time.time()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name=f"streamfuse[{name}]", daemon=True
        )
        self._thread.start()
        self.host: ShardHost = self._run(_make_host(config))
        self.metrics_port = self.host.metrics.serve(metrics_port, config.metrics.host)
        where = config.metrics.host
        # metrics.host = "0.0.0.0" for a Prometheus on another node (the default is loopback)
        self.metrics_url = (f"http://{self.node if where in ('0.0.0.0', '::', '') else where}"
                            f":{self.metrics_port}/metrics")
        # before claiming: a shard restored or moved here then waits for no compilation
        self.warm_up_s = self.host.warm_up()
        shards = claim(name, self.pid)
        log.info("owner %s (pid %d) starts with shards %s", name, self.pid, shards)
        self._run(_add_all(self.host, shards))
        self.ready_s = time.time() - self.born

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # ------------------------------------------------------------------ Ray's calls
    def ready(self) -> dict[str, Any]:
        """Who this owner is: name, pid, node, metrics port, shards, seconds it took to start."""
        return {"name": self.name, "pid": self.pid, "node": self.node,
                "metrics_port": self.metrics_port, "metrics_url": self.metrics_url,
                "shards": list(self.host.shards),
                "ready_s": self.ready_s, "warm_up_s": self.warm_up_s}

    def acquire(self, shard: int) -> dict[str, Any]:
        """Serve ``shard`` (the controller has made this owner its holder)."""
        self._run(self.host.add(shard))
        return self.ready()

    def release(self, shard: int) -> dict[str, Any] | None:
        """Stop serving ``shard``: drain, checkpoint, disconnect; returns its tenure here."""
        tenure = self._run(self.host.release(shard))
        return dataclasses.asdict(tenure) if tenure is not None else None

    def stop(self) -> list[dict[str, Any]]:
        """Release every shard (the fleet is stopping or this owner is being removed)."""
        tenures = self._run(self.host.release_all())
        self.host.metrics.close()
        return [dataclasses.asdict(t) for t in tenures]

    def totals(self) -> dict[str, Any]:
        """Predictions, messages and engine counters summed over this owner's shards, and the
        CPU seconds this process has used."""
        return {**self._run(_totals(self.host), timeout=10), "cpu_s": time.process_time()}

    def status(self) -> dict[str, Any]:
        """:meth:`ready` plus each shard's figures and this process's tenures so far."""
        return {**self.ready(), **self._run(_read(self.host), timeout=10)}


# coroutines kept out of the class: Ray makes an actor with an ``async def`` method an async
# actor, whose calls share one event loop; this one's calls block on their own threads instead
async def _make_host(config: GatewayConfig) -> ShardHost:
    return ShardHost(config)


async def _add_all(host: ShardHost, shards: list[int]) -> None:
    done = await asyncio.gather(*(host.add(s) for s in shards), return_exceptions=True)
    for shard, outcome in zip(shards, done, strict=True):
        if isinstance(outcome, TimeoutError):  # the broker is away: the shard keeps trying
            log.warning("shard %d not connected yet: %s", shard, outcome)
        elif isinstance(outcome, BaseException):
            raise outcome


async def _read(host: ShardHost) -> dict[str, Any]:
    return {"serving": host.status(), "tenures": [dataclasses.asdict(t) for t in host.tenures]}


async def _totals(host: ShardHost) -> dict[str, Any]:
    return host.totals()
