"""DeviceFeatures, concat and OnlineNormalizer: the interface the engine calls."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamfuse.config import EngineConfig, ModalitySpec
from streamfuse.features import DeviceFeatures, OnlineNormalizer, concat, modality_kind
from streamfuse.types import Window

FS = 256.0


def _signals(seconds: float, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    ecg = np.exp(-(((t % 0.8) - 0.4) ** 2) / (2 * 0.01**2)) + 0.02 * rng.standard_normal(t.size)
    eeg = np.stack(
        [
            np.sin(2 * np.pi * 10 * t) * (1 + 0.1 * i) + 0.2 * rng.standard_normal(t.size)
            for i in range(8)
        ],
        axis=1,
    )
    acc = np.stack(
        [0.4 * np.sin(2 * np.pi * 1.8 * t), 0.1 * rng.standard_normal(t.size), 1.0 + 0 * t], axis=1
    )
    return {"ecg": ecg[:, None], "eeg": eeg, "acc": acc}


def _windows(sig, cfg: EngineConfig, masks=None):
    k = cfg.window_samples
    hop = int(round(cfg.hop_s * FS))
    n = next(iter(sig.values())).shape[0]
    for i, w in enumerate(range(0, n - k + 1, hop)):
        blocks = {m: np.ascontiguousarray(x[w : w + k], dtype=np.float32) for m, x in sig.items()}
        mk = {m: (masks[m][w : w + k] if masks else np.ones(k, dtype=bool)) for m in sig}
        for m in blocks:
            blocks[m][~mk[m]] = 0.0
        yield Window("dev", w / FS, (w + k) / FS, FS, blocks, mk, index=i)


def _run(sig, cfg, masks=None):
    df = DeviceFeatures(cfg)
    return [(w, df.update(w)) for w in _windows(sig, cfg, masks)]


def test_keys_are_prefixed_finite_and_physiological():
    cfg = EngineConfig()
    out = _run(_signals(40), cfg)
    w, last = out[-1]
    assert set(last) == {"ecg", "eeg", "acc"}
    for m, feats in last.items():
        assert feats, m
        assert all(k.startswith(m + "_") for k in feats)
        assert all(math.isfinite(v) for v in feats.values())
    assert last["ecg"]["ecg_hr"] == pytest.approx(75.0, abs=1.0)  # 0.8 s spikes
    assert last["ecg"]["ecg_rmssd"] < 20.0
    assert 0.8 < last["ecg"]["ecg_sqi"] <= 1.0
    assert last["eeg"]["eeg_alpha_rel"] > 0.8
    assert "eeg_faa" in last["eeg"]
    # magnitude of (0.4 sin(1.8 Hz), ~0, 1) oscillates at twice 1.8 Hz
    assert last["acc"]["acc_dom_freq"] == pytest.approx(3.5, abs=0.5)
    flat = concat(last)
    assert len(flat) == sum(len(v) for v in last.values())


@pytest.mark.parametrize("hop_s", [0.25, 0.5, 2.0])
def test_features_do_not_depend_on_overlap(hop_s):
    sig = _signals(30, seed=1)
    ref = {round(w.t_end, 6): f for w, f in _run(sig, EngineConfig(hop_s=1.0))}
    got = {round(w.t_end, 6): f for w, f in _run(sig, EngineConfig(hop_s=hop_s))}
    common = sorted(set(ref) & set(got))
    assert len(common) >= 10
    for t in common[3:]:
        for m in ref[t]:
            assert ref[t][m].keys() == got[t][m].keys()
            for k, v in ref[t][m].items():
                assert got[t][m][k] == pytest.approx(v, rel=1e-6, abs=1e-9), (t, k)


def test_masked_samples_make_no_beats_or_steps():
    cfg = EngineConfig()
    sig = _signals(30, seed=2)
    n = sig["ecg"].shape[0]
    masks = {m: np.ones(n, dtype=bool) for m in sig}
    gap = slice(int(10 * FS), int(20 * FS))
    for m in sig:
        masks[m][gap] = False
    out = _run(sig, cfg, masks)
    for w, f in out:
        if w.t_start >= 10.0 and w.t_end <= 20.0:
            assert "ecg" not in f or f["ecg"].get("ecg_beats", 0.0) == 0.0
            assert f["acc"] == {}
            assert f["eeg"] == {}
    # after the gap, detection resumes at the right rate
    w, last = out[-1]
    assert last["ecg"]["ecg_hr"] == pytest.approx(75.0, abs=1.0)


def test_flat_zero_signal_gives_no_beats():
    cfg = EngineConfig()
    sig = {m: np.zeros_like(x) for m, x in _signals(20).items()}
    for _, f in _run(sig, cfg):
        assert f["ecg"]["ecg_beats"] == 0.0
        assert "ecg_hr" not in f["ecg"]
        assert f["acc"]["acc_cadence"] == 0.0
        assert all(math.isfinite(v) for v in concat(f).values())


def test_unknown_modality_and_channel_sets():
    names = (
        "Fp1",
        "Fp2",
        "F3",
        "F4",
        "F7",
        "F8",
        "T3",
        "T4",
        "C3",
        "C4",
        "T5",
        "T6",
        "P3",
        "P4",
        "O1",
        "O2",
        "Fz",
        "Cz",
        "Pz",
    )
    mods = {
        "eeg": ModalitySpec("eeg", tuple(f"EEG {n}" for n in names), 500.0, "uV"),
        "ppg": ModalitySpec("ppg", ("red", "ir"), 64.0),
    }
    cfg = EngineConfig(modalities=mods)
    rng = np.random.default_rng(3)
    n = int(6 * FS)
    sig = {"eeg": rng.standard_normal((n, 19)), "ppg": rng.standard_normal((n, 2))}
    _, last = _run(sig, cfg)[-1]
    assert "eeg_pz_alpha_rel" in last["eeg"] and "eeg_faa" in last["eeg"]
    assert set(last["ppg"]) >= {"ppg_red_mean", "ppg_ir_std", "ppg_ir_bp3"}
    assert modality_kind("ecg_chest") == "ecg" and modality_kind("gsr") == "generic"


def test_concat_keeps_all_keys():
    f = {"ecg": {"ecg_hr": 70.0}, "eeg": {"eeg_alpha": -1.0}}
    assert concat(f) == {"ecg_hr": 70.0, "eeg_alpha": -1.0}
    assert concat({}) == {}


def test_online_normalizer_warmup_zscore_and_clip():
    norm = OnlineNormalizer(warmup=5, clip=3.0)
    xs = [10.0, 12.0, 11.0, 9.0, 13.0]
    for i, v in enumerate(xs):
        z = norm.transform_one({"a": v})
        assert z == {"a": 0.0}, i  # warming up
        norm.learn_one({"a": v})
    mean, sd = np.mean(xs), np.std(xs, ddof=1)
    assert norm.transform_one({"a": 12.0})["a"] == pytest.approx((12.0 - mean) / sd)
    assert norm.transform_one({"a": 1e6})["a"] == 3.0
    assert norm.transform_one({"b": 1.0}) == {"b": 0.0}  # never seen
    norm.learn_one({"a": float("nan")})
    assert norm.count("a") == 5


def test_online_normalizer_passes_river_checks():
    from river import checks

    for params in OnlineNormalizer._unit_test_params():
        checks.check_estimator(OnlineNormalizer(**params))
