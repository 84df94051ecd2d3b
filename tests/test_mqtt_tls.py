"""``mqtts://`` always means TLS: no client of the project sends credentials in clear.

Each client is pointed at a plain TCP listener opened here, with ``mqtts://user:secret@...``.
The listener records what it receives and hangs up. A client that honours the scheme opens
with a TLS ClientHello (record type 0x16, a handshake) and never sends the password; the
command then fails with a one-line TLS error, not a traceback. (Before ``streamfuse.mqtt``,
``simulate`` and the demo's monitor dropped the URL's TLS flag and sent an MQTT CONNECT
carrying ``secret`` in plain text.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamfuse.errors import BrokerError
from streamfuse.gateway.monitor import Scoreboard, watch

TLS_HANDSHAKE = 0x16  # TLS record content type of a ClientHello


class PlainListener:
    """A TCP server that keeps the first bytes of every connection, then closes it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = int(self.sock.getsockname()[1])
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.received.append(conn.recv(65536))
                except OSError:
                    self.received.append(b"")

    def url(self) -> str:
        return f"mqtts://user:secret@127.0.0.1:{self.port}"

    def close(self) -> None:
        # close() alone does not wake a thread blocked in accept() on Linux; shutdown() does
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)
        assert not self._thread.is_alive()


@pytest.fixture
def listener() -> Iterator[PlainListener]:
    server = PlainListener()
    yield server
    server.close()


def _check_handshake_only(listener: PlainListener) -> None:
    assert listener.received, "the client never connected"
    for data in listener.received:
        assert b"secret" not in data
        assert b"MQTT" not in data  # no plain CONNECT packet either
        assert data[:1] == bytes([TLS_HANDSHAKE]), data[:16]


def _streamfuse(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamfuse.cli", *args],
        capture_output=True, text=True, timeout=120,
    )


def _check_clear_tls_error(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "streamfuse: error: TLS handshake with the broker at 127.0.0.1:" in proc.stderr
    assert "mqtts://" in proc.stderr  # says what the scheme means and how to change it


def test_simulate_over_mqtts_sends_a_tls_hello_never_the_password(
    listener: PlainListener,
) -> None:
    proc = _streamfuse("simulate", "--broker", listener.url(), "--duration", "2")
    _check_clear_tls_error(proc)
    _check_handshake_only(listener)


def test_record_over_mqtts_sends_a_tls_hello_never_the_password(
    listener: PlainListener, tmp_path: Path
) -> None:
    out = tmp_path / "s.mcap"
    proc = _streamfuse("record", "--broker", listener.url(), "--out", str(out), "--duration", "2")
    _check_clear_tls_error(proc)
    _check_handshake_only(listener)


def test_monitor_over_mqtts_sends_a_tls_hello_never_the_password(
    listener: PlainListener,
) -> None:
    async def main() -> None:
        await watch(listener.url(), "sftls", Scoreboard(), asyncio.Event())

    with pytest.raises(BrokerError, match="TLS handshake with the broker"):
        asyncio.run(main())
    _check_handshake_only(listener)


def test_gateway_over_mqtts_fails_at_start_with_a_tls_error(
    listener: PlainListener, tmp_path: Path
) -> None:
    """A TLS listener that is not one is a setting to fix: the daemon says so and exits 1
    instead of retrying forever (a connection lost after the first one is still retried)."""
    proc = _streamfuse("gateway", "--broker", listener.url(), "--client-id", "",
                       "--duration", "60")  # fmt: skip
    _check_clear_tls_error(proc)
    _check_handshake_only(listener)


def test_demo_over_mqtts_sends_a_tls_hello_never_the_password(listener: PlainListener) -> None:
    proc = _streamfuse("demo", "--broker", listener.url(), "--no-live", "--duration", "2")
    _check_clear_tls_error(proc)
    _check_handshake_only(listener)


def test_gateway_with_mqtt_tls_true_on_an_mqtt_url_speaks_tls(
    listener: PlainListener,
) -> None:
    """``mqtt.tls = true`` turns TLS on for an ``mqtt://`` URL (issue 17, item 6): the
    listener gets a ClientHello, never a plain CONNECT with the password."""
    url = f"mqtt://user:secret@127.0.0.1:{listener.port}"
    proc = subprocess.run(
        [sys.executable, "-m", "streamfuse.cli", "gateway", "--broker", url, "--client-id", "",
         "--duration", "60"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "STREAMFUSE_MQTT_TLS": "true"},
    )
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "TLS handshake with the broker" in proc.stderr
    assert "secret" not in proc.stderr
    _check_handshake_only(listener)
