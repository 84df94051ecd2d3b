"""The latency harness: histogram and report logic, the chunk join, and a tiny real run."""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from dataclasses import replace

import numpy as np
import pytest

from streamfuse import codec, topics
from streamfuse.align.windower import window_phase
from streamfuse.config import DEFAULT_MODALITIES, EngineConfig
from streamfuse.errors import ConfigError
from streamfuse.gateway.server import bench_server
from streamfuse.latency.analysis import BenchResult, analyse, completing_chunks
from streamfuse.latency.histograms import LatencyHistogram
from streamfuse.latency.orchestration import broker_for, process_cpu_s, run_bench
from streamfuse.latency.publisher import _fleet_messages, _stamp
from streamfuse.latency.report import format_ramp, format_table, plot, write_json
from streamfuse.latency.settings import (
    BUNDLE_CODE,
    LABEL_CODE,
    LOG_DTYPE,
    MODALITIES,
    BenchSettings,
    echo_topic,
    floor_topics,
)


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



def test_a_warm_up_is_timed_apart_from_the_steady_state() -> None:
    """Windows completed in the first warmup_s go to "startup" only; the floor is taken over
    the same span; the table prints the startup row."""
    config = EngineConfig()
    rec = _log(2, 8.0)
    completed, _ = completing_chunks(rec, config, 2)
    start = float(rec["scheduled"].min())
    # 40 ms end to end in the warm-up (the fleet connecting), 3 ms after it
    preds = [(d, w, pub + 0.001, {"decode": 0.01}, pub + (0.040 if pub < start + 3.0 else 0.003))
             for (d, w), pub in completed.items()]
    floor = _heard(rec, 0, 0.0007)
    early = [f for f in floor if f[3] - 0.0007 < start + 3.0]
    assert 0 < len(early) < len(floor)
    settings = BenchSettings(devices=2, duration=8.0, broker_url="mqtt://127.0.0.1:1",
                             warmup_s=3.0)
    hists, counts = analyse(settings, rec, preds, floor, config)
    n_early = sum(pub < start + 3.0 for pub in completed.values())
    assert 0 < n_early < len(completed)
    assert counts["startup"] == hists["startup"].count == n_early
    assert counts["timed"] == hists["end_to_end"].count == len(completed) - n_early
    assert hists["end_to_end"].max_ms() == pytest.approx(3.0, abs=0.01)
    assert hists["startup"].percentile_ms(0) == pytest.approx(40.0, abs=0.05)
    assert hists["floor"].count == len(floor) - len(early) and counts["unmatched_floor"] == 0
    # without a warm-up everything is one figure, the 40 ms included
    hists, counts = analyse(replace(settings, warmup_s=0.0), rec, preds, floor, config)
    assert hists["startup"].count == 0 and counts["timed"] == len(completed)
    assert hists["end_to_end"].max_ms() == pytest.approx(40.0, abs=0.05)
    with pytest.raises(ConfigError, match="warmup"):
        replace(settings, warmup_s=6.5)  # leaves less than one window


def test_the_table_shows_the_startup_row_only_after_a_warm_up() -> None:
    result = _result(e2e_ms=1.9, floor_ms=0.5, round_trip_ms=1.2)
    assert "startup" not in format_table(result.to_json())
    result.histograms["startup"] = LatencyHistogram("startup")
    result.histograms["startup"].record_many([0.030] * 10)
    result.counts["startup"] = 10
    result.settings = replace(result.settings, duration=8.0, warmup_s=3.0)
    table = format_table(result.to_json())
    row = next(line for line in table.splitlines() if line.startswith("startup"))
    assert row.split()[1:3] == ["10", "30.0"]
    assert "in the first 3 s (startup) 10" in table

def _heard(rec: np.ndarray, device: int, delay: float) -> list[tuple[str, str, int, float]]:
    """What the subscriber would note for each logged chunk of ``device`` received ``delay``
    after its publish: ``(device, modality, seq, receipt)``."""
    return [(f"dev{device:03d}", MODALITIES[int(r["kind"])], int(r["seq"]),
             float(r["published"]) + delay)
            for r in rec if r["device"] == device and r["kind"] != LABEL_CODE]


