"""Issue 3 done-when 2 and 3: real multi-rate record in shuffled chunks, dropped chunks, duplicates,
any chunking gives the same windows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streamfuse.align import DeviceAligner
from streamfuse.config import EngineConfig, ModalitySpec
from streamfuse.types import Chunk
from tests.conftest import need_data

OFFSET = 2.0
# Rates that are powers of two keep every device time exact in binary floating point, so runs
# that see different chunkings fit bit-identical clock models and can be compared bit for bit.
EEG = ModalitySpec("eeg", ("a", "b"), 256.0)
ACC = ModalitySpec("acc", ("x", "y", "z"), 32.0)
CFG = EngineConfig(modalities={"eeg": EEG, "acc": ACC}, grid_fs=200.0, window_s=2.0, hop_s=1.0)


def signal(spec: ModalitySpec, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * spec.fs)
    return np.cumsum(rng.standard_normal((n, spec.channels)), axis=0).astype(np.float32)


def chunked(spec: ModalitySpec, x: np.ndarray, cuts: list[int], t0: float = 100.0) -> list[Chunk]:
    bounds = [0, *cuts, len(x)]
    out = []
    for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        t = t0 + a / spec.fs
        out.append(Chunk("d", spec.name, s, t, spec.fs, x[a:b], t0 + b / spec.fs + OFFSET))
    return out


def run(chunks: list[Chunk], cfg: EngineConfig = CFG) -> tuple[list, DeviceAligner]:
    al = DeviceAligner("d", cfg)
    out = []
    for c in chunks:
        out.extend(al.add(c))
    out.extend(al.flush())
    return out, al


def merged(*streams: list[Chunk]) -> list[Chunk]:
    return sorted([c for s in streams for c in s], key=lambda c: (c.arrival, c.modality))


EEG_X = signal(EEG, 20, 1)
ACC_X = signal(ACC, 20, 2)
ACC_CHUNKS = chunked(ACC, ACC_X, list(range(8, len(ACC_X), 8)))


def same(a: list, b: list) -> None:
    assert [o.window.index for o in a] == [o.window.index for o in b]
    for x, y in zip(a, b, strict=True):
        assert x.matrix.tobytes() == y.matrix.tobytes() and x.mask.tobytes() == y.mask.tobytes()


def test_dropped_chunk_masks_exactly_its_span() -> None:
    """Upsampled (256 -> 512 Hz, linear interpolation): the grid points strictly between the
    last sample before the lost chunk and the first sample after it are masked, nothing else.
    (Downsampled streams widen this by the anti-aliasing filter's support; see the kernel
    tests against tests/naive.py.)"""
    cfg = EngineConfig(modalities=CFG.modalities, grid_fs=512.0)
    eeg = chunked(EEG, EEG_X, list(range(64, len(EEG_X), 64)))
    full, _ = run(merged(eeg, ACC_CHUNKS), cfg)
    lost = eeg[50]  # samples 3200..3263, device 112.5 .. 112.746
    dropped, al = run(merged([c for c in eeg if c is not lost], ACC_CHUNKS), cfg)
    assert al.counters["gaps"] == 1 and al.counters["gap_samples"] == 64
    assert [o.window.index for o in full] == [o.window.index for o in dropped]
    last_before = lost.t0 - 1 / EEG.fs + OFFSET  # gateway time of the sample before the loss
    first_after = lost.t0 + lost.n / EEG.fs + OFFSET
    n_masked = 0
    for f, d in zip(full, dropped, strict=True):
        g = d.window.t_start + np.arange(cfg.window_samples) / cfg.grid_fs
        inside = (g > last_before) & (g < first_after)
        np.testing.assert_array_equal(d.mask[:, 0], f.mask[:, 0] & ~inside)  # eeg columns
        np.testing.assert_array_equal(d.mask[:, 2:], f.mask[:, 2:])  # acc untouched
        assert (d.matrix[inside, :2] == 0).all()
        keep = ~inside
        assert d.matrix[keep].tobytes() == f.matrix[keep].tobytes()
        n_masked += int(inside.sum())
    assert n_masked > 0


@pytest.mark.parametrize("max_gap_s", [64 / 256, 0.4, 63 / 256])
def test_max_gap_s_bridges_short_gaps_and_masks_long_ones(max_gap_s: float) -> None:
    """A lost chunk of 64 samples (0.25 s): with ``max_gap_s >= 0.25`` its span is interpolated
    linearly between the samples around it and unmasked; with less it is masked exactly."""
    cfg = EngineConfig(modalities=CFG.modalities, grid_fs=512.0, max_gap_s=max_gap_s)
    eeg = chunked(EEG, EEG_X, list(range(64, len(EEG_X), 64)))
    full, _ = run(merged(eeg, ACC_CHUNKS), cfg)
    lost = eeg[50]  # samples 3200..3263
    dropped, _ = run(merged([c for c in eeg if c is not lost], ACC_CHUNKS), cfg)
    last_before = lost.t0 - 1 / EEG.fs + OFFSET  # gateway time of sample 3199
    first_after = lost.t0 + lost.n / EEG.fs + OFFSET  # of sample 3264
    bridged = max_gap_s >= 64 / 256
    n_inside = 0
    for f, d in zip(full, dropped, strict=True):
        g = d.window.t_start + np.arange(cfg.window_samples) / cfg.grid_fs
        inside = (g > last_before) & (g < first_after)
        n_inside += int(inside.sum())
        keep = ~inside
        assert d.matrix[keep].tobytes() == f.matrix[keep].tobytes()
        if bridged:
            np.testing.assert_array_equal(d.mask, f.mask)
            u = (g[inside] - last_before) / (first_after - last_before)
            line = EEG_X[3199] + u[:, None] * (EEG_X[3264] - EEG_X[3199])
            np.testing.assert_allclose(d.matrix[inside, :2], line, rtol=1e-4, atol=1e-4)
            if inside.any():  # really interpolated, not the lost samples themselves
                assert not np.allclose(d.matrix[inside, :2], f.matrix[inside, :2])
        else:
            np.testing.assert_array_equal(d.mask[:, 0], f.mask[:, 0] & ~inside)
            assert (d.matrix[inside, :2] == 0).all()
    assert n_inside > 0


def test_default_max_gap_s_masks_every_gap() -> None:
    assert EngineConfig().max_gap_s == 0.0


def test_duplicates_change_nothing() -> None:
    eeg = chunked(EEG, EEG_X, list(range(64, len(EEG_X), 64)))
    base = merged(eeg, ACC_CHUNKS)
    rng = np.random.default_rng(3)
    dup = list(base)
    for i in sorted(rng.choice(len(base), 40, replace=False), reverse=True):
        c = base[i]  # QoS 1 redelivery: same chunk again, later
        j = min(len(dup), i + int(rng.integers(1, 10)))
        dup.insert(j, Chunk(c.device, c.modality, c.seq, c.t0, c.fs, c.data.copy(),
                            c.arrival + 0.05))
    a, _ = run(base)
    b, al = run(dup)
    assert al.counters["duplicates"] == 40
    same(a, b)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 127), min_size=1, max_size=40))
@example([1, 1, 2, 127])
def test_any_chunking_gives_the_same_windows(lengths: list[int]) -> None:
    """Any chunking whose chunks are shorter than the lateness budget (0.5 s = 128 samples)
    gives bit-identical windows. A chunk of exactly 128 samples can arrive exactly at a window's
    deadline and then ties with another stream's chunk arriving at the same instant (e.g.
    lengths [1, 1, 2, 128]: the window closes on the acc chunk first), so it may miss that
    window's last grid point; a longer one cannot arrive in time at all."""
    cuts, pos = [], 0
    while True:
        for n in lengths:
            pos += n
            if pos >= len(EEG_X):
                break
            cuts.append(pos)
        else:
            continue
        break
    ref, _ = run(merged(chunked(EEG, EEG_X, list(range(64, len(EEG_X), 64))), ACC_CHUNKS))
    got, _ = run(merged(chunked(EEG, EEG_X, cuts), ACC_CHUNKS))
    same(ref, got)


