"""Simulator faults: clocks applied exactly, one-sided jitter, loss/duplicate/reorder rates."""

from __future__ import annotations

import numpy as np
import pytest

from simulators.device import LABEL, Fleet, SimulatedDevice
from simulators.faults import DeviceClock, FaultProfile, StreamFaults
from streamfuse.config import DEFAULT_MODALITIES
from streamfuse.errors import ConfigError


def test_offset_and_drift_are_applied_exactly():
    prof = FaultProfile(clock_offset_s=2.0, drift_ppm=80.0, jitter_mean_s=0.0, jitter_dist="none")
    dev = SimulatedDevice("dev007", 1, prof, start_s=0.03)
    clock = DeviceClock(2.0, 80.0)
    assert dev.clock == clock
    n_labels = 0
    for ev in dev.advance(20.0):
        p = ev.payload
        if ev.kind == LABEL:
            k = n_labels
            assert p.t_start == pytest.approx(clock.to_device(0.03) + k, abs=1e-9)
            assert p.t_end - p.t_start == pytest.approx(1.0, abs=1e-12)
            assert ev.send_time == pytest.approx(clock.to_gateway(p.t_end), abs=1e-9)
            n_labels += 1
            continue
        spec = DEFAULT_MODALITIES[ev.kind]
        i0 = int(np.ceil(p.seq * 0.1 * spec.fs - 1e-9))
        # sample i is taken at device time D(start) + i / fs
        assert p.t0 == pytest.approx(clock.to_device(0.03) + i0 / spec.fs, abs=1e-9)
        last = p.t0 + (p.n - 1) / spec.fs
        assert ev.send_time == pytest.approx((last - 2.0) / (1 + 80e-6), abs=1e-9)
    assert n_labels == 19


def test_clock_spreads_are_per_device_and_bounded():
    prof = FaultProfile(clock_offset_spread_s=3.0, drift_spread_ppm=100.0, shared_clock=False)
    fleet = Fleet(60, seed=2, faults=prof)
    offs = np.array([c.offset_s for d in fleet.devices for c in d.clocks.values()])
    ppm = np.array([c.drift_ppm for d in fleet.devices for c in d.clocks.values()])
    assert np.abs(offs).max() <= 3.0 and np.abs(offs).max() > 2.7
    assert np.abs(ppm).max() <= 100.0 and np.abs(ppm).max() > 90.0
    assert len(np.unique(offs)) == len(offs)  # every stream its own clock
    shared = SimulatedDevice("dev001", 2, FaultProfile(clock_offset_spread_s=3.0))
    assert len({c for c in shared.clocks.values()}) == 1


@pytest.mark.parametrize(
    ("dist", "shape"), [("lognormal", 1.0), ("pareto", 2.5), ("exponential", 1.0)]
)
def test_jitter_is_one_sided_with_the_stated_mean(dist, shape):
    prof = FaultProfile(jitter_mean_s=0.02, jitter_dist=dist, jitter_shape=shape)
    sf = StreamFaults(prof, np.random.default_rng(5), record=True)
    sends = [sf.send_times(10.0)[0] for _ in range(40_000)]
    d = np.array(sends) - 10.0
    np.testing.assert_allclose(d, sf.delays, atol=1e-12)
    assert d.min() >= 0.0
    assert d.mean() == pytest.approx(0.02, rel=0.06)
    if dist != "exponential":  # heavy right tail: median well below the mean
        assert np.median(d) < 0.8 * d.mean()
        assert np.quantile(d, 0.999) > 5 * d.mean()


def test_device_events_never_leave_before_they_are_ready():
    dev = SimulatedDevice("dev003", 4, FaultProfile(jitter_mean_s=0.02), start_s=0.0)
    last = -1.0
    for ev in dev.advance(30.0):
        assert ev.send_time >= last
        last = ev.send_time
        p = ev.payload
        if ev.kind != LABEL:
            assert ev.send_time >= p.t0 + (p.n - 1) / p.fs - 1e-12


def _arrivals(prof, seconds=300.0, seed=8):
    """Sequence numbers in arrival order of the first ``seconds * 10`` ACC chunks."""
    dev = SimulatedDevice(
        "dev002",
        seed,
        prof,
        modalities={"acc": DEFAULT_MODALITIES["acc"]},
        labels=False,
        start_s=0.0,
    )
    n = int(round(seconds * 10))
    seqs = [ev.payload.seq for ev in dev.advance(seconds + 2.0) if ev.payload.seq < n]
    return seqs, n, dev.stream_faults["acc"].counts


def test_loss_duplicate_reorder_rates():
    prof = FaultProfile(
        loss=0.05, duplicate=0.03, reorder=0.04, jitter_mean_s=0.0, jitter_dist="none"
    )
    seqs, n, counts = _arrivals(prof)
    uniq = set(seqs)
    lost = n - len(uniq)
    assert lost / n == pytest.approx(0.05, abs=0.012)
    assert abs(lost - counts.lost) <= 3  # the counters cover ~20 more chunks
    dups = len(seqs) - len(uniq)
    assert dups / (n - lost) == pytest.approx(0.03, abs=0.01)
    assert abs(dups - counts.duplicated) <= 3
    # a held message arrives after a later sequence number (held 0.2-0.4 s > 0.1 s period)
    late, seen, top = 0, set(), -1
    for s in seqs:
        if s not in seen and s < top:
            late += 1
        seen.add(s)
        top = max(top, s)
    assert late / (n - lost) == pytest.approx(0.04, abs=0.012)
    assert abs(late - counts.held) <= 8  # a held chunk overtaken only by lost or held ones


def test_bursty_loss_keeps_the_rate_and_makes_runs():
    seqs, n, _ = _arrivals(FaultProfile(loss=0.1, loss_burst=4.0), seconds=600.0)
    missing = sorted(set(range(n)) - set(seqs))
    runs, run = [], 1
    for a, b in zip(missing, missing[1:], strict=False):
        if b == a + 1:
            run += 1
        else:
            runs.append(run)
            run = 1
    runs.append(run)
    assert len(missing) / n == pytest.approx(0.1, abs=0.03)
    assert np.mean(runs) == pytest.approx(4.0, rel=0.25)


def test_faults_do_not_change_the_signal():
    clean = SimulatedDevice("dev005", 9, FaultProfile.ideal(), start_s=0.0).advance(10.0)
    harsh = SimulatedDevice("dev005", 9, FaultProfile.harsh(), start_s=0.0).advance(12.0)
    ref = {(e.kind, e.payload.seq): e.payload.data for e in clean if e.kind != LABEL}
    seen = 0
    for e in harsh:
        key = (e.kind, getattr(e.payload, "seq", None))
        if key in ref:
            np.testing.assert_array_equal(e.payload.data, ref[key])
            seen += 1
    assert seen > 0.9 * len(ref)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loss": 1.0},
        {"duplicate": -0.1},
        {"jitter_dist": "gauss"},
        {"jitter_mean_s": -1.0},
        {"jitter_dist": "pareto", "jitter_shape": 1.0},
        {"loss_burst": 0.5},
        {"drift_ppm": float("nan")},
    ],
)
def test_bad_profiles_are_refused(kwargs):
    with pytest.raises(ConfigError):
        FaultProfile(**kwargs)
