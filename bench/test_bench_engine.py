"""The whole engine per device-second, offline: what one core can carry before any network.

A simulated fleet (20 devices, ECG 250 Hz, EEG 8 x 256 Hz, ACC 3 x 50 Hz in 100 ms chunks,
one label per second, every fusion level) is encoded as the MQTT messages the gateway would
receive, and pushed through a fresh engine (its first 10 s untimed, so models and normalisers
are warm). Figures (``extra_info``): ms of engine time per device-second and the device count
that would fill one core at that cost (an upper bound: the gateway also parses MQTT).

Variants in the same run: per-modality messages with the default model (``logreg``, our
:class:`~streamfuse.learn.linear.ScaledLogisticRegression`); the same in bundles (one message
per device per 100 ms); and, as the baseline, per-modality messages with ``river-logreg``,
the river pipeline that was the default before (same probabilities, checked here).

Run: ``/work/venv/bin/pytest bench/test_bench_engine.py -p no:cacheprovider``
"""

from __future__ import annotations

import math

import pytest
from timing import median_s

from simulators import FaultProfile, Fleet
from simulators.publisher import encode_event, event_topic
from streamfuse import Engine, topics, warm_up
from streamfuse.config import EngineConfig
from streamfuse.types import Prediction, RawMessage

DEVICES, SECONDS, WARM = 20, 40.0, 10.0
PREFIX = topics.DEFAULT_PREFIX


def _messages(bundle: bool, devices: int = DEVICES) -> list[tuple[RawMessage, float]]:
    """The fleet's messages as the gateway receives them, with their arrival times."""
    fleet = Fleet(
        devices, seed=0, bundle=bundle, faults=FaultProfile(jitter_dist="none", jitter_mean_s=0.0)
    )
    return [
        (
            RawMessage(event_topic(PREFIX, ev.payload.device, ev.kind), encode_event(ev.payload)),
            ev.send_time + 0.003,
        )
        for ev in fleet.advance(SECONDS)
    ]


@pytest.fixture(scope="module")
def fleets() -> dict[bool, list[tuple[RawMessage, float]]]:
    warm_up(EngineConfig())
    warm_up(EngineConfig(model="river-logreg"))
    return {False: _messages(False), True: _messages(True)}


def _run(items: list[tuple[RawMessage, float]], model: str) -> list[Prediction]:
    engine = Engine(EngineConfig(model=model))
    split = next(i for i, (_, t) in enumerate(items) if t > WARM)
    engine.push_many(items[:split])
    return [o for item, now in items[split:] for o in engine.push(item, now)
            if isinstance(o, Prediction)]


def _bench(benchmark, items, model) -> list[Prediction]:
    out: list[list[Prediction]] = []

    def once() -> None:
        out.append(_run(items, model))

    benchmark.pedantic(once, rounds=3, iterations=1)
    per = median_s(benchmark) / (DEVICES * (SECONDS - WARM))
    if math.isnan(per):  # --benchmark-disable: untimed; the checks below still run
        return out[-1]
    benchmark.extra_info.update(
        ms_per_device_second=round(per * 1e3, 3),
        devices_per_core_bound=round(1.0 / per),
        messages=len(items),
    )
    return out[-1]


@pytest.mark.benchmark(group="engine per device-second")
def test_engine_per_modality_messages(benchmark, fleets) -> None:
    preds = _bench(benchmark, fleets[False], "logreg")
    assert len(preds) >= DEVICES * (SECONDS - WARM - 2)


@pytest.mark.benchmark(group="engine per device-second")
def test_engine_bundled_messages(benchmark, fleets) -> None:
    preds = _bench(benchmark, fleets[True], "logreg")
    assert len(preds) >= DEVICES * (SECONDS - WARM - 2)


@pytest.mark.benchmark(group="engine per device-second")
def test_engine_river_pipeline_baseline(benchmark, fleets) -> None:
    preds = _bench(benchmark, fleets[False], "river-logreg")
    ours = _run(fleets[False], "logreg")
    assert [(p.device, p.index, p.level) for p in preds] == [
        (p.device, p.index, p.level) for p in ours
    ]
    for a, b in zip(preds, ours, strict=True):
        assert a.proba == pytest.approx(b.proba, abs=1e-9)
