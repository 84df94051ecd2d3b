"""The gateway's journal in-process: a kill (the gateway abandoned mid-stream, its unwritten
buffer lost), then a restart that restores the checkpoint and applies the journal.

No broker: the test plays paho (``durable.accept`` is what paho's callback calls, before it
acknowledges) and the event loop (``ingest.process``, ``durable.tick``, publishing). The
reference is an engine fed, by plain calls, exactly the pushes and ticks the first gateway
made, independent of the journal.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamfuse import journal as fmt
from streamfuse.engine import Engine
from streamfuse.gateway.app import Gateway
from streamfuse.gateway.checkpoint import CheckpointStore
from streamfuse.replay.journal import replay_journal
from streamfuse.types import Prediction, RawMessage
from tests.gateway_configs import gateway_config
from tests.streams import device_messages, merge

PREFIX = "jtest"
TICK_S = 0.1


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def stream(seconds: float = 24.0) -> list[tuple[RawMessage, float]]:
    return merge(*(device_messages(d, seconds, seed=i, prefix=PREFIX) for i, d in enumerate("ab")))


class Driver:
    """Plays paho and the event loop for one in-process gateway; records what it did."""

    def __init__(self, gw: Gateway, clock: Clock) -> None:
        self.gw, self.clock = gw, clock
        self.calls: list[tuple[str, object, float]] = []  # ("push", raw, now) / ("tick", None, now)
        self.published: list[Prediction] = []
        self.next_tick = -1.0

    def arrive(self, raw: RawMessage, t: float) -> None:
        self.clock.t = t
        self.gw.durable.accept(raw)  # paho's callback
        self.gw.durable.commit()  # after paho's read of the socket; the PUBACK would follow

    def run_queue(self) -> None:
        gw = self.gw
        while not gw.inbox.empty():
            raw = gw.inbox.get_nowait()
            self.calls.append(("push", raw, self.clock.t))
            gw.ingest.process(raw)
        if self.clock.t >= self.next_tick:
            self.next_tick = self.clock.t + TICK_S
            self.calls.append(("tick", None, self.clock.t))
            gw.outbox.emit(gw.durable.tick(self.clock.t))

    def publish(self) -> None:
        queue = self.gw.outbox.queue
        self.gw.durable.publishing(queue)  # as Outbox.publish_now does before writing
        self.published.extend(queue)
        queue.clear()


def reference(calls: list[tuple[str, object, float]]) -> tuple[Engine, list[Prediction]]:
    engine = Engine(gateway_config(prefix=PREFIX).engine_config(), prefix=PREFIX)
    out: list = []
    for kind, raw, now in calls:
        out.extend(engine.push(raw, now) if kind == "push" else engine.tick(now))
    return engine, [p for p in out if isinstance(p, Prediction)]


def reference_continue(engine: Engine, calls: list) -> list[Prediction]:
    out: list = []
    for kind, raw, now in calls:
        out.extend(engine.push(raw, now) if kind == "push" else engine.tick(now))
    return [p for p in out if isinstance(p, Prediction)]


def assert_same_state(engine: Engine, ref: Engine) -> None:
    assert engine.counters == ref.counters and engine.rejections == ref.rejections
    assert sorted(engine.sessions) == sorted(ref.sessions)
    for device, session in ref.sessions.items():
        assert engine.sessions[device].aligner.counters == session.aligner.counters
    assert engine.metrics() == ref.metrics()


def same_outputs(engine: Engine, ref: Engine, calls: list) -> bool:
    a = reference_continue(engine, calls)
    b = reference_continue(ref, calls)
    return bool(a) and [fields(p) for p in a] == [fields(p) for p in b]


def fields(p: Prediction) -> dict:
    d = p.to_json_dict()
    d.pop("latency_ms")
    return d


def settings(tmp_path: Path, **extra):
    return gateway_config(prefix=PREFIX, checkpoint_dir=str(tmp_path / "ckpt"),
                          journal_fsync="never", **extra)


@pytest.mark.parametrize("mode", ["inline", "forked", "incremental"])
def test_kill_then_restart_recovers_the_state_the_journal_describes(
    tmp_path: Path, mode: str
) -> None:
    msgs = stream()
    cfg = settings(tmp_path, journal_prune=False)
    clock = Clock()
    gw = Gateway(Engine(cfg.engine_config(), prefix=PREFIX), cfg, clock=clock)
    gw.restore()
    d = Driver(gw, clock)
    n = len(msgs)
    for i, (raw, t) in enumerate(msgs[: int(n * 0.8)]):
        d.arrive(raw, t)
        d.run_queue()
        if i % 50 == 0:
            d.publish()
        if i == n // 2:
            # incremental: no loop steps it here, so every device the later messages touch
            # is pickled on demand first, the rest when it is waited for
            gw.checkpoint(background=mode != "inline", fork=mode == "forked")
    gw.checkpoint_done(wait=True)
    assert gw.metrics.checkpoints._value.get() == 1
    # predictions made and not published, then messages acknowledged and never processed
    unpublished = list(gw.outbox.queue)
    assert unpublished
    for raw, t in msgs[int(n * 0.8) : int(n * 0.8) + 30]:
        d.arrive(raw, t)
    gw.outbox.emit(gw.durable.tick(clock.t + 0.01))  # buffered only: lost in the kill
    # kill -9: nothing more is written (no shutdown, no flush, no final checkpoint)

    ref_engine, ref_predictions = reference(d.calls)
    clock2 = Clock()
    made: list[Prediction] = []
    gw2 = Gateway(Engine(cfg.engine_config(), prefix=PREFIX), cfg, clock=clock2,
                  on_prediction=made.append)
    gw2.restore()
    # the engine is the one the journalled calls make (the lost tick excluded): same counters
    # now, same predictions from here on (checked below)
    assert gw2.restored is not None
    assert_same_state(gw2.engine, ref_engine)
    made.clear()  # those were the recovered ones (checked next); from here on, new ones
    # what was not published is queued again, what was published is not
    assert [fields(p) for p in gw2.outbox.queue] == [fields(p) for p in unpublished]
    # the 30 acknowledged, unprocessed messages are queued again, in order
    requeued = [gw2.inbox.get_nowait() for _ in range(gw2.inbox.qsize())]
    assert requeued == [raw for raw, _ in msgs[int(n * 0.8) : int(n * 0.8) + 30]]
    d2 = Driver(gw2, clock2)
    d2.published = d.published
    for raw in requeued:
        gw2.inbox.put_nowait(raw)
    clock2.t = msgs[int(n * 0.8) + 29][1]
    for raw in requeued:  # accepted before the kill: their positions are known
        assert id(raw) in gw2.durable.pending
    d2.run_queue()
    for raw, t in msgs[int(n * 0.8) + 30 :]:
        d2.arrive(raw, t)
        d2.run_queue()
    # the restored engine and the reference, given the same calls, say the same
    cont = reference_continue(ref_engine, d2.calls)
    assert len(cont) >= 5 and [fields(p) for p in made] == [fields(p) for p in cont]
    d2.publish()
    gw2.durable.close()

    keys = [fmt.window_key(p) for p in d2.published]
    assert len(keys) == len(set(keys))  # no window published twice
    # the whole journal, replayed, makes every published prediction, field for field
    replayed, _, applied, scan = replay_journal(
        cfg.journal.dir or tmp_path / "ckpt" / "journal",
        lambda: Engine(cfg.engine_config(), prefix=PREFIX),
    )
    assert scan.torn == [] and applied.missing_messages == 0 and applied.starts == 2
    by_key = {fmt.window_key(p): fields(p) for p in replayed}
    assert len(by_key) == len(replayed)
    assert [by_key[fmt.window_key(p)] for p in d2.published] == [fields(p) for p in d2.published]
    # and what the first gateway made matches the independent reference
    first = {fmt.window_key(p): fields(p) for p in ref_predictions}
    assert all(by_key[k] == v for k, v in first.items())


def test_pruned_journal_and_a_corrupt_newest_checkpoint_still_recover(tmp_path: Path) -> None:
    msgs = stream(16)
    cfg = settings(tmp_path, journal_segment_bytes=1 << 16, checkpoint_keep=2)
    clock = Clock()
    gw = Gateway(Engine(cfg.engine_config(), prefix=PREFIX), cfg, clock=clock)
    gw.restore()
    d = Driver(gw, clock)
    for i, (raw, t) in enumerate(msgs):
        d.arrive(raw, t)
        d.run_queue()
        if i % 300 == 299:
            gw.checkpoint()
    jdir = tmp_path / "ckpt" / "journal"
    assert fmt.segments(jdir)[0][0] > 0  # segments before the older checkpoint were removed
    ref_engine, _ = reference(d.calls)
    # the last gateway's next calls, applied to both
    tail = [("push", raw, t + 100.0) for raw, t in stream(4)]
    gw.durable.journal.flush()
    # the newest checkpoint is damaged: the older one and a longer journal tail are used
    store = CheckpointStore(tmp_path / "ckpt")
    newest = store.files()[0]
    newest.write_bytes(newest.read_bytes()[:-10])
    gw2 = Gateway(Engine(cfg.engine_config(), prefix=PREFIX), cfg, clock=Clock())
    found = gw2.restore()
    assert found is not None and found.path != newest
    assert_same_state(gw2.engine, ref_engine)
    assert same_outputs(gw2.engine, ref_engine, tail)
    with pytest.raises(Exception, match="pruned"):
        replay_journal(jdir, lambda: Engine(prefix=PREFIX))


def test_without_a_checkpoint_a_whole_journal_is_applied(tmp_path: Path) -> None:
    msgs = stream(8)
    cfg = settings(tmp_path)
    clock = Clock()
    gw = Gateway(Engine(cfg.engine_config(), prefix=PREFIX), cfg, clock=clock)
    gw.restore()
    d = Driver(gw, clock)
    for raw, t in msgs:
        d.arrive(raw, t)
        d.run_queue()
    gw.durable.journal.flush()
    ref_engine, _ = reference(d.calls)
    assert CheckpointStore(tmp_path / "ckpt").files() == []
    gw2 = Gateway(Engine(cfg.engine_config(), prefix=PREFIX), cfg, clock=Clock())
    assert gw2.restore() is None
    assert_same_state(gw2.engine, ref_engine)
    assert same_outputs(gw2.engine, ref_engine, [("tick", None, msgs[-1][1] + 5.0)])


def test_checkpoint_files_are_private_and_corrupt_ones_bounded(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    for i in range(6):
        store.save({"i": i})
        store.save({"i": -1}).write_bytes(b"broken")
        assert store.load_latest().state == {"i": i}  # type: ignore[union-attr]
    assert store.save({"i": 9}).stat().st_mode & 0o777 == 0o600
    assert len(list(tmp_path.glob("*.corrupt"))) == 3
    (tmp_path / ".engine-00000099.ckpt.tmp").write_bytes(b"half")  # a writer killed mid-way
    CheckpointStore(tmp_path)
    assert not list(tmp_path.glob("*.tmp"))


def test_a_background_checkpoint_that_fails_is_reported_and_the_next_one_works(
    tmp_path: Path,
) -> None:
    store = CheckpointStore(tmp_path)
    store.save_in_background({"f": lambda: None})  # a lambda cannot be pickled
    path, ok, message = store.wait()
    assert not ok and "pickle" in message.lower() and not path.exists()
    assert not list(tmp_path.glob(".*.tmp"))
    store.save_in_background({"i": 1})
    path, ok, _ = store.wait()
    assert ok and CheckpointStore.read(path)[0] == {"i": 1}


def test_journal_settings(tmp_path: Path) -> None:
    from streamfuse.errors import ConfigError
    from streamfuse.gateway.durability import make_journal
    from streamfuse.gateway.loading import from_mapping

    with pytest.raises(ConfigError, match="journal.fsync"):
        from_mapping({"journal": {"fsync": "sometimes"}})
    with pytest.raises(ConfigError, match="journal.segment_bytes"):
        from_mapping({"journal": {"segment_bytes": 0}})
    assert make_journal(from_mapping({})) is None  # no checkpoints, no journal
    on = make_journal(from_mapping({"checkpoint": {"dir": str(tmp_path / "c")}}))
    assert on is not None and on.dir == tmp_path / "c" / "journal" and on.fsync == "interval"
    off = from_mapping({"checkpoint": {"dir": str(tmp_path / "c")}},
                       env={"STREAMFUSE_JOURNAL_ENABLED": "false"})
    assert make_journal(off) is None


def test_the_journal_figures_are_in_the_metrics(tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from streamfuse.gateway.metrics import parse_exposition

    msgs = stream(6.0)
    cfg = settings(tmp_path, journal_prune=True)
    clock = Clock()
    gw = Gateway(Engine(cfg.engine_config(), prefix=PREFIX), cfg, clock=clock)
    gw.restore()
    d = Driver(gw, clock)
    for raw, t in msgs:
        d.arrive(raw, t)
        d.run_queue()
    gw.durable.commit()  # what the last tick buffered
    gw.house.refresh_metrics()
    m = parse_exposition(generate_latest(gw.metrics.registry).decode())
    j = gw.durable.journal
    assert j is not None
    assert m["streamfuse_journal_messages_total"] == len(msgs)
    assert m["streamfuse_journal_records_total"] == j.records > len(msgs)  # + P, T, S records
    assert m["streamfuse_journal_bytes_total"] == j.bytes_written == j.position - len(fmt.MAGIC)
    assert m["streamfuse_journal_segments"] == 1
    assert m["streamfuse_journal_fsyncs_total"] == j.fsyncs  # "never": the start's fsync only
    gw.checkpoint()
    gw.durable.close()
    # a restart applies the records after the checkpoint: none here, all of them without it
    for keep in (True, False):
        if not keep:
            for f in CheckpointStore(tmp_path / "ckpt").files():
                f.unlink()
        gw2 = Gateway(Engine(cfg.engine_config(), prefix=PREFIX), cfg, clock=Clock())
        gw2.restore()
        gw2.house.refresh_metrics()
        m2 = parse_exposition(generate_latest(gw2.metrics.registry).decode())
        pushed = sum(1 for kind, _, _ in d.calls if kind == "push")
        assert m2['streamfuse_journal_replayed_total{kind="messages"}'] == (0 if keep else pushed)
        gw2.durable.close()