def test_round_trip_times_each_echo_from_its_data_messages_publish() -> None:
    config = EngineConfig()
    rec = _log(2, 5.0)
    settings = BenchSettings(devices=2, duration=5.0, broker_url="mqtt://127.0.0.1:1")
    echoes = _heard(rec, 0, 0.0021) + _heard(rec, 1, 0.0043)
    n_dev0 = len(_heard(rec, 0, 0.0))
    assert n_dev0 > 10 and len(echoes) > 2 * 10
    unknown = [
        ("dev000", "ecg", 10**9, 1.0),  # no such seq
        ("dev009", "ecg", 0, 1.0),  # no such device in the log
        ("dev000", "emg", 0, 1.0),  # no such modality
        ("relay", "ecg", 0, 1.0),  # not a bench device id
    ]
    hists, counts = analyse(settings, rec, [], [], config, echoes + unknown)
    rt = hists["round_trip"]
    # an echo of a message published at t and receipted at t + d is timed d; unknowns are not
    assert rt.count == counts["round_trip_messages"] == len(echoes)
    assert counts["unmatched_echoes"] == len(unknown)
    assert rt.percentile_ms(0) == pytest.approx(2.1, abs=0.01)
    assert rt.max_ms() == pytest.approx(4.3, abs=0.01)
    n_dev1 = len(echoes) - n_dev0
    assert rt.mean_ms() == pytest.approx((2.1 * n_dev0 + 4.3 * n_dev1) / len(echoes), abs=0.01)
    # the echoes do not touch the one-hop floor, and the floor's join is the same
    assert hists["floor"].count == counts["floor_messages"] == 0
    hists, counts = analyse(settings, rec, [], _heard(rec, 1, 0.0009) + unknown[:1], config)
    assert hists["round_trip"].count == counts["round_trip_messages"] == 0
    assert hists["floor"].percentile_ms(50) == pytest.approx(0.9, abs=0.01)
    assert counts["unmatched_floor"] == 1


def test_a_bundles_echo_is_timed_from_the_bundles_publish() -> None:
    config = EngineConfig()
    rec = _log(2, 4.0, bundle=True)
    bundles = {}  # message number -> (device, first part's modality and seq, publish)
    for r in rec[rec["kind"] != LABEL_CODE]:
        bundles.setdefault(int(r["msg"]), (int(r["device"]), MODALITIES[int(r["kind"])],
                                           int(r["seq"]), float(r["published"])))
    assert {m for _, m, _, _ in bundles.values()} == {"ecg"}  # what the subscriber reads
    echoes = [(f"dev{d:03d}", m, seq, pub + 0.003) for d, m, seq, pub in bundles.values()]
    settings = BenchSettings(devices=2, duration=4.0, broker_url="mqtt://127.0.0.1:1",
                             bundle=True)
    hists, counts = analyse(settings, rec, [], [], config, echoes)
    assert hists["round_trip"].count == len(bundles) > 20
    assert counts["unmatched_echoes"] == 0
    assert hists["round_trip"].percentile_ms(0) == pytest.approx(3.0, abs=0.01)
    assert hists["round_trip"].max_ms() == pytest.approx(3.0, abs=0.01)


def _result(e2e_ms: float, floor_ms: float, round_trip_ms: float) -> BenchResult:
    hists = {name: LatencyHistogram(name) for name in ("end_to_end", "floor", "round_trip")}
    for name, ms in (("end_to_end", e2e_ms), ("floor", floor_ms), ("round_trip", round_trip_ms)):
        hists[name].record_many([ms / 2e3] * 50 + [ms / 1e3] * 50)  # p99 = ms (exact < 2 ms)
    return BenchResult(
        settings=BenchSettings(devices=3, duration=2.0, broker_url="mqtt://127.0.0.1:1"),
        histograms=hists, counts={"relayed": 100, "expected": 4, "missing": 0},
        gateway_cpu_s=0.5, wall_s=2.0,
        publisher={"messages": 10, "messages_per_s": 5.0, "lag_p99_ms": 1.0}, engine={},
    )


