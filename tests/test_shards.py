"""Shards in the topic tree (issue 19): the device maker's rule, the shard-set syntax, each
shard's own settings, the ownership ledger, and a shard that moves out and back in one process
through a real broker with no chunk lost. No Ray here (tests/test_cluster.py has it)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from streamfuse import topics
from streamfuse.cluster.ownership import Ledger, overlaps, plan, spread
from streamfuse.errors import ConfigError
from streamfuse.gateway.loading import from_mapping
from streamfuse.gateway.metrics import parse_exposition
from streamfuse.gateway.shards import ShardHost, shard_config
from tests import naive_crc

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("shards", [1, 2, 7, 8, 64, 65536])
def test_shard_of_is_crc32_of_the_utf8_id_modulo_s(shards: int) -> None:
    ids = ["w0001", "a", "Z9", "dev-001", "x.y_z", "0" * 64, *(f"p{i}" for i in range(200))]
    assert [topics.shard_of(d, shards) for d in ids] == [naive_crc.shard(d, shards) for d in ids]
    assert naive_crc.crc32(b"123456789") == 0xCBF43926  # the CRC-32 check value


def test_shard_of_spreads_devices_and_refuses_bad_input() -> None:
    counts = [0] * 8
    for i in range(8000):
        counts[topics.shard_of(f"dev{i:05d}", 8)] += 1
    assert min(counts) > 800  # 1,000 each if even
    with pytest.raises(ValueError):
        topics.shard_of("w1", 0)
    with pytest.raises(Exception, match="invalid device id"):
        topics.shard_of("a/b", 8)


def test_without_shards_topics_are_unchanged() -> None:
    assert topics.device_prefix("p", "w1", 0) == "p"
    under = topics.device_prefix("p", "w1", 8)
    assert under == f"p/{naive_crc.shard('w1', 8)}"
    topic = topics.data_topic(under, "w1", "ecg")
    assert topics.parse(topic, under) == ("w1", "ecg")


@pytest.mark.parametrize(("text", "count", "want"), [
    ("", 4, (0, 1, 2, 3)), ("0-3,7", 8, (0, 1, 2, 3, 7)), (" 5 , 1-2", 8, (1, 2, 5)),
    ("", 0, ()),
])  # fmt: skip
def test_shard_sets(text: str, count: int, want: tuple[int, ...]) -> None:
    assert topics.parse_shard_set(text, count) == want


@pytest.mark.parametrize(("text", "count"), [("8", 8), ("3-1", 8), ("x", 8), ("1-", 8),
                                             ("0", 0), ("", -1)])
def test_bad_shard_sets_say_why(text: str, count: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        topics.parse_shard_set(text, count)


def test_settings_refuse_bad_shards() -> None:
    with pytest.raises(ConfigError, match="shards.own"):
        from_mapping({"shards": {"count": 4, "own": "4"}})
    with pytest.raises(ConfigError, match="client_id"):
        from_mapping({"shards": {"count": 4}, "mqtt": {"client_id": ""}})


def test_each_shard_has_its_own_prefix_session_and_folders() -> None:
    config = from_mapping({"mqtt": {"prefix": "ward", "client_id": "gw"},
                           "checkpoint": {"dir": "/store"}, "journal": {"dir": "/j"},
                           "metrics": {"port": 9100}, "shards": {"count": 8}})  # fmt: skip
    three = shard_config(config, 3)
    assert (three.prefix, three.client_id) == ("ward/3", "gw-s3")
    assert (three.checkpoint.dir, three.journal.dir) == ("/store/shard-3", "/j/shard-3")
    assert three.metrics.port == 0 and three.engine == config.engine


def test_ledger_hands_a_shard_over_only_after_release_and_closes_a_dead_incarnation() -> None:
    ledger = Ledger(4, ["a", "b"])
    assert ledger.assigned == {0: "a", 1: "a", 2: "b", 3: "b"}
    assert ledger.claim("a", 100, 1.0) == [0, 1]
    assert ledger.claim("b", 200, 1.0) == [2, 3]
    with pytest.raises(RuntimeError, match="held by a"):
        ledger.assign(1, "b")
    ledger.released(1, "a", 2.0)
    ledger.assign(1, "b")
    ledger.hold(1, "b", 200, 2.5)
    assert ledger.claim("a", 101, 3.0) == [0]  # a restarted: its earlier process is gone
    ended = {(h.shard, h.pid): h.ended for h in ledger.history if h.end is not None}
    assert ended == {(1, 100): "released", (0, 100): "restarted"}
    spans = [(h.shard, h.pid, h.start, h.end) for h in ledger.history]
    assert overlaps(spans) == []
    assert overlaps([(1, "x", 0.0, 2.0), (1, "y", 1.5, None)]) == [("x", "y")]
    assert overlaps([(1, "x", 0.0, 9.0), (1, "y", 1.0, 2.0), (1, "z", 3.0, 4.0)])


@pytest.mark.parametrize("shards", [1, 8, 9, 64])
@pytest.mark.parametrize("before", [1, 2, 3])
@pytest.mark.parametrize("after", [1, 2, 5])
def test_plan_balances_and_moves_only_what_it_must(shards: int, before: int, after: int) -> None:
    old = [f"o{i}" for i in range(before)]
    new = [f"o{i}" for i in range(after)]
    start = spread(shards, old)
    target = plan(start, new)
    sizes = [sum(1 for o in target.values() if o == n) for n in new]
    assert sorted(target) == list(range(shards)) and set(target.values()) <= set(new)
    assert max(sizes) - min(sizes) <= 1
    moved = sum(1 for s in target if target[s] != start[s])
    quota = {n: shards // after + (i < shards % after) for i, n in enumerate(new)}
    had = {n: sum(1 for o in start.values() if o == n) for n in old}
    assert moved == shards - sum(min(had[n], quota[n]) for n in set(old) & set(new))


def test_the_gateway_and_the_cli_import_no_ray_and_the_cluster_says_which_extra() -> None:
    code = ("import sys; import streamfuse.cli as c, streamfuse.gateway.server, "
            "streamfuse.gateway.shards, streamfuse.cluster.commands; c.build_parser(); "
            "print('ray' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=REPO)  # fmt: skip
    assert done.stdout.strip() == "False", done.stderr
    missing = ("import sys; sys.modules['ray'] = None; from streamfuse.cli import main; "
               "sys.exit(main(['cluster', 'status']))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", missing], capture_output=True, text=True,
                          timeout=120, cwd=REPO)  # fmt: skip
    assert done.returncode == 1
    assert "pip install 'streamfuse[cluster]'" in done.stderr, done.stderr
    bad = subprocess.run([sys.executable, "-m", "streamfuse.cli", "simulate", "--shards", "-1"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip
    assert bad.returncode == 2 and "--shards" in bad.stderr


@pytest.mark.broker
def test_a_shard_released_and_added_again_loses_nothing(
    broker_url: str, topic_prefix: str, tmp_path: Path
) -> None:
    """Four shards in one process; shard of device w0 is released mid-stream (drain,
    checkpoint, disconnect), its device goes on publishing at QoS 1 (the broker queues it for
    the shard's session), then it is added again: every chunk reaches the engine once."""
    from simulators.device import Fleet
    from simulators.publisher import run_fleet

    config = from_mapping({
        "mqtt": {"broker": broker_url, "prefix": topic_prefix, "client_id": f"t-{topic_prefix}",
                 "publish_qos": 0},
        "checkpoint": {"dir": str(tmp_path / "store"), "interval_s": 1.0},
        "shards": {"count": 4},
    }, where="the test")  # fmt: skip

    async def scenario() -> tuple[dict, dict, str, float]:
        host = ShardHost(config)
        await asyncio.gather(*(host.add(s) for s in range(4)))
        port = host.metrics.serve(0)
        fleet = Fleet(6, seed=3)
        moving = topics.shard_of(fleet.devices[0].device_id, 4)
        pub = asyncio.create_task(run_fleet(broker_url, fleet, prefix=topic_prefix,
                                            speed=1.0, duration=8.0, qos=1, shards=4))
        await asyncio.sleep(3.0)
        out = await host.release(moving)
        assert out is not None and out.processed > 0
        await asyncio.sleep(2.0)
        await host.add(moving)
        stats = await pub
        await asyncio.sleep(2.5)
        text = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
        status = host.status()
        await host.release_all()
        host.metrics.close()
        return stats.by_kind, status, text, moving

    sent, status, text, moving = asyncio.run(scenario())
    figures = parse_exposition(text)
    assert figures[f'streamfuse_connected{{shard="{moving}"}}'] == 1.0
    chunks = 0
    for shard in range(4):
        from streamfuse.gateway.checkpoint import CheckpointStore

        files = CheckpointStore(tmp_path / "store" / f"shard-{shard}").files()
        final, _ = CheckpointStore.read(files[0])
        for device, session in final["engine"].sessions.items():
            assert topics.shard_of(device, 4) == shard
            c = session.aligner.counters
            chunks += c["chunks"] - c["duplicates"]
    assert chunks == sum(n for kind, n in sent.items() if kind != "label")
    assert sum(s["devices"] for s in status.values()) == 6
    assert os.path.isdir(tmp_path / "store" / f"shard-{moving}" / "journal")