# --- the real multi-rate record -------------------------------------------------------------


@pytest.mark.data
def test_mixedsignals_shuffled_matches_reference(data_dir) -> None:
    """Six channels at three rates (about 250, 125 and 62.5 Hz), cut into 31-frame chunks,
    delivered shuffled within blocks of 8 (arrival = newest span end delivered so far + 2 s),
    give the same windows as np.interp of the whole record."""
    wfdb = pytest.importorskip("wfdb")
    hea = need_data(data_dir, "wfdb_sample_data", "mixedsignals.hea")
    rec = wfdb.rdrecord(str(hea.with_suffix("")), smooth_frames=False)
    groups = {"ecg": [0, 1, 2], "bp": [3, 4], "resp": [5]}
    specs, series = {}, {}
    for name, idx in groups.items():
        spf = rec.samps_per_frame[idx[0]]
        fs = rec.fs * spf
        specs[name] = ModalitySpec(name, tuple(rec.sig_name[i] for i in idx), fs)
        series[name] = np.column_stack([rec.e_p_signal[i] for i in idx]).astype(np.float32)
    cfg = EngineConfig(
        modalities=specs, window_s=4.0, hop_s=2.0, grid_fs=250.0, lateness_s=5.0, reorder_s=5.0
    )
    frames = 31
    chunks = []
    t0 = 0.0
    for name, x in series.items():
        n = frames * rec.samps_per_frame[groups[name][0]]
        fs = specs[name].fs
        for s, a in enumerate(range(0, len(x), n)):
            chunks.append(Chunk("mx", name, s, t0 + a / fs, fs, x[a : a + n], 0.0))
    chunks.sort(key=lambda c: (c.t0 + c.duration, c.modality))
    rng = np.random.default_rng(7)
    order = []
    for b in range(0, len(chunks), 8):
        block = chunks[b : b + 8]
        order += [block[i] for i in rng.permutation(len(block))]
    newest = -np.inf
    delivered = []
    for c in order:
        newest = max(newest, c.t0 + c.duration)
        delivered.append(Chunk(c.device, c.modality, c.seq, c.t0, c.fs, c.data, newest + OFFSET))
    out, al = run(delivered, cfg)
    assert al.counters["reordered"] > 50 and al.counters["late_chunks"] == 0
    assert len(out) >= 100
    full = 0
    for fw in out:
        g = fw.window.t_start + np.arange(cfg.window_samples) / cfg.grid_fs - OFFSET
        ref_cols, ref_mask = [], []
        for name, x in series.items():
            t = np.arange(len(x)) / specs[name].fs
            inside = (g >= t[0]) & (g <= t[-1])
            for c in range(x.shape[1]):
                ref_cols.append(np.where(inside, np.interp(g, t, x[:, c]), 0.0))
                ref_mask.append(inside)
        ref = np.column_stack(ref_cols)
        mask = np.column_stack(ref_mask)
        both = mask & fw.mask
        assert (mask != fw.mask).sum(axis=0).max() <= 1  # at most the very edge sample
        np.testing.assert_allclose(fw.matrix[both], ref[both], rtol=1e-5, atol=1e-4)
        full += bool(mask.all() and fw.mask.all())
    assert full >= 100