def test_gateway_added_figure_is_taken_over_the_round_trip() -> None:
    result = _result(e2e_ms=1.9, floor_ms=0.5, round_trip_ms=1.2)
    assert result.gateway_added_p99_ms == pytest.approx(0.7)
    assert result.gateway_added_p99_over_one_hop_ms == pytest.approx(1.4)
    doc = result.to_json()
    assert doc["gateway_added_p99_ms"] == result.gateway_added_p99_ms
    assert doc["gateway_added_p99_over_one_hop_ms"] == result.gateway_added_p99_over_one_hop_ms
    assert doc["latency_ms"]["round_trip"]["p99"] == pytest.approx(1.2)
    table = format_table(doc)
    assert "gateway-added p99 over the broker round trip: 0.700 ms (over one hop: 1.400 ms)" in (
        table
    )
    assert [line.split()[0] for line in table.splitlines()[3:5]] == ["floor", "round_trip"]
    ramp = format_ramp([doc], best=3, target_ms=50.0)
    head, row = ramp.splitlines()[:2]
    assert head.split()[:8] == ["devices", "e2e", "p99", "floor", "p99", "rt", "p99", "cpu"]
    assert row.split()[:4] == ["3", "1.900", "0.500", "1.200"]


def test_reports_written_before_the_round_trip_still_format() -> None:
    doc = _result(e2e_ms=1.9, floor_ms=0.5, round_trip_ms=1.2).to_json()
    del doc["latency_ms"]["round_trip"], doc["gateway_added_p99_over_one_hop_ms"]
    doc["gateway_added_p99_ms"] = 1.4  # the one-hop definition it then had
    assert "gateway-added p99 over one hop: 1.400 ms" in format_table(doc)
    assert format_ramp([doc], best=3, target_ms=50.0).splitlines()[1].split()[:4] == [
        "3", "1.900", "0.500", "-"]


def test_echoes_reach_the_subscriber_and_never_the_gateway() -> None:
    import aiomqtt

    for bundle in (False, True):
        settings = BenchSettings(devices=30, duration=2.0, broker_url="mqtt://127.0.0.1:1",
                                 prefix="sfb/run1", bundle=bundle, floor_devices=4)
        data = floor_topics(settings)
        assert len(data) == 4 * (1 if bundle else len(MODALITIES))
        for name in data:
            echo = aiomqtt.Topic(echo_topic(name))
            assert aiomqtt.Topic(name).matches(topics.subscription(settings.prefix))
            assert not echo.matches(topics.subscription(settings.prefix))  # the gateway's
            assert echo.matches(echo_topic(f"{settings.prefix}/+/+"))  # the subscriber's
            assert not aiomqtt.Topic(name).matches(echo_topic(f"{settings.prefix}/+/+"))
            with pytest.raises(topics.TopicError):  # nor would the engine take it as data
                topics.parse(echo.value, settings.prefix)


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
    result = asyncio.run(run_bench(settings, host=bench_server, keep_samples=True))
    c = result.counts
    assert c["expected"] >= 2  # at least one full window per device closes on data
    # the kept samples are the histograms' values (no warm-up here: the same sets), each with
    # its receipt time
    assert result.samples is not None
    for name in ("end_to_end", "round_trip"):
        rows, hist = result.samples[name], result.histograms[name]
        assert len(rows) == hist.count > 0
        assert np.max(rows[:, 1]) * 1e3 == pytest.approx(hist.max_ms(), rel=0.01)
        assert abs(rows[:, 0].max() - time.time()) < 120
    assert c["missing"] == 0, c  # every window's prediction was received
    assert c["received"] == c["published_by_gateway"]
    assert c["timed"] + c["closed_by_timeout"] == c["received"]
    assert result.end_to_end.count == c["timed"] > 0
    assert result.floor.count == c["floor_messages"] > 0
    _check_round_trip(result)
    e2e, floor = result.end_to_end.summary(), result.floor.summary()
    assert 0 < e2e["p50"] <= e2e["p99"] <= e2e["max"]
    assert 0 < floor["p50"] <= floor["max"]
    # end to end contains a broker hop in and one out: its median exceeds the floor's minimum
    assert e2e["p50"] > result.floor.percentile_ms(0)
    assert result.publisher["messages"] == c["published"]
    assert result.engine["engine"]["chunks"] == c["published_chunks"] > 0
    assert result.engine["rejections"] == {}  # the echoes never reached the engine
    doc = result.to_json()
    table = format_table(doc)
    assert "end_to_end" in table and "floor" in table and "round_trip" in table
    assert "gateway-added p99 over the broker round trip" in table
    write_json(tmp_path / "b.json", doc)
    back = json.loads((tmp_path / "b.json").read_text())
    assert back["settings"]["devices"] == 2
    assert back["counts"]["missing"] == 0
    plot(tmp_path / "b.png", doc)
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _check_round_trip(result: BenchResult) -> None:
    """Structural facts of a real run's round trip (no timing thresholds)."""
    c = result.counts
    # every echo the relay sent came back to the subscriber and joined a logged chunk; the
    # relay saw the same floor messages the subscriber did
    assert result.round_trip.count == c["round_trip_messages"] == c["relayed"] > 0
    assert c["relayed"] == c["floor_messages"]
    assert c["unmatched_echoes"] == 0 and c["unmatched_floor"] == 0
    assert result.relay["messages"] == c["relayed"] and result.relay["cpu_s"] > 0
    assert f"relay echoed {c['relayed']} messages" in format_table(result.to_json())
    rt = result.round_trip.summary()
    assert "negative" not in rt and "invalid" not in rt  # every value was positive
    assert 0 < result.round_trip.percentile_ms(0) <= rt["p50"] <= rt["max"]
    doc = result.to_json()
    assert doc["gateway_added_p99_ms"] == pytest.approx(
        result.end_to_end.percentile_ms(99) - result.round_trip.percentile_ms(99))
    assert doc["gateway_added_p99_over_one_hop_ms"] == pytest.approx(
        result.end_to_end.percentile_ms(99) - result.floor.percentile_ms(99))


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
    result = asyncio.run(run_bench(settings, host=bench_server))
    c = result.counts
    assert c["expected"] >= 2 and c["missing"] == 0, c
    assert c["timed"] == c["expected"]  # every window the shadow completes is timed
    assert c["timed"] + c["closed_by_timeout"] == c["received"] == c["published_by_gateway"]
    assert result.end_to_end.count == c["timed"]
    assert result.floor.count == c["floor_messages"] > 0
    _check_round_trip(result)
    assert 3 * c["relayed"] == c["published_chunks"]  # every bundle of both devices
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


