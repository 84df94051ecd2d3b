"""Align kernels against the plain references in tests/naive.py, plus property tests."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamfuse.errors import ConfigError
from streamfuse.kernels import (
    align_window,
    envelope_fit,
    new_ring,
    new_scratch,
    resample_into,
    ring_count,
    ring_read,
    ring_write,
    warmup,
)
from streamfuse.kernels.align import resample
from streamfuse.kernels.ring import EMPTY, write
from tests.naive import naive_lower_envelope, naive_resample


def rs(values, slot_pos, p0, step, out, col0, valid, max_missing=0):
    """The compiled kernel with fresh scratch tables (garbage-filled: they must be rewritten)."""
    idx, wt = new_scratch(out.shape[0])
    idx[:] = 0xDEADBEEF
    wt[:] = np.nan
    return resample_into(
        values, slot_pos, p0, step, out, np.int64(col0), valid, np.int64(max_missing), idx, wt
    )


def filled_ring(positions: np.ndarray, rows: np.ndarray, cap: int = 256):
    values, slot_pos = new_ring(cap, rows.shape[1])
    for p, r in zip(positions, rows, strict=True):
        ring_write(values, slot_pos, r[None, :].astype(np.float32), np.int64(p))
    return values, slot_pos


@pytest.mark.parametrize("step", [0.2, 0.9765625, 1.0, 1.0005, 2.5, 5.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resample_matches_naive(step: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = 1000 + seed * 97  # absolute positions far from 0: exercises the ring wrap
    positions = base + np.arange(150)
    positions = positions[rng.random(150) > 0.1]  # random holes
    rows = rng.standard_normal((positions.size, 3)).astype(np.float32)
    values, slot_pos = filled_ring(positions, rows)
    k = 40
    p0 = base + rng.uniform(-3, 10)
    out = np.full((k, 5), 7.0, np.float32)
    valid = np.zeros(k, np.bool_)
    n = rs(values, slot_pos, p0, step, out, np.int64(1), valid)
    ref, ref_valid = naive_resample(
        {int(p): r for p, r in zip(positions, rows, strict=True)}, p0, step, k
    )
    np.testing.assert_array_equal(valid, ref_valid)
    assert n == ref_valid.sum() and 0 < n < k
    np.testing.assert_allclose(out[:, 1:4], ref, rtol=1e-5, atol=1e-5)
    assert (out[~valid, 1:4] == 0).all()
    assert (out[:, 0] == 7).all() and (out[:, 4] == 7).all()  # other columns untouched


def test_resample_nan_empty_and_single() -> None:
    values, slot_pos = filled_ring(np.arange(4), np.array([[1.0], [np.nan], [3.0], [4.0]]))
    out = np.zeros((4, 1), np.float32)
    valid = np.zeros(4, np.bool_)
    rs(values, slot_pos, 0.0, 1.0, out, np.int64(0), valid)
    assert valid.all() and np.isnan(out[1, 0]) and out[2, 0] == 3.0  # NaN propagates
    assert out[0, 0] == 1.0  # an exact hit does not touch its (NaN) neighbour
    empty = np.zeros((0, 1), np.float32)
    assert rs(values, slot_pos, 0.0, 1.0, empty, np.int64(0), np.zeros(0, np.bool_)) == 0
    one, _ = new_ring(8, 1)
    sp = np.full(8, EMPTY, np.int64)
    ring_write(one, sp, np.array([[5.0]], np.float32), np.int64(3))
    out1 = np.zeros((2, 1), np.float32)
    v1 = np.zeros(2, np.bool_)
    assert rs(one, sp, 3.0, 0.5, out1, np.int64(0), v1) == 1  # exact hit only
    assert v1.tolist() == [True, False] and out1[0, 0] == 5.0


@pytest.mark.parametrize("ch", [1, 2, 3, 4, 5, 8, 9])
@pytest.mark.parametrize("step", [0.19, 0.9765625, 0.99992, 1.0])
def test_fast_path_matches_naive_across_the_ring_wrap(ch: int, step: float) -> None:
    """No holes (the fast path), every width it specialises, windows that wrap the ring."""
    rng = np.random.default_rng(ch)
    cap = 128
    positions = np.arange(1000, 1000 + cap)  # the ring holds exactly these
    rows = rng.standard_normal((cap, ch)).astype(np.float32)
    values, slot_pos = filled_ring(positions, rows, cap=cap)
    samples = {int(p): r for p, r in zip(positions, rows, strict=True)}
    k = 50
    for p0 in (1000.0, 1003.25, 1000 + (1024 - 1000 % 128) % 128 - 20.5, 1060.0 + 1 / 3):
        out = np.full((k, ch + 2), 7.0, np.float32)
        valid = np.zeros(k, np.bool_)
        assert rs(values, slot_pos, p0, step, out, 1, valid) == k
        ref, ref_valid = naive_resample(samples, p0, step, k)
        assert ref_valid.all()
        np.testing.assert_allclose(out[:, 1 : 1 + ch], ref, rtol=1e-5, atol=1e-5)
        assert (out[:, 0] == 7).all() and (out[:, -1] == 7).all()


@pytest.mark.parametrize("max_missing", [0, 1, 3, 12])
@pytest.mark.parametrize("step", [0.2, 0.9765625, 1.0, 2.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_bridging_matches_naive(max_missing: int, step: float, seed: int) -> None:
    """Gaps of 1 to 15 missing samples: bridged linearly up to ``max_missing``, masked beyond."""
    rng = np.random.default_rng(seed)
    base = 5000
    keep = np.ones(200, bool)
    at = 5
    for gap in (1, 2, 3, 4, 5, 8, 13, 15):  # holes of many lengths between runs of samples
        keep[at : at + gap] = False
        at += gap + int(rng.integers(3, 12))
    positions = base + np.arange(200)[keep]
    rows = rng.standard_normal((positions.size, 2)).astype(np.float32)
    values, slot_pos = filled_ring(positions, rows)
    k = int(at / step)  # the window spans every hole
    p0 = base + 2.3
    out = np.zeros((k, 2), np.float32)
    valid = np.zeros(k, np.bool_)
    n = rs(values, slot_pos, p0, step, out, 0, valid, max_missing)
    ref, ref_valid = naive_resample(
        {int(p): r for p, r in zip(positions, rows, strict=True)}, p0, step, k, max_missing
    )
    np.testing.assert_array_equal(valid, ref_valid)
    assert n == ref_valid.sum() and 0 < n < k  # every case keeps some gaps masked
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    if max_missing:  # bridging really happened: more valid than without it
        _, plain = naive_resample(
            {int(p): r for p, r in zip(positions, rows, strict=True)}, p0, step, k
        )
        assert n > plain.sum()


def test_bridged_gap_is_linear_between_its_neighbours() -> None:
    """One run of 4 missing samples between 10.0 (at 9) and 20.0 (at 14), grid step 0.5."""
    positions = np.array([7, 8, 9, 14, 15, 16])
    rows = np.array([[0.0], [5.0], [10.0], [20.0], [25.0], [30.0]])
    values, slot_pos = filled_ring(positions, rows, cap=32)
    out = np.zeros((11, 1), np.float32)
    valid = np.zeros(11, np.bool_)
    assert rs(values, slot_pos, 9.0, 0.5, out, 0, valid, 4) == 11
    np.testing.assert_allclose(out[:, 0], 10.0 + np.arange(11) * 0.5 * 2.0, rtol=1e-6)
    assert rs(values, slot_pos, 9.0, 0.5, out, 0, valid, 3) == 2  # 9 and 14 only
    assert valid.tolist() == [True] + [False] * 9 + [True] and (out[1:10] == 0).all()


def test_align_window_equals_one_call_per_stream() -> None:
    rng = np.random.default_rng(3)
    k, widths = 40, (1, 8, 3)
    rings, params = [], []
    col = 0
    for i, ch in enumerate(widths):
        positions = 300 + np.arange(120)
        positions = positions[rng.random(120) > 0.15 * i]  # stream 0 full, others holed
        rows = rng.standard_normal((positions.size, ch)).astype(np.float32)
        rings.append(filled_ring(positions, rows))
        params.append((310.0 + i / 3, (0.97, 1.0, 0.2)[i], col, i % 2))
        col += ch
    out = np.zeros((k, col), np.float32)
    valid = np.zeros((3, k), np.bool_)
    n_ok = np.zeros(3, np.int64)
    idx, wt = new_scratch(k)
    align_window(tuple(r[0] for r in rings), tuple(r[1] for r in rings), np.array(params),
                 out, valid, n_ok, idx, wt)
    ref = np.zeros_like(out)
    for i, ((values, slot_pos), (p0, step, c0, mm)) in enumerate(zip(rings, params, strict=True)):
        v = np.zeros(k, np.bool_)
        assert rs(values, slot_pos, p0, step, ref, c0, v, mm) == n_ok[i]
        np.testing.assert_array_equal(v, valid[i])
    assert out.tobytes() == ref.tobytes()
    assert n_ok[0] == k and n_ok[1] < k


def test_ring_overwrite_reads_as_missing() -> None:
    values, slot_pos = new_ring(8, 1)
    ring_write(values, slot_pos, np.arange(12, dtype=np.float32)[:, None], np.int64(0))
    out = np.zeros((12, 1), np.float32)
    ok = np.zeros(12, np.bool_)
    assert ring_read(values, slot_pos, np.int64(0), out, ok) == 8
    assert not ok[:4].any() and ok[4:].all() and out[4:, 0].tolist() == list(range(4, 12))
    assert ring_count(slot_pos, np.int64(0), np.int64(12)) == 8
    # EMPTY never matches a real position, even negative ones
    v2, s2 = new_ring(4, 1)
    assert ring_count(s2, np.int64(-5), np.int64(5)) == 0


def test_wrappers_say_how_to_fix() -> None:
    values, slot_pos = new_ring(8, 2)
    with pytest.raises(ConfigError, match="astype"):
        write(values, slot_pos, np.zeros((3, 2)), 0)
    with pytest.raises(ConfigError, match="channels"):
        write(values, slot_pos, np.zeros((3, 1), np.float32), 0)
    with pytest.raises(ConfigError, match="power of two"):
        resample(np.zeros((6, 2), np.float32), slot_pos, 0, 1, np.zeros((3, 2), np.float32), 0,
                 np.zeros(3, np.bool_))
    with pytest.raises(ConfigError, match="do not fit"):
        resample(values, slot_pos, 0, 1, np.zeros((3, 2), np.float32), 1, np.zeros(3, np.bool_))
    assert write(values, slot_pos, np.ones((3, 2), np.float32), 0) == 0
    out = np.zeros((3, 2), np.float32)
    valid = np.zeros(3, np.bool_)
    assert resample(values, slot_pos, 0.0, 1.0, out, 0, valid) == 3 and out.sum() == 6.0
    with pytest.raises(ConfigError, match="new_scratch"):
        resample(values, slot_pos, 0.0, 1.0, out, 0, valid, scratch=new_scratch(2))
    with pytest.raises(ConfigError, match="max_missing"):
        resample(values, slot_pos, 0.0, 1.0, out, 0, valid, max_missing=-1)
    assert resample(values, slot_pos, 0.0, 1.0, out, 0, valid, 2, new_scratch(5)) == 3


@pytest.mark.parametrize("seed", range(5))
def test_envelope_matches_naive_lp(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 25
    x = np.sort(rng.uniform(0, 100, n))
    y = 0.3 + 5e-4 * x + rng.exponential(0.01, n)
    bid = np.arange(n, dtype=np.int64)
    a, b, m, span = envelope_fit(x, y, bid, np.int64(n - 1), np.zeros(n), np.zeros(n),
                                 np.zeros(n, np.int64))
    ra, rb = naive_lower_envelope(x, y)
    assert m == n and span == pytest.approx(x[-1] - x[0])
    assert a == pytest.approx(ra, abs=1e-12) and b == pytest.approx(rb, abs=1e-12)
    assert np.all(a + b * x <= y + 1e-12)


def test_warmup_runs() -> None:
    assert warmup() >= 0.0


# --- properties (hypothesis) ------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    slope=st.floats(-100, 100),
    icpt=st.floats(-100, 100),
    p0=st.floats(0, 50),
    step=st.floats(0.05, 1.0),
)
def test_linear_ramp_is_exact(slope: float, icpt: float, p0: float, step: float) -> None:
    positions = np.arange(120)
    rows = (icpt + slope * positions)[:, None]
    values, slot_pos = filled_ring(positions, rows)
    k = 60
    out = np.zeros((k, 1), np.float32)
    valid = np.zeros(k, np.bool_)
    rs(values, slot_pos, p0, step, out, np.int64(0), valid)
    p = p0 + np.arange(k) * step
    assert valid.all()
    scale = 1 + abs(icpt) + abs(slope) * 120
    np.testing.assert_allclose(out[:, 0], icpt + slope * p, atol=2e-6 * scale)


@settings(max_examples=40, deadline=None)
@given(
    widths=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    seed=st.integers(0, 2**31),
)
def test_interleave_then_split_is_identity(widths: list[int], seed: int) -> None:
    """Streams at the grid rate (step 1, integer p0) land unchanged in their columns."""
    rng = np.random.default_rng(seed)
    k = 30
    out = np.zeros((k, sum(widths)), np.float32)
    blocks = []
    col = 0
    for w in widths:
        block = rng.standard_normal((k, w)).astype(np.float32)
        values, slot_pos = filled_ring(np.arange(500, 500 + k), block, cap=64)
        valid = np.zeros(k, np.bool_)
        rs(values, slot_pos, 500.0, 1.0, out, np.int64(col), valid)
        assert valid.all()
        blocks.append(block)
        col += w
    split = np.split(out, np.cumsum(widths)[:-1], axis=1)
    for a, b in zip(split, blocks, strict=True):
        assert a.tobytes() == b.tobytes()
