"""Per-window feature kernels against the NumPy/SciPy code they replaced (issue 8).

References live in ``tests/golden/features.py``. Arithmetic follows NumPy's own summation order,
so most values are bit-identical; logarithms and powers inside the kernels are glibc's where
NumPy uses its SIMD versions, which can differ in the last bit. Hence the tolerances:
``RTOL`` relative, ``ATOL`` absolute for values near zero (a log10 near 1 is near 0).
"""

from __future__ import annotations

import math
import pickle
import sys

import numpy as np
import pytest
from scipy import signal

from streamfuse.config import EngineConfig, ModalitySpec
from streamfuse.features import DeviceFeatures, OnlineNormalizer, concat
from streamfuse.features.acc import AccFeatures
from streamfuse.features.ecg import hrv, kurtosis
from streamfuse.features.eeg import band_features
from streamfuse.features.spectrum import masked_welch
from streamfuse.fusion.early import ArrayNormalizer, EarlyFeatures
from streamfuse.kernels.filters import hold_kernel, push_rows, push_valid, sosfilt_kernel
from streamfuse.kernels.moments import col_sums, pairwise_sum
from streamfuse.types import FusedWindow, Window
from tests import naive
from tests.feature_windows import CLEAN, LOSSY, simulated_windows
from tests.golden import features as nf

RTOL = 1e-12
ATOL = 1e-13


def assert_same_features(got: dict[str, float], ref: dict[str, float], where: str = "") -> None:
    """Same keys in the same order, values equal up to the last bits."""
    assert list(got) == list(ref), where
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=RTOL, abs=ATOL), (where, k)


# --- small kernels ------------------------------------------------------------------------


def test_pairwise_sum_is_numpys_order_bit_for_bit():
    rng = np.random.default_rng(0)
    sizes = [*range(0, 300), 511, 512, 1000, 1024, 4097, 20000]
    for n in sizes:
        a = rng.standard_normal(n + 5) * 10.0 ** rng.uniform(-6, 6, n + 5)
        got = pairwise_sum(a, 3, n)
        assert got == np.sum(a[3 : 3 + n]), n
        if n <= 1024:
            assert got == naive.naive_pairwise_sum(a[3 : 3 + n]), n


def test_hold_kernel_matches_naive():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(500)
    valid = rng.random(500) > 0.3
    valid[:7] = False
    out = np.empty(500)
    last = 0.25
    got = []
    for a in range(0, 500, 37):
        last = hold_kernel(x[a : a + 37], valid[a : a + 37], last, out[a : a + 37])
        got.extend(out[a : a + 37])
    ref, ref_last = naive.naive_hold(x.tolist(), valid.tolist(), 0.25)
    assert got == ref
    assert last == ref_last


@pytest.mark.parametrize("cap", [1, 5, 64])
def test_push_rows_and_push_valid_keep_the_newest(cap):
    rng = np.random.default_rng(cap)
    buf = np.full((cap, 3), np.nan)
    buf_valid = np.zeros(cap, dtype=bool)
    bits = np.zeros(cap, dtype=bool)
    filled = filled_bits = 0
    ref = np.zeros((0, 3))
    ref_valid = np.zeros(0, dtype=bool)
    for _ in range(60):
        k = int(rng.integers(0, 2 * cap + 3))
        start = int(rng.integers(0, k + 1))
        gap = int(rng.integers(0, 3 * cap)) if rng.random() < 0.3 else 0
        x = rng.standard_normal((k, 3)).astype(np.float32)
        v = rng.random(k) > 0.2
        filled = push_rows(buf, buf_valid, filled, x, v, start, gap)
        new_valid = np.concatenate([np.zeros(gap, dtype=bool), v[start:]])
        ref = naive.naive_tail(ref, np.concatenate([np.zeros((gap, 3)), x[start:]]), cap)
        ref_valid = naive.naive_tail(ref_valid, new_valid, cap)
        filled_bits = push_valid(bits, filled_bits, new_valid)
        assert filled == ref.shape[0] == filled_bits
        np.testing.assert_array_equal(buf[:filled], ref)
        np.testing.assert_array_equal(buf_valid[:filled], ref_valid)
        np.testing.assert_array_equal(bits[:filled], ref_valid)


def test_sosfilt_kernel_is_bit_identical_to_scipy():
    rng = np.random.default_rng(4)
    x = rng.standard_normal(3000)
    sos = signal.butter(2, [0.29, 1.63], btype="bandpass", fs=256.0, output="sos")
    zi0 = signal.sosfilt_zi(sos) * x[0]
    ref, zf = signal.sosfilt(sos, x, zi=zi0)
    zi = zi0.copy()
    got = np.empty_like(x)
    for a in range(0, x.size, 71):
        sosfilt_kernel(sos, zi, x[a : a + 71], got[a : a + 71])
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(zi, zf)


