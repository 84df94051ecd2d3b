"""EEG band powers (eyes closed vs open, synthetic sines) and accelerometer activity/cadence."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from streamfuse.config import EngineConfig, ModalitySpec
from streamfuse.features import DeviceFeatures
from streamfuse.features.acc import AccFeatures, step_kernel
from streamfuse.features.eeg import BANDS, EEGFeatures, channel_key
from streamfuse.types import Window
from tests import naive
from tests.conftest import need_data


def _windows(x: np.ndarray, fs: float, window_s: float, hop_s: float, modality: str):
    k = int(round(window_s * fs))
    hop = int(round(hop_s * fs))
    for w in range(0, x.shape[0] - k + 1, hop):
        block = np.ascontiguousarray(x[w : w + k], dtype=np.float32)
        yield Window("d", w / fs, (w + k) / fs, fs, {modality: block}, {modality: np.ones(k, bool)})


def _eeg_feature_series(x: np.ndarray, fs: float, key: str) -> np.ndarray:
    spec = ModalitySpec("eeg", ("EEG",), fs, "uV")
    cfg = EngineConfig(modalities={"eeg": spec}, grid_fs=fs, window_s=2.0, hop_s=1.0)
    df = DeviceFeatures(cfg)
    return np.array([df.update(w)["eeg"][key] for w in _windows(x[:, None], fs, 2.0, 1.0, "eeg")])


def _read_simple_text(path: Path) -> tuple[np.ndarray, float]:
    fs = float("nan")
    for line in path.read_text().splitlines():
        if line.startswith("#") and "Sampling Rate" in line:
            fs = float(line.split(":=")[1])
    return np.loadtxt(path, comments="#"), fs


@pytest.mark.data
def test_alpha_is_higher_with_eyes_closed(data_dir):
    ec, fs = _read_simple_text(need_data(data_dir, "biosppy", "eeg_ec.txt"))
    eo, fs2 = _read_simple_text(need_data(data_dir, "biosppy", "eeg_eo.txt"))
    assert fs == fs2 == 125.0
    alpha_ec = _eeg_feature_series(ec, fs, "eeg_alpha_rel")
    alpha_eo = _eeg_feature_series(eo, fs, "eeg_alpha_rel")
    assert alpha_ec.size > 200 and alpha_eo.size > 200
    assert np.median(alpha_ec) > np.median(alpha_eo)
    assert np.all((alpha_ec >= 0) & (alpha_ec <= 1))


@pytest.mark.parametrize(
    ("band", "freq"),
    [("delta", 2.0), ("theta", 6.0), ("alpha", 10.0), ("beta", 20.0), ("gamma", 38.0)],
)
@pytest.mark.parametrize("fs", [125.0, 256.0, 500.0])
def test_sine_lands_in_its_band(band, freq, fs):
    t = np.arange(int(6 * fs)) / fs
    x = np.stack([20 * np.sin(2 * np.pi * freq * t + 0.3), 5 * np.sin(2 * np.pi * freq * t)], 1)
    ex = EEGFeatures("eeg", ("EEG F3", "EEG F4"), fs, span_s=2.0)
    k = int(2 * fs)
    for w in range(0, t.size - k + 1, int(fs)):
        f = ex.update(w / fs, x[w : w + k].astype(np.float32), np.ones(k, bool))
    assert f[f"eeg_f3_{band}_rel"] >= 0.99
    assert f[f"eeg_{band}_rel"] >= 0.99
    assert sum(f[f"eeg_{b}_rel"] for b in BANDS) == pytest.approx(1.0)
    # power 200 vs 12.5 -> ln ratio of the right (F4) over the left (F3) alpha
    if band == "alpha":
        assert f["eeg_faa"] == pytest.approx(np.log(12.5 / 200.0), abs=0.05)
    assert f["eeg_sent"] < 0.3


def test_white_noise_is_spread_and_gaps_are_skipped():
    fs = 256.0
    rng = np.random.default_rng(0)
    ex = EEGFeatures("eeg", ("Cz",), fs, span_s=2.0)
    x = rng.standard_normal((int(2 * fs), 1)).astype(np.float32)
    f = ex.update(0.0, x, np.ones(x.shape[0], bool))
    assert f["eeg_sent"] > 0.9
    m = np.ones(x.shape[0], bool)
    m[::100] = False  # no gap-free second left in the span
    ex2 = EEGFeatures("eeg", ("Cz",), fs, span_s=2.0)
    assert ex2.update(0.0, x, m) == {}


def test_channel_keys():
    assert channel_key("EEG Fp1-A1") == "fp1"
    assert channel_key("Fp1") == "fp1"
    assert channel_key("T3/Ref") == "t3"
    assert channel_key("  ") == "ch"


def _read_ts(path: Path) -> list[tuple[np.ndarray, str]]:
    """Cases of a UEA ``.ts`` file: ``[dims, length]`` arrays and class labels."""
    cases = []
    in_data = False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower().startswith("@data"):
            in_data = True
            continue
        if in_data:
            *dims, label = line.split(":")
            cases.append((np.array([[float(v) for v in d.split(",")] for d in dims]), label))
    return cases


@pytest.mark.data
def test_basicmotions_activity_orders_standing_walking_running(data_dir):
    fs = 10.0
    spec = ModalitySpec("acc", ("x", "y", "z"), fs, "g")
    cfg = EngineConfig(modalities={"acc": spec}, grid_fs=fs, window_s=2.0, hop_s=1.0)
    per_class: dict[str, list[float]] = defaultdict(list)
    for name in ("BasicMotions_TRAIN.ts", "BasicMotions_TEST.ts"):
        for dims, label in _read_ts(need_data(data_dir, "sktime_basicmotions", name)):
            assert dims.shape == (6, 100)
            df = DeviceFeatures(cfg)
            acts = [
                df.update(w)["acc"]["acc_activity"] for w in _windows(dims[:3].T, fs, 2, 1, "acc")
            ]
            per_class[label].append(float(np.median(acts)))
    med = {c: float(np.median(v)) for c, v in per_class.items()}
    assert len(per_class["Standing"]) == 20
    assert med["Standing"] < med["Walking"] < med["Running"]


def test_cadence_of_synthetic_walking():
    fs = 50.0
    t = np.arange(int(30 * fs)) / fs
    rng = np.random.default_rng(1)
    x = np.stack(
        [0.05 * rng.standard_normal(t.size), 0 * t, 1 + 0.3 * np.sin(2 * np.pi * 1.8 * t)], 1
    )
    ex = AccFeatures("acc", fs)
    k = int(2 * fs)
    for w in range(0, t.size - k + 1, int(fs)):
        f = ex.update(w / fs, x[w : w + k].astype(np.float32), np.ones(k, bool))
    assert f["acc_cadence"] == pytest.approx(108.0, abs=12.0)  # 1.8 steps/s
    assert f["acc_dom_freq"] == pytest.approx(1.8, abs=0.3)
    assert f["acc_mag"] == pytest.approx(1.0, abs=0.05)
    assert f["acc_counts"] > 0.05


def test_m_per_s2_is_converted_to_g():
    fs = 50.0
    x = np.tile([0.0, 0.0, 9.80665], (100, 1)).astype(np.float32)
    f = AccFeatures("acc", fs, unit="m/s2").update(0.0, x, np.ones(100, bool))
    assert f["acc_mag"] == pytest.approx(1.0)
    assert f["acc_enmo"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_step_kernel_matches_naive(seed):
    rng = np.random.default_rng(seed)
    n = 2000
    bp = np.sin(np.arange(n) / 7.0) * rng.uniform(0.0, 0.3, n) + 0.02 * rng.standard_normal(n)
    valid = rng.random(n) > 0.05
    state = np.array([0.0, 0.0, 0.0, -1.0, 0.0])
    got: list[int] = []
    for a in range(0, n, 37):  # chunked, state carried
        out = np.empty(40, dtype=np.int64)
        k = step_kernel(bp[a : a + 37], valid[a : a + 37], state, 0.05, 12, out)
        got.extend(out[:k].tolist())
    assert got == naive.naive_steps(bp.tolist(), valid.tolist(), 0.05, 12)
    assert len(got) > 10
