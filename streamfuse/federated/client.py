"""A gateway's federation client: answers rounds with its model, adopts the merged one.

A shell over :mod:`streamfuse.mqtt` running as one more task in the gateway's event loop,
beside ingest: the engine never stops predicting or learning. On a round announcement it
takes the hub's state (:func:`~streamfuse.federated.merge.hub_state`: parameters and
aggregate statistics only), optionally privatised (:func:`.protocol.privatize`), and sends it
with the number of windows learnt since its previous update. It asks the server for a round
(``request/{site}``) when the round policy says so (:mod:`.policy`: ``round_every`` windows
learnt since its last update, or its learning quiet for ``round_quiet_s`` seconds with
windows unmerged), at most once per round. On a merged model built from at
least ``min_parties`` sites, newer than the one it holds, it loads it into the hub between two
messages (:func:`~streamfuse.federated.merge.load_hub`). A lost connection is retried with
backoff; a model that breaks the protocol is rejected and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BrokerError
from ..mqtt.client import open_session
from .merge import State, hub_state, load_hub, local_levels
from .policy import EVERY, QUIET_S, RoundPolicy, SiteLearning
from .protocol import (
    ROOT,
    VERSION,
    UpdateRejected,
    check_name,
    check_shareable,
    encode,
    parse_model,
    parse_round,
    privatize,
    topic,
)

log = logging.getLogger("streamfuse.federated.client")


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """A gateway's ``[federated]`` section, read by the gateway."""

    server: str
    federation: str
    site: str
    round_interval_s: float = 0.0
    min_parties: int = 2
    dp_clip: float = 0.0
    dp_noise: float = 0.0
    round_every: int = EVERY
    round_quiet_s: float | None = QUIET_S
    #: how often the policy is checked (s)
    poll_s: float = 0.5
    seed: int = 0
    root: str = ROOT


class FederatedClient:
    """Joins ``settings.federation`` for ``engine`` (any object with ``hub`` and ``counters``)."""

    def __init__(self, engine: Any, settings: ClientSettings,
                 on_send: Any = None) -> None:
        self.engine = engine
        self.s = settings
        check_name("site", settings.site)
        check_name("federation", settings.federation)
        self.adopted_round = 0
        self.fingerprint = ""
        self.sent = 0
        self.adopted = 0
        self.rejected: Counter[str] = Counter()
        self._base: State | None = None
        self.requested = 0
        self._learning = SiteLearning(RoundPolicy(settings.round_every, settings.round_quiet_s),
                                      int(engine.counters.get("learned", 0)))
        self._asked = False  # a request is out since the last update
        self._last_send = -float("inf")
        self._rng = np.random.default_rng(settings.seed)
        self._on_send = on_send  # tests: sees (topic, payload) of every message sent
        check_shareable(hub_state(engine.hub))  # ValueError: the gateway's ConfigError
        kept = local_levels(engine.hub)
        if kept:
            log.warning("federation %s: %s have no merge rule and learn at this site only",
                        settings.federation, ", ".join(kept))

    def _t(self, *parts: str) -> str:
        return topic(self.s.federation, *parts, root=self.s.root)

    def update(self, round_no: int) -> bytes:
        """The update for ``round_no`` (public for tests)."""
        state = hub_state(self.engine.hub)
        if self.s.dp_clip > 0:
            state = privatize(state, self._base, self.s.dp_clip, self.s.dp_noise, self._rng)
        self._learning.observe(int(self.engine.counters.get("learned", 0)), time.monotonic())
        n = self._learning.merged()
        self._asked = False
        return encode({"v": VERSION, "round": round_no, "site": self.s.site, "n": n,
                       "state": state})

    def adopt(self, payload: bytes) -> bool:
        """Load a merged model into the hub when it is newer and wide enough."""
        try:
            r, parties, fp, state = parse_model(payload)
        except UpdateRejected as exc:
            self.rejected[exc.reason] += 1
            if self.rejected[exc.reason] == 1:
                log.warning("federation %s: model rejected (%s)", self.s.federation, exc)
            return False
        if r <= self.adopted_round or parties < self.s.min_parties:
            return False
        load_hub(self.engine.hub, state)
        self._base = state
        self.adopted_round, self.fingerprint = r, fp
        self.adopted += 1
        log.info("federation %s: site %s adopted round %d model %s (%d parties)",
                 self.s.federation, self.s.site, r, fp, parties)
        return True

    def request(self, now: float) -> bytes | None:
        """A round request when the policy says this site needs a round (public for tests)."""
        self._learning.observe(int(self.engine.counters.get("learned", 0)), now)
        why = None if self._asked else self._learning.due(now)
        if why is None:
            return None
        self._asked = True
        return encode({"v": VERSION, "site": self.s.site, "why": why})

    async def run(self, stop: asyncio.Event) -> None:
        """Serve the federation until ``stop`` is set, reconnecting on failures."""
        backoff = 0.2
        while not stop.is_set():
            try:
                await self._session(stop)
                backoff = 0.2
            except BrokerError as exc:
                log.warning("federation %s: %s; retrying in %.1f s", self.s.federation, exc,
                            backoff)
                try:
                    await asyncio.wait_for(stop.wait(), backoff)
                except TimeoutError:
                    pass
                backoff = min(10.0, backoff * 2)

    async def _session(self, stop: asyncio.Event) -> None:
        async with open_session(self.s.server, client_id=None) as client:
            await client.subscribe(self._t("round"), qos=1)
            await client.subscribe(self._t("model"), qos=1)
            reader = asyncio.create_task(self._read(client))
            asker = asyncio.create_task(self._ask(client))
            stopper = asyncio.create_task(stop.wait())
            tasks: set[asyncio.Task[Any]] = {reader, asker, stopper}
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for t in (reader, asker):
                    if t.done():
                        t.result()
            finally:
                for t in tasks:
                    t.cancel()
                # bounded: a reader stuck in a publish must not hold the gateway's shutdown
                await asyncio.wait(tasks, timeout=5.0)

    async def _ask(self, client: Any) -> None:
        self._asked = False  # a new session: a request may have been lost with the old one
        while True:
            await asyncio.sleep(self.s.poll_s)
            body = self.request(time.monotonic())
            if body is None:
                continue
            t = self._t("request", self.s.site)
            if self._on_send is not None:
                self._on_send(t, body)
            await client.publish(t, body, qos=1)
            self.requested += 1

    async def _read(self, client: Any) -> None:
        loop = asyncio.get_running_loop()
        async for msg in client.messages:
            payload = msg.payload if isinstance(msg.payload, bytes) else bytes(
                str(msg.payload), "utf-8")
            name = str(msg.topic)
            if name.endswith("/model"):
                self.adopt(payload)
                continue
            try:
                r, _ = parse_round(payload)
            except UpdateRejected as exc:
                self.rejected[exc.reason] += 1
                continue
            if loop.time() - self._last_send < self.s.round_interval_s:
                continue  # answers at most once per round_interval_s
            self._last_send = loop.time()
            t, body = self._t("update", self.s.site), self.update(r)
            if self._on_send is not None:
                self._on_send(t, body)
            await client.publish(t, body, qos=1)
            self.sent += 1
