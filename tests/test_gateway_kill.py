"""Kill -9 of the gateway daemon under load, then a restart (issue 17, done-when 4).

Simulated devices publish in real time through a broker of the test's own (Mosquitto with
``deploy/mosquitto.conf``'s queue bound: the default 1,000 queued messages per offline session
is less than 10 devices send during the restart, and the broker drops the rest, acknowledged,
before the gateway can see them) at QoS 1 to a gateway on a
persistent session (``streamfuse gateway --config``, checkpoints every 0.5 s, the journal on
and kept whole); the gateway is killed with SIGKILL mid-stream and started again while the
devices go on (the broker queues their chunks for the session). A subscriber on one steady
connection sees every prediction. Then:

1. **Every acknowledged chunk reached the engine**: each chunk the broker acknowledged to a
   device is in the journal as a message the engine was given (a ``P`` record).
2. **And is accounted for** (the rule): each device's aligner counted every chunk it was
   given (``chunks``) and every redelivered one as a duplicate (``duplicates`` = given -
   distinct); a distinct chunk is then either in the device's windows or counted as late or
   rejected, and a window missing its samples counts them as a gap.
3. **No window published twice**: the subscriber saw each (device, window index) once.
4. **Replay reproduces the gateway**: ``streamfuse replay JOURNAL --config`` of the same TOML
   makes every published prediction, field for field but ``latency_ms`` (a timer reading).
   The windows it makes that were not published are at most the one whose publish was in
   flight at the kill (journalled, then the packet lost with the process: at most once).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiomqtt
import pytest

from streamfuse import codec
from streamfuse import journal as fmt
from streamfuse.gateway.checkpoint import CheckpointStore
from streamfuse.mqtt.address import parse_broker_url
from tests.qos1_publisher import chunk_key, fleet_messages, publish_acked
from tests.test_gateway_faults import OwnMosquitto, spawn, wait_for_log

pytestmark = [pytest.mark.broker, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
DEVICES = [f"k{i}" for i in range(10)]
SECONDS = 14.0
KILL_AT = 5.0


async def subscribe(url: str, prefix: str, ready: asyncio.Event, stop: asyncio.Event,
                    seen: list[dict]) -> None:  # fmt: skip
    host, port, *_ = parse_broker_url(url)
    async with aiomqtt.Client(host, port) as client:
        await client.subscribe(f"{prefix}/+/prediction", qos=1)
        ready.set()
        async for message in client.messages:
            seen.append(json.loads(bytes(message.payload)))
            if stop.is_set():
                break


def test_kill9_under_load_loses_no_acknowledged_chunk_and_publishes_no_window_twice(
    tmp_path: Path, topic_prefix: str
) -> None:
    with OwnMosquitto(tmp_path / "broker") as broker:
        run_scenario(tmp_path, broker.url, topic_prefix)


def run_scenario(tmp_path: Path, broker_url: str, topic_prefix: str) -> None:
    toml = tmp_path / "gw.toml"
    ckpt = tmp_path / "ckpt"
    toml.write_text(
        f'[mqtt]\nbroker = "{broker_url}"\nprefix = "{topic_prefix}"\n'
        f'client_id = "gw-{topic_prefix}"\nqos = 1\npublish_qos = 1\n'
        f'[checkpoint]\ndir = "{ckpt}"\ninterval_s = 0.5\n'
        "[journal]\nprune = false\n",
        encoding="utf-8",
    )
    cmd = [sys.executable, "-m", "streamfuse.cli", "--log-level", "INFO", "gateway",
           "--config", str(toml)]  # fmt: skip
    log1, log2 = tmp_path / "run1.log", tmp_path / "run2.log"
    first = spawn(cmd, log1)
    second = None
    acked: set = set()
    seen: list[dict] = []
    try:
        wait_for_log(log1, r"gateway connected", first, timeout=120)

        async def scenario() -> None:
            nonlocal second
            ready, stop = asyncio.Event(), asyncio.Event()
            sub = asyncio.create_task(subscribe(broker_url, topic_prefix, ready, stop, seen))
            await asyncio.wait_for(ready.wait(), 10)
            start = time.time()
            msgs = fleet_messages(DEVICES, SECONDS, topic_prefix)
            pub = asyncio.create_task(publish_acked(broker_url, msgs, acked, start=start))
            await asyncio.sleep(KILL_AT)
            first.kill()  # SIGKILL: no drain, no final checkpoint, the journal as the OS has it
            await asyncio.to_thread(first.wait, 10)
            second = spawn(cmd, log2)
            await asyncio.to_thread(wait_for_log, log2, r"gateway connected", second, 120)
            await pub
            await asyncio.sleep(3.0)  # the last windows' lateness budget and their trip
            second.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(second.wait, 60)
            assert code == 0, log2.read_text()[-3000:]
            await asyncio.sleep(0.5)
            stop.set()
            sub.cancel()
            await asyncio.gather(sub, return_exceptions=True)

        asyncio.run(scenario())
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    text2 = log2.read_text()
    assert "journal" in text2 and "applied" in text2, text2[-3000:]

    # 1. every acknowledged chunk reached the engine (a P record for its message)
    jdir = ckpt / "journal"
    scan = fmt.Scan()
    accepted: dict[int, bytes] = {}
    given: list[tuple[str, str, int]] = []
    for pos, kind, body in fmt.records(jdir, 0, scan):
        if kind == b"R":
            accepted[pos] = body
        elif kind == b"P":
            raw = fmt.decode_recv(accepted[fmt.PUSH.unpack_from(body)[0]])
            key = chunk_key(raw) if raw.payload.startswith(codec.MAGIC) else None
            if key is not None:
                given.append(key)
    assert scan.missing == []
    assert len(acked) > len(DEVICES) * 30 * 8
    lost = acked - set(given)
    assert not lost, f"{len(lost)} acknowledged chunks never reached the engine: {sorted(lost)[:5]}"

    # 2. the rule: every chunk given was counted, redeliveries as duplicates
    final, _ = CheckpointStore.read(CheckpointStore(ckpt).files()[0])
    engine = final["engine"]
    for device in DEVICES:
        mine = [k for k in given if k[0] == device]
        c = engine.sessions[device].aligner.counters
        assert c["chunks"] == len(mine), (device, c)
        assert c["duplicates"] == len(mine) - len(set(mine)), (device, c)
        print(device, {k: v for k, v in c.items() if v})

    # 3. no window published twice
    keys = Counter((p["device"], p["index"]) for p in seen)
    twice = [k for k, n in keys.items() if n > 1]
    assert not twice, f"published twice: {twice}"
    # predictions flowed for every device; how many windows the restart's backlog yields is
    # the aligner's placement of late data, not the journal's (6 to 16 per device seen)
    assert {device for device, _ in keys} == set(DEVICES)

    # 4. replay of the journal reproduces every published prediction
    out = tmp_path / "replay.jsonl"
    rp = subprocess.run(
        [sys.executable, "-m", "streamfuse.cli", "replay", str(jdir), "--config", str(toml),
         "--out", str(out), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    assert rp.returncode == 0, rp.stderr
    replayed = {}
    for line in out.read_text(encoding="utf-8").splitlines():
        p = json.loads(line)
        assert (p["device"], p["index"]) not in replayed
        replayed[(p["device"], p["index"])] = p
    for p in seen:
        other = replayed.get((p["device"], p["index"]))
        assert other is not None, p
        differ = {f for f in p if p[f] != other[f]}
        assert differ <= {"latency_ms"}, {f: (p[f], other[f]) for f in differ}
    not_published = set(replayed) - set(keys)
    print(
        f"acked {len(acked)}, given {len(given)}, published {len(keys)}, replayed "
        f"{len(replayed)}, made but not published {sorted(not_published)}"
    )
    assert len(not_published) <= 1
