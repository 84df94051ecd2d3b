"""The engine's state and log are bounded whatever the devices send (issue 17, items 4, 10):
a cap on live devices with a stated policy, counted; the rejection-log tally bounded in memory
and the log bounded per reason, still logging the first few of each device and reason."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from streamfuse import codec, topics
from streamfuse.config import EngineConfig
from streamfuse.engine import Engine
from streamfuse.errors import ConfigError
from streamfuse.rejections import LOG_FIRST, LOG_PER_REASON, LOGGED_KEYS
from streamfuse.types import Chunk, Prediction, RawMessage, Rejection

SPEC = EngineConfig().modalities["acc"]


def acc_chunk(device: str, i: int) -> Chunk:
    data = np.sin(np.arange(5 * 3, dtype=np.float32) + i).reshape(5, 3)
    return Chunk(device, "acc", i, i * 0.1, SPEC.fs, data)


def feed(engine: Engine, devices: list[str], seconds: float, t0: float = 0.0) -> list:
    out = []
    for i in range(int(seconds * 10)):
        for d in devices:
            c = acc_chunk(d, i)
            out += engine.push(c, t0 + c.t0 + 0.101)
    return out


def cfg(**kw: object) -> EngineConfig:
    return EngineConfig(modalities={"acc": SPEC}, classes=("a", "b"), **kw)  # type: ignore[arg-type]


def test_refuse_policy_keeps_the_devices_it_has() -> None:
    engine = Engine(cfg(max_devices=3))
    out = feed(engine, ["d0", "d1", "d2", "junk0", "junk1"], 6.0)
    refused = [o for o in out if isinstance(o, Rejection)]
    assert refused and {o.reason for o in refused} == {"too_many_devices"}
    assert {o.device for o in refused} == {"junk0", "junk1"}
    assert "max_devices" in refused[0].message
    assert sorted(engine.sessions) == ["d0", "d1", "d2"]
    assert engine.rejections["too_many_devices"] == len(refused) == 2 * 60
    predicted = {o.device for o in out if isinstance(o, Prediction)}
    assert predicted == {"d0", "d1", "d2"}


def test_evict_policy_makes_room_for_the_new_least_recent_first() -> None:
    engine = Engine(cfg(max_devices=3, device_policy="evict"))
    feed(engine, ["d0", "d1", "d2"], 3.0)
    feed(engine, ["d1", "d2"], 1.0, t0=3.0)  # d0 is now the least recently seen
    out = feed(engine, ["new"], 4.0, t0=4.0)
    assert "d0" not in engine.sessions and "new" in engine.sessions
    assert len(engine.sessions) == 3
    assert engine.counters["devices_evicted_at_cap"] == 1
    assert engine.counters["windows_unpredicted_at_cap"] >= 1  # d0's open windows, counted
    assert not any(isinstance(o, Rejection) for o in out)
    assert any(isinstance(o, Prediction) and o.device == "new" for o in out)


def test_cap_settings_are_checked() -> None:
    for bad in ({"max_devices": 0}, {"max_devices": 2.5}, {"device_policy": "lru"}):
        with pytest.raises(ConfigError):
            cfg(**bad)


def test_junk_device_ids_cannot_grow_the_log_tally_or_flood_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = Engine(cfg())
    junk = b"\x00not a frame"
    with caplog.at_level(logging.WARNING, logger="streamfuse.engine"):
        for i in range(LOGGED_KEYS * 3):
            topic = topics.data_topic(topics.DEFAULT_PREFIX, f"junk{i}", "acc")
            for _ in range(2):
                engine.push(RawMessage(topic, junk), float(i))
    assert engine.rejections["unknown_format"] == LOGGED_KEYS * 6
    assert len(engine._rejection_log.logged) <= LOGGED_KEYS
    lines = [r for r in caplog.records if "unknown_format" in r.getMessage()]
    assert len(lines) == LOG_PER_REASON
    assert "only counted" in lines[-1].getMessage()


def test_the_first_few_of_each_device_and_reason_are_still_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = Engine(cfg())
    good = codec.encode_chunk(acc_chunk("d", 1))
    with caplog.at_level(logging.WARNING, logger="streamfuse.engine"):
        for device in ("a", "b"):
            topic = topics.data_topic(topics.DEFAULT_PREFIX, device, "acc")
            for i in range(LOG_FIRST + 3):
                engine.push(RawMessage(topic, good[:30]), float(i))  # truncated
    per = {d: [r for r in caplog.records if f"device={d}," in r.getMessage()] for d in "ab"}
    assert [len(v) for v in per.values()] == [LOG_FIRST, LOG_FIRST]
    assert all("only counted" in v[-1].getMessage() for v in per.values())