def test_stale_redelivery_from_before_the_epoch_cannot_tilt_the_clock() -> None:
    """A device flushing old buffered data from *before* the first chunk the gateway saw
    (device time 100-100.4 s, when the gateway's epoch began at 112 s), under new sequence
    numbers: held as a clock outlier, then released as merely late once in-model data
    follows, it once tilted the clock fit to a drift of -1 (time running backwards) and the
    aligner emitted windows without end, the gateway's memory with them. It must be left out
    of the fit, and the windows must go on as if it had never come."""
    x = signal(EEG, 52.0, seed=3)
    every = chunked(EEG, x, list(range(26, len(x), 26)))
    start = next(i for i, c in enumerate(every) if c.t0 >= 112.0)
    honest = every[start:]
    at = next(i for i, c in enumerate(honest) if c.t0 >= 112.0 + 1.2)
    stale = [
        Chunk("d", "eeg", 10_000 + j, c.t0, c.fs, c.data, honest[at].arrival + 0.01 * j)
        for j, c in enumerate(every[:4])
    ]
    faulty = [*honest[:at], *stale, *honest[at:]]
    clean_windows, _ = run(honest)
    got_windows, al = run(faulty)
    assert len(got_windows) == len(clean_windows) <= 43  # 40 s at 1 per second + partial ends
    (clock,) = al._clocks.values()
    assert abs(clock.drift) < 1e-3
    assert clock.implausible >= 1
    for a, b in zip(got_windows, clean_windows, strict=True):
        assert a.window.index == b.window.index
        np.testing.assert_allclose(a.window.t_start, b.window.t_start, atol=1e-3)
