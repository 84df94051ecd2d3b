"""The latency harness: histogram and report logic, the chunk join, and a tiny real run."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest

from streamfuse import codec
from streamfuse.align.windower import window_phase
from streamfuse.config import DEFAULT_MODALITIES, EngineConfig
from streamfuse.errors import ConfigError
from streamfuse.latency.harness import (
    BUNDLE_CODE,
    LABEL_CODE,
    LOG_DTYPE,
    MODALITIES,
    BenchSettings,
    _fleet_messages,
    _stamp,
    analyse,
    completing_chunks,
    run_bench,
)
from streamfuse.latency.histograms import LatencyHistogram
from streamfuse.latency.report import format_table, plot, write_json


def test_histogram_percentiles_are_within_three_digits() -> None:
    h = LatencyHistogram("x")
    values = np.random.default_rng(3).exponential(0.005, 20_000)
    h.record_many(values)
    for q in (50, 90, 99, 99.9):
        # within 0.1 % of a sample value whose rank is within 0.05 percentile points of q
        lo = float(np.percentile(values, q - 0.05)) * 1e3 * (1 - 2e-3)
        hi = float(np.percentile(values, q + 0.05)) * 1e3 * (1 + 2e-3)
        assert lo <= h.percentile_ms(q) <= hi, q
    assert h.max_ms() == pytest.approx(values.max() * 1e3, rel=1e-3)
    assert h.count == 20_000


def test_histogram_edge_values_are_counted_not_lost() -> None:
    h = LatencyHistogram("x")
    h.record(-0.00001)
    h.record(math.nan)
    h.record(1e6)
    s = h.summary()
    assert (s["count"], s["negative"], s["invalid"], s["clamped"]) == (2, 1, 1, 1)
    assert math.isnan(LatencyHistogram("empty").summary()["p99"])


def test_histogram_encoding_round_trips() -> None:
    h = LatencyHistogram("x")
    h.record_many([0.001, 0.002, 0.010, 0.250])
    back = LatencyHistogram.decode("x", h.encode())
    assert back.summary() == h.summary()


def _log(
    devices: int, seconds: float, transit: float = 0.001, *, bundle: bool = False,
    lockstep: bool = False,
) -> np.ndarray:
    """A publisher log as the harness builds it, each message published ``transit`` after due
    (one row per chunk; a bundle's parts share their message's number and publish time)."""
    msgs, _ = _fleet_messages(devices, seconds, seed=5, bundle=bundle, lockstep=lockstep)
    rows = []
    base = 1_700_000_000.0
    for i, (due, dev, kind, payload) in enumerate(msgs):
        if kind == LABEL_CODE:
            rows.append((dev, kind, -1, payload.t_start + base, 0, 0.0, base + due, base + due, i))
        else:
            for c in payload[0]:
                rows.append((dev, MODALITIES.index(c.modality), c.seq, c.t0 + base, c.n, c.fs,
                             base + due, base + due + transit, i))
    return np.array(rows, dtype=LOG_DTYPE)


def test_every_full_window_has_one_completing_chunk_just_after_its_end() -> None:
    config = EngineConfig()
    rec = _log(2, 8.0)
    completed, timed_out = completing_chunks(rec, config, 2)
    # 8 s of data, 1 s hop, 2 s windows: windows ending at 2..8 s minus the partial first one
    for device in ("dev000", "dev001"):
        mine = sorted(w for d, w in completed if d == device)
        assert len(mine) >= 5, mine
        assert mine == list(range(mine[0], mine[0] + len(mine)))  # no hole
    for (device, w), pub in completed.items():
        # the shadow aligner staggers each device's grid exactly as the engine does
        t_end = window_phase(device, config) + w * config.hop_s + config.window_s
        # the chunk that completes a window is published after its end, within one chunk + ACC
        # sample spacing (100 ms + 20 ms), never after the lateness budget
        assert t_end <= pub <= t_end + 0.125, (w, pub - t_end)
    assert not set(completed) & timed_out


def test_analyse_joins_predictions_and_reports_missing() -> None:
    config = EngineConfig()
    rec = _log(2, 6.0)
    completed, _ = completing_chunks(rec, config, 2)
    keys = sorted(completed)
    preds = []
    for device, w in keys[1:]:  # the first window's prediction is "lost"
        pub = completed[(device, w)]
        lat = {"decode": 0.01, "align": 0.1, "features": 0.5, "predict": 0.2}  # ms
        preds.append((device, w, pub + 0.002, lat, pub + 0.005))
    preds.append(preds[0])  # a duplicate delivery
    floor = [("dev000", MODALITIES[int(r["kind"])], int(r["seq"]), float(r["published"]) + 0.0007)
             for r in rec if r["device"] == 0 and r["kind"] != LABEL_CODE]
    settings = BenchSettings(devices=2, duration=6.0, broker_url="mqtt://127.0.0.1:1")
    hists, counts = analyse(settings, rec, preds, floor, config)
    assert counts["expected"] == len(keys)
    assert counts["missing"] == 1
    assert counts["duplicate_predictions"] == 1
    assert counts["timed"] == len(keys) - 1
    # the fake subscriber receives each data message 0.7 ms after its logged publish
    assert hists["floor"].percentile_ms(50) == pytest.approx(0.7, abs=0.01)
    assert hists["floor"].count == len(floor)
    assert hists["end_to_end"].percentile_ms(99) == pytest.approx(5.0, abs=0.01)
    assert hists["receive"].percentile_ms(50) == pytest.approx(2.0, abs=0.01)
    # publish = 5 - 2 - (0.01 + 0.1 + 0.5 + 0.2) ms
    assert hists["publish"].percentile_ms(50) == pytest.approx(2.19, abs=0.01)


def test_settings_refuse_what_cannot_be_measured() -> None:
    with pytest.raises(ConfigError, match="duration"):
        BenchSettings(devices=1, duration=1.0, broker_url="mqtt://127.0.0.1:1")
    with pytest.raises(ConfigError, match="devices"):
        BenchSettings(devices=0, duration=5.0, broker_url="mqtt://127.0.0.1:1")


def test_tiny_run_receives_every_window_and_writes_reports(
    broker_url: str, topic_prefix: str, tmp_path
) -> None:
    settings = BenchSettings(devices=2, duration=5.0, broker_url=broker_url, prefix=topic_prefix,
                             settle_s=1.0)
    result = asyncio.run(run_bench(settings))
    c = result.counts
    assert c["expected"] >= 2  # at least one full window per device closes on data
    assert c["missing"] == 0, c  # every window's prediction was received
    assert c["received"] == c["published_by_gateway"]
    assert c["timed"] + c["closed_by_timeout"] == c["received"]
    assert result.end_to_end.count == c["timed"] > 0
    assert result.floor.count == c["floor_messages"] > 0
    e2e, floor = result.end_to_end.summary(), result.floor.summary()
    assert 0 < e2e["p50"] <= e2e["p99"] <= e2e["max"]
    assert 0 < floor["p50"] <= floor["max"]
    # end to end contains a broker hop in and one out: its median exceeds the floor's minimum
    assert e2e["p50"] > result.floor.percentile_ms(0)
    assert result.publisher["messages"] == c["published"]
    assert result.engine["engine"]["chunks"] > 0
    doc = result.to_json()
    table = format_table(doc)
    assert "end_to_end" in table and "floor" in table
    write_json(tmp_path / "b.json", doc)
    back = json.loads((tmp_path / "b.json").read_text())
    assert back["settings"]["devices"] == 2
    assert back["counts"]["missing"] == 0
    plot(tmp_path / "b.png", doc)
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _data(msgs):
    return [m for m in msgs if m[2] != LABEL_CODE]


def test_each_device_has_its_own_chunk_phase_unless_in_lockstep() -> None:
    period = 0.1
    for bundle in (False, True):
        staggered, _ = _fleet_messages(6, 3.0, seed=2, bundle=bundle)
        lockstep, _ = _fleet_messages(6, 3.0, seed=2, bundle=bundle, lockstep=True)
        for msgs, phases_differ in ((staggered, True), (lockstep, False)):
            first = {}  # each device's first due time: its phase (+ one chunk)
            for due, dev, _kind, _payload in _data(msgs):
                first.setdefault(dev, due)
            assert len(first) == 6
            phases = {round(t % period, 9) for t in first.values()}
            assert len(phases) == (6 if phases_differ else 1), (bundle, phases)
            assert all(period <= t < 2 * period + 0.002 for t in first.values())
    # the phase is seeded: the same seed gives the same due times, another seed others
    dues = [[m[0] for m in _data(_fleet_messages(6, 3.0, seed=s)[0])] for s in (2, 2, 3)]
    assert dues[0] == dues[1] != dues[2]


def test_stamped_frames_put_device_time_on_the_wall_clock() -> None:
    t_base = 1_700_000_123.25
    for bundle in (False, True):
        for lockstep in (False, True):
            msgs, _ = _fleet_messages(3, 2.5, seed=4, bundle=bundle, lockstep=lockstep)
            assert any(kind == BUNDLE_CODE for _, _, kind, _ in msgs) == bundle
            for due, dev, kind, (chunks, frame) in _data(msgs):
                body = bytearray(frame)
                t0s = _stamp(chunks, body, t_base)
                device = f"dev{dev:03d}"
                if kind == BUNDLE_CODE:
                    parts = codec.decode_bundle(device, bytes(body), DEFAULT_MODALITIES)
                    assert parts.rejected == [] and [c.modality for c in parts.chunks] == [
                        "ecg", "eeg", "acc"]
                    decoded = parts.chunks
                else:
                    decoded = [codec.decode_chunk(device, MODALITIES[kind], bytes(body),
                                                  DEFAULT_MODALITIES)]
                assert [c.t0 for c in decoded] == t0s
                assert [c.seq for c in decoded] == [c.seq for c in chunks]
                # a message is published (at t_base + due) when its last sample's span ends
                ends = [c.t0 + c.n / c.fs for c in decoded]
                assert max(ends) == pytest.approx(t_base + due, abs=1e-6)
                assert all(e <= t_base + due + 1e-6 for e in ends)


def test_a_bundle_completes_the_same_windows_at_its_publish() -> None:
    config = EngineConfig()
    single = _log(3, 8.0)
    bundled = _log(3, 8.0, bundle=True)
    # same chunks either way
    key = ["device", "kind", "seq"]
    assert np.array_equal(np.sort(single[key]), np.sort(bundled[key]))
    done_single, _ = completing_chunks(single, config, 3)
    done_bundle, timed_out = completing_chunks(bundled, config, 3)
    assert set(done_bundle) == set(done_single) and len(done_bundle) >= 15
    assert not set(done_bundle) & timed_out
    bundle_pubs = set(bundled[bundled["kind"] != LABEL_CODE]["published"].tolist())
    for window, pub in done_bundle.items():
        assert pub in bundle_pubs
        # the bundle leaves with its last part (EEG's span ends up to one sample after ECG's)
        assert 0 <= pub - done_single[window] <= 1 / 256 + 1e-9, window
    counts = analyse(BenchSettings(devices=3, duration=8.0, broker_url="mqtt://127.0.0.1:1"),
                     bundled, [], [], config)[1]
    assert counts["published"] == len(np.unique(bundled["msg"]))
    assert counts["published_chunks"] == 3 * (counts["published"] - 3 * 7)  # labels: 7 s each


def test_tiny_bundled_run_times_every_window(broker_url: str, topic_prefix: str) -> None:
    settings = BenchSettings(devices=2, duration=5.0, broker_url=broker_url, prefix=topic_prefix,
                             settle_s=1.0, bundle=True)
    result = asyncio.run(run_bench(settings))
    c = result.counts
    assert c["expected"] >= 2 and c["missing"] == 0, c
    assert c["timed"] == c["expected"]  # every window the shadow completes is timed
    assert c["timed"] + c["closed_by_timeout"] == c["received"] == c["published_by_gateway"]
    assert result.end_to_end.count == c["timed"]
    assert result.floor.count == c["floor_messages"] > 0
    engine = result.engine["engine"]
    assert engine["bundles"] > 0 and engine["chunks"] == 3 * engine["bundles"]
    assert result.engine["rejections"] == {}
    assert c["published_chunks"] == engine["chunks"]
    doc = result.to_json()
    assert doc["mode"] == "bundle, staggered" and doc["settings"]["bundle"] is True


def test_command_line_modes_reach_the_settings() -> None:
    from streamfuse.cli import build_parser

    args = build_parser().parse_args(["bench", "--bundle", "--lockstep", "--duration", "5"])
    assert (args.bundle, args.lockstep) == (True, True)
    args = build_parser().parse_args(["bench"])
    assert (args.bundle, args.lockstep) == (False, False)
    assert build_parser().parse_args(["simulate", "--bundle"]).bundle is True
    assert build_parser().parse_args(["simulate"]).bundle is False
    s = BenchSettings(devices=1, duration=2.0, broker_url="mqtt://x:1", bundle=True, lockstep=True)
    assert s.mode == "bundle, lockstep"
    assert BenchSettings(devices=1, duration=2.0, broker_url="mqtt://x:1").mode == (
        "per-modality, staggered"
    )
