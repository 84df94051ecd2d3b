"""``deploy/mosquitto.acl`` against a private Mosquitto with a password file: a device may
publish data on its own topics only; only the labeller's labels reach the engine (issue 17:
"any publisher's labels train the shared model")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from streamfuse import topics
from streamfuse.engine import Engine
from streamfuse.gateway.app import Gateway
from streamfuse.types import RawMessage
from tests.chaos.brokers import PrivateMosquitto
from tests.gateway_configs import gateway_config
from tests.streams import device_messages

pytestmark = pytest.mark.broker
ACL = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto.acl"
PREFIX = topics.DEFAULT_PREFIX  # the prefix the shipped ACL is written for (private broker)
USERS = {"streamfuse-gateway": "gw-pw", "labeller": "lab-pw", "dev1": "d1-pw", "dev2": "d2-pw"}


async def publish(url: str, user: str, messages: list[RawMessage]) -> None:
    host, port = url.rsplit("@", 1)[1].split(":")
    async with aiomqtt.Client(host, int(port), username=user, password=USERS[user]) as client:
        for m in messages:
            await client.publish(m.topic, m.payload, qos=1)  # acknowledged even when denied


def test_only_the_labeller_trains_and_devices_publish_only_their_own_data(
    tmp_path: Path,
) -> None:
    broker = PrivateMosquitto(tmp_path / "broker", lines=(f"acl_file {ACL}",), users=USERS)
    own = [m for m, _ in device_messages("dev1", 3.0, prefix=PREFIX)]
    data = [m for m in own if not m.topic.endswith("/label")]
    dev1_labels = [m for m in own if m.topic.endswith("/label")]
    forged = [RawMessage(m.topic.replace("/dev1/", "/dev2/"), m.payload) for m in data[:30]]
    fake_prediction = [RawMessage(topics.prediction_topic(PREFIX, "dev1"), b'{"label": "x"}')]
    honest_labels = dev1_labels[:2]
    seen: list[str] = []  # topics handed to the engine, but the gateway's own predictions
    fakes: list[bytes] = []

    def note(raw: RawMessage) -> None:
        if not raw.topic.endswith("/prediction"):
            seen.append(raw.topic)
        elif raw.payload == fake_prediction[0].payload:
            fakes.append(raw.payload)

    async def main() -> Gateway:
        config = gateway_config(
            broker_url=broker.url_for("streamfuse-gateway", USERS["streamfuse-gateway"]),
            prefix=PREFIX,
        )
        gateway = Gateway(Engine(config.engine_config(), prefix=PREFIX), config,
                          on_message=note)
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        await asyncio.wait_for(gateway.connected.wait(), 30)
        url = broker.url_for("x", "y")
        await publish(url, "dev1", data + dev1_labels + forged + fake_prediction)
        await publish(url, "labeller", honest_labels)
        await publish(url, "labeller", data[:1])  # the labeller is no device either
        for _ in range(100):  # until the honest messages are in
            if len(seen) >= len(data) + len(honest_labels):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # anything denied would have arrived by now
        stop.set()
        await task
        return gateway

    with broker:
        gateway = asyncio.run(main())
        log = broker.log
    labels = [t for t in seen if t.endswith("/label")]
    assert len(labels) == len(honest_labels) == gateway.engine.counters["labels"]
    assert sum(t.endswith("/dev1/ecg") for t in seen) == sum(
        m.topic.endswith("/ecg") for m in data)  # dev1's own data all arrived, once
    assert not [t for t in seen if "/dev2/" in t] and "dev2" not in gateway.engine.sessions
    assert not fakes  # a device cannot pass for the gateway either
    assert len(seen) == len(data) + len(honest_labels)
    assert "Denied PUBLISH" in log  # the broker says what it refused
    assert len(dev1_labels) >= 3 and len(forged) == 30
