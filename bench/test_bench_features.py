"""Feature benchmarks.

- Streaming R-peak detection vs NeuroKit2 on MIT-BIH record 100, as multiples of real time
  (needs the ``bench`` extra for NeuroKit2; that case skips without it). Each case stores
  ``x_realtime`` (record duration / median run time) and Se/+P in ``extra_info``.
- One window's full per-device feature pass (``DeviceFeatures.update``, the per-device
  ``OnlineNormalizer``, the early level's ``EarlyFeatures`` with its ``ArrayNormalizer``) over
  a simulated device's windows (ECG, 8-channel EEG, 3-axis ACC, 2 s windows every 1 s on the
  256 Hz grid), ours beside the NumPy/SciPy code it replaced (``tests/golden/features.py``)
  timed in the same run; ``extra_info`` holds both per-window medians and the speed-up, and
  the outputs of the two are checked against each other first.

Run: ``/work/venv/bin/pytest bench/test_bench_features.py -p no:cacheprovider``
"""

from __future__ import annotations

import statistics
import time
import warnings

import numpy as np
import pytest
from timing import median_s

from streamfuse.config import EngineConfig
from streamfuse.features import DeviceFeatures, OnlineNormalizer, concat
from streamfuse.features.qrs import StreamingQRSDetector
from streamfuse.fusion.early import ArrayNormalizer, EarlyFeatures
from tests.conftest import data_root
from tests.feature_windows import simulated_windows
from tests.golden import features as nf
from tests.mitbih import load_record100, match


@pytest.fixture(scope="module")
def record100():
    root = data_root()
    if not (root / "wfdb_sample_data" / "100.dat").exists():
        pytest.skip(f"MIT-BIH record 100 not found under {root}; set STREAMFUSE_DATA")
    return load_record100(root)


def _score(ref: np.ndarray, det: np.ndarray, tol: int) -> tuple[float, float]:
    tp = match(ref, np.sort(det), tol)
    return tp / ref.size, tp / max(det.size, 1)


def _record(benchmark, x, fs, beats, peaks) -> None:
    duration = x.size / fs
    se, ppv = _score(beats, np.asarray(peaks), int(round(0.15 * fs)))
    benchmark.extra_info["record_s"] = duration
    benchmark.extra_info["x_realtime"] = duration / median_s(benchmark)
    benchmark.extra_info["sensitivity"] = se
    benchmark.extra_info["positive_predictivity"] = ppv


@pytest.mark.parametrize("chunk_s", [0.1, 1.0])
def test_bench_streaming_qrs(benchmark, record100, chunk_s):
    x, fs, beats = record100
    step = int(round(chunk_s * fs))
    chunks = [x[i : i + step] for i in range(0, x.size, step)]
    StreamingQRSDetector(fs).update(x[: int(5 * fs)])  # compile (or load the cache) first

    def run():
        det = StreamingQRSDetector(fs)
        return np.concatenate([det.update(c) for c in chunks])

    peaks = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    _record(benchmark, x, fs, beats, peaks)


def test_bench_neurokit2_ecg_peaks_batch(benchmark, record100):
    nk = pytest.importorskip("neurokit2")
    x, fs, beats = record100

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NeuroKit2/pandas deprecations, not ours
            clean = nk.ecg_clean(x, sampling_rate=int(fs))
            _, info = nk.ecg_peaks(clean, sampling_rate=int(fs))
        return np.asarray(info["ECG_R_Peaks"])

    peaks = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    _record(benchmark, x, fs, beats, peaks)


# --- one window's feature pass ---------------------------------------------------------------

WARM_WINDOWS = 12  # the extractors' histories fill and the ECG detector learns first
PASS_ROUNDS = 15


def _ours(cfg):
    return DeviceFeatures(cfg), OnlineNormalizer(warmup=3), EarlyFeatures(4), ArrayNormalizer(3)


def _reference(cfg):
    return (
        nf.NaiveDeviceFeatures(cfg),
        nf.NaiveOnlineNormalizer(warmup=3),
        None,
        nf.NaiveArrayNormalizer(warmup=3),
    )


def _window(state, fw):
    """Everything the engine computes from one window before its models run."""
    feats, norm, early, arr = state
    per = feats.update(fw.window)
    flat = concat({m: f for m, f in per.items() if f})
    norm.learn_one(flat)
    z = norm.transform_one(flat)
    if early is None:
        keys, values = nf.naive_early_arrays(fw, 4)
        ez = arr.update_transform(fw.channels, values)
        x_early = {keys[i]: float(ez[i]) for i in np.flatnonzero(np.isfinite(ez))}
    else:
        x_early = early(fw, arr)
    return per, z, x_early


def _warm(make, cfg, windows):
    state = make(cfg)
    for fw in windows[:WARM_WINDOWS]:
        _window(state, fw)
    return state


@pytest.fixture(scope="module")
def device_windows():
    return simulated_windows(60.0, seed=0)


def test_bench_window_feature_pass(benchmark, device_windows):
    cfg = EngineConfig()
    timed = device_windows[WARM_WINDOWS:]
    # the two give the same features (tests/test_features_kernels.py checks this closely)
    ours, ref = _warm(_ours, cfg, device_windows), _warm(_reference, cfg, device_windows)
    for fw in timed:
        got, want = _window(ours, fw), _window(ref, fw)
        assert list(got[0]) == list(want[0]) and list(got[2]) == list(want[2])
        for g, w in zip(got[1].values(), want[1].values(), strict=True):
            assert g == pytest.approx(w, rel=1e-9, abs=1e-12)

    def run(state):
        for fw in timed:
            _window(state, fw)

    def setup():
        return (_warm(_ours, cfg, device_windows),), {}

    benchmark.pedantic(run, setup=setup, rounds=PASS_ROUNDS, warmup_rounds=1)
    ours_ms = median_s(benchmark) / len(timed) * 1e3
    # the reference, same protocol, same process, right after
    ref_runs = []
    for _ in range(PASS_ROUNDS):
        state = _warm(_reference, cfg, device_windows)
        t0 = time.perf_counter()
        run(state)
        ref_runs.append(time.perf_counter() - t0)
    ref_ms = statistics.median(ref_runs) / len(timed) * 1e3
    benchmark.extra_info.update(
        windows=len(timed),
        per_window_ms=ours_ms,
        reference_per_window_ms=ref_ms,
        speedup=ref_ms / ours_ms,
    )
    print(f"\nfeature pass per window: ours {ours_ms:.3f} ms, NumPy/SciPy reference "
          f"{ref_ms:.3f} ms ({ref_ms / ours_ms:.1f}x)")
