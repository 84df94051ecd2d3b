"""Federation over MQTT (issue 18): rounds, faults, what a site sends, differential privacy."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import numpy as np
import pytest

from streamfuse.config import EngineConfig
from streamfuse.federated.client import ClientSettings, FederatedClient
from streamfuse.federated.merge import fingerprint, hub_state
from streamfuse.federated.protocol import (
    UpdateRejected,
    encode,
    epsilon,
    parse_update,
    privatize,
)
from streamfuse.federated.server import FederationServer
from streamfuse.fusion.levels import Evidence, FusionHub
from streamfuse.learn.models import make_model

CFG = EngineConfig(classes=("rest", "task"), positive="task", selector_score="log_loss")


class _Site:
    """A stand-in engine: a real FusionHub taught windows of its own devices."""

    def __init__(self, seed: int, devices: list[str]) -> None:
        self.hub = FusionHub(CFG, lambda: make_model("logreg"))
        self.counters = {"learned": 0}
        self.rng = np.random.default_rng(seed)
        self.devices = devices
        self.values: set[float] = set()
        self.labels: list[str] = []
        self.predicted = 0

    def step(self) -> None:
        dev = self.devices[self.counters["learned"] % len(self.devices)]
        y = "task" if self.rng.random() < 0.5 else "rest"
        v = self.rng.normal(size=5) + (0.8 if y == "task" else 0.0)
        self.values.update(float(x) for x in v)
        feats = {"eeg": {f"e{j}": float(v[j]) for j in range(3)},
                 "ecg": {f"c{j}": float(v[3 + j]) for j in range(2)}}
        ev = Evidence({f"x{j}": float(x) for j, x in enumerate(v)}, feats,
                      {**feats["eeg"], **feats["ecg"]}, dev)
        verdict = self.hub.decide(ev)
        self.predicted += 1
        self.hub.learn(ev, verdict, y)
        self.labels.append(y)
        self.counters["learned"] += 1


def _numbers(x: Any, out: list[float]) -> list[float]:
    if isinstance(x, dict):
        for v in x.values():
            _numbers(v, out)
    elif isinstance(x, list):
        for v in x:
            _numbers(v, out)
    elif isinstance(x, float):
        out.append(x)
    return out


def _keys(x: Any, out: set[str]) -> set[str]:
    if isinstance(x, dict):
        for k, v in x.items():
            out.add(k)
            _keys(v, out)
    elif isinstance(x, list):
        for v in x:
            _keys(v, out)
    return out


def _update(site: _Site, name: str = "a", r: int = 1) -> bytes:
    return encode({"v": 1, "round": r, "site": name, "n": 3, "state": hub_state(site.hub)})


def test_malformed_and_wrong_shaped_updates_are_rejected_by_reason() -> None:
    s = _Site(1, ["d1"])
    for _ in range(30):
        s.step()
    good = json.loads(_update(s))
    assert parse_update(_update(s), "a").n == 3
    bad_w = json.loads(json.dumps(good))
    bad_w["state"]["models"]["early"]["W"] = [[0.0, 1.0]]
    nan = json.loads(json.dumps(good))
    nan["state"]["late"]["models"]["eeg"]["b"][0] = float("nan")
    cases = {
        b"not json": "malformed",
        json.dumps({"v": 2}).encode(): "malformed",
        json.dumps(dict(good, site="b")).encode(): "malformed",
        json.dumps(dict(good, n=-1)).encode(): "malformed",
        json.dumps(bad_w).encode(): "bad_shape",
        json.dumps(nan).encode(): "bad_shape",
        json.dumps(dict(good, state={"kind": "hub"})).encode(): "bad_shape",
    }
    for payload, reason in cases.items():
        with pytest.raises(UpdateRejected) as err:
            parse_update(payload, "a")
        assert err.value.reason == reason, payload[:60]
    server = FederationServer("mqtt://127.0.0.1:1", "f", min_parties=1)
    server.receive("streamfuse-fed/f/update/a", _update(s))  # no round open: stale
    server.open_round()
    server.receive("streamfuse-fed/f/update/a", json.dumps(bad_w).encode())
    server.receive("streamfuse-fed/f/update/a", _update(s, r=7))  # another round: stale
    server.receive("streamfuse-fed/f/update/bad site!", _update(s))
    server.receive("streamfuse-fed/f/update/a", _update(s))
    assert dict(server.rejected) == {"stale": 2, "bad_shape": 1, "malformed": 1}
    assert server.close_round() is not None and server.completed == 1


def test_privatize_clips_the_change_and_adds_noise() -> None:
    s = _Site(2, ["d1"])
    for _ in range(40):
        s.step()
    state = hub_state(s.hub)
    rng = np.random.default_rng(0)
    same = privatize(state, None, clip=1e9, noise=0.0, rng=rng)
    assert fingerprint(same) == fingerprint(state)
    clipped = privatize(state, None, clip=0.5, noise=0.0, rng=rng)
    a = np.array(_numbers(clipped["models"], []) + _numbers(clipped["late"]["models"], []))
    assert a.size
    w = np.asarray(clipped["models"]["early"]["W"])
    assert float(np.linalg.norm(w)) <= 0.5 + 1e-9
    noisy = privatize(state, None, clip=0.5, noise=1.0, rng=rng)
    assert fingerprint(noisy) != fingerprint(clipped)
    assert epsilon(10, 1.0) > epsilon(1, 1.0) > epsilon(1, 4.0) > 0
    assert epsilon(1, 0.0) == math.inf
    with pytest.raises(ValueError, match="clip"):
        privatize(state, None, clip=0.0, noise=1.0, rng=rng)


async def _federate(broker: str, fed: str, dp: float) -> dict[str, Any]:
    server = FederationServer(broker, fed, interval_s=0.4, wait_s=1.5, min_parties=2)
    sites = [_Site(10, ["dev-a-1", "dev-a-2"]), _Site(11, ["dev-b-1"]), _Site(12, ["dev-c-1"])]
    sent: list[tuple[str, bytes]] = []
    clients = [
        FederatedClient(site, ClientSettings(broker, fed, name, min_parties=2, dp_clip=dp,
                                             dp_noise=0.1 if dp else 0.0),
                        on_send=lambda t, b: sent.append((t, b)))
        for site, name in zip(sites, ("a", "b", "c"), strict=True)
    ]
    stop, stop_c = asyncio.Event(), asyncio.Event()
    during: list[int] = []

    async def learn(site: _Site) -> None:  # keeps predicting and learning throughout
        while not stop.is_set():
            site.step()
            await asyncio.sleep(0.005)

    tasks = [asyncio.create_task(server.run(stop))]
    tasks += [asyncio.create_task(c.run(stop)) for c in clients[:2]]
    c_task = asyncio.create_task(clients[2].run(stop_c))
    learners = [asyncio.create_task(learn(s)) for s in sites]
    async with asyncio.timeout(180):
        while server.completed < 1:
            await asyncio.sleep(0.05)
        stop_c.set()  # site c leaves after the first round (mid-federation)
        await asyncio.wait({c_task}, timeout=20)
        # two rounds more, watched from here (a fast machine may have run three already)
        target = max(3, server.completed + 2)
        while server.completed < target:
            before = [s.predicted for s in sites[:2]]
            await asyncio.sleep(0.3)
            during.append(min(s.predicted - b for s, b in zip(sites[:2], before, strict=True)))
        for t in learners:  # learning stops; the next round's model is the last word
            t.cancel()
        await asyncio.gather(*learners, return_exceptions=True)
        last = server.completed
        while server.completed < last + 1 or any(
                c.fingerprint != server.fingerprint for c in clients[:2]):
            await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait(set(tasks), timeout=20)
    return {"server": server, "sites": sites, "clients": clients, "sent": sent,
            "during": during}


@pytest.mark.broker
@pytest.mark.parametrize("dp", [0.0, 5.0], ids=["plain", "dp"])
def test_two_sites_complete_rounds_and_send_only_parameters(
    broker_url: str, topic_prefix: str, dp: float
) -> None:
    out = asyncio.run(_federate(broker_url, topic_prefix, dp))
    server, sites, clients = out["server"], out["sites"], out["clients"]
    assert server.completed >= 4 and not server.rejected
    assert ["a", "b", "c"] == server.history[0]["sites"]
    assert server.history[-2]["sites"] == server.history[-1]["sites"] == ["a", "b"]  # c left
    # both remaining sites hold the last merged model, and predict with the same one
    assert clients[0].fingerprint == clients[1].fingerprint == server.fingerprint
    assert fingerprint(hub_state(sites[0].hub)) == fingerprint(hub_state(sites[1].hub))
    assert min(out["during"]) > 0  # neither site stopped predicting during rounds
    # every message a site sent: parameters and counts only
    assert out["sent"]
    allowed = {"v", "round", "site", "n", "state", "kind", "models", "late", "losses",
               "selector", "score", "mean", "classes", "features", "counts", "means", "vars",
               "W", "b", "early", "intermediate", "eeg", "ecg", "discount", "why"}
    taught = set().union(*(s.values for s in sites))
    devices = {d for s in sites for d in s.devices}
    for t, payload in out["sent"]:
        assert t.startswith((f"streamfuse-fed/{topic_prefix}/update/",
                             f"streamfuse-fed/{topic_prefix}/request/"))
        text = payload.decode()
        assert not any(d in text for d in devices)
        msg = json.loads(text)
        assert _keys(msg, set()) <= allowed, _keys(msg, set()) - allowed
        assert not taught & set(_numbers(msg, []))  # no feature value travels
        assert "task" not in _keys(msg, set()) and "label" not in text


async def _quiet_rounds(broker: str, fed: str) -> dict[str, Any]:
    """Two sites learn a burst each, then nothing: the server's timer is an hour away, so
    every round is one a site asked for."""
    server = FederationServer(broker, fed, interval_s=3600.0, wait_s=2.0, min_parties=2)
    sites = [_Site(20, ["dev-a"]), _Site(21, ["dev-b"])]
    clients = [FederatedClient(site, ClientSettings(broker, fed, name, min_parties=2,
                                                    round_every=10**6, round_quiet_s=0.5,
                                                    poll_s=0.05))
               for site, name in zip(sites, ("a", "b"), strict=True)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(server.run(stop))]
    tasks += [asyncio.create_task(c.run(stop)) for c in clients]
    figures: dict[str, Any] = {}
    async with asyncio.timeout(60):
        await asyncio.sleep(0.5)  # subscribed
        assert sum(c.requested for c in clients) == 0  # nothing learnt: nothing asked
        for site in sites:  # a burst of labels, then quiet
            for _ in range(7):
                site.step()
        while server.completed < 1 or any(c.adopted < 1 for c in clients):
            await asyncio.sleep(0.05)
        figures["first"] = (server.completed, dict(server.triggers), server.history[0]["n"])
        await asyncio.sleep(1.5)  # quiet with nothing unmerged: no request, no round
        figures["idle"] = (server.completed, sum(c.requested for c in clients))
        for _ in range(3):
            sites[0].step()  # one site learns a little more: it alone asks
        while server.completed < 2:
            await asyncio.sleep(0.05)
        figures["second"] = (dict(server.requests), server.history[1]["n"])
    stop.set()
    await asyncio.wait(set(tasks), timeout=20)
    return figures


@pytest.mark.broker
def test_a_site_whose_learning_goes_quiet_asks_for_a_round(
    broker_url: str, topic_prefix: str
) -> None:
    f = asyncio.run(_quiet_rounds(broker_url, topic_prefix))
    completed, triggers, n = f["first"]
    assert completed == 1 and triggers == {"request": 1} and n == 14
    assert f["idle"] == (1, f["idle"][1]) and f["idle"][1] >= 1
    requests, n2 = f["second"]
    assert n2 == 3 and set(requests) == {"quiet"}
