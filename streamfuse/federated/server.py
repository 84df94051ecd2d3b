"""The federation server: opens rounds, collects the sites' updates, publishes the merged model.

A shell over :mod:`streamfuse.mqtt`; the protocol is in :mod:`.protocol`. When a site asks
for a round (``request/{site}``, sent by its round policy, :mod:`.policy`), and in any case
``interval_s`` after the previous round (a backstop for a lost request), it announces
round ``r`` and waits up to ``wait_s`` for updates (less when
every site that answered the previous round has, and at least ``min_parties``; the first round
waits the whole ``wait_s``). With at least ``min_parties`` valid updates it
merges them (:func:`~streamfuse.federated.merge.merge_hubs`, the previous model as base) and
publishes the model, retained, so a site that joins late adopts it on subscribing. Otherwise
the round is counted as ``rounds_short`` and the previous model stands. A site that does not
answer (disconnected, slow) is simply not in the round. An update that breaks the protocol
(not JSON, wrong schema, wrong-shaped or non-finite arrays, a round that is not open) is
rejected, counted by reason in :attr:`FederationServer.rejected` and logged once per reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any

from ..mqtt.client import open_session
from .merge import State, fingerprint, merge_hubs
from .protocol import (
    ROOT,
    VERSION,
    Update,
    UpdateRejected,
    check_name,
    encode,
    parse_request,
    parse_update,
    topic,
)

log = logging.getLogger("streamfuse.federated.server")


class FederationServer:
    """Runs rounds for one federation on one broker."""

    def __init__(self, broker: str, federation: str, *, interval_s: float = 60.0,
                 wait_s: float = 10.0, min_parties: int = 2, root: str = ROOT) -> None:
        if min_parties < 1 or not interval_s > 0 or not wait_s >= 0:
            raise ValueError("pass min_parties >= 1, interval_s > 0, wait_s >= 0")
        self.broker = broker
        self.federation = check_name("federation", federation)
        self.interval_s = interval_s
        self.wait_s = wait_s
        self.min_parties = min_parties
        self.root = root
        self.round = 0
        self.base: State | None = None
        self.fingerprint = ""
        self.completed = 0
        self.short = 0
        self.rejected: Counter[str] = Counter()
        self.known: set[str] = set()
        self.history: list[dict[str, Any]] = []  # per completed round: sites, n
        self._updates: dict[str, Update] = {}
        self._open = False
        self._answered = asyncio.Event()
        self._requested = asyncio.Event()
        self.requests: Counter[str] = Counter()  # by reason: count, quiet
        self.triggers: Counter[str] = Counter()  # rounds opened by: request, timer

    def _t(self, *parts: str) -> str:
        return topic(self.federation, *parts, root=self.root)

    def receive(self, topic_name: str, payload: bytes) -> None:
        """Handle one message on ``update/{site}`` or ``request/{site}`` (public for tests)."""
        kind, site = topic_name.rsplit("/", 2)[-2:]
        try:
            check_name("site", site)
            if kind == "request":
                self.requests[parse_request(payload, site)] += 1
                # during a round a site that has not answered yet is answering it anyway; one
                # that has asks for the next round
                if not self._open or site in self._updates:
                    self._requested.set()
                return
            upd = parse_update(payload, site)
            if not self._open or upd.round != self.round:
                raise UpdateRejected("stale", f"update for round {upd.round}; open: "
                                     f"{self.round if self._open else 'none'}")
        except (UpdateRejected, ValueError) as exc:
            reason = exc.reason if isinstance(exc, UpdateRejected) else "malformed"
            self.rejected[reason] += 1
            if self.rejected[reason] == 1:
                log.warning("federation %s: update from %r rejected (%s); further rejections "
                            "of this kind are counted only", self.federation, site, exc)
            return
        self._updates[site] = upd
        if (self.known and len(self._updates) >= self.min_parties
                and self.known <= set(self._updates)):
            self._answered.set()

    def close_round(self) -> State | None:
        """Merge the open round's updates (None: fewer than ``min_parties``)."""
        self._open = False
        ups = list(self._updates.values())
        self._updates = {}
        # the next round waits for the sites heard from in this one (a site that missed it is
        # not waited for, and is welcome whenever it answers again)
        self.known = {u.site for u in ups}
        if len(ups) < self.min_parties:
            self.short += 1
            log.info("federation %s: round %d had %d of %d parties; model unchanged",
                     self.federation, self.round, len(ups), self.min_parties)
            return None
        merged = merge_hubs([u.state for u in ups], [u.n for u in ups], self.base)
        self.base = merged
        self.fingerprint = fingerprint(merged)
        self.completed += 1
        self.history.append({"round": self.round, "sites": sorted(u.site for u in ups),
                             "n": sum(u.n for u in ups)})
        return merged

    def open_round(self) -> bytes:
        self.round += 1
        self._open = True
        self._updates = {}
        self._answered.clear()
        return encode({"v": VERSION, "round": self.round, "wait_s": self.wait_s})

    def status(self) -> dict[str, Any]:
        """JSON-ready figures: rounds, the model's fingerprint, who took part, rejections."""
        return {"federation": self.federation, "round": self.round,
                "completed": self.completed, "short": self.short,
                "fingerprint": self.fingerprint, "history": self.history,
                "requests": dict(self.requests), "triggers": dict(self.triggers),
                "rejected": dict(self.rejected)}

    async def run(self, stop: asyncio.Event, rounds: int | None = None,
                  on_round: Any = None) -> None:
        """Serve rounds until ``stop`` is set (or ``rounds`` rounds completed)."""
        async with open_session(self.broker, client_id=None) as client:
            await client.subscribe(self._t("update", "+"), qos=1)
            await client.subscribe(self._t("request", "+"), qos=1)
            reader = asyncio.create_task(self._read(client))
            try:
                next_at = time.monotonic() + self.interval_s
                while not stop.is_set() and (rounds is None or self.completed < rounds):
                    waits = {asyncio.create_task(stop.wait()),
                             asyncio.create_task(self._requested.wait())}
                    await asyncio.wait(waits, timeout=max(0.0, next_at - time.monotonic()),
                                       return_when=asyncio.FIRST_COMPLETED)
                    for t in waits:
                        t.cancel()
                    if stop.is_set():
                        break
                    self.triggers["request" if self._requested.is_set() else "timer"] += 1
                    self._requested.clear()
                    next_at = time.monotonic() + self.interval_s
                    await client.publish(self._t("round"), self.open_round(), qos=1)
                    try:
                        await asyncio.wait_for(self._answered.wait(), self.wait_s)
                    except TimeoutError:
                        pass
                    merged = self.close_round()
                    if on_round is not None:
                        on_round(self)
                    if merged is not None:
                        ups = self.history[-1]
                        await client.publish(self._t("model"), encode({
                            "v": VERSION, "round": self.round, "parties": len(ups["sites"]),
                            "n": ups["n"], "fingerprint": self.fingerprint, "state": merged,
                        }), qos=1, retain=True)
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, client: Any) -> None:
        async for msg in client.messages:
            payload = msg.payload if isinstance(msg.payload, bytes) else bytes(str(msg.payload),
                                                                             "utf-8")
            self.receive(str(msg.topic), payload)
