"""A private Mosquitto a test owns and may kill: its own port, folder and configuration.

Never the shared broker on 1883: chaos tests kill brokers. Built from ``deploy/``'s files
where the test is about them (the ACL), with persistence in the test's folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import psutil
import pytest

from streamfuse.mqtt.child import find_mosquitto
from streamfuse.mqtt.sockets import free_port, mqtt_connect_ok


def need(binary: str) -> str:
    """The path of ``binary`` (``mosquitto``, ``mosquitto_passwd``); skip (fail under CI)."""
    import shutil

    found = find_mosquitto() if binary == "mosquitto" else shutil.which(binary)
    if found is None:
        msg = f"{binary} is not installed (Debian: apt-get install mosquitto)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return found


class PrivateMosquitto:
    """``mosquitto -c <folder>/mosquitto.conf`` on a free loopback port, with persistence.

    ``lines`` are added to the configuration (``acl_file``, ``autosave_interval`` ...);
    ``users`` (name -> password) make a password file and turn anonymous access off.
    """

    def __init__(
        self, folder: Path, *, lines: tuple[str, ...] = (), users: dict[str, str] | None = None
    ) -> None:
        self.binary = need("mosquitto")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        conf = [
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {folder}/",
            "set_tcp_nodelay true",
            "max_queued_messages 100000",
            "max_inflight_messages 1000",
            "log_dest stderr",
            "log_type all",
        ]
        if os.geteuid() == 0:
            conf.append("user root")  # keep our identity: the files here are ours
        if users:
            passwd = folder / "passwd"
            need("mosquitto_passwd")
            passwd.write_text("", encoding="utf-8")
            for name, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwd), name, password],
                               check=True, capture_output=True)
            conf += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            conf.append("allow_anonymous true")
        conf += list(lines)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(conf) + "\n", encoding="utf-8")
        self.anonymous = not users
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def url_for(self, user: str, password: str) -> str:
        return f"mqtt://{user}:{password}@127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        path = self.folder / "broker.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> PrivateMosquitto:
        with open(self.folder / "broker.log", "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=log,
                                         stderr=log, start_new_session=True)
        deadline = time.monotonic() + 15
        while not self._ready():
            assert self.proc.poll() is None, self.log[-3000:]
            assert time.monotonic() < deadline, "mosquitto did not start:\n" + self.log[-3000:]
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        if self.anonymous:
            return mqtt_connect_ok("127.0.0.1", self.port, 0.5)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def kill9(self) -> None:
        """SIGKILL: no chance to save its persistence file."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> PrivateMosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _client(port: int, cid: str = "", clean: bool = True) -> paho.Client:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=clean,
                    protocol=paho.MQTTv311)
    c.max_inflight_messages_set(100)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def crash_loss(
    lines: tuple[str, ...], messages: int, rate: float, payload_bytes: int = 800
) -> tuple[int, int, float]:
    """Acknowledged QoS 1 messages a kill -9 of a broker configured with ``lines`` loses.

    A persistent session subscribes and goes away; a device publishes ``messages`` QoS 1
    messages at ``rate`` a second; the broker is killed with SIGKILL and restarted, and the
    session resumed. Returns (acknowledged, delivered after the restart, broker CPU seconds
    while publishing).
    """
    with tempfile.TemporaryDirectory() as tmp:
        broker = PrivateMosquitto(Path(tmp), lines=lines).start()
        try:
            gw = _client(broker.port, "gw", clean=False)
            gw.subscribe("sf/#", qos=1)[1]
            time.sleep(0.3)
            gw.loop_stop()
            gw.disconnect()
            proc = psutil.Process(broker.proc.pid)  # type: ignore[union-attr]
            cpu0 = sum(proc.cpu_times()[:2])
            dev = _client(broker.port)
            infos = []
            t0 = time.monotonic()
            for i in range(messages):
                wait = t0 + i / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                body = i.to_bytes(4, "big") * (payload_bytes // 4)
                infos.append(dev.publish("sf/d/ecg", body, qos=1))
            for info in infos:
                info.wait_for_publish(10)
            acked = sum(info.is_published() for info in infos)
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            broker.kill9()
            dev.loop_stop()
            broker.start()
            got: set[bytes] = set()
            lock = threading.Lock()

            def on_message(_c, _u, m):  # noqa: ANN001
                with lock:
                    got.add(m.payload)

            gw = _client(broker.port, "gw", clean=False)
            gw.on_message = on_message
            deadline = time.monotonic() + 3.0  # until all arrived (or 3 s went by)
            while len(got) < acked and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)
            gw.loop_stop()
            gw.disconnect()
            return acked, len(got), cpu
        finally:
            broker.stop()
