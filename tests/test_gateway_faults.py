"""The gateway against a real Mosquitto: broker restart, SIGKILL + checkpoint resume, signals."""

from __future__ import annotations

import asyncio
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiomqtt
import pytest

from streamfuse.engine import Engine
from streamfuse.gateway.app import Gateway
from streamfuse.gateway.checkpoint import CheckpointStore, state_digest
from streamfuse.mqtt.address import parse_broker_url
from streamfuse.mqtt.child import find_mosquitto
from streamfuse.mqtt.sockets import free_port
from streamfuse.mqtt.sockets import mqtt_connect_ok as _mqtt_connect_ok
from streamfuse.types import RawMessage
from tests.gateway_configs import gateway_config
from tests.qos1_publisher import chunk_key
from tests.streams import device_messages, merge

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[1]


class OwnMosquitto:
    """A Mosquitto we may kill: own port, own config (persistence, optional password file)
    in the folder ``tmp`` (made if need be). ``with OwnMosquitto(folder) as broker:`` starts
    it and stops it however the block ends."""

    def __init__(self, tmp: Path, *, password_file: Path | None = None) -> None:
        binary = find_mosquitto()
        if binary is None:
            pytest.skip("mosquitto is not installed")
        tmp.mkdir(parents=True, exist_ok=True)
        self.binary, self.tmp, self.port = binary, tmp, free_port()
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {tmp}/",
            "set_tcp_nodelay true",
            "max_queued_messages 100000",
            "max_inflight_messages 1000",
            "log_dest stderr",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # keep our identity: the files here are ours
        if password_file is not None:
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.tmp / "broker.log", "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf)],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while (
            not _mqtt_connect_ok("127.0.0.1", self.port, 0.5)
            if self.conf.read_text().find("password_file") < 0
            else not self._listening()
        ):
            assert self.proc.poll() is None, (self.tmp / "broker.log").read_text()
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)

    def _listening(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> OwnMosquitto:
        try:
            self.start()
        except BaseException:
            self.stop()  # one that started and never answered
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class VirtualClock:
    """Gateway clock at SPEED x wall time that can be paused (while the broker is down)."""

    def __init__(self, offset: float, speed: float) -> None:
        self.offset, self.speed = offset, speed
        self.m0 = time.monotonic()
        self.paused_at: float | None = None
        self.paused = 0.0

    def __call__(self) -> float:
        t = self.paused_at if self.paused_at is not None else time.monotonic()
        return self.offset + (t - self.m0 - self.paused) * self.speed

    def pause(self) -> None:
        self.paused_at = time.monotonic()

    def resume(self) -> None:
        assert self.paused_at is not None
        self.paused += time.monotonic() - self.paused_at
        self.paused_at = None


async def publish_qos1(url: str, messages, clock: VirtualClock, acked: set, outage) -> None:
    """Publish in step with ``clock`` at QoS 1, reconnecting (and re-sending) across outages."""
    host, port, *_ = parse_broker_url(url)
    i = 0
    while i < len(messages):
        try:
            async with aiomqtt.Client(host, port, identifier=f"pub-{os.getpid()}") as client:
                while i < len(messages):
                    msg, arrival = messages[i]
                    wait = (arrival - clock()) / clock.speed
                    if wait > 0:
                        await asyncio.sleep(wait)
                    await client.publish(msg.topic, msg.payload, qos=1)
                    key = chunk_key(msg)
                    if key is not None:
                        acked.add(key)
                    i += 1
                    if i == len(messages) // 2:
                        await outage()
        except aiomqtt.MqttError:
            await asyncio.sleep(0.1)


def test_broker_restart_mid_stream_every_chunk_processed_or_reported_as_gap(
    tmp_path: Path, topic_prefix: str
) -> None:
    broker = OwnMosquitto(tmp_path)
    msgs = merge(*(device_messages(d, 16, seed=i, prefix=topic_prefix) for i, d in enumerate("ab")))
    holes = {("a", "acc", 40), ("b", "ecg", 90), ("b", "eeg", 120)}  # never published
    msgs = [m for m in msgs if chunk_key(m[0]) not in holes]
    sizes = {"ecg": 25, "eeg": 26, "acc": 5}
    clock = VirtualClock(msgs[0][1] - 0.5, speed=8.0)
    seen: list[tuple[str, str, int]] = []

    def tap(raw: RawMessage) -> None:
        key = chunk_key(raw)
        if key is not None:
            seen.append(key)

    async def scenario() -> Gateway:
        engine = Engine(prefix=topic_prefix)
        settings = gateway_config(
            broker_url=broker.url,
            prefix=topic_prefix,
            client_id=f"gw-{topic_prefix}",
            backoff_initial_s=0.05,
            backoff_max_s=0.2,
        )
        gateway = Gateway(engine, settings, clock=clock, on_message=tap)
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        await asyncio.wait_for(gateway.connected.wait(), 10)

        async def outage() -> None:
            clock.pause()
            await asyncio.to_thread(broker.stop)
            await asyncio.sleep(0.3)
            await asyncio.to_thread(broker.start)
            clock.resume()

        acked: set[tuple[str, str, int]] = set()
        await publish_qos1(broker.url, msgs, clock, acked, outage)
        deadline = time.monotonic() + 10
        while not set(acked) <= set(seen) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        stop.set()
        await task
        gateway.acked = acked  # type: ignore[attr-defined]
        return gateway

    with broker:
        gateway = asyncio.run(scenario())
    acked = gateway.acked  # type: ignore[attr-defined]
    assert gateway.reconnects >= 1
    published = {chunk_key(m) for m, _ in msgs} - {None}
    assert acked == published  # the publisher re-sent whatever the outage interrupted
    assert published <= set(seen)  # every acknowledged chunk reached the engine
    dupes = len(seen) - len(set(seen))
    for device in "ab":
        c = gateway.engine.sessions[device].aligner.counters
        mine = [k for k in seen if k[0] == device]
        assert c["chunks"] == len(mine)
        assert c["duplicates"] == len(mine) - len(set(mine))
        # the only chunks not processed are the holes, and they are reported as gaps
        assert c["gap_samples"] == sum(sizes[m] for d, m, _ in holes if d == device)
        assert c["gaps"] == sum(1 for d, _, _ in holes if d == device)
    assert dupes == sum(gateway.engine.sessions[d].aligner.counters["duplicates"] for d in "ab")


# ------------------------------------------------------------------ subprocess daemon


def gateway_cmd(url: str, prefix: str, ckpt: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamfuse.cli",
        "--log-level",
        "INFO",
        "gateway",
        "--broker",
        url,
        "--prefix",
        prefix,
        "--client-id",
        f"gw-{prefix}",
        "--checkpoint-dir",
        str(ckpt),
        "--checkpoint-interval",
        "0.3",
        *extra,
    ]


def spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log, "ab") as err:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=REPO)