@pytest.mark.parametrize("order, btype, band", [(1, "lowpass", 20.0), (4, "bandpass", [5.0, 15.0])])
def test_sosfilt_kernel_with_other_section_counts_is_bit_identical_to_scipy(order, btype, band):
    """One and four sections take the general loop (two sections keep the state in registers)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(2000)
    sos = signal.butter(order, band, btype=btype, fs=256.0, output="sos")
    zi0 = signal.sosfilt_zi(sos) * x[0]
    ref, zf = signal.sosfilt(sos, x, zi=zi0)
    zi = zi0.copy()
    got = np.empty_like(x)
    for a in range(0, x.size, 97):
        sosfilt_kernel(sos, zi, x[a : a + 97], got[a : a + 97])
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(zi, zf)


@pytest.mark.parametrize("ch", [1, 2, 3, 4, 5, 8, 11])
def test_col_sums_are_numpys_row_by_row_sums(ch):
    rng = np.random.default_rng(ch)
    a = rng.standard_normal((300, ch)) * 10.0 ** rng.uniform(-8, 8, (300, ch))
    out = np.empty(ch)
    col_sums(a, 17, 290, out)
    # plain loops: each column summed row by row from 0.0 (what NumPy's sum(axis=0) of a
    # C-ordered array with several columns does)
    want = np.zeros(ch)
    for row in a[17:290].tolist():
        for c in range(ch):
            want[c] += row[c]
    np.testing.assert_array_equal(out, want)
    if ch > 1:
        np.testing.assert_array_equal(out, a[17:290].sum(axis=0))


def test_hrv_and_kurtosis_match_numpy():
    rng = np.random.default_rng(5)
    for n in (0, 1, 2, 3, 7, 8, 40, 200):
        rr = 0.8 + 0.1 * rng.standard_normal(n)
        ref = nf.naive_hrv(rr)
        assert hrv(rr) == ref
        x = rng.standard_normal(n * 10) ** 3
        assert kurtosis(x) == pytest.approx(nf.naive_kurtosis(x), rel=RTOL, abs=ATOL)
    assert kurtosis(np.ones(100)) == 0.0


# --- spectra ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ch", "n", "nperseg"), [(8, 512, 256), (1, 1024, 1024), (1, 700, 256), (3, 300, 64)]
)
def test_masked_welch_matches_numpy(ch, n, nperseg):
    rng = np.random.default_rng(ch * n)
    x = rng.standard_normal((n, ch)) * 30.0 + 5.0
    for holes in (0, 1, 3):
        mask = np.ones(n, dtype=bool)
        mask[rng.integers(0, n, holes)] = False
        ref = nf.naive_masked_welch(x, mask, 256.0, nperseg)
        got = masked_welch(x, mask, 256.0, nperseg)
        if ref is None:
            assert got is None
            continue
        assert got is not None
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_allclose(got[1], ref[1], rtol=RTOL, atol=0.0)


@pytest.mark.parametrize(
    ("names", "fs"),
    [
        (("Fp1", "Fp2", "F3", "F4", "C3", "C4", "O1", "O2"), 256.0),
        (("Fp1", "Fp2"), 256.0),
        (("Cz",), 256.0),
        (("F3", "F4", "Pz"), 64.0),  # gamma above Nyquist, beta cut at it
        (("a", "b"), 16.0),  # only delta and theta
    ],
)
def test_band_features_match_numpy(names, fs):
    rng = np.random.default_rng(len(names))
    keys = nf.unique_keys(names)
    x = rng.standard_normal((int(2 * fs), len(names))) * 20.0
    freqs, psd = nf.naive_masked_welch(x, np.ones(x.shape[0], dtype=bool), fs, int(fs))
    psd[0, :] = 0.0  # a silent channel: relative powers 0, entropy 0
    ref = {k: v for k, v in nf.naive_band_features("eeg", keys, freqs, psd).items()}
    ref = {k: v for k, v in ref.items() if math.isfinite(v)}
    assert_same_features(band_features("eeg", keys, freqs, psd), ref)


# --- extractors over simulated windows ----------------------------------------------------


def _drop(windows: list[FusedWindow], lost: set[int]) -> list[FusedWindow]:
    return [w for i, w in enumerate(windows) if i not in lost]


CASES = {
    "clean": dict(faults=CLEAN, seed=0),
    "lossy": dict(faults=LOSSY, seed=2),
    "half-second hop": dict(faults=LOSSY, seed=3, config=EngineConfig(hop_s=0.5)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_device_features_match_numpy_reference(case):
    windows = simulated_windows(45.0, **CASES[case])
    # a 1 s hole (ECG bridges it) and a 4 s hole (ECG restarts its detector)
    windows = _drop(windows, {12, 25, 26, 27, 28})
    cfg = CASES[case].get("config") or EngineConfig()
    got, ref = DeviceFeatures(cfg), nf.NaiveDeviceFeatures(cfg)
    seen: set[str] = set()
    for fw in windows:
        g, r = got.update(fw.window), ref.update(fw.window)
        assert list(g) == list(r)
        for m in r:
            assert_same_features(g[m], r[m], f"{case} window {fw.window.index} {m}")
            seen.update(r[m])
    # the stream got far enough for every feature to appear
    for key in ("ecg_hr", "ecg_sdnn", "eeg_faa", "acc_cadence", "acc_dom_freq", "acc_counts"):
        assert key in seen


def _synthetic(k: int, fs: float, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(k) / fs
    cols = [
        np.sin(2 * np.pi * (1.7 + c) * t) + 0.3 * rng.standard_normal(k) for c in range(channels)
    ]
    return np.stack(cols, axis=1).astype(np.float32)


@pytest.mark.parametrize(
    ("modality", "spec"),
    [
        ("acc", ModalitySpec("acc", ("x",), 50.0, "m/s2")),  # one axis, converted to g
        ("acc", ModalitySpec("acc", tuple(f"a{i}" for i in range(9)), 50.0, "g")),  # 9 axes
        ("eeg", ModalitySpec("eeg", ("Cz",), 256.0, "uV")),  # one channel
        ("spo2", ModalitySpec("spo2", ("ir", "red"), 64.0)),  # generic
        ("ecg", ModalitySpec("ecg", ("ecg",), 40.0)),  # too slow for the QRS detector: generic
    ],
)
def test_other_channel_sets_match_numpy_reference(modality, spec):
    fs = 64.0
    cfg = EngineConfig(grid_fs=fs, modalities={modality: spec})
    k, hop = cfg.window_samples, int(round(cfg.hop_s * fs))
    x = _synthetic(40 * hop + k, fs, spec.channels, seed=spec.channels)
    rng = np.random.default_rng(1)
    valid = rng.random(x.shape[0]) > 0.02
    valid[300:340] = False
    got, ref = DeviceFeatures(cfg), nf.NaiveDeviceFeatures(cfg)
    for i, w in enumerate(range(0, x.shape[0] - k + 1, hop)):
        if i in (9, 20, 21, 22):
            continue  # windows that never closed
        blk, m = x[w : w + k].copy(), valid[w : w + k].copy()
        blk[~m] = 0.0
        win = Window("d", w / fs, (w + k) / fs, fs, {modality: blk}, {modality: m}, index=i)
        g, r = got.update(win), ref.update(win)
        assert list(g) == list(r)
        for mod in r:
            assert_same_features(g[mod], r[mod], f"window {i}")


def test_acc_without_valid_samples_still_consumes_its_window():
    got, ref = AccFeatures("acc", 50.0), nf.NaiveAccFeatures("acc", 50.0)
    x = _synthetic(100, 50.0, 3, 0)
    for i in range(6):
        m = np.ones(100, dtype=bool) if i % 3 else np.zeros(100, dtype=bool)
        assert_same_features(got.update(i * 2.0, x, m), ref.update(i * 2.0, x, m))


# --- normalisers and early fusion ---------------------------------------------------------


def test_online_normalizer_is_bit_identical_to_the_dict_version():
    windows = simulated_windows(30.0, faults=LOSSY, seed=4)
    feats = DeviceFeatures(EngineConfig())
    got, ref = OnlineNormalizer(warmup=3), nf.NaiveOnlineNormalizer(warmup=3)
    rng = np.random.default_rng(0)
    for fw in windows:
        flat = concat(feats.update(fw.window))
        keys = list(flat)
        for k in rng.choice(keys, 3, replace=False):  # missing, non-finite, reordered keys
            flat.pop(k) if rng.random() < 0.5 else flat.__setitem__(k, float("nan"))
        if rng.random() < 0.2:
            flat = dict(reversed(list(flat.items())))
        got.learn_one(flat)
        ref.learn_one(flat)
        assert got.transform_one(flat) == ref.transform_one(flat)
    assert all(got.count(k) == ref.count(k) for k in keys + ["never"])


def _early_cases() -> list[FusedWindow]:
    out = simulated_windows(20.0, faults=LOSSY, seed=6)
    w = out[3].window
    one = np.asarray(out[3].matrix)[:, :1].copy()
    out.append(FusedWindow(w, one, ("ecg:ecg",), np.asarray(out[3].mask)[:, :1].copy()))
    short = np.asarray(out[3].matrix)[:3].copy()
    out.append(FusedWindow(w, short, out[3].channels, np.asarray(out[3].mask)[:3].copy()))
    holes = np.random.default_rng(7).random(out[3].mask.shape) > 0.1  # over real values
    out.append(FusedWindow(w, out[3].matrix, out[3].channels, holes & out[3].mask))
    out.append(FusedWindow(w, out[3].matrix, out[3].channels, np.zeros_like(out[3].mask)))
    return out


def test_early_features_match_numpy_reference():
    early = EarlyFeatures(segments=4)
    for i, fw in enumerate(_early_cases()):
        keys, values = early.arrays(fw)
        ref_keys, ref_values = nf.naive_early_arrays(fw, 4)
        assert keys == ref_keys
        np.testing.assert_allclose(values, ref_values, rtol=RTOL, atol=ATOL, err_msg=str(i))


def test_array_normalizer_is_bit_identical_to_the_numpy_version():
    early = EarlyFeatures(segments=4)
    got, ref = ArrayNormalizer(warmup=3), nf.NaiveArrayNormalizer(warmup=3)
    for fw in _early_cases()[:-4]:
        _, values = nf.naive_early_arrays(fw, 4)
        z = got.update_transform(fw.channels, values)
        np.testing.assert_array_equal(z, ref.update_transform(fw.channels, values))
        # the dict the early level sees: finite values only, in key order
        x = early(fw)
        assert list(x) == [
            k for k, v in zip(early.arrays(fw)[0], values, strict=True) if math.isfinite(v)
        ]


def test_feature_pass_compiles_nothing_after_warm_up():
    from numba.core.registry import CPUDispatcher

    from streamfuse.warmup import warm_up

    def compiled() -> int:
        return sum(
            len(obj.signatures)
            for name, mod in list(sys.modules.items())
            if name.startswith("streamfuse") and mod is not None
            for obj in vars(mod).values()
            if isinstance(obj, CPUDispatcher)
        )

    warm_up()
    before = compiled()
    cfg = EngineConfig()
    windows = _drop(simulated_windows(30.0, faults=LOSSY, seed=8), {10, 15, 16, 17, 18})
    state = (DeviceFeatures(cfg), OnlineNormalizer(3), EarlyFeatures(), ArrayNormalizer(3))
    for i, fw in enumerate(windows):
        if i == 20:  # a checkpoint restore mid-stream
            state = pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        feats, norm, early, arr = state
        flat = concat(feats.update(fw.window))
        norm.learn_one(flat)
        norm.transform_one(flat)
        early(fw, arr)
    # gaps, restarts, missing modalities and restored state take the paths warm-up compiled
    assert compiled() == before


def test_pickled_state_carries_on_exactly():
    windows = simulated_windows(30.0, faults=LOSSY, seed=9)
    cfg = EngineConfig()
    live = (DeviceFeatures(cfg), OnlineNormalizer(3), ArrayNormalizer(3))
    early = EarlyFeatures()
    runs: list[list[tuple]] = [[], []]
    restored = None
    for i, fw in enumerate(windows):
        if i == 15:
            restored = pickle.loads(pickle.dumps(live, protocol=pickle.HIGHEST_PROTOCOL))
        for state, out in ((live, runs[0]), (restored, runs[1])):
            if state is None:
                continue
            flat = concat(state[0].update(fw.window))
            state[1].learn_one(flat)
            out.append((state[1].transform_one(flat), early(fw, state[2])))
    assert runs[0][15:] == runs[1]


def test_mismatched_shapes_are_refused():
    fw = simulated_windows(4.0)[0]
    w = fw.window
    masks = {**w.masks, "eeg": w.masks["eeg"][:-1]}
    bad = Window(w.device, w.t_start, w.t_end, w.fs, w.blocks, masks)
    with pytest.raises(ValueError, match="one bool per row"):
        DeviceFeatures(EngineConfig()).update(bad)
    with pytest.raises(ValueError, match="differs from the matrix"):
        EarlyFeatures()(FusedWindow(w, fw.matrix, fw.channels, fw.mask[:, :3]))
    with pytest.raises(ValueError, match="one bool per row"):
        masked_welch(np.zeros((10, 2)), np.ones(9, dtype=bool), 10.0, 4)
