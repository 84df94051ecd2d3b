"""What a kill -9 of Mosquitto loses of acknowledged QoS 1 messages queued for an offline
persistent session, by persistence setting, and what the setting costs the broker in CPU.

    python bench/broker_crash.py [--messages 3000] [--rate 300]

For each setting: a private broker; a persistent session (the gateway's) subscribes and goes
away; a device publishes MESSAGES QoS 1 messages of 800 bytes (about an 8-channel EEG chunk)
at RATE a second (each acknowledged by the broker); the broker is killed with SIGKILL,
restarted, and the session resumed: how many of
the acknowledged messages it delivers. The broker's CPU seconds during the publishing are
the cost (same run, same machine, so settings compare; absolute figures move with load).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.chaos.brokers import PrivateMosquitto  # noqa: E402

ON_CHANGES = "autosave_on_changes true"
SETTINGS = {
    "autosave_interval 30 (seconds; the old deploy/)": ("autosave_interval 30",),
    "autosave_on_changes, every 1000 changes": (ON_CHANGES, "autosave_interval 1000"),
    "autosave_on_changes, every 100 changes (deploy/)": (ON_CHANGES, "autosave_interval 100"),
    "autosave_on_changes, every 10 changes": (ON_CHANGES, "autosave_interval 10"),
}


def client(port: int, cid: str = "", clean: bool = True) -> paho.Client:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=clean,
                    protocol=paho.MQTTv311)
    c.max_inflight_messages_set(100)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def run(lines: tuple[str, ...], messages: int, rate: float) -> tuple[int, int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        broker = PrivateMosquitto(Path(tmp), lines=lines).start()
        try:
            gw = client(broker.port, "gw", clean=False)
            gw.subscribe("sf/#", qos=1)[1]
            time.sleep(0.3)
            gw.loop_stop()
            gw.disconnect()
            proc = psutil.Process(broker.proc.pid)  # type: ignore[union-attr]
            cpu0 = sum(proc.cpu_times()[:2])
            dev = client(broker.port)
            infos = []
            t0 = time.monotonic()
            for i in range(messages):
                wait = t0 + i / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                infos.append(dev.publish("sf/d/ecg", i.to_bytes(4, "big") * 200, qos=1))
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

            gw = client(broker.port, "gw", clean=False)
            gw.on_message = on_message
            time.sleep(3.0)
            gw.loop_stop()
            gw.disconnect()
            return acked, len(got), cpu
        finally:
            broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=300.0)
    args = parser.parse_args()
    for name, lines in SETTINGS.items():
        acked, kept, cpu = run(lines, args.messages, args.rate)
        print(f"{name:50s} acknowledged {acked:5d}, delivered after kill -9 {kept:5d} "
              f"({100 * (acked - kept) / max(acked, 1):5.1f} % lost), broker CPU {cpu:.2f} s")


if __name__ == "__main__":
    main()
