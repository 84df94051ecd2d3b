"""The embedded broker: both implementations carry messages, stop cleanly, never outlive us."""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import weakref
from pathlib import Path

import aiomqtt
import pytest

from streamfuse.errors import BrokerError
from streamfuse.mqtt import amqtt_main, child
from streamfuse.mqtt import broker as broker_mod
from streamfuse.mqtt.address import BrokerAddress, parse_broker_url
from streamfuse.mqtt.broker import EmbeddedBroker
from streamfuse.mqtt.child import find_mosquitto
from streamfuse.mqtt.sockets import free_port, mqtt_connect_ok, set_nodelay

REPO = Path(__file__).resolve().parents[1]

KINDS = [
    pytest.param(
        "mosquitto",
        marks=pytest.mark.skipif(find_mosquitto() is None, reason="no mosquitto binary"),
    ),
    "amqtt",
]

pytestmark = pytest.mark.broker


# --------------------------------------------------------------------------- helpers


def _process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody has reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state in ("Z", "X")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _process_gone(pid):
            return True
        time.sleep(0.05)
    return _process_gone(pid)


def _port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except OSError:
        return True


async def _roundtrip(url: str, n: int = 20) -> list[bytes]:
    """Publish ``n`` messages through the broker at ``url``; return what a subscriber got."""
    host, port, username, password, tls = parse_broker_url(url)
    assert not tls
    topic = f"sftest-{uuid.uuid4().hex[:8]}/dev/ecg"
    received: list[bytes] = []
    async with (
        aiomqtt.Client(host, port, username=username, password=password) as sub,
        aiomqtt.Client(host, port, username=username, password=password) as pub,
    ):
        for client in (sub, pub):
            assert set_nodelay(client) is True
            sock = client._client.socket()
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        await sub.subscribe(topic.rsplit("/", 2)[0] + "/#", qos=1)

        async def collect() -> None:
            async for message in sub.messages:
                received.append(bytes(message.payload))
                if len(received) == n:
                    return

        task = asyncio.create_task(collect())
        for i in range(n):
            await pub.publish(topic, f"m{i}".encode(), qos=1)
        await asyncio.wait_for(task, timeout=10)
    return received


# --------------------------------------------------------------------------- lifecycle


@pytest.mark.parametrize("kind", KINDS)
def test_broker_carries_messages_then_stops(kind: str) -> None:
    broker = EmbeddedBroker(kind=kind)
    with broker:
        assert broker.kind == kind
        assert broker.running
        pid, port = broker.pid, broker.port
        assert broker.url == f"mqtt://127.0.0.1:{port}"
        assert parse_broker_url(broker.url) == ("127.0.0.1", port, None, None, False)
        got = asyncio.run(_roundtrip(broker.url))
        assert got == [f"m{i}".encode() for i in range(20)]
        log_dir = broker.log_path.parent
    assert pid is not None
    assert not broker.running and broker.pid is None
    assert _wait_gone(pid, 2.0)
    assert _port_closed(port)
    assert not log_dir.exists()
    assert broker.stop() is None  # stopping twice is harmless


@pytest.mark.parametrize("kind", KINDS)
def test_async_context_manager(kind: str) -> None:
    async def main() -> tuple[int, int, list[bytes]]:
        async with EmbeddedBroker(kind=kind) as broker:
            return broker.pid, broker.port, await _roundtrip(broker.url, n=3)

    pid, port, got = asyncio.run(main())
    assert got == [b"m0", b"m1", b"m2"]
    assert _wait_gone(pid, 2.0)
    assert _port_closed(port)


