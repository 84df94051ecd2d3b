"""DeviceAligner.add_parts (a decoded bundle's parts, as fields) against the frozen reference
(tests/golden/align.py) fed the same chunks one by one through ``add``.

The scenarios are tests/test_align_equivalence.py's (loss, duplicates, reordering, clock
jumps held and released, stale replays, silences, malformed chunks). Runs of up to three
consecutive chunks that a bundle could carry are handed to ``add_parts`` as one bundle
arriving at the first one's time (the reference gets the same arrival stamps); the others
go through ``add``. The samples sit in one scratch array that is overwritten with NaN after
every call, as the engine reuses it: a part the aligner keeps (held as a possible clock
jump) must not alias it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamfuse.align import DeviceAligner
from streamfuse.align.device import RATE_LIMIT
from streamfuse.types import Chunk, FusedWindow
from tests.golden.align import NaiveDeviceAligner
from tests.test_align_equivalence import (
    SEEDS,
    Scenario,
    assert_same_windows,
    clock_state,
    make_scenario,
)


def bundleable(chunk: Chunk, sc: Scenario) -> bool:
    """Would the bundle decoder and the engine's rate check let ``chunk`` through as a part
    (what add_parts assumes)?"""
    spec = sc.config.modalities.get(chunk.modality)
    d = chunk.data
    return (
        spec is not None
        and isinstance(d, np.ndarray)
        and d.dtype == np.float32
        and d.ndim == 2
        and d.flags.c_contiguous
        and d.shape[0] >= 1
        and d.shape[1] == spec.channels
        and math.isfinite(chunk.t0)
        and math.isfinite(chunk.arrival)
        and math.isfinite(chunk.fs)
        and 0 < chunk.fs <= RATE_LIMIT * spec.fs
    )


def as_bundles(sc: Scenario) -> list[tuple]:
    """The scenario's calls with runs of bundleable adds grouped as ("bundle", chunks)."""
    calls: list[tuple] = []
    for call in sc.calls:
        if call[0] == "add" and bundleable(call[1], sc):
            prev = calls[-1] if calls else None
            if prev is not None and prev[0] == "bundle" and len(prev[1]) < 3:
                c = call[1]
                at = prev[1][0].arrival
                prev[1].append(Chunk(c.device, c.modality, c.seq, c.t0, c.fs, c.data, at))
            else:
                calls.append(("bundle", [call[1]]))
        else:
            calls.append(call)
    return calls


def add_bundle(al: DeviceAligner, chunks: list[Chunk], scratch: np.ndarray) -> list[FusedWindow]:
    """``chunks`` through add_parts as the engine hands a bundle over, samples in ``scratch``."""
    names = list(al.config.modalities)
    ints: list[list[int]] = []
    floats: list[list[float]] = []
    pos = 0
    for c in chunks:
        n, ch = c.data.shape
        scratch[pos : pos + n * ch] = c.data.reshape(-1)
        ints.append([names.index(c.modality), n, ch, c.seq, pos])
        floats.append([c.t0, c.fs])
        pos += n * ch
    out: list[FusedWindow] = []
    i = 0
    while i < len(chunks):
        windows, nxt = al.add_parts(names, ints, floats, scratch, chunks[0].arrival, i)
        assert nxt > i
        out.extend(windows)
        i = nxt
    scratch.fill(np.nan)  # the engine's next bundle overwrites it
    return out


def check_parts(sc: Scenario) -> tuple[int, dict[str, int]]:
    new = DeviceAligner("dev", sc.config, clock_per_stream=sc.clock_per_stream)
    ref = NaiveDeviceAligner("dev", sc.config, clock_per_stream=sc.clock_per_stream)
    scratch = np.full(1 << 16, np.nan, np.float32)
    bundles = 0
    for call in as_bundles(sc):
        if call[0] == "bundle":
            bundles += len(call[1]) > 1
            got = add_bundle(new, call[1], scratch)
            want = [w for c in call[1] for w in ref.add(c)]
        elif call[0] == "add":
            got, want = new.add(call[1]), ref.add(call[1])
        elif call[0] == "advance":
            got, want = new.advance(call[1]), ref.advance(call[1])
        elif call[0] == "sync":
            new.sync(call[1])
            ref.sync(call[1])
            got = want = []
        else:
            got, want = new.flush(), ref.flush()
        assert_same_windows(got, want)
        assert new.counters == ref.counters
        assert clock_state(new) == clock_state(ref)
        assert repr(new.next_deadline()) == repr(ref.next_deadline())
    return bundles, new.counters


@pytest.mark.parametrize("seed", SEEDS)
def test_bundle_parts_match_the_frozen_reference(seed: int) -> None:
    check_parts(make_scenario(seed))


def test_bundle_scenarios_reach_duplicates_and_held_jumps() -> None:
    """Multi-part bundles, redeliveries and held clock jumps all go through add_parts."""
    bundles = 0
    total: dict[str, int] = {}
    for seed in SEEDS:
        b, counters = check_parts(make_scenario(seed))
        bundles += b
        for k, v in counters.items():
            total[k] = total.get(k, 0) + v
    assert bundles > 100
    assert total["duplicates"] > 0 and total["clock_outliers"] > 0
    assert total["clock_resets"] > 0 and total["reordered"] > 0


def test_a_redelivery_behind_the_newest_seq_is_still_found() -> None:
    """Stream.seq_max spares the lookup only for a seq above every one seen."""
    sc = make_scenario(0)
    al = DeviceAligner("dev", sc.config)
    m = next(iter(sc.config.modalities.values()))
    data = np.zeros((8, m.channels), np.float32)
    for seq in (5, 3, 9):
        al.add(Chunk("dev", m.name, seq, seq * 8 / m.fs, m.fs, data, 1.0 + seq))
    for seq in (3, 5, 9):
        al.add(Chunk("dev", m.name, seq, seq * 8 / m.fs, m.fs, data, 20.0))
    assert al.counters["duplicates"] == 3
