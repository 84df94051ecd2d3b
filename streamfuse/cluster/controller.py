"""The fleet's controller: one named Ray actor that owns the ledger and the owner actors.

Why a named actor and not leases in the checkpoint store: Ray already gives one place every
node can call and serialises what it changes (an async actor runs on one event loop, and
every change to the :class:`~.ownership.Ledger` happens between two awaits), so "one holder per
shard" is a rule of one object rather than of clocks and lease expiries on a shared disk. The
owners it creates are owned by it (Ray restarts them while it lives); if the controller itself
dies the fleet stops with it, and ``streamfuse cluster run`` starts it again, which restores
every shard from the store (see ``docs/scaling.md``).

Moving a shard (:meth:`FleetController.resize`): the old owner releases it (stops taking
messages, drains, writes the final checkpoint, disconnects its session), the ledger closes that
holding and assigns the shard anew, the new owner is recorded as holder and restores it. Only
the ledger changes assignments, and never for a held shard.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

import ray

from ..gateway.config import GatewayConfig
from .owner import ShardOwner
from .ownership import Ledger, plan
from .runtime import NAMESPACE

log = logging.getLogger("streamfuse.cluster.controller")


def _claim(controller_name: str, name: str, pid: int) -> list[int]:
    handle = ray.get_actor(controller_name, namespace=NAMESPACE)
    return list(ray.get(handle.claim.remote(name, pid)))


class FleetController:
    """Creates the owners, keeps the ledger, moves shards, answers ``status``.

    Parameters
    ----------
    config
        The deployment's gateway settings (``[shards] count`` > 0).
    actors
        Owners to start with.
    name
        This actor's name (the owners find it by it after a restart).
    cpus_per_actor
        Ray CPUs each owner reserves (placement: Ray spreads owners over nodes by them).
    """

    def __init__(self, config: GatewayConfig, actors: int, *, name: str,
                 cpus_per_actor: float = 1.0) -> None:  # fmt: skip
        self.config = config
        self.name = name
        self.cpus = cpus_per_actor
        self.next_index = 0
        self.names = [self._new_name() for _ in range(actors)]
        self.ledger = Ledger(config.shards.count, self.names)
        self.owners: dict[str, Any] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self.tenures: list[dict[str, Any]] = []  # reported by owners when they release
        self.lock = asyncio.Lock()
        self.started = time.time()
        self.federation: Any = None  # the FederationServer merging the shards' models
        self._stop = asyncio.Event()
        self._merging: asyncio.Task[Any] | None = None

    def _new_name(self) -> str:
        name = f"{self.name}-owner-{self.next_index}"
        self.next_index += 1
        return name

    # ------------------------------------------------------------------ owners
    def _spawn(self, name: str) -> Any:
        index = int(name.rsplit("-", 1)[1])
        port = self.config.metrics.port + index if self.config.metrics.port else 0
        options = {"name": name, "namespace": NAMESPACE, "max_restarts": -1,
                   "max_concurrency": 8, "num_cpus": self.cpus}
        return ray.remote(ShardOwner).options(**options).remote(  # type: ignore[attr-defined]
            name, self.config, functools.partial(_claim, self.name), port
        )

    async def start(self) -> dict[str, Any]:
        """Start every owner (and, with ``[federated] federation`` set, the federation
        server that merges the shards' models); returns :meth:`status` once each serves."""
        f = self.config.federated
        if f.federation:
            from ..federated.server import FederationServer

            server = FederationServer(
                f.server or self.config.mqtt.broker, f.federation,
                interval_s=f.round_interval_s, wait_s=min(10.0, f.round_interval_s / 2),
                min_parties=f.min_parties,
            )
            self.federation = server
            self._merging = asyncio.create_task(server.run(self._stop), name="fleet-merge")
        async with self.lock:
            for name in self.names:
                self.owners[name] = self._spawn(name)
            for name in self.names:
                self.info[name] = await self.owners[name].ready.remote()
        return await self.status()

    def claim(self, name: str, pid: int) -> list[int]:
        """An owner (re)starting: the shards it is to serve (:meth:`.Ledger.claim`)."""
        shards = self.ledger.claim(name, pid, time.time())
        log.info("owner %s (pid %d) claims shards %s", name, pid, shards)
        return shards

    # ------------------------------------------------------------------ moving shards
    async def _move(self, shard: int, old: str, new: str) -> None:
        tenure = await self.owners[old].release.remote(shard)
        if tenure is not None:
            self.tenures.append({**tenure, "owner": old})
        self.ledger.released(shard, old, time.time())
        self.ledger.assign(shard, new)
        self.ledger.hold(shard, new, self.info[new]["pid"], time.time())
        self.info[new] = await self.owners[new].acquire.remote(shard)

    async def resize(self, actors: int) -> dict[str, Any]:
        """Grow or shrink to ``actors`` owners: start the new ones, move the fewest shards
        to balance (release, then restore on the new owner), remove owners left empty."""
        if actors < 1:
            raise ValueError("a fleet needs at least one owner")
        async with self.lock:
            began = time.time()
            keep = self.names[:actors]
            while len(keep) < actors:
                keep.append(self._new_name())
            for name in keep:
                if name not in self.owners:
                    self.owners[name] = self._spawn(name)
                    self.info[name] = await self.owners[name].ready.remote()
            target = plan(self.ledger.assigned, keep)
            moves = [(s, self.ledger.assigned[s], o) for s, o in sorted(target.items())
                     if self.ledger.assigned[s] != o]  # fmt: skip
            await asyncio.gather(*(self._move(*move) for move in moves))
            for name in [n for n in self.names if n not in keep]:
                await self._retire(name)
            self.names = keep
            took = time.time() - began
        log.info("resized to %d owners in %.1f s, %d shards moved", actors, took, len(moves))
        return {"owners": keep, "moved": [list(m) for m in moves], "seconds": took}

    async def _retire(self, name: str) -> None:
        owner = self.owners.pop(name)
        for tenure in await owner.stop.remote():
            self.tenures.append({**tenure, "owner": name})
            self.ledger.released(tenure["shard"], name, time.time(), "stopped")
        ray.kill(owner, no_restart=True)
        self.info.pop(name, None)

    async def stop(self) -> dict[str, Any]:
        """Release every shard of every owner (drain, checkpoint, disconnect), remove the
        owners; returns the history (:meth:`history`)."""
        async with self.lock:
            await asyncio.gather(*(self._retire(n) for n in list(self.owners)))
            self.names = []
        self._stop.set()
        if self._merging is not None:
            await asyncio.gather(self._merging, return_exceptions=True)
        return self.history()

    # ------------------------------------------------------------------ reading
    async def status(self) -> dict[str, Any]:
        """Every owner's shards with their devices, messages, predictions and queue (lag)."""
        async def one(name: str) -> dict[str, Any]:
            try:
                return await asyncio.wait_for(self.owners[name].status.remote(), 15)
            except Exception as exc:  # noqa: BLE001 - a restarting owner answers later
                return {"name": name, "error": f"{type(exc).__name__}: {exc}"[:200]}

        owners = await asyncio.gather(*(one(n) for n in list(self.owners)))
        merging = self.federation.status() if self.federation is not None else None
        return {"shards": self.ledger.count, "assigned": dict(self.ledger.assigned),
                "owners": {o["name"]: o for o in owners}, "uptime_s": time.time() - self.started,
                "merging": merging}

    async def totals(self) -> list[dict[str, Any]]:
        """Each owner's :meth:`.ShardOwner.totals`."""
        return list(await asyncio.gather(*(o.totals.remote() for o in self.owners.values())))

    def history(self) -> dict[str, Any]:
        """The ledger's holdings and the tenures owners reported when releasing."""
        return {"holdings": [h.as_dict() for h in self.ledger.history],
                "tenures": list(self.tenures)}