def test_process_cpu_agrees_with_the_interpreters_own_clock() -> None:
    assert math.isnan(process_cpu_s(None))
    assert math.isnan(process_cpu_s(2**22 + 12345))  # above Linux's pid_max: no such process
    before, mine = process_cpu_s(os.getpid()), time.process_time()
    total = 0
    while time.process_time() - mine < 0.3:  # burn 0.3 s of CPU
        total += sum(range(1000))
    used, mine_used = process_cpu_s(os.getpid()) - before, time.process_time() - mine
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert abs(used - mine_used) <= 3 * tick + 0.02, (used, mine_used)


def test_the_broker_the_bench_started_has_its_cpu_measured_beside_the_gateways(
    topic_prefix: str,
) -> None:
    with broker_for(None, "auto") as (url, kind, pid):
        assert pid is not None and kind in ("mosquitto", "amqtt")
        settings = BenchSettings(devices=2, duration=4.0, broker_url=url, prefix=topic_prefix,
                                 settle_s=0.5, broker_pid=pid)
        result = asyncio.run(run_bench(settings, host=bench_server))
    assert result.broker_cpu_s > 0 and result.gateway_cpu_s > 0
    doc = result.to_json()
    per = doc["cpu_ms_per_device_second"]
    assert per["gateway"] == pytest.approx(result.gateway_cpu_s / (2 * result.wall_s) * 1e3)
    assert doc["gateway_to_broker_cpu"] == pytest.approx(
        result.gateway_cpu_s / result.broker_cpu_s
    )
    assert "gateway CPU / broker CPU per device-second" in format_table(doc)
    with broker_for("mqtt://127.0.0.1:1883", "auto") as (_, kind, pid):
        assert kind == "external" and pid is None  # not ours to measure: no ratio printed
