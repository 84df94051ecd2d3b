"""The gateway's CPU per device-second outside the engine, offline: the shell around ``push``.

    python bench/gateway_shell_cost.py [DEVICES] [--passes N]   # from the repository root

A simulated bundled fleet (as ``bench/engine_cost.py --bundle``) is pushed once through a real
engine and what every push returned is recorded; then the gateway's own path runs over the same
messages with an engine that hands back the recorded outputs (costing a list lookup): the MQTT
PUBLISH packets written to a socketpair and read by :class:`~streamfuse.mqtt.reader.BatchedReader`
(``install_ingest`` on a real paho client, as the gateway installs it), the journal's intake and
the queue (:meth:`.Durability.accept`), :meth:`.Ingest.process` (counters, ``Durability.push``),
and the predictions out (:meth:`.Outbox.emit`, encoding, ``publish_now`` written to the
socketpair), labels deferred as ``Ingest.read`` does. The gateway's own predictions come back
from the broker (it subscribes to ``{prefix}/#``), so each is fed in again after the message
that made it, as the broker echoes it. No journal (the latency bench runs without one).

Prints the shell's CPU (``time.process_time``) in ms per device-second for each pass, the
minimum first; the first 10 s are not timed. To compare two commits, run it from each checkout
in turn (``PYTHONPATH=<checkout> python <checkout>/bench/gateway_shell_cost.py``).
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from typing import Any

import aiomqtt
from paho.mqtt.client import _ConnectionState
from test_bench_engine import SECONDS, WARM, _messages  # the sibling file (run as a script)

from streamfuse import Engine, codec, topics, warm_up
from streamfuse.config import EngineConfig
from streamfuse.gateway.app import Gateway
from streamfuse.gateway.loading import from_mapping
from streamfuse.mqtt.fastpath import install_ingest
from streamfuse.types import Prediction, RawMessage

PREFIX = topics.DEFAULT_PREFIX
#: messages per socket read (about what one read of the gateway takes at 300 devices)
PER_READ = 8


def _packet(topic: str, payload: bytes) -> bytes:
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + payload
    n, size = len(body), bytearray()
    while True:
        b, n = n % 128, n // 128
        size.append(b | (128 if n else 0))
        if not n:
            break
    return b"\x30" + bytes(size) + body


class _Recorded:
    """An engine that returns what a real one returned for the same message, in order."""

    def __init__(self, outputs: dict[tuple[str, bytes], list], prefix: str) -> None:
        self.outputs = outputs
        self.prefix = prefix
        self.sessions: dict[str, Any] = {}

    def push(self, raw: RawMessage, now: float) -> list:
        return self.outputs.get((raw.topic, raw.payload), [])


def _record(items: list[tuple[RawMessage, float]]) -> tuple[list, dict]:
    """The broker's stream (the fleet's messages, each prediction echoed after its cause) and
    every message's outputs."""
    engine = Engine(EngineConfig(), timer=time.perf_counter)  # stage latencies, as the gateway's
    stream: list[tuple[str, bytes, float]] = []
    outputs: dict[tuple[str, bytes], list] = {}
    for raw, now in items:
        out = engine.push(raw, now)
        stream.append((raw.topic, raw.payload, now))
        if out:
            outputs[(raw.topic, raw.payload)] = out
            for p in out:
                if isinstance(p, Prediction):
                    echo = (topics.prediction_topic(PREFIX, p.device), codec.encode_prediction(p))
                    stream.append((*echo, now))
    return stream, outputs


def _pass(stream: list, outputs: dict, devices: int) -> float:
    """One fresh gateway over ``stream``; the shell's CPU seconds after WARM."""
    config = from_mapping({"mqtt": {"prefix": PREFIX, "publish_qos": 0}}, where="bench")

    async def build() -> tuple[Gateway, aiomqtt.Client]:
        gw = Gateway(_Recorded(outputs, PREFIX), config, clock=time.time)  # type: ignore[arg-type]
        client = aiomqtt.Client("127.0.0.1", queue_type=lambda maxsize=0: gw.inbox)  # type: ignore[arg-type,misc]
        return gw, client

    gw, client = asyncio.run(build())
    assert install_ingest(client, gw.durable.accept, gw.durable.commit, gw.clock)
    paho = client._client
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    paho._sock = ours
    paho._state = _ConnectionState.MQTT_CS_CONNECTED
    ingest, outbox, inbox = gw.ingest, gw.outbox, gw.inbox
    outbox.client = client
    cpu = time.process_time
    spent = 0.0
    packets = [(_packet(t, p), now) for t, p, now in stream]
    for i in range(0, len(packets), PER_READ):
        batch = packets[i : i + PER_READ]
        theirs.sendall(b"".join(p for p, _ in batch))
        timed = batch[0][1] > WARM
        t0 = cpu()
        ingest.read_socket(paho)
        while not inbox.empty():
            message = inbox.get_nowait()
            if message.topic.endswith("/label"):
                ingest.defer(message)
            elif ingest.process(message):
                outbox.publish_now(client)
        while ingest.labels:
            if ingest.process(ingest.labels.popleft()):
                outbox.publish_now(client)
        if timed:
            spent += cpu() - t0
        try:
            while theirs.recv(1 << 20):
                pass
        except BlockingIOError:
            pass
    assert gw.ingest.processed == len(packets), (gw.ingest.processed, len(packets))
    ours.close()
    theirs.close()
    return spent


def main(devices: int, passes: int) -> None:
    items = _messages(bundle=True, devices=devices)
    warm_up(EngineConfig())
    stream, outputs = _record(items)
    per = devices * (SECONDS - WARM)
    runs = [_pass(stream, outputs, devices) / per * 1e3 for _ in range(passes)]
    preds = sum(1 for out in outputs.values() for p in out if isinstance(p, Prediction))
    print(
        f"{devices} devices (bundled), {len(stream)} messages ({preds} of them echoed "
        f"predictions): gateway shell {min(runs):.4f} ms per device-second"
    )
    print("  passes: " + ", ".join(f"{r:.4f}" for r in runs))


if __name__ == "__main__":
    args = sys.argv[1:]
    passes = 3
    if "--passes" in args:
        k = args.index("--passes")
        passes = int(args[k + 1])
        del args[k : k + 2]
    main(int(args[0]) if args else 300, passes)
