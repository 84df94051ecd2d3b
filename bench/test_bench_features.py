"""Streaming R-peak detection vs NeuroKit2 on MIT-BIH record 100, as multiples of real time.

Run: ``/work/venv/bin/pytest bench/test_bench_features.py -p no:cacheprovider --benchmark-only``
(needs the ``bench`` extra for NeuroKit2; the NeuroKit2 case skips without it). Each case
stores ``x_realtime`` (record duration / median run time) and Se/+P in ``extra_info``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from streamfuse.features.qrs import StreamingQRSDetector
from tests.conftest import data_root
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
    benchmark.extra_info["x_realtime"] = duration / benchmark.stats.stats.median
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
