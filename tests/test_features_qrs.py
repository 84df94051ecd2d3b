"""Streaming QRS detector: MIT-BIH record 100 accuracy, chunk-size invariance, naive reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from streamfuse.errors import ConfigError
from streamfuse.features.qrs import StreamingQRSDetector
from streamfuse.kernels.filters import sosfilt_kernel
from tests import naive
from tests.conftest import need_data
from tests.mitbih import load_record100, match


@pytest.fixture(scope="module")
def record100(data_dir):
    need_data(data_dir, "wfdb_sample_data", "100.dat")
    return load_record100(data_dir)


def stream(x: np.ndarray, fs: float, chunk_s: float) -> np.ndarray:
    """Feed ``x`` in chunks of ``chunk_s`` seconds (boundaries rounded to samples)."""
    det = StreamingQRSDetector(fs)
    bounds = np.unique(np.round(np.arange(0.0, x.size / fs + chunk_s, chunk_s) * fs).astype(int))
    bounds = np.clip(bounds, 0, x.size)
    out = [det.update(x[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    return np.concatenate(out)


@pytest.mark.data
def test_mitbih_100_sensitivity_and_positive_predictivity(record100):
    x, fs, beats = record100
    peaks = stream(x, fs, 0.1)
    assert np.all(np.diff(peaks) > 0)
    tp = match(beats, peaks, int(round(0.150 * fs)))
    se = tp / beats.size
    ppv = tp / peaks.size
    assert beats.size == 2273
    assert se >= 0.995, f"sensitivity {se:.4f}"
    assert ppv >= 0.995, f"positive predictivity {ppv:.4f}"


@pytest.mark.data
def test_mitbih_100_chunk_size_invariance(record100):
    x, fs, _ = record100
    ref = stream(x, fs, 0.1)
    for chunk_s in (0.01, 1.0):
        got = stream(x, fs, chunk_s)
        assert got.size == ref.size, chunk_s
        assert np.max(np.abs(got - ref)) <= 1, chunk_s


def _synthetic(
    fs: float, seconds: float, seed: int, small: float = 0.45
) -> tuple[np.ndarray, np.ndarray]:
    """Spiky beats with drifting RR, a T wave, a few tiny beats, baseline wander and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * fs)) / fs
    x = 0.3 * np.sin(2 * np.pi * 0.2 * t) + 0.03 * rng.standard_normal(t.size)
    tb = 0.4
    i = 0
    times = []
    while tb < seconds - 0.5:
        times.append(tb)
        amp = small if i % 9 == 8 else 1.0  # every ninth beat is small (search-back)
        x += amp * np.exp(-((t - tb) ** 2) / (2 * 0.012**2))
        x += 0.3 * np.exp(-((t - tb - 0.3) ** 2) / (2 * 0.05**2))
        tb += 0.75 + 0.1 * np.sin(i / 5.0) + 0.02 * rng.standard_normal()
        i += 1
    return x, np.array(times)


def _naive(x: np.ndarray, fs: float) -> list[int]:
    det = StreamingQRSDetector(fs)
    zi = signal.sosfilt_zi(det._sos) * x[0]
    bp, _ = signal.sosfilt(det._sos, x, zi=zi)
    return naive.naive_qrs_peaks(
        list(bp), fs, det._win, det._confirm, det._refractory, det._twave, det._learn, det._delay
    )


@pytest.mark.parametrize(("fs", "seed"), [(250.0, 0), (360.0, 1), (128.0, 2)])
def test_kernel_matches_naive_reference_on_synthetic(fs, seed):
    x, _ = _synthetic(fs, 40.0, seed)
    got = stream(x, fs, 0.037)
    ref = _naive(x, fs)
    assert got.tolist() == ref
    assert len(ref) > 40  # beats found, including the small ones via search-back


@pytest.mark.data
def test_kernel_matches_naive_reference_on_record(record100):
    x, fs, _ = record100
    seg = x[: int(60 * fs)]
    assert stream(seg, fs, 0.1).tolist() == _naive(seg, fs)


def test_small_beats_are_recovered_by_search_back():
    fs = 250.0
    x, truth = _synthetic(fs, 60.0, 5)
    peaks = stream(x, fs, 0.1)
    tp = match(np.round(truth * fs).astype(int), peaks, int(0.1 * fs))
    assert tp >= truth.size - 1
    assert peaks.size <= truth.size + 1  # the T waves are not counted


def test_flat_and_empty_input():
    det = StreamingQRSDetector(250.0)
    assert det.update(np.zeros(0)).size == 0
    assert det.update(np.full(5000, 0.7)).size == 0
    assert det.samples_seen == 5000


def test_validation_messages():
    with pytest.raises(ConfigError, match="at least 50 Hz"):
        StreamingQRSDetector(20.0)
    det = StreamingQRSDetector(250.0)
    with pytest.raises(ValueError, match="1-D"):
        det.update(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="finite"):
        det.update(np.array([0.0, np.nan]))


def test_sosfilt_kernel_matches_scipy_in_chunks():
    rng = np.random.default_rng(4)
    x = rng.standard_normal(3000)
    sos = signal.butter(3, [2.0, 40.0], btype="bandpass", fs=250.0, output="sos")
    zi0 = signal.sosfilt_zi(sos) * x[0]
    ref, _ = signal.sosfilt(sos, x, zi=zi0)
    zi = zi0.copy()
    got = np.empty_like(x)
    for a in range(0, x.size, 71):
        out = np.empty(min(71, x.size - a))
        sosfilt_kernel(sos, zi, x[a : a + 71], out)
        got[a : a + out.size] = out
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_a_detector_pickled_before_the_started_flag_restores_and_carries_on():
    """Old pickles held ``_zi`` None (before the first sample) and eight integers of state."""
    import pickle

    fs = 250.0
    t = np.arange(int(20 * fs)) / fs
    ecg = np.exp(-(((t % 0.8) - 0.4) ** 2) / (2 * 0.01**2))
    for cut in (0, 2500):
        ref = StreamingQRSDetector(fs)
        old = StreamingQRSDetector(fs)
        if cut:
            ref.update(ecg[:cut])
            old.update(ecg[:cut])
        state = dict(old.__dict__)
        state["_ist"] = state["_ist"][:8].copy()
        if not cut:
            state["_zi"] = None
        restored = StreamingQRSDetector.__new__(StreamingQRSDetector)
        restored.__setstate__(pickle.loads(pickle.dumps(state)))
        np.testing.assert_array_equal(restored.update(ecg[cut:]), ref.update(ecg[cut:]))
