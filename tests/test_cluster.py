"""The fleet on a real local Ray with a real Mosquitto (issue 19, done-when 1 and 2).

24 simulated devices publish in real time at QoS 1 under 8 shards
(``{prefix}/{shard}/{device}/...``) to a broker of the test's own (``max_queued_messages``
100,000: Mosquitto's default 1,000 per offline session is less than a shard's devices send
while it moves); shard-owner actors serve them, each shard on its own persistent session,
checkpoint folder and journal. Every chunk the broker acknowledged must reach an engine (its
shard's journal) and be counted by its device's aligner; each test takes about 40-60 s.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from streamfuse.cluster.ownership import overlaps
from tests.fleet_run import (  # noqa: F401 - ray_local is a fixture
    account,
    fleet_config,
    listen,
    per_device,
    publish,
    ray_local,
    shard_of,
)
from tests.test_gateway_faults import OwnMosquitto

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.timeout(300)]
DEVICES = [f"w{i:03d}" for i in range(24)]


@pytest.fixture
def broker(tmp_path: Path):
    with OwnMosquitto(tmp_path / "broker") as own:
        yield own.url


def test_devices_cover_every_shard() -> None:
    assert {shard_of(d) for d in DEVICES} == set(range(8))


def test_killed_owner_is_restarted_restores_its_shards_and_loses_no_chunk(
    ray_local,  # noqa: F811 - the fixture imported from tests.fleet_run
    broker: str,
    tmp_path: Path,
    topic_prefix: str,
) -> None:
    from streamfuse.cluster.commands import launch

    ray = ray_local
    store = tmp_path / "store"
    fleet = launch(fleet_config(broker, topic_prefix, store), 2, name=f"fleet-{topic_prefix}")
    seconds, kill_at = 16.0, 6.0
    acked: set = set()
    seen: list = []
    killed: dict = {}

    async def scenario() -> None:
        ready = asyncio.Event()
        listener = asyncio.create_task(listen(broker, topic_prefix, ready, seen))
        await asyncio.wait_for(ready.wait(), 10)
        start = time.time()
        pub = asyncio.create_task(publish(broker, topic_prefix, DEVICES, seconds, start, acked))
        await asyncio.sleep(kill_at)
        status = await fleet.status.remote()
        victim = sorted(status["owners"].values(), key=lambda o: o["name"])[0]
        killed.update(
            name=victim["name"],
            pid=victim["pid"],
            shards=sorted(int(s) for s in victim["serving"]),
            at=time.time(),
        )
        os.kill(victim["pid"], signal.SIGKILL)  # no drain, no final checkpoint
        await pub
        await asyncio.sleep(4.0)  # the last windows' lateness budget and their trip
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)

    asyncio.run(scenario())
    status = ray.get(fleet.status.remote())
    history = ray.get(fleet.stop.remote())

    # Ray restarted the owner: a new process under the same name holds the same shards
    again = status["owners"][killed["name"]]
    assert again["pid"] != killed["pid"]
    assert sorted(int(s) for s in again["serving"]) == killed["shards"]
    restarted = [h for h in history["holdings"] if h["ended"] == "restarted"]
    assert sorted(h["shard"] for h in restarted) == killed["shards"]
    assert not overlaps((h["shard"], (h["owner"], h["pid"]), h["start"], h["end"])
                        for h in history["holdings"])  # fmt: skip

    # every chunk the broker acknowledged reached an engine and was counted (no silent loss)
    counters = account(store, DEVICES, acked)
    assert len(acked) > len(DEVICES) * 3 * 10 * (seconds - 2)
    gaps = sum(c["gaps"] for c in counters.values())

    # predictions for every device resume after the kill. How soon is printed, not asserted
    # (no timing thresholds in tests): the issue asks for 10 s; 5.2-8.7 s measured here at load
    # averages of 6-9 on 2 cores. The scenario itself bounds it: publishing ends 10 s after
    # the kill, so a device's windows after it close within about 12 s or never.
    resumed = {}
    for device in DEVICES:
        after = [t for t, p in seen if p["device"] == device and t > killed["at"]]
        assert after, f"no prediction for {device} after the kill"
        resumed[device] = min(after) - killed["at"]
    hit = {d: round(s, 1) for d, s in resumed.items() if shard_of(d) in killed["shards"]}
    print(
        f"killed {killed['name']} (shards {killed['shards']}); restarted as pid "
        f"{again['pid']} ready in {again['ready_s']:.1f} s; predictions resumed after "
        f"{max(hit.values()):.1f} s at worst for its devices {hit}; {len(acked)} chunks "
        f"acknowledged, all in the journals; {gaps} gaps counted"
    )


def test_resize_one_two_one_moves_shards_without_overlap_or_loss(
    ray_local,  # noqa: F811 - the fixture imported from tests.fleet_run
    broker: str,
    tmp_path: Path,
    topic_prefix: str,
) -> None:
    from streamfuse.cluster.commands import launch

    ray = ray_local
    store = tmp_path / "store"
    fleet = launch(fleet_config(broker, topic_prefix, store), 1, name=f"fleet-{topic_prefix}")
    seconds = 24.0
    acked: set = set()
    seen: list = []
    marks: dict = {}

    async def scenario() -> None:
        ready = asyncio.Event()
        listener = asyncio.create_task(listen(broker, topic_prefix, ready, seen))
        await asyncio.wait_for(ready.wait(), 10)
        start = time.time()
        pub = asyncio.create_task(publish(broker, topic_prefix, DEVICES, seconds, start, acked))
        await asyncio.sleep(5.0)
        marks["grow"] = time.time()
        marks["grown"] = await fleet.resize.remote(2)
        marks["grew"] = time.time()
        await asyncio.sleep(6.0)
        marks["shrink"] = time.time()
        marks["shrunk"] = await fleet.resize.remote(1)
        marks["shrank"] = time.time()
        await pub
        await asyncio.sleep(4.0)
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)

    asyncio.run(scenario())
    history = ray.get(fleet.stop.remote())

    assert len(marks["grown"]["moved"]) == 4 and len(marks["shrunk"]["moved"]) == 4
    # no shard served by two owners at once: the ledger's holdings, the servers' lifetimes in
    # each process, and the first-to-last message each process gave a shard's engine
    holdings = history["holdings"]
    assert not overlaps((h["shard"], (h["owner"], h["pid"]), h["start"], h["end"])
                        for h in holdings)  # fmt: skip
    tenures = history["tenures"]
    assert len(tenures) == 8 + 4 + 4  # first owner's 8 at the end, 4 moved out, 4 moved back
    assert not overlaps((t["shard"], t["pid"], t["started"], t["stopped"]) for t in tenures)
    assert not overlaps((t["shard"], t["pid"], t["first"], t["last"]) for t in tenures
                        if t["first"] is not None)  # fmt: skip
    assert len({t["pid"] for t in tenures}) == 2

    # every device kept receiving predictions: before, between and after the resizes
    for since, until in ((0.0, marks["grow"]), (marks["grew"], marks["shrink"]),
                         (marks["shrank"], float("inf"))):  # fmt: skip
        got = per_device(seen, since, until)
        assert set(got) == set(DEVICES), sorted(set(DEVICES) - set(got))
    counters = account(store, DEVICES, acked)
    print(
        f"grew 1->2 in {marks['grown']['seconds']:.1f} s, shrank 2->1 in "
        f"{marks['shrunk']['seconds']:.1f} s; {len(acked)} chunks acknowledged, all in the "
        f"journals; {sum(c['gaps'] for c in counters.values())} gaps, "
        f"{sum(c['duplicates'] for c in counters.values())} duplicates counted"
    )


def test_shards_models_are_merged_when_asked(
    ray_local,  # noqa: F811 - the fixture imported from tests.fleet_run
    broker: str,
    tmp_path: Path,
    topic_prefix: str,
) -> None:
    """``--merge-every``: every shard is a site of a federation the controller runs; rounds
    merge the shards' models (about 25 s)."""
    import dataclasses

    from streamfuse.cluster.commands import launch

    ray = ray_local
    base = fleet_config(broker, topic_prefix, tmp_path / "store")
    config = dataclasses.replace(
        base,
        federated=dataclasses.replace(
            base.federated, federation=topic_prefix, round_interval_s=3.0, min_parties=2
        ),
    )
    fleet = launch(config, 2, name=f"fleet-{topic_prefix}")
    acked: set = set()
    asyncio.run(publish(broker, topic_prefix, DEVICES[:8], 14.0, time.time(), acked))
    status = ray.get(fleet.status.remote())
    ray.get(fleet.stop.remote())
    merging = status["merging"]
    print(
        f"merge rounds: {merging['completed']} completed, {merging['short']} short; "
        f"parties {[h['sites'] for h in merging['history']][-1:]}"
    )
    # an update that comes after its round closed is refused as "stale" (a slow shard under
    # load); anything else refused would be a broken update
    assert merging["completed"] >= 2 and set(merging["rejected"]) <= {"stale"}, merging
    sites = {s for h in merging["history"] for s in h["sites"]}
    owners = {o["name"]: {int(s) for s in o["serving"]} for o in status["owners"].values()}
    for shards in owners.values():  # sites of both owners took part
        assert sites & {f"shard-{s}" for s in shards}
