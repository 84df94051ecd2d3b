"""Record to MCAP through a real broker, read it back, replay it deterministically."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import numpy as np
import pytest

from streamfuse import codec, topics
from streamfuse.errors import DataSourceError
from streamfuse.mqtt.address import parse_broker_url
from streamfuse.replay.mcap_io import SessionWriter, read_session
from streamfuse.replay.recorder import record
from streamfuse.types import Chunk, Label

REPO = Path(__file__).resolve().parents[1]


def _messages(prefix: str, n: int = 30) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(7)
    out = []
    for k in range(n):
        chunk = Chunk("dev1", "ecg", k, k * 0.1, 250.0, rng.normal(size=(25, 1)).astype(np.float32))
        out.append((topics.data_topic(prefix, "dev1", "ecg"), codec.encode_chunk(chunk)))
    out.append(
        (topics.label_topic(prefix, "dev1"), codec.encode_label(Label("dev1", 0.0, 3.0, "rest")))
    )
    return out


def test_writer_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.mcap"
    sent = [(f"p/d{i % 3}/ecg", bytes([i]) * (i + 1), 100.0 + i * 0.37) for i in range(50)]
    with SessionWriter(path, flush_s=0.5) as w:
        for topic, payload, t in sent:
            w.write(topic, payload, t)
    got = [(m.message.topic, m.message.payload, m.arrival) for m in read_session(path)]
    assert [(t, p) for t, p, _ in got] == [(t, p) for t, p, _ in sent]
    np.testing.assert_allclose([a for *_, a in got], [a for *_, a in sent], rtol=0, atol=1e-9)


def test_truncated_file_reads_up_to_last_chunk(tmp_path: Path) -> None:
    path = tmp_path / "s.mcap"
    w = SessionWriter(path, flush_s=1.0)
    for i in range(40):  # chunks close at arrivals 1.0, 2.0, 3.0 (every 10 messages)
        w.write("p/d/ecg", b"x%d" % i, i * 0.1)
    w._fh.flush()
    cut = path.read_bytes()
    w.close()
    (tmp_path / "cut.mcap").write_bytes(cut + b"\x05\x99")  # a record torn mid-write
    got = [m.message.payload for m in read_session(tmp_path / "cut.mcap")]
    assert got == [b"x%d" % i for i in range(len(got))]
    assert 30 <= len(got) < 40


def test_missing_and_corrupt_session(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match=r"nothere\.mcap: no such session"):
        list(read_session(tmp_path / "nothere.mcap"))
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"definitely not mcap" * 4)
    with pytest.raises(DataSourceError, match=r"junk\.mcap: not a readable MCAP"):
        list(read_session(junk))


async def _publish(url: str, msgs: list[tuple[str, bytes]]) -> None:
    host, port, *_ = parse_broker_url(url)
    async with aiomqtt.Client(host, port) as client:
        for topic, payload in msgs:
            await client.publish(topic, payload, qos=1)


@pytest.mark.broker
def test_record_through_broker(broker_url: str, topic_prefix: str, tmp_path: Path) -> None:
    out = tmp_path / "rec.mcap"
    msgs = _messages(topic_prefix)

    async def main() -> int:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(record(broker_url, topic_prefix, out, stop=stop, ready=ready))
        await asyncio.wait_for(ready.wait(), 10)
        await _publish(broker_url, msgs)
        for _ in range(100):  # until every message is in (or 10 s)
            await asyncio.sleep(0.1)
            if out.stat().st_size > 0 and len(list(read_session(out))) >= len(msgs):
                break
        stop.set()
        return await asyncio.wait_for(task, 10)

    n = asyncio.run(main())
    assert n == len(msgs)
    got = list(read_session(out))
    assert [(m.message.topic, m.message.payload) for m in got] == msgs
    arrivals = [m.arrival for m in got]
    assert arrivals == sorted(arrivals) and abs(arrivals[-1] - time.time()) < 60


@pytest.mark.broker
def test_killed_recorder_leaves_readable_file(
    broker_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    out = tmp_path / "killed.mcap"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamfuse.cli", "record", "--broker", broker_url,
         "--prefix", topic_prefix, "--out", str(out), "--flush-s", "0.2"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        msgs = _messages(topic_prefix, 20)
        deadline = time.monotonic() + 20
        got: list = []
        while time.monotonic() < deadline and not got:
            # publish until the recorder (started in parallel) has flushed something to disk
            asyncio.run(_publish(broker_url, msgs))
            time.sleep(0.6)
            if out.exists() and out.stat().st_size > 0:
                got = list(read_session(out))
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr:
            proc.stderr.close()
    after = list(read_session(out))  # no footer, no summary: still readable
    assert len(after) >= len(got) > 0
    assert {m.message.payload for m in after} <= {p for _, p in msgs}


@pytest.mark.broker
def test_simulated_session_replays_bit_identically_and_matches_live(
    broker_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Compared: every prediction's full JSON payload (device, index, window bounds, level,
    label, class probabilities, model, rules, modalities, closed_at), in order. The live engine
    is fed from the recorder's own loop with the arrival it records (as the gateway's ingest
    does; the gateway's extra 0.1 s timer ticks are not part of this comparison)."""
    from simulators.device import Fleet
    from simulators.publisher import run_fleet
    from streamfuse.config import EngineConfig
    from streamfuse.engine import Engine
    from streamfuse.replay.replay import replay_offline, session_items
    from streamfuse.types import Prediction, RawMessage

    out = tmp_path / "sim.mcap"
    live = Engine(EngineConfig(), prefix=topic_prefix)
    live_preds: list[Prediction] = []

    def on_message(topic: str, payload: bytes, now: float) -> None:
        for o in live.push(RawMessage(topic, payload), now):
            if isinstance(o, Prediction):
                live_preds.append(o)

    async def main() -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(
            record(broker_url, topic_prefix, out, stop=stop, ready=ready, on_message=on_message)
        )
        await asyncio.wait_for(ready.wait(), 10)
        await run_fleet(broker_url, Fleet(2, seed=3), prefix=topic_prefix, speed=1.0,
                        duration=5.0, qos=1)  # fmt: skip
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    live_preds.extend(live.flush())

    def replay() -> list[dict]:
        engine = Engine(EngineConfig(), prefix=topic_prefix)
        preds, rejected = replay_offline(engine, session_items(out))
        assert not rejected
        return [p.to_json_dict() for p in preds]

    first, second = replay(), replay()
    assert len(first) >= 4  # two devices, ~5 s, 2 s windows every 1 s
    assert first == second
    assert first == [p.to_json_dict() for p in live_preds]
    assert any(p["proba"] for p in first)  # labels arrived and the model learnt during the run

    # beside the raw channels, each stream's signal channel (Foxglove plots these): every
    # message valid against its channel's JSON Schema, holding every k-th received sample
    from tests.test_mcap_signals import expected_picks, read_signals, unpack_frames

    signals = read_signals(out)
    streams: dict[str, list] = {}
    for m in read_session(out):
        device, kind = m.message.topic.split("/")[-2:]
        if kind not in ("label", "prediction"):
            for mod, t0, fs, data in unpack_frames(m.message.payload):
                streams.setdefault(f"{topic_prefix}/{device}/{mod}/signal", []).append(
                    (t0, fs, data)
                )
    assert sorted(signals) == sorted(streams) and len(streams) == 6  # 2 devices x 3
    for topic, chunks in streams.items():
        step = -(-int(chunks[0][1]) // 128)  # the default --plot-hz 128: ecg, eeg 2; acc 1
        want = expected_picks(chunks, step)
        got = signals[topic]
        assert len(got) == len(want)
        names = [k for k in got[0][1] if k not in ("timestamp", "device_t")]
        for (_, body), (t_dev, row) in zip(got, want, strict=True):
            assert body["device_t"] == pytest.approx(t_dev, abs=1e-9)
            assert [body[n] for n in names] == pytest.approx(row.tolist(), rel=1e-6)
