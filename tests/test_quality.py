"""Signal-quality indices against plain-loop references and on signals built to be bad."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamfuse.features import quality as q
from tests.naive_quality import (
    naive_beyond,
    naive_clipped,
    naive_flat,
    naive_flat_channels,
    naive_line_noise,
    naive_motion,
    naive_template_correlation,
    naive_wander,
)

FS = 256.0


def _ecg(seconds=4.0, hr=72.0, noise=0.02, seed=0):
    """A synthetic ECG (mV): a Gaussian R wave, a smaller T wave, noise; and its R peaks."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    x = noise * rng.standard_normal(t.size)
    peaks = []
    for tb in np.arange(0.3, seconds - 0.45, 60.0 / hr):
        x += 1.2 * np.exp(-0.5 * ((t - tb) / 0.012) ** 2)
        x += 0.3 * np.exp(-0.5 * ((t - tb - 0.25) / 0.04) ** 2)
        peaks.append(int(round(tb * FS)))
    return x, np.array(peaks)


def _cases(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 300))
    x = rng.normal(size=(k, 3))
    # flat runs, clipped plateaus, gaps and a non-finite sample, at random places
    for _ in range(3):
        s = int(rng.integers(0, k))
        x[s : s + int(rng.integers(1, 40)), int(rng.integers(0, 3))] = rng.choice([0.5, 2.5, -2.5])
    mask = rng.random(k) > 0.1
    if k > 5:
        x[int(rng.integers(0, k)), 1] = np.nan
    return x, mask


@pytest.mark.parametrize("seed", range(12))
def test_indices_match_plain_loops(seed):
    x, mask = _cases(seed)
    valid = mask & np.isfinite(x).all(axis=1)
    rows = x.tolist()
    assert q.flat_fraction(x[:, 0], mask, 5) == pytest.approx(
        naive_flat(x[:, 0].tolist(), (mask & np.isfinite(x[:, 0])).tolist(), 5), nan_ok=True
    )
    assert q.clipped_fraction(x, mask) == pytest.approx(
        naive_clipped(rows, mask.tolist()), nan_ok=True
    )
    assert q.beyond_fraction(x, mask, 1.5) == pytest.approx(
        naive_beyond(rows, valid.tolist(), 1.5), nan_ok=True
    )
    assert q.flat_channel_fraction(x, mask, 0.9) == pytest.approx(
        naive_flat_channels(rows, valid.tolist(), 0.9), nan_ok=True
    )
    assert q.motion_index(x, mask) == pytest.approx(naive_motion(rows, valid.tolist()), nan_ok=True)


@pytest.mark.parametrize("seed", range(4))
def test_line_noise_matches_a_direct_dft(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(60, 200))
    t = np.arange(k) / FS
    x = rng.normal(size=(k, 2)) + rng.uniform(0, 3) * np.sin(2 * np.pi * 50.0 * t)[:, None]
    mask = rng.random(k) > 0.05
    got = q.line_noise_ratio(x, mask, FS)
    assert got == pytest.approx(naive_line_noise(x.tolist(), mask.tolist(), FS), rel=1e-9)


def test_line_noise_sees_mains_and_is_undefined_below_nyquist():
    rng = np.random.default_rng(1)
    t = np.arange(512) / FS
    clean = rng.normal(size=(512, 4))
    hum = clean + 5.0 * np.sin(2 * np.pi * 50.0 * t)[:, None]
    assert q.line_noise_ratio(clean, None, FS) < 0.05
    assert q.line_noise_ratio(hum, None, FS) > 0.5
    assert math.isnan(q.line_noise_ratio(hum[::3], None, FS / 3))  # 85 Hz grid: no 50 Hz bin


def test_ecg_quality_separates_clean_flat_clipped_and_noise():
    x, peaks = _ecg()
    clean = q.ecg_quality(x[:, None].astype(np.float32), None, FS)
    assert clean["template"] > 0.9 and clean["flat"] == 0.0 and clean["clipped"] < 0.01
    # the detector finds the beats that are there
    found = q._r_peaks(x, FS)
    assert len(found) == len(peaks) and np.abs(found - peaks).max() <= 1

    lead_off = x.copy()
    lead_off[200:] = lead_off[200]
    bad = q.ecg_quality(lead_off[:, None], None, FS)
    assert bad["flat"] > 0.8

    railed = np.clip(x * 3.0, -1.0, 1.0)
    assert q.ecg_quality(railed[:, None], None, FS)["clipped"] > 0.02

    noise = np.random.default_rng(3).normal(size=x.size)
    assert q.ecg_quality(noise[:, None], None, FS)["template"] < 0.6
    assert q.ecg_quality(np.zeros((x.size, 1)), None, FS)["template"] == 0.0


