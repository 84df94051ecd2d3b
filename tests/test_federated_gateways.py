"""Two gateway processes and a federation server over the real broker (issue 18, Done-when 2)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import pytest

from streamfuse.mqtt.address import parse_broker_url

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _spawn(args: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    full = dict(os.environ, PYTHONPATH=str(REPO), **env)
    with open(log, "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "streamfuse.cli", *args],
                                stdout=subprocess.DEVNULL, stderr=err, env=full, cwd=REPO)


async def _watch(url: str, prefixes: list[str], fed: str, seconds: float) -> list[tuple[str, str]]:
    """Every round announcement and prediction, in arrival order: ("round", n) / ("pred", p)."""
    host, port, *_ = parse_broker_url(url)
    events: list[tuple[str, str]] = []
    async with aiomqtt.Client(host, port) as client:
        await client.subscribe(f"streamfuse-fed/{fed}/round", qos=1)
        for p in prefixes:
            await client.subscribe(f"{p}/+/prediction", qos=0)
        try:
            async with asyncio.timeout(seconds):
                async for msg in client.messages:
                    t = str(msg.topic)
                    if t.endswith("/round"):
                        events.append(("round", str(json.loads(msg.payload)["round"])))
                    else:
                        events.append(("pred", t.split("/", 1)[0]))
        except TimeoutError:
            pass
    return events


def _wait_for(log: Path, pattern: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if re.search(pattern, log.read_text(errors="replace")):
            return
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} not in {log}:\n{log.read_text()}")


def test_two_gateway_processes_federate_and_keep_predicting(
    broker_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    fed = topic_prefix
    prefixes = [f"{topic_prefix}-a", f"{topic_prefix}-b"]
    status = tmp_path / "status.json"
    procs: list[subprocess.Popen[bytes]] = []
    logs = {name: tmp_path / f"{name}.log" for name in ("server", "a", "b", "sa", "sb")}
    try:
        procs.append(_spawn(["federation", "--broker", broker_url, "--federation", fed,
                             "--interval-s", "4", "--wait-s", "2", "--min-parties", "2",
                             "--status", str(status)], logs["server"]))
        for site, prefix in zip("ab", prefixes, strict=True):
            procs.append(_spawn(
                ["--log-level", "INFO", "gateway", "--broker", broker_url, "--prefix", prefix,
                 "--client-id", f"gw-{prefix}"], logs[site],
                STREAMFUSE_FEDERATED_FEDERATION=fed, STREAMFUSE_FEDERATED_SITE=site,
                STREAMFUSE_FEDERATED_MIN_PARTIES="2"))
        for site, proc in zip("ab", procs[1:], strict=True):  # start-up compiles kernels
            _wait_for(logs[site], "gateway connected", proc)
        for i, (site, prefix) in enumerate(zip("ab", prefixes, strict=True)):
            procs.append(_spawn(["simulate", "--broker", broker_url, "--prefix", prefix,
                                 "--devices", "2", "--duration", "32", "--seed", str(i + 1)],
                                logs[f"s{site}"]))
        events = asyncio.run(_watch(broker_url, prefixes, fed, 34.0))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    st = json.loads(status.read_text())
    assert st["completed"] >= 3, st
    assert not st["rejected"]
    adopted = {}
    for site in "ab":
        text = logs[site].read_text(errors="replace")
        found = re.findall(rf"site {site} adopted round (\d+) model (\w+)", text)
        assert len(found) >= 3, text[-3000:]
        adopted[site] = {int(r): fp for r, fp in found}
    common = sorted(set(adopted["a"]) & set(adopted["b"]))
    assert len(common) >= 3
    for r in common:  # after every round both gateways hold the same merged model
        assert adopted["a"][r] == adopted["b"][r]
    # between every two round announcements once learning is under way, both gateways
    # published predictions: neither stopped during a round
    rounds = [i for i, (kind, _) in enumerate(events) if kind == "round"]
    assert len(rounds) >= 3
    for i, j in zip(rounds[1:], rounds[2:], strict=False):
        between = {who for kind, who in events[i:j] if kind == "pred"}
        assert between == set(prefixes), (i, j, between)