def wait_for_log(log: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, log.read_text(errors="replace"))
        if m:
            return m
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in log:\n{log.read_text()}")


async def realtime_publish(url: str, prefix: str, seconds: float, start: float) -> None:
    """Three devices in real time (device clock = seconds since ``start``), QoS 1."""
    msgs = merge(
        *(
            device_messages(d, seconds, seed=i, offset=0.0, prefix=prefix)
            for i, d in enumerate(("p", "q", "r"))
        )
    )
    host, port, *_ = parse_broker_url(url)
    async with aiomqtt.Client(host, port) as client:
        for msg, arrival in msgs:
            wait = start + arrival - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await client.publish(msg.topic, msg.payload, qos=1)


async def count_predictions(url: str, prefix: str, seconds: float) -> Counter[str]:
    host, port, *_ = parse_broker_url(url)
    seen: Counter[str] = Counter()
    async with aiomqtt.Client(host, port) as client:
        await client.subscribe(f"{prefix}/+/prediction", qos=1)
        try:
            async with asyncio.timeout(seconds):
                async for message in client.messages:
                    seen[str(message.topic).split("/")[-2]] += 1
        except TimeoutError:
            pass
    return seen


def test_sigkill_then_restart_resumes_from_the_checkpoint(
    tmp_path: Path, broker_url: str, topic_prefix: str
) -> None:
    ckpt = tmp_path / "ckpt"
    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"
    first = spawn(gateway_cmd(broker_url, topic_prefix, ckpt), log1)
    try:
        wait_for_log(log1, r"gateway connected", first)
        start = time.time()
        asyncio.run(realtime_publish(broker_url, topic_prefix, 5.0, start))
        time.sleep(1.0)  # windows close and a checkpoint or two is written after learning
        first.kill()
        first.wait(10)
        newest = CheckpointStore(ckpt).files()[0]
        state, body_sha = CheckpointStore.read(newest)
        saved = state["engine"]
        assert saved.counters["learned"] > 0 and saved.counters["windows"] > 0
        second = spawn(gateway_cmd(broker_url, topic_prefix, ckpt), log2)
        m = wait_for_log(
            log2,
            r"restored checkpoint (\S+) \(body sha256 (\w+), model state "
            r"sha256 (\w+)",
            second,
        )
        # the restored model equals the checkpointed one
        assert Path(m.group(1)) == newest and m.group(2) == body_sha
        assert m.group(3) == state_digest(saved.hub)
        wait_for_log(log2, r"gateway connected", second)

        async def more() -> Counter[str]:
            counting = asyncio.create_task(count_predictions(broker_url, topic_prefix, 5.0))
            await asyncio.sleep(0.3)
            await realtime_publish(broker_url, topic_prefix, 3.0, time.time())
            return await counting

        after = asyncio.run(more())
        assert set(after) == {"p", "q", "r"} and sum(after.values()) >= 3  # predictions go on
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, log2.read_text()
        final, _ = CheckpointStore.read(CheckpointStore(ckpt).files()[0])
        assert final["engine"].counters["windows"] > saved.counters["windows"]
        assert final["engine"].counters["chunks"] > saved.counters["chunks"]
    finally:
        for proc in (first, locals().get("second")):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_sigterm_drains_and_checkpoints_a_second_signal_exits_at_once(
    tmp_path: Path, broker_url: str, topic_prefix: str
) -> None:
    ckpt = tmp_path / "ckpt"
    log = tmp_path / "gw.log"
    proc = spawn(gateway_cmd(broker_url, topic_prefix, ckpt, "--checkpoint-interval", "600"), log)
    try:
        wait_for_log(log, r"gateway connected", proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        text = log.read_text()
        assert "SIGTERM: draining and checkpointing" in text
        assert len(CheckpointStore(ckpt).files()) == 1  # the shutdown checkpoint
        state, _ = CheckpointStore.read(CheckpointStore(ckpt).files()[0])
        assert pickle.loads(pickle.dumps(state["engine"])).prefix == topic_prefix

        # two signals delivered together: the first starts the drain, the second ends it now
        proc = spawn(
            gateway_cmd(broker_url, topic_prefix, ckpt, "--checkpoint-interval", "600"), log
        )
        wait_for_log(log, r"restored checkpoint", proc)
        wait_for_log(log, r"gateway connected", proc)
        proc.send_signal(signal.SIGSTOP)
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGCONT)
        assert proc.wait(30) == 130
        assert "exiting at once" in log.read_text()
        assert len(CheckpointStore(ckpt).files()) == 1  # no shutdown checkpoint this time
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
