"""Incremental checkpoints (streamfuse.gateway.snapshot): the file holds the engine exactly as
it was when the checkpoint began, although the gateway went on pushing messages (labels that
train the shared models included), ticking and evicting devices while it was being taken.

The reference is a plain whole pickle of the engine taken at that moment; both are compared by
digests (sha256 of a pickle) of the engine without its devices and of each device, so any
field of any device or of the shared models that moved after the start would show. Devices
are digested without pickle's memo: the incremental file pickles each device with a memo of
its own and the spectral plans by reference, so which small read-only arrays are one object
and which are equal copies differs from the live engine's.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import pickle
from pathlib import Path

import pytest

from streamfuse.engine import Engine
from streamfuse.gateway.app import Gateway
from streamfuse.gateway.checkpoint import CheckpointStore, state_digest
from streamfuse.gateway.snapshot import MAGIC2
from tests.gateway_configs import gateway_config
from tests.streams import device_messages, merge

PREFIX = "snaptest"


def flat_digest(obj: object) -> str:
    """sha256 of ``obj`` pickled without a memo: every reference written out in full, so two
    states that hold equal values digest alike however their objects are shared."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.fast = True
    pickler.dump(obj)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def digests(engine: Engine) -> tuple[str, list[str], dict[str, str]]:
    """The digest of the engine without its devices, the devices in order, and each one's."""
    shell = {k: v for k, v in engine.__getstate__().items() if k != "sessions"}
    return (
        state_digest(shell),
        list(engine.sessions),
        {d: flat_digest(s) for d, s in engine.sessions.items()},
    )


def fleet(devices: int, seconds: float) -> list:
    """``devices`` devices for ``seconds``; the last one falls silent early (evicted while a
    snapshot taken at half time runs), the one before it just before half time (its last
    windows are closed by ticks after that, not by data)."""
    ends = [seconds] * devices
    ends[-1], ends[-2] = seconds * 0.375, seconds * 0.48
    return merge(*(
        device_messages(f"d{i}", end, seed=i, prefix=PREFIX) for i, end in enumerate(ends)
    ))  # fmt: skip


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def gateway(tmp_path: Path, clock: Clock) -> Gateway:
    cfg = gateway_config(prefix=PREFIX, checkpoint_dir=str(tmp_path / "ckpt"),
                         journal_fsync="never")
    gw = Gateway(Engine(cfg.engine_config(), prefix=PREFIX), cfg, clock=clock)
    gw.restore()
    return gw


def feed(gw: Gateway, clock: Clock, items: list, *, step: bool) -> None:
    """Push ``items`` as the gateway does (journal, then engine), ticking every 0.1 s, evicting
    devices silent for 3 s every 2 s; ``step``: take a few devices of a running snapshot every
    few messages too, as the loop would between turns."""
    next_tick = next_evict = -1.0
    for i, (raw, t) in enumerate(items):
        clock.t = t
        gw.durable.accept(raw)
        gw.ingest.process(gw.inbox.get_nowait())
        if t >= next_tick:
            next_tick = t + 0.1
            gw.durable.tick(t)
        if t >= next_evict:
            next_evict = t + 2.0
            gw.durable.evict(t, 3.0)
        snap = gw.saver.snapshot
        if step and snap is not None and i % 40 == 0:
            snap.step(0.0)  # one device per call


@pytest.mark.parametrize("step", [False, True], ids=["on-demand-only", "stepped"])
def test_an_incremental_checkpoint_holds_the_state_of_its_start(
    tmp_path: Path, step: bool
) -> None:
    clock = Clock()
    gw = gateway(tmp_path, clock)
    items = fleet(8, 20.0)
    half = next(i for i, (_, t) in enumerate(items) if t >= items[0][1] + 10.0)
    feed(gw, clock, items[:half], step=False)
    assert gw.engine.counters["learned"] > 0  # labels have trained the shared models
    reference = digests(pickle.loads(pickle.dumps(gw.engine)))
    gw.checkpoint(background=True)
    snap = gw.saver.snapshot
    assert snap is not None and snap.pending
    learned = gw.engine.counters["learned"]
    feed(gw, clock, items[half:], step=step)
    assert gw.engine.counters["learned"] > learned  # the models changed while it ran
    assert f"d{7}" not in gw.engine.sessions  # evicted while it ran
    assert snap.taken_on_demand > 0
    gw.checkpoint_done(wait=True)
    assert gw.metrics.checkpoints._value.get() == 1
    path = gw.store.files()[0]  # type: ignore[union-attr]
    assert path.read_bytes().startswith(MAGIC2)
    state, _ = CheckpointStore.read(path)
    shell, order, devices = digests(state["engine"])
    assert order == reference[1]  # the same devices, in the same order
    assert devices == reference[2]
    assert shell == reference[0]
    assert state["journal"]["position"] > 0


def test_a_gateway_restores_an_incremental_checkpoint_and_goes_on_alike(tmp_path: Path) -> None:
    clock = Clock()
    gw = gateway(tmp_path, clock)
    items = fleet(4, 16.0)
    feed(gw, clock, items[: len(items) // 2], step=False)

    async def take() -> None:  # driven by the loop, a few devices a turn
        gw.checkpoint(background=True)
        while gw.saver.busy:
            await asyncio.sleep(0.001)
            gw.checkpoint_done()

    asyncio.run(take())
    assert gw.saver.last is not None and not gw.saver.last.taken_on_demand
    digest = digests(gw.engine)
    gw.durable.close()
    gw2 = gateway(tmp_path, Clock())
    assert gw2.restored is not None and digests(gw2.engine) == digest
    plans = [s.features for s in gw2.engine.sessions.values()]
    assert len(plans) == 4  # (the spectral plans are shared again: see the module's note)


def test_a_state_that_does_not_pickle_fails_cleanly_and_the_next_checkpoint_works(
    tmp_path: Path,
) -> None:
    clock = Clock()
    gw = gateway(tmp_path, clock)
    feed(gw, clock, fleet(2, 4.0), step=False)
    gw.engine.counters["x"] = 1
    gw.engine.sessions["d0"].labels.append(lambda: None)  # type: ignore[arg-type]
    gw.checkpoint(background=True)
    gw.checkpoint_done(wait=True)
    assert gw.metrics.checkpoints._value.get() == 0
    assert not list((tmp_path / "ckpt").glob("*.ckpt")) and not list(
        (tmp_path / "ckpt").glob(".*.tmp"))
    gw.engine.sessions["d0"].labels.pop()
    gw.checkpoint(background=True)
    gw.checkpoint_done(wait=True)
    assert gw.metrics.checkpoints._value.get() == 1
