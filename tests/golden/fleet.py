"""GOLDEN MASTER, not a reference: the whole engine's outputs over two simulated fleet
sessions (issue 21).

Two sessions, fixed by their seeds: 100 devices publishing bundles (one message per device per
100 ms) and 24 devices publishing per modality, both with jitter, loss, duplicates and
reordering, the second also with a clock jump and a gateway outage on some devices. Each is
encoded as the MQTT messages the gateway receives (:class:`RawMessage`, arrival times) and
pushed through one :class:`~streamfuse.Engine` with the default configuration (every default
fusion level on), labels included, so the models learn as they go.

What is kept of the outputs (``fleet_<name>.npz``): for every prediction in order its device,
window index, published level and label, the published probabilities, every level's and every
modality's probabilities, and at the end the engine's counters and metrics. A SHA-256 of the
input messages is kept beside them, so a change of the simulator is told apart from a change
of the engine.

Recorded from main at 9f91eb8 (the per-device engine before batching):

    PYTHONPATH=. python -m tests.golden.fleet record   # from the repository root

``tests/test_engine_golden.py`` replays the same sessions through today's engine and compares.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np

from simulators import FaultProfile, Fleet
from simulators.publisher import encode_event, event_topic
from streamfuse import Engine, topics
from streamfuse.config import EngineConfig
from streamfuse.types import Prediction, RawMessage

HERE = Path(__file__).parent
PREFIX = topics.DEFAULT_PREFIX
SECONDS = 30.0

SESSIONS: dict[str, dict[str, object]] = {
    "bundled": {"devices": 100, "seed": 21, "bundle": True},
    "permodality": {"devices": 24, "seed": 22, "bundle": False},
}


def _faults(name: str, i: int) -> FaultProfile:
    base = dict(
        clock_offset_s=3.0,
        clock_offset_spread_s=2.0,
        drift_ppm=40.0,
        drift_spread_ppm=60.0,
        jitter_mean_s=0.004,
        loss=0.01,
        duplicate=0.01,
        reorder=0.02,
    )
    if name == "permodality" and i % 6 == 1:
        base.update(clock_jump_s=-50.0, clock_jump_at_s=14.0)
    if name == "permodality" and i % 6 == 3:
        base.update(outage_start_s=9.0, outage_end_s=13.0)
    return FaultProfile(**base)  # type: ignore[arg-type]


def messages(name: str) -> list[tuple[RawMessage, float]]:
    """The session's messages in arrival order, with their arrival times."""
    spec = SESSIONS[name]
    n, seed, bundle = int(spec["devices"]), int(spec["seed"]), bool(spec["bundle"])
    events = []
    for i in range(n):
        fleet = Fleet(
            1,
            seed=seed * 1000 + i,
            bundle=bundle,
            faults=_faults(name, i),
            id_format=f"{name[:1]}{i:03d}",
        )
        events.extend(fleet.advance(SECONDS))
    events.sort(key=lambda ev: (ev.send_time, ev.payload.device))
    return [
        (
            RawMessage(event_topic(PREFIX, ev.payload.device, ev.kind), encode_event(ev.payload)),
            ev.send_time,
        )
        for ev in events
    ]


def digest(items: list[tuple[RawMessage, float]]) -> str:
    h = hashlib.sha256()
    for msg, now in items:
        h.update(msg.topic.encode())
        h.update(bytes(msg.payload))
        h.update(np.float64(now).tobytes())
    return h.hexdigest()


def run(items: list[tuple[RawMessage, float]], engine: Engine | None = None) -> dict[str, object]:
    """Push ``items`` (and a final flush) through ``engine`` (default: a fresh default one);
    return the outputs in the form kept on disk."""
    engine = engine or Engine(EngineConfig())
    preds: list[Prediction] = []
    for item, now in items:
        preds.extend(o for o in engine.push(item, now) if isinstance(o, Prediction))
    preds.extend(engine.flush())
    levels = sorted({k for p in preds for k in p.levels})
    mods = sorted({k for p in preds for k in p.modality_proba})
    classes = sorted(
        {c for p in preds for c in p.proba}
        | {c for p in preds for d in p.levels.values() for c in d}
        | {c for p in preds for d in p.modality_proba.values() for c in d}
    )

    def table(get) -> np.ndarray:  # [predictions, classes], NaN where absent
        out = np.full((len(preds), len(classes)), np.nan)
        for r, p in enumerate(preds):
            d = get(p)
            if d:
                for c, v in d.items():
                    out[r, classes.index(c)] = v
        return out

    result: dict[str, object] = {
        "device": np.array([p.device for p in preds]),
        "index": np.array([p.index for p in preds], dtype=np.int64),
        "level": np.array([p.level for p in preds]),
        "label": np.array([str(p.label) for p in preds]),
        "t_start": np.array([p.t_start for p in preds]),
        "proba": table(lambda p: p.proba),
        "classes": np.array(classes),
        "levels": np.array(levels),
        "modalities": np.array(mods),
    }
    for lv in levels:
        result[f"level_{lv}"] = table(lambda p, lv=lv: p.levels.get(lv))
    for m in mods:
        result[f"member_{m}"] = table(lambda p, m=m: p.modality_proba.get(m))
    stats = engine.stats()
    metrics = {k: v for k, v in engine.metrics().items() if not math.isnan(v)}
    result["stats"] = np.array(json.dumps(stats, sort_keys=True))
    result["metrics"] = np.array(json.dumps(metrics, sort_keys=True))
    return result


def path(name: str) -> Path:
    return HERE / f"fleet_{name}.npz"


def record(name: str) -> None:
    items = messages(name)
    out = run(items)
    out["input_sha256"] = np.array(digest(items))
    np.savez_compressed(path(name), **out)  # type: ignore[arg-type]
    print(f"{name}: {len(items)} messages, {len(out['device'])} predictions -> {path(name)}")


if __name__ == "__main__":
    if sys.argv[1:] != ["record"]:
        sys.exit("usage: python -m tests.golden.fleet record")
    for session in SESSIONS:
        record(session)