def test_wander_matches_a_plain_dft_and_sees_baseline_wander():
    x, _ = _ecg(noise=0.05, seed=6)
    x = x[:512]
    t = np.arange(x.size) / FS
    mask = np.ones(x.size, dtype=bool)
    mask[100:140] = False
    wandering = x + 3.0 * np.abs(x).max() * np.sin(2 * np.pi * 0.3 * t)
    for sig, m in ((x, None), (wandering, None), (wandering, mask)):
        want = naive_wander(sig.tolist(), [True] * sig.size if m is None else m.tolist(), FS)
        assert q.wander_ratio(sig, m, FS) == pytest.approx(want, rel=1e-9)
    assert q.ecg_quality(x[:, None], None, FS)["wander"] < 0.3
    assert q.ecg_quality(wandering[:, None], None, FS)["wander"] > 0.8
    assert math.isnan(q.wander_ratio(x[:5], None, FS))


def test_template_correlation_matches_the_plain_definition():
    x, _ = _ecg(noise=0.1, seed=4)
    found = q._r_peaks(x, FS)
    before, after = int(round(0.2 * FS)), int(round(0.4 * FS))
    beats = [int(p) for p in found if p - before >= 0 and p + after <= x.size]
    want = naive_template_correlation(x.tolist(), beats, before, after)
    assert q.beat_template_correlation(x, None, FS) == pytest.approx(want, rel=1e-9)


def test_eeg_quality_sees_pops_and_dead_channels():
    rng = np.random.default_rng(5)
    x = 20.0 * rng.normal(size=(512, 8))  # µV
    good = q.eeg_quality(x, None, FS)
    assert good["beyond"] < 0.001 and good["flat_channels"] == 0.0
    popped = x.copy()
    popped[100:180, 2] += 400.0
    popped[:, 5] = 3.0
    bad = q.eeg_quality(popped, None, FS)
    assert bad["beyond"] > 0.01 and bad["flat_channels"] == pytest.approx(1 / 8)


def test_acc_motion_and_units():
    rng = np.random.default_rng(6)
    still = np.tile([0.0, 0.0, 1.0], (256, 1)) + 0.001 * rng.normal(size=(256, 3))
    moving = still + 0.5 * rng.normal(size=(256, 3))
    assert q.acc_quality(still, None, FS)["motion"] < 0.05
    assert q.acc_quality(moving, None, FS)["motion"] > 0.7
    assert q.motion_index(moving * 9.80665, None, "m/s2") == pytest.approx(
        q.motion_index(moving, None, "g")
    )


def test_gaps_empty_and_bad_shapes():
    x = np.ones((10, 2))
    none = np.zeros(10, dtype=bool)
    got = q.window_quality("eeg", x, none, FS)
    assert got == {"gap": 1.0}  # undefined indices are left out, never NaN
    assert q.window_quality("spo2", np.zeros((0, 1)), np.zeros(0, dtype=bool), FS) == {"gap": 1.0}
    with pytest.raises(ValueError, match="one bool per row"):
        q.window_quality("ecg", x, np.ones(3, dtype=bool), FS)
    with pytest.raises(ValueError, match="samples, channels"):
        q.flat_fraction(np.zeros((2, 2, 2)), None, 2)


def test_tiny_and_non_finite_blocks():
    one = np.array([[1.0]])
    assert q.flat_fraction(one, None, 2) == 0.0
    assert q.clipped_fraction(one, None) == 0.0
    assert q.beat_template_correlation(one, None, FS) == 0.0
    assert math.isnan(q.line_noise_ratio(one, None, FS))
    assert math.isnan(q.flat_channel_fraction(one, None, 0.5))
    bad = np.full((40, 2), np.nan)
    assert q.window_quality("eeg", bad, None, FS) == {"gap": 1.0}  # non-finite rows are gaps
    x = np.zeros((40, 1))
    x[::2] = np.inf
    got = q.ecg_quality(x, None, FS)
    assert all(math.isfinite(v) for v in got.values())


def _by_expressions(kind, block, mask, fs):
    """The indices as the NumPy expressions of features/quality compute them (what the
    per-modality kernels replaced): the kernels must give the same floats, bit for bit."""
    a, m = q._check(block, mask)
    if kind == "ecg":
        v = np.ascontiguousarray(a[:, :1])
        d = {
            "gap": q.gap_fraction(m),
            "flat": q._flat(v, m, max(2, int(round(0.2 * fs))), 0.0),
            "clipped": q._clipped(v, m, 3, 1e-3),
            "template": q._template(v, m, fs),
            "wander": q._wander(v, m, fs, 0.7),
        }
    elif kind == "eeg":
        d = {
            "gap": q.gap_fraction(m),
            "line_noise": q._line_noise(a, m, fs, (50.0, 60.0), 1.0),
            "beyond": q._beyond(a, m, 150.0),
            "flat_channels": q._flat_channels(a, m, 0.5),
            "clipped": q._clipped(a, m, 3, 1e-3),
        }
    else:
        d = {
            "gap": q.gap_fraction(m),
            "clipped": q._clipped(a, m, 3, 1e-3),
            "motion": q._motion(a, m, "g"),
        }
    return {k: v for k, v in d.items() if math.isfinite(v)}


