"""Fuzz, security and overload of the gateway, against a real Mosquitto."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from collections import Counter
from pathlib import Path

import aiomqtt
import numpy as np
import psutil
import pytest

from streamfuse import codec, topics
from streamfuse.engine import Engine
from streamfuse.errors import BrokerError
from streamfuse.gateway.app import Gateway
from streamfuse.gateway.metrics import parse_exposition
from streamfuse.mqtt.address import parse_broker_url
from streamfuse.mqtt.sockets import free_port
from streamfuse.types import Prediction, RawMessage, Rejection
from tests.gateway_configs import gateway_config
from tests.streams import device_messages, merge
from tests.test_gateway_faults import OwnMosquitto, spawn, wait_for_log

pytestmark = pytest.mark.broker
PREFIX = topics.DEFAULT_PREFIX


def junk_payloads(n: int, seed: int, prefix: str = PREFIX) -> list[RawMessage]:
    """Random bytes, mutated frames, hostile JSON and bad topics, on junk devices only."""
    rng = np.random.default_rng(seed)
    good = [
        m
        for m, _ in device_messages("x", 3, seed=seed, prefix=prefix)
        if m.payload.startswith(codec.MAGIC)
    ]
    out: list[RawMessage] = []
    for i in range(n):
        device = f"junk{i % 17}"
        base = good[int(rng.integers(len(good)))]
        kind = base.topic.rsplit("/", 1)[1]
        topic = f"{prefix}/{device}/{kind}"
        payload = bytearray(base.payload)
        r = i % 8
        if r == 0:
            payload = bytearray(rng.bytes(int(rng.integers(0, 200))))
        elif r == 1:  # truncated / extended
            cut = int(rng.integers(0, len(payload)))
            payload = payload[:cut] + rng.bytes(int(rng.integers(2)))
        elif r == 2:  # flipped header bytes
            for _ in range(3):
                payload[int(rng.integers(0, 48))] ^= 1 << int(rng.integers(8))
        elif r == 3:  # huge shape claims in a small frame
            payload[16:20] = rng.integers(2**20, 2**32, dtype=np.uint64).astype("<u4").tobytes()
        elif r == 4:
            payload = bytearray(
                rng.choice(
                    [
                        b'{"seq":-1}',
                        b"{",
                        b"[1,2]",
                        b'{"seq":1,"t0":"x","fs":1,"data":[]}',
                        b'{"__class__":"os.system"}',
                    ]
                )
            )
        elif r == 5:
            topic = rng.choice(
                [
                    f"{prefix}/../{kind}",
                    f"{prefix}/-bad/{kind}",
                    f"{prefix}/{device}/SPO2",
                    f"{prefix}/{device}/label",
                ]
            )
            if topic.endswith("label"):
                payload = bytearray(b'{"t_start": "nan"}')
        elif r == 6:  # NaN samples
            arr = np.frombuffer(bytes(payload[48:]), "<f4").copy()
            arr[int(rng.integers(arr.size))] = np.nan
            payload[48:] = arr.tobytes()
        else:  # oversize
            payload = bytearray(b"SF") + bytes(1 << 20)
        out.append(RawMessage(str(topic), bytes(payload)))
    return out


def honest(prefix: str = PREFIX) -> list[tuple[RawMessage, float]]:
    return merge(
        device_messages("h1", 20, seed=1, prefix=prefix),
        device_messages("h2", 20, seed=2, prefix=prefix),
    )


def test_fuzz_ten_thousand_payloads_rejected_by_reason_honest_windows_unchanged() -> None:
    clean = Engine()
    ref = [o for o in clean.push_many(honest()) + clean.flush() if isinstance(o, Prediction)]
    junk = junk_payloads(12_000, seed=7)
    stream = honest()
    step = len(stream) // len(junk) + 1
    mixed: list[tuple[RawMessage, float]] = []
    for i, (msg, now) in enumerate(stream):
        mixed.append((msg, now))
        if i * len(junk) // len(stream) < len(junk):
            lo, hi = i * len(junk) // len(stream), (i + 1) * len(junk) // len(stream)
            mixed.extend((j, now) for j in junk[lo:hi])
    assert (
        sum(1 for m, _ in mixed if "junk" in m.topic or "/../" in m.topic or "-bad" in m.topic)
        == len(junk)
        and step > 0
    )
    engine = Engine()
    out = engine.push_many(mixed) + engine.flush()
    rejected = [o for o in out if isinstance(o, Rejection)]
    # every junk message is either rejected (counted by reason) or a valid-looking chunk of a
    # junk device; honest devices are never rejected
    assert sum(engine.rejections.values()) == len(rejected) >= 0.8 * len(junk)
    assert Counter(r.reason for r in rejected) == engine.rejections
    assert {
        "oversize",
        "unknown_format",
        "truncated",
        "nonfinite",
        "bad_json",
        "bad_device",
    } <= set(engine.rejections)
    assert not any(r.device in ("h1", "h2") for r in rejected)
    got = [o for o in out if isinstance(o, Prediction) and o.device in ("h1", "h2")]
    assert got == ref  # the honest devices' windows and predictions, field for field


def test_fuzz_live_through_the_broker_counts_rejections_in_metrics(
    broker_url: str, topic_prefix: str
) -> None:
    junk = junk_payloads(1_500, seed=8, prefix=topic_prefix)
    offline = Engine(prefix=topic_prefix)
    for m in junk:
        offline.push(m, 0.0)

    async def scenario() -> tuple[Gateway, dict[str, float]]:
        gateway = Gateway(
            Engine(prefix=topic_prefix),
            gateway_config(
                broker_url=broker_url,
                prefix=topic_prefix,
                metrics_port=free_port(),
                metrics_refresh_s=0.1,
            ),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        await asyncio.wait_for(gateway.connected.wait(), 10)
        host, port, *_ = parse_broker_url(broker_url)
        async with aiomqtt.Client(host, port) as client:
            for m in junk:
                await client.publish(m.topic, m.payload, qos=1)
        deadline = time.monotonic() + 20
        while ours(gateway) < len(junk) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        url = f"http://127.0.0.1:{gateway.metrics.port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        assert gateway.connected.is_set()  # still running after the junk
        stop.set()
        await task
        return gateway, parse_exposition(text.decode())

    def ours(gateway: Gateway) -> int:  # our own published predictions come back: not junk
        return gateway.processed - gateway.engine.counters.get("own_output_ignored", 0)

    gateway, metrics = asyncio.run(scenario())
    assert ours(gateway) == len(junk)
    assert gateway.engine.rejections == offline.rejections  # same reasons, same counts
    for reason, n in offline.rejections.items():
        assert metrics[f'streamfuse_decode_errors_total{{reason="{reason}"}}'] == n
    assert metrics['streamfuse_messages_total{kind="data"}'] + metrics.get(
        'streamfuse_messages_total{kind="label"}', 0
    ) == len(junk)


def test_payloads_are_never_unpickled_and_oversize_is_refused_before_allocation(
    tmp_path: Path,
) -> None:
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    engine = Engine()
    for kind in ("ecg", "label"):
        out = engine.push(RawMessage(f"{PREFIX}/dev1/{kind}", pickle.dumps(Evil())), 0.0)
        assert isinstance(out[0], Rejection)
    assert not marker.exists()
    big = b"SF" + bytes(8 << 20)
    tracemalloc.start()
    try:
        out = engine.push(RawMessage(f"{PREFIX}/dev1/eeg", big), 0.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out[0].reason == "oversize" and peak < 256 * 1024  # vs an 8 MiB payload
    for topic in (
        f"{PREFIX}/dev 1/ecg",
        f"{PREFIX}/$SYS/ecg",
        f"{PREFIX}/a/b/ecg",
        f"{PREFIX}/{'d' * 65}/ecg",
    ):
        assert isinstance(engine.push(RawMessage(topic, b"{}"), 0.0)[0], Rejection)
    assert not engine.sessions  # nothing was created for any of them


def test_password_protected_broker_right_and_wrong_password(tmp_path: Path) -> None:
    import os
    import shutil

    if shutil.which("mosquitto_passwd") is None:
        msg = "mosquitto_passwd is not installed (Debian: apt-get install mosquitto)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "gw", "right"], check=True)
    broker = OwnMosquitto(tmp_path, password_file=pw)

    async def connect(password: str) -> Gateway:
        gateway = Gateway(
            Engine(), gateway_config(broker_url=f"mqtt://gw:{password}@127.0.0.1:{broker.port}")
        )
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        done, _ = await asyncio.wait(
            {task, asyncio.create_task(gateway.connected.wait())},
            timeout=10,
            return_when=asyncio.FIRST_COMPLETED,
        )
        stop.set()
        await task
        return gateway

    with broker:
        assert asyncio.run(connect("right")).reconnects == 0
        with pytest.raises(BrokerError) as info:
            asyncio.run(connect("wrong"))
    text = str(info.value)
    assert "refused the login of user 'gw'" in text and "password" in text


def test_overload_keeps_memory_bounded_and_reports_shedding(
    tmp_path: Path, broker_url: str, topic_prefix: str
) -> None:
    port = free_port()
    log = tmp_path / "gw.log"
    cmd = [
        sys.executable,
        "-m",
        "streamfuse.cli",
        "--log-level",
        "INFO",
        "gateway",
        "--broker",
        broker_url,
        "--prefix",
        topic_prefix,
        "--max-queued",
        "50",
        "--metrics-port",
        str(port),
    ]
    proc = spawn(cmd, log)
    try:
        wait_for_log(log, r"gateway connected", proc)
        rss0 = psutil.Process(proc.pid).memory_info().rss
        msgs = [
            m
            for m, _ in merge(
                *(device_messages(f"d{i}", 60, seed=i, prefix=topic_prefix) for i in range(12))
            )
        ]
        peak = rss0

        async def flood() -> None:
            nonlocal peak
            host, p, *_ = parse_broker_url(broker_url)
            async with aiomqtt.Client(host, p, max_queued_outgoing_messages=0) as client:
                for i, m in enumerate(msgs):
                    await client.publish(m.topic, m.payload, qos=0)
                    if i % 500 == 0:
                        peak = max(peak, psutil.Process(proc.pid).memory_info().rss)
                        await asyncio.sleep(0)

        asyncio.run(flood())
        text = ""
        for _ in range(40):
            peak = max(peak, psutil.Process(proc.pid).memory_info().rss)
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            metrics = parse_exposition(text.decode())
            if metrics.get("streamfuse_queue_depth", 1) == 0:
                break
            time.sleep(0.25)
        shed = metrics.get('streamfuse_shed_total{kind="data"}', 0.0)
        handled = metrics['streamfuse_messages_total{kind="data"}']
        print(
            f"overload: {len(msgs)} sent, {handled:.0f} processed, {shed:.0f} shed, "
            f"RSS {rss0 / 2**20:.0f} -> peak {peak / 2**20:.0f} MiB"
        )
        assert shed > 0  # the gateway shed load and says so
        assert peak - rss0 < 400 * 2**20  # cap: 400 MiB above the idle gateway
    finally:
        proc.terminate()
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert code == 0, log.read_text()[-3000:]  # drained and stopped cleanly
