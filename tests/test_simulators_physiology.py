"""Simulated physiology: chunking invariance, determinism, and physiological sanity."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import find_peaks, welch

from simulators.device import SimulatedDevice
from simulators.faults import FaultProfile
from simulators.physiology import make_body
from streamfuse.config import DEFAULT_MODALITIES, EEG


def _take_all(gen, sizes):
    return np.concatenate([gen.take(int(n)) for n in sizes])


@pytest.mark.parametrize("modality", ["ecg", "eeg", "acc"])
def test_any_chunking_gives_the_same_signal(modality):
    rng = np.random.default_rng(0)
    total = int(DEFAULT_MODALITIES[modality].fs * 7.3)
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(rng.integers(0, 400)))
    sizes[-1] -= sum(sizes) - total
    whole = make_body(5, DEFAULT_MODALITIES).streams[modality].take(total)
    pieces = _take_all(make_body(5, DEFAULT_MODALITIES).streams[modality], sizes)
    assert whole.dtype == np.float32 and whole.flags.c_contiguous
    assert whole.shape == (total, DEFAULT_MODALITIES[modality].channels)
    np.testing.assert_array_equal(whole, pieces)
    other = make_body(6, DEFAULT_MODALITIES).streams[modality].take(total)
    assert not np.array_equal(whole, other)


def test_device_chunk_length_does_not_change_the_signal():
    def streams(chunk_s):
        dev = SimulatedDevice("dev001", 3, FaultProfile.ideal(), chunk_s=chunk_s, start_s=0.0)
        out = {m: [] for m in DEFAULT_MODALITIES}
        for ev in dev.advance(6.0):
            if ev.kind != "label":
                out[ev.payload.modality].append(ev.payload)
        return out

    a, b = streams(0.1), streams(0.37)
    for m, spec in DEFAULT_MODALITIES.items():
        xa = np.concatenate([c.data for c in a[m]])
        xb = np.concatenate([c.data for c in b[m]])
        n = min(len(xa), len(xb))
        assert n > 5 * spec.fs
        np.testing.assert_array_equal(xa[:n], xb[:n])
        # t0 of every chunk is the time of its first sample on the device clock
        i = 0
        for seq, c in enumerate(a[m]):
            assert c.t0 == pytest.approx(i / spec.fs, abs=1e-12)
            assert c.seq == seq
            i += c.n
    # 0.1 s at 256 Hz: chunks of 25 or 26 samples adding up exactly
    sizes = {c.n for c in a["eeg"]}
    assert sizes == {25, 26}


def test_latent_state_is_semi_markov_with_bounded_dwell():
    body = make_body(9, DEFAULT_MODALITIES)
    states = [body.latent.state(k) for k in range(1200)]
    runs, cur, n = [], states[0], 0
    for s in states:
        if s == cur:
            n += 1
        else:
            runs.append(n)
            cur, n = s, 1
    assert set(states) == {0, 1, 2}
    assert len(runs) > 20
    assert all(15 <= r <= 40 for r in runs)


def test_ecg_r_peaks_and_heart_rate_match_the_target():
    body = make_body(21, DEFAULT_MODALITIES, schedule=[("rest", 60), ("exercise", 60)], record=True)
    ecg = body.streams["ecg"]
    x = ecg.take(250 * 120)[:, 0]
    peaks, _ = find_peaks(x, height=0.5 * body.traits.r_amp_mv, distance=int(0.25 * 250))
    truth = np.array(ecg.r_peaks)
    truth = truth[(truth > 0.05) & (truth < 119.95)]
    assert len(peaks) == len(truth)
    np.testing.assert_allclose(peaks / 250.0, truth, atol=2.5 / 250)
    target = np.array(ecg.hr_target)[: len(ecg.r_peaks)]
    r = np.array(ecg.r_peaks)
    for lo, hi in ((20, 60), (80, 120)):  # after the heart rate has settled
        seg = (peaks / 250 >= lo) & (peaks / 250 < hi)
        hr = 60.0 / np.diff(peaks[seg] / 250.0).mean()
        want = target[(r >= lo) & (r < hi)].mean()
        assert hr == pytest.approx(want, abs=3.0)
    hr_rest = 60.0 / np.diff(peaks[peaks < 250 * 60] / 250).mean()
    hr_ex = 60.0 / np.diff(peaks[peaks > 250 * 80] / 250).mean()
    assert hr_ex > hr_rest + 15


def test_eeg_alpha_is_occipital_and_drops_under_stress():
    o = [EEG.channel_names.index("O1"), EEG.channel_names.index("O2")]
    fp = [EEG.channel_names.index("Fp1"), EEG.channel_names.index("Fp2")]
    for seed in range(6):
        body = make_body(seed, DEFAULT_MODALITIES, schedule=[("rest", 40), ("stress", 40)])
        x = body.streams["eeg"].take(256 * 80).astype(np.float64)
        f, p_rest = welch(x[256 * 10 : 256 * 40], fs=256, nperseg=512, axis=0)
        _, p_str = welch(x[256 * 50 : 256 * 80], fs=256, nperseg=512, axis=0)
        alpha = (f >= 8) & (f <= 12)
        assert p_rest[alpha][:, o].mean() > 1.2 * p_str[alpha][:, o].mean()
        assert p_rest[alpha][:, o].mean() > p_rest[alpha][:, fp].mean()
        # 1/f background: more power at 2-4 Hz than at 30-40 Hz
        assert p_rest[(f >= 2) & (f <= 4)].mean() > 5 * p_rest[(f >= 30) & (f <= 40)].mean()


def test_accelerometer_gravity_at_rest_and_motion_in_exercise():
    for seed in range(6):
        body = make_body(seed, DEFAULT_MODALITIES, schedule=[("rest", 30), ("exercise", 30)])
        x = body.streams["acc"].take(50 * 60).astype(np.float64)
        mag = np.linalg.norm(x, axis=1)
        rest, ex = mag[50 * 5 : 50 * 30], mag[50 * 40 :]
        assert rest.mean() == pytest.approx(1.0, abs=0.02)
        assert ex.std() > 1.5 * rest.std()
        if body.traits.activity != "cycle":
            f, p = welch(ex - ex.mean(), fs=50, nperseg=500)
            peak = f[np.argmax(p)]
            assert 1.7 <= peak <= 2.9  # step cadence
            # no tremor at rest: little power at 4-12 Hz
            fr, pr = welch(rest - rest.mean(), fs=50, nperseg=250)
            assert pr[(fr >= 4) & (fr <= 12)].mean() < 1e-4


# -- each modality alone separates the states imperfectly; together they do better ---------

WIN = 4


def _features(seed, dev_id, duration):
    dev = SimulatedDevice(dev_id, seed, FaultProfile.ideal(), chunk_s=1.0, start_s=0.0)
    body = dev.body
    x = {m: g.take(int(g.fs * duration)).astype(np.float64) for m, g in body.streams.items()}
    feats, ys = [], []
    for w in range(duration // WIN):
        a, b = w * WIN, (w + 1) * WIN
        states = {body.latent.state(k) for k in range(a, b)}
        if len(states) != 1:
            continue
        ecg = x["ecg"][a * 250 : b * 250, 0]
        pk, _ = find_peaks(ecg, height=0.5 * ecg.max(), distance=int(0.25 * 250))
        rr = np.diff(pk) / 250
        rmssd = max(np.sqrt(np.mean(np.diff(rr) ** 2)) * 1000, 1.0)
        f, p = welch(x["eeg"][a * 256 : b * 256], fs=256, nperseg=256, axis=0)

        def band(lo, hi, ch, f=f, p=p):
            return np.log(p[(f >= lo) & (f < hi)][:, ch].mean())

        alpha = band(8, 13, [6, 7])
        acc = x["acc"][a * 50 : b * 50]
        mag = np.linalg.norm(acc, axis=1)
        fa, pa = welch(mag - mag.mean(), fs=50, nperseg=100)
        feats.append(
            [
                60 / rr.mean(),
                np.log(rmssd),
                alpha,
                band(4, 8, [2, 3]) - alpha,
                band(13, 30, [2, 3, 4, 5]) - alpha,
                band(40, 100, [0, 1]),
                np.log(mag.std()),
                np.log(pa[(fa > 1) & (fa < 3.5)].sum() + 1e-9),
            ]
        )
        ys.append(states.pop())
    return np.array(feats), np.array(ys)


def _gaussian_nb(xtr, ytr, xte):
    ll = []
    for c in range(3):
        m, s = xtr[ytr == c].mean(0), xtr[ytr == c].std(0) + 1e-9
        ll.append((-0.5 * ((xte - m) / s) ** 2 - np.log(s)).sum(1) + np.log((ytr == c).mean()))
    return np.argmax(ll, axis=0)


def test_fusion_beats_every_single_modality():
    xs, ys, gs = [], [], []
    for i in range(12):
        x, y = _features(4, f"dev{i:03d}", 240)
        xs.append(x)
        ys.append(y)
        gs.append(np.full(len(y), i))
    x, y, g = np.vstack(xs), np.concatenate(ys), np.concatenate(gs)
    assert np.isfinite(x).all()
    assert np.bincount(y, minlength=3).min() > 100  # every state is well represented
    groups = {"ecg": [0, 1], "eeg": [2, 3, 4, 5], "acc": [6, 7], "all": list(range(8))}
    acc = {}
    for name, cols in groups.items():
        pred = np.empty_like(y)
        for fold in range(4):  # train on 9 wearers, test on 3 unseen ones
            te = g % 4 == fold
            pred[te] = _gaussian_nb(x[~te][:, cols], y[~te], x[te][:, cols])
        acc[name] = (pred == y).mean()
    singles = max(acc["ecg"], acc["eeg"], acc["acc"])
    assert singles < 0.85, acc  # each modality alone is imperfect
    assert min(acc["ecg"], acc["eeg"], acc["acc"]) > 0.5, acc  # ...but informative
    assert acc["all"] > singles + 0.05, acc
    assert acc["all"] > 0.85, acc