def _bits(d):
    return [(k, np.float64(v).tobytes()) for k, v in d.items()]


def _random_block(rng, kind):
    fs = float(rng.choice([50.0, 100.0, 128.0, 250.0, 256.0, 500.0]))
    k = int(rng.choice([int(rng.integers(1, 40)), int(rng.integers(40, 1100)), int(2 * fs)]))
    ch = {"ecg": int(rng.integers(1, 3)), "eeg": int(rng.integers(1, 10))}.get(kind, 3)
    t = np.arange(k) / fs
    x = rng.normal(size=(k, ch)) * 10.0 ** rng.uniform(-2, 2, size=ch)
    if kind == "ecg" or rng.random() < 0.3:  # beats: R waves and T waves at a random rate
        for tb in np.arange(rng.uniform(0, 0.5), t[-1] + 1, 60.0 / rng.uniform(40, 180)):
            x[:, 0] += rng.uniform(0.5, 40) * np.exp(-0.5 * ((t - tb) / 0.012) ** 2)
            x[:, 0] += 0.3 * np.exp(-0.5 * ((t - tb - 0.25) / 0.04) ** 2)
    if rng.random() < 0.3:
        x += rng.uniform(0, 30) * np.sin(2 * np.pi * rng.choice([50.0, 60.0, 0.3]) * t)[:, None]
    if rng.random() < 0.3:  # a coarse ADC: plateaus, tied peaks
        x = np.round(x, int(rng.integers(0, 2)))
    for _ in range(int(rng.integers(0, 4))):  # flat runs, rails, signed zeros
        s = int(rng.integers(0, k))
        x[s : s + int(rng.integers(1, 80)), int(rng.integers(0, ch))] = rng.choice(
            [0.0, -0.0, 2.5, -2.5, x.max(), x.min()]
        )
    mask = None
    if rng.random() < 0.7:
        mask = rng.random(k) > rng.choice([0.0, 0.05, 0.5, 0.97])
        s = int(rng.integers(0, k))
        mask[s : s + int(rng.integers(0, k // 2 + 1))] = False
    if rng.random() < 0.2 and k > 3:
        x[int(rng.integers(0, k)), int(rng.integers(0, ch))] = rng.choice([np.nan, np.inf])
    if rng.random() < 0.5:
        x = x.astype(np.float32)
    return x, mask, fs


@pytest.mark.parametrize("kind", ["ecg", "eeg", "acc"])
def test_window_kernels_give_the_expressions_bit_for_bit(kind):
    rng = np.random.default_rng({"ecg": 11, "eeg": 12, "acc": 13}[kind])
    for _ in range(400):
        x, mask, fs = _random_block(rng, kind)
        assert _bits(q.window_quality(kind, x, mask, fs)) == _bits(
            _by_expressions(kind, x, mask, fs)
        ), (x.shape, fs)


def test_local_peaks_are_scipys_find_peaks_or_say_tied():
    from scipy.signal import find_peaks

    from streamfuse.kernels import quality as kq

    rng = np.random.default_rng(14)
    tied = 0
    for _ in range(300):
        n = int(rng.integers(3, 600))
        e = np.abs(rng.normal(size=n))
        if rng.random() < 0.5:  # plateaus and equal heights
            e = np.round(e * rng.choice([2, 5, 50]))
        hmin, distance = float(rng.uniform(0, 1.5)), int(rng.integers(1, 90))
        got, tie = kq.local_peaks(e, hmin, distance)
        tied += tie
        if not tie:
            want = find_peaks(e, height=hmin, distance=distance)[0]
            np.testing.assert_array_equal(got, want)
    assert 0 < tied < 300


def test_pairwise_sum_is_numpys_sum():
    from streamfuse.kernels import reductions as kr

    rng = np.random.default_rng(15)
    for n in [*range(0, 300), 511, 512, 513, 1024, 4099, 20000]:
        a = rng.normal(size=n + 3) * 10.0 ** rng.uniform(-5, 5, size=n + 3)
        assert np.float64(kr.np_sum(a, 3, n)).tobytes() == np.sum(a[3 : 3 + n]).tobytes()
