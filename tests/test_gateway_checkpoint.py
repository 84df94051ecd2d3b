"""Checkpoints: write-then-rename, newest valid one wins, corrupt ones reported and skipped."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

from streamfuse.engine import Engine
from streamfuse.gateway.app import Gateway
from streamfuse.gateway.checkpoint import MAGIC, CheckpointStore, state_digest
from tests.gateway_configs import gateway_config
from tests.streams import device_messages


def test_save_keeps_the_newest_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=3)
    for i in range(5):
        store.save({"i": i})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["engine-00000003.ckpt", "engine-00000004.ckpt", "engine-00000005.ckpt"]
    found = store.load_latest()
    assert found is not None and found.state == {"i": 4} and found.skipped == ()


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # torn write
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),  # one flipped bit
        lambda b: b"garbage" + b[7:],  # not ours
        lambda b: b"",
    ],
)
def test_corrupt_newest_is_reported_and_the_previous_one_used(
    tmp_path: Path, damage, caplog: pytest.LogCaptureFixture
) -> None:
    store = CheckpointStore(tmp_path)
    store.save({"i": 1})
    newest = store.save({"i": 2})
    newest.write_bytes(damage(newest.read_bytes()))
    with caplog.at_level(logging.ERROR, "streamfuse.gateway.checkpoint"):
        found = store.load_latest()
    assert found is not None and found.state == {"i": 1}
    assert [p for p, _ in found.skipped] == [newest] and store.corrupt == 1
    assert "unusable" in caplog.text and newest.name in caplog.text
    assert (tmp_path / (newest.name + ".corrupt")).exists()  # kept aside, not retried
    assert store.save({"i": 3}).name == "engine-00000002.ckpt"  # numbering goes on


def test_all_corrupt_means_a_fresh_start_not_a_crash(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save({"i": 1}).write_bytes(MAGIC + b"\0" * 40)
    assert store.load_latest() is None and store.corrupt == 1


def test_gateway_restores_the_engine_it_checkpointed(tmp_path: Path) -> None:
    engine = Engine()
    engine.push_many(device_messages("a", 25, seed=3))
    assert engine.counters["learned"] > 0
    settings = gateway_config(checkpoint_dir=str(tmp_path))
    Gateway(engine, settings).checkpoint()
    # a newer, corrupt checkpoint must not prevent the restore
    CheckpointStore(tmp_path).save({"version": 1}).write_bytes(b"SFCKPT1\nbroken")
    fresh = Gateway(Engine(), settings)
    found = fresh.restore()
    assert found is not None and found.path.name == "engine-00000001.ckpt"
    assert fresh.engine is not engine
    assert fresh.restored_digest == state_digest(engine.hub)
    assert fresh.engine.counters == engine.counters
    assert fresh.metrics.checkpoints_corrupt._value.get() == 1
    # a checkpoint from another configuration is refused, not half-applied
    other = Gateway(Engine(prefix="other"), gateway_config(prefix="other",
                                                            checkpoint_dir=str(tmp_path)))
    assert other.restore() is None


def test_checkpoint_state_is_plain_pickle_of_our_own_objects(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    path = store.save({"version": 1, "x": [1, 2]})
    blob = path.read_bytes()
    assert blob.startswith(MAGIC)
    assert pickle.loads(blob[len(MAGIC) + 32 :]) == {"version": 1, "x": [1, 2]}


def test_checkpoint_of_an_older_state_layout_means_a_fresh_start(tmp_path: Path) -> None:
    engine = Engine()
    engine.push_many(device_messages("a", 5, seed=3))
    # as written before checkpoints recorded their class layout (tests/test_checkpoint_layout.py)
    CheckpointStore(tmp_path).save({"version": 4, "engine": engine, "retired_align": {}})
    gw = Gateway(Engine(), gateway_config(checkpoint_dir=str(tmp_path)))
    assert gw.restore() is None
    assert gw.engine.counters == {}  # the fresh engine, not the old objects
