"""Acknowledgement follows the journal (issue 17): under overload, a kill -9 and a restart,
every chunk the broker was told the gateway received is in the gateway's journal.

A gateway daemon with a tiny incoming queue (4 messages) on a persistent QoS 1 session, with a
broker of the test's own, is sent bursts of chunks as fast as QoS 1 publishing goes: one read
of the socket brings it far more than 4 messages, so it sheds (journalled as dropped and
counted). It is killed with SIGKILL mid-way and started again; the broker delivers what it had
not been acknowledged on the session. Then, for every chunk the broker acknowledged to its
publisher (so the broker holds it for the gateway's session until the gateway acknowledges):

- it is in the journal as received (an ``R`` record): the broker could only have forgotten it
  on the gateway's acknowledgement, which now follows the journal write;
- and accounted for: given to the engine (a ``P`` record) or shed (a ``D`` record, counted in
  ``streamfuse_shed_total``). Before, a shed message was acknowledged and never journalled.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest

from streamfuse import codec
from streamfuse import journal as fmt
from tests.qos1_publisher import chunk_key, fleet_messages, publish_acked
from tests.test_gateway_faults import OwnMosquitto, spawn, wait_for_log

pytestmark = [pytest.mark.broker, pytest.mark.slow]
DEVICES = [f"a{i}" for i in range(6)]


def test_every_acknowledged_chunk_is_in_the_journal_under_overload_and_a_kill(
    tmp_path: Path, topic_prefix: str
) -> None:
    with OwnMosquitto(tmp_path / "broker") as broker:
        run(tmp_path, broker.url, topic_prefix)


def run(tmp_path: Path, url: str, prefix: str) -> None:
    toml, ckpt = tmp_path / "gw.toml", tmp_path / "ckpt"
    toml.write_text(
        f'[mqtt]\nbroker = "{url}"\nprefix = "{prefix}"\nclient_id = "gw-{prefix}"\n'
        "qos = 1\nmax_queued_incoming = 4\n"
        f'[checkpoint]\ndir = "{ckpt}"\ninterval_s = 1.0\n[journal]\nprune = false\n',
        encoding="utf-8",
    )
    cmd = [sys.executable, "-m", "streamfuse.cli", "--log-level", "INFO", "gateway",
           "--config", str(toml)]  # fmt: skip
    msgs = fleet_messages(DEVICES, 8.0, prefix)
    half = len(msgs) // 2
    acked: set = set()
    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"
    first = spawn(cmd, log1)
    second = None
    try:
        wait_for_log(log1, r"gateway connected", first, timeout=120)
        asyncio.run(publish_acked(url, msgs[:half], acked))
        time.sleep(0.3)
        first.kill()  # mid-way through what the broker has for it
        first.wait(10)
        asyncio.run(publish_acked(url, msgs[half:], acked))  # queued for the session
        second = spawn(cmd, log2)
        wait_for_log(log2, r"gateway connected", second, timeout=120)
        time.sleep(3.0)  # the session's backlog delivered
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0, log2.read_text()[-3000:]
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

    received: dict[int, tuple] = {}
    given, shed = set(), set()
    for pos, kind, body in fmt.records(ckpt / "journal", 0, fmt.Scan()):
        if kind == b"R":
            raw = fmt.decode_recv(body)
            if raw.payload.startswith(codec.MAGIC):
                received[pos] = chunk_key(raw)
        elif kind == b"P" and (key := received.get(fmt.PUSH.unpack_from(body)[0])):
            given.add(key)
        elif kind == b"D" and (key := received.get(fmt.DROP.unpack_from(body)[0])):
            shed.add(key)
    assert len(acked) == sum(1 for m, _ in msgs if chunk_key(m) is not None)
    missing = acked - set(received.values())
    assert not missing, f"{len(missing)} acknowledged, not in the journal: {sorted(missing)[:5]}"
    assert shed, "the 4-message queue never overflowed: no overload was tested"
    unaccounted = acked - given - shed
    assert not unaccounted, sorted(unaccounted)[:5]
    print(f"acknowledged {len(acked)}, given to the engine {len(given)}, shed {len(shed - given)}")
