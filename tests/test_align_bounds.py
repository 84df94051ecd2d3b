"""A device's memory is bounded by configuration, not by what its frames claim (issue 17,
item 4): rings are sized by the configured rate (a chunk claiming more than twice it is
refused), and the chunks held as a possible clock jump are capped at 120 s of data."""

from __future__ import annotations

import numpy as np

from streamfuse import codec, topics
from streamfuse.align import DeviceAligner
from streamfuse.align.device import HOLD_LIMIT_S, RATE_LIMIT
from streamfuse.config import EngineConfig
from streamfuse.engine import Engine
from streamfuse.types import Chunk, RawMessage

CFG = EngineConfig()


def ring_bytes(al: DeviceAligner) -> int:
    return sum(b.values.nbytes + b.slot_pos.nbytes for b in al._buffers.values())


def ring_bound(cfg: EngineConfig) -> int:
    """Bytes of every stream's ring at RATE_LIMIT times its configured rate (power of two)."""
    al = DeviceAligner("x", cfg)
    total = 0
    for spec in cfg.modalities.values():
        cap = 1 << (int(np.ceil(al._retain_s * RATE_LIMIT * spec.fs))).bit_length()
        total += cap * (4 * spec.channels + 8)
    return total


def test_one_small_frame_claiming_a_huge_rate_allocates_no_huge_ring() -> None:
    """An 80-byte eeg frame claiming 20 kHz from a new device id: main allocated an 8.4 MB
    ring for it; now it is refused and the device holds no ring at all."""
    frame = codec.encode_chunk(
        Chunk("junk", "eeg", 1, 100.0, 20_000.0, np.zeros((1, 8), np.float32))
    )
    assert len(frame) == 80
    engine = Engine(CFG)
    engine.push(RawMessage(topics.data_topic(topics.DEFAULT_PREFIX, "junk", "eeg"), frame), 1.0)
    rings = sum(ring_bytes(s.aligner) for s in engine.sessions.values())
    assert rings == 0
    # the engine refuses the rate against the configuration before the aligner sees it
    assert engine.rejections == {"rate_mismatch": 1}
    # and the aligner, handed such a chunk directly, refuses it too and allocates nothing
    al = DeviceAligner("junk", CFG)
    al.add(Chunk("junk", "eeg", 1, 100.0, 20_000.0, np.zeros((1, 8), np.float32), arrival=1.0))
    assert al.counters["rejected"] == 1
    assert ring_bytes(al) == 0


def test_rings_stay_within_the_configured_bound_at_any_accepted_rate() -> None:
    al = DeviceAligner("d", CFG)
    for i, (m, spec) in enumerate(CFG.modalities.items()):
        fs = RATE_LIMIT * spec.fs  # the most a stream may claim
        al.add(Chunk("d", m, i, 100.0, fs, np.zeros((4, spec.channels), np.float32), 101.0))
    assert 0 < ring_bytes(al) <= ring_bound(CFG)
    assert al.counters["rejected"] == 0


def test_held_chunks_are_capped_and_the_dropped_counted() -> None:
    """A device whose times never agree with its clock (each chunk a new outlier) is held at
    most HOLD_LIMIT_S of data, the oldest dropped and counted."""
    spec = CFG.modalities["acc"]
    cfg = EngineConfig(modalities={"acc": spec})
    al = DeviceAligner("d", cfg)
    n = 5  # 0.1 s at 50 Hz
    al.add(Chunk("d", "acc", 0, 0.0, spec.fs, np.zeros((n, 3), np.float32), 1000.0))
    total = int(3 * HOLD_LIMIT_S / 0.1)
    for i in range(1, total):
        # device time runs 10x too fast: every chunk lies off the line by more than the last
        al.add(Chunk("d", "acc", i, i * 1.0, spec.fs, np.zeros((n, 3), np.float32),
                     1000.0 + i * 0.1))
    held_rows = sum(h.data.shape[0] for h in al._held)
    assert held_rows <= HOLD_LIMIT_S * spec.fs
    assert al.counters["held_dropped"] > 0
    assert al.counters["held_dropped"] + len(al._held) <= al.counters["clock_outliers"]
    held, dropped = len(al._held), al.counters["held_dropped"]
    assert held > 0
    al.flush()  # the end of the stream lets the held ones go, counted
    assert len(al._held) == 0
    assert al.counters["held_dropped"] == dropped + held