@pytest.mark.parametrize("kind", KINDS)
def test_taken_port_fails_with_log_tail(kind: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        broker = EmbeddedBroker(kind=kind, port=port, start_timeout=5.0)
        with pytest.raises(BrokerError) as info:
            broker.start()
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "in use" in message.lower()  # the broker's own log line, quoted in the error
    assert not broker.running


def _start(broker: EmbeddedBroker, driver: str) -> None:
    """Start ``broker`` with :meth:`start` or, in a fresh event loop, :meth:`astart`."""
    if driver == "sync":
        broker.start()
    else:
        asyncio.run(broker.astart())


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_auto_port_retries_when_port_was_taken(
    monkeypatch: pytest.MonkeyPatch, driver: str
) -> None:
    kind = "mosquitto" if find_mosquitto() else "amqtt"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        ports = iter([taken, free_port()])
        monkeypatch.setattr(broker_mod, "free_port", lambda host="127.0.0.1": next(ports))
        broker = EmbeddedBroker(kind=kind)
        _start(broker, driver)
        try:
            assert broker.port != taken
            assert mqtt_connect_ok("127.0.0.1", broker.port, timeout=1.0)
        finally:
            broker.stop()


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_interrupted_start_leaves_no_child(monkeypatch: pytest.MonkeyPatch, driver: str) -> None:
    """Ctrl-C (sync) or cancellation (async) while start-up waits: the child is stopped."""
    broker = EmbeddedBroker(kind="mosquitto" if find_mosquitto() else "amqtt")
    pids: list[int | None] = []

    def probe() -> bool:
        pids.append(broker.pid)
        if driver == "sync" and len(pids) == 3:
            raise KeyboardInterrupt
        return False  # never ready

    monkeypatch.setattr(broker, "_probe", probe)
    if driver == "sync":
        with pytest.raises(KeyboardInterrupt):
            broker.start()
    else:

        async def main() -> None:
            task = asyncio.create_task(broker.astart())
            while len(pids) < 3:
                await asyncio.sleep(0.01)
            task.cancel()
            await task

        with pytest.raises(asyncio.CancelledError):
            asyncio.run(main())
    assert pids[0] is not None and set(pids) == {pids[0]}  # one child, probed until stopped
    assert not broker.running and broker.pid is None
    assert _wait_gone(pids[0], 2.0)


def test_stop_all_at_exit_stops_live_brokers(monkeypatch: pytest.MonkeyPatch) -> None:
    # the exit hook stops every live broker of the process: give it a registry of its own, or
    # it stops the session's broker too (the one the next test files on this worker share)
    monkeypatch.setattr(broker_mod, "_LIVE", weakref.WeakSet())
    broker = EmbeddedBroker(kind="mosquitto" if find_mosquitto() else "amqtt").start()
    pid = broker.pid
    assert list(broker_mod._LIVE) == [broker]
    broker_mod._stop_all()
    assert not broker.running
    assert _wait_gone(pid, 2.0)


_ORPHAN_SCRIPT = """
import sys, time
from streamfuse.mqtt.broker import EmbeddedBroker
broker = EmbeddedBroker(kind=sys.argv[1]).start()
print(broker.pid, broker.port, broker.log_path.parent, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
@pytest.mark.parametrize("kind", KINDS)
def test_sigkilled_parent_leaves_no_broker(kind: str) -> None:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT, kind],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    broker_pid = None
    leftover: Path | None = None  # a SIGKILLed parent cannot remove its temp folder
    try:
        ready, _, _ = select.select([parent.stdout], [], [], 15.0)
        assert ready, f"parent did not report a broker: {parent.stderr.read1().decode()}"
        line = parent.stdout.readline().decode().split()
        assert len(line) == 3, f"unexpected output {line!r}"
        broker_pid, port, leftover = int(line[0]), int(line[1]), Path(line[2])
        assert not _process_gone(broker_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=5)
        assert _wait_gone(broker_pid, 5.0), f"broker pid {broker_pid} outlived its parent"
        assert _port_closed(port)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if broker_pid is not None and not _process_gone(broker_pid):
            os.kill(broker_pid, signal.SIGKILL)  # do not leave our own orphan behind
        for stream in (parent.stdout, parent.stderr):
            stream.close()
        if leftover is not None and leftover.name.startswith("streamfuse-"):
            shutil.rmtree(leftover, ignore_errors=True)


# --------------------------------------------------------------------------- kind and arguments


def test_kind_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    assert EmbeddedBroker(kind="amqtt").kind == "amqtt"
    monkeypatch.setattr(broker_mod, "find_mosquitto", lambda: "/usr/sbin/mosquitto")
    assert EmbeddedBroker().kind == "mosquitto"
    monkeypatch.setattr(broker_mod, "find_mosquitto", lambda: None)
    assert EmbeddedBroker().kind == "amqtt"
    with pytest.raises(BrokerError, match="kind='amqtt'"):
        _ = EmbeddedBroker(kind="mosquitto").kind


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "hivemq"}, "unknown broker kind"),
        ({"port": 0}, "1 to 65535"),
        ({"port": 70000}, "1 to 65535"),
        ({"port": "1883"}, "1 to 65535"),
        ({"port": True}, "1 to 65535"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(BrokerError, match=match):
        EmbeddedBroker(**kwargs)


def test_port_before_start_is_an_error() -> None:
    with pytest.raises(BrokerError, match="start"):
        _ = EmbeddedBroker(kind="amqtt").url


def test_amqtt_config_is_minimal() -> None:
    config = amqtt_main.amqtt_config(12345)
    assert config["listeners"] == {
        "default": {"type": "tcp", "bind": "127.0.0.1:12345", "max_connections": 0}
    }
    assert list(config["plugins"]) == ["amqtt.plugins.authentication.AnonymousAuthPlugin"]


def test_mosquitto_config_is_private() -> None:
    lines = child.mosquitto_config(23456).splitlines()
    assert "listener 23456 127.0.0.1" in lines
    for expected in ("sys_interval 0", "persistence false", "set_tcp_nodelay true"):
        assert expected in lines


def test_set_nodelay_tolerates_missing_socket() -> None:
    async def unconnected() -> bool:
        return set_nodelay(aiomqtt.Client("127.0.0.1", 1))  # paho has no socket yet

    assert set_nodelay(None) is False
    assert set_nodelay(object()) is False
    assert asyncio.run(unconnected()) is False


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert 0 < port < 65536


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", ("127.0.0.1", 1883, None, None, False)),
        ("mqtt://localhost", ("localhost", 1883, None, None, False)),
        ("mqtts://broker.example", ("broker.example", 8883, None, None, True)),
        ("MQTTS://Broker.Example:9000/", ("broker.example", 9000, None, None, True)),
        ("mqtt://ann@h:1", ("h", 1, "ann", None, False)),
        ("mqtt://ann:p%40ss%3A1@h:65535", ("h", 65535, "ann", "p@ss:1", False)),
        ("mqtt://[::1]:1884", ("::1", 1884, None, None, False)),
        ("  mqtt://h:2  ", ("h", 2, None, None, False)),
    ],
)
def test_parse_broker_url(url: str, expected: tuple) -> None:
    parsed = parse_broker_url(url)
    assert isinstance(parsed, BrokerAddress)
    assert parsed == expected
    host, port, username, password, tls = parsed
    assert (parsed.host, parsed.port, parsed.tls) == (host, port, tls)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        (None, "must be a string"),
        ("", "empty"),
        ("127.0.0.1:1883", "no scheme"),
        ("http://h:80", "scheme 'http'"),
        ("tcp://h:1883", "scheme 'tcp'"),
        ("mqtt://", "no host"),
        ("mqtt://:1883", "no host"),
        ("mqtt://h:abc", "invalid port"),
        ("mqtt://h:70000", "invalid port"),
        ("mqtt://h:0", "port 0"),
        ("mqtt://h:", "empty port"),
        ("mqtt://h:1883/topic", "path"),
        ("mqtt://h?x=1", "query"),
        ("mqtt://h#frag", "fragment"),
        ("mqtt://:secret@h", "empty user name"),
        ("mqtt://[::1:1883", "malformed"),
    ],
)
def test_parse_broker_url_rejects(url: object, match: str) -> None:
    with pytest.raises(BrokerError, match=match):
        parse_broker_url(url)  # type: ignore[arg-type]
