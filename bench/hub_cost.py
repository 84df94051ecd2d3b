"""What a closed window costs after its features, and what a label costs: the FusionHub alone.

    python bench/hub_cost.py [PASSES] [--batch]   # from the repository root

The first run records the hub's inputs (each window's fused matrix and features, each label)
from a 100-device bundled fleet pushed through one engine (``bench/test_bench_engine.py``'s
simulator) into ``$TMPDIR/streamfuse-hub-inputs.pkl``; every run replays them through a fresh
``FusionHub`` and prints process CPU per window (the minimum over PASSES) for ``evidence``,
``decide``, ``learn`` and the metrics ``refresh``, and a digest of every verdict, decision and
published metric: two checkouts that print the same digest decided identically. ``--batch``
decides the windows that close between two labels with ``FusionHub.decide_many``. To compare
commits, run it from each checkout in turn with ``PYTHONPATH=<checkout>`` (same recording).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import pickle
import sys
import tempfile
import time
from typing import Any

RECORDING = os.path.join(tempfile.gettempdir(), "streamfuse-hub-inputs.pkl")


def record() -> list[tuple[Any, ...]]:
    """The hub's inputs from one engine run: ("w", device, fused, features) per window,
    ("l", window event, label, now) per learnt label."""
    from test_bench_engine import _messages  # the sibling file (run as a script)

    import streamfuse.fusion.levels as lv
    from streamfuse import Engine
    from streamfuse.config import EngineConfig

    events: list[tuple[Any, ...]] = []
    made: dict[int, int] = {}
    evidence, learn = lv.FusionHub.evidence, lv.FusionHub.learn

    def spy_evidence(self, fused, feats, device):  # type: ignore[no-untyped-def]
        events.append(("w", id(device), fused, copy.deepcopy(dict(feats))))
        e = evidence(self, fused, feats, device)
        made[id(e)] = len(events) - 1
        return e

    def spy_learn(self, ev, verdict, y, now=math.nan):  # type: ignore[no-untyped-def]
        events.append(("l", made[id(ev)], y, now))
        return learn(self, ev, verdict, y, now)

    lv.FusionHub.evidence, lv.FusionHub.learn = spy_evidence, spy_learn  # type: ignore[method-assign]
    try:
        Engine(EngineConfig()).push_many(_messages(bundle=True, devices=100))
    finally:
        lv.FusionHub.evidence, lv.FusionHub.learn = evidence, learn  # type: ignore[method-assign]
    return events


def replay(events: list[tuple[Any, ...]], batch: bool, digest: bool) -> tuple[dict, str]:
    """CPU seconds by stage over one replay, and the digest of what it decided."""
    from streamfuse.config import EngineConfig
    from streamfuse.fusion.levels import FusionHub
    from streamfuse.learn.models import make_model

    cfg = EngineConfig()
    hub = FusionHub(cfg, lambda: make_model(cfg.model))
    devices: dict[int, Any] = {}
    kept: dict[int, Any] = {}
    pending: list[tuple[int, Any]] = []
    h = hashlib.sha256()
    clock = time.process_time
    cost = dict.fromkeys(("evidence", "decide", "learn", "refresh"), 0.0)

    def publish(i: int, ev: Any, verdict: Any) -> None:
        chosen = hub.published(verdict)
        shown = hub.metrics_snapshot()
        kept[i] = (ev, verdict)
        if digest:
            h.update(
                repr(
                    (
                        chosen.level,
                        chosen.label,
                        chosen.proba,
                        verdict.levels,
                        verdict.members,
                        verdict.weights,
                        chosen.prediction_set,
                        chosen.explanation,
                        sorted(shown.items()),
                    )
                ).encode()
            )

    def decide_pending() -> None:
        if pending:
            t0 = clock()
            verdicts = hub.decide_many([ev for _, ev in pending])
            cost["decide"] += clock() - t0
            for (i, ev), v in zip(pending, verdicts, strict=True):
                publish(i, ev, v)
            pending.clear()

    for i, e in enumerate(events):
        if e[0] == "w":
            device = devices.get(e[1]) or devices.setdefault(e[1], hub.new_device())
            t0 = clock()
            ev = hub.evidence(e[2], e[3], device)
            t1 = clock()
            cost["evidence"] += t1 - t0
            if batch:
                pending.append((i, ev))
                continue
            verdict = hub.decide(ev)
            cost["decide"] += clock() - t1
            publish(i, ev, verdict)
        else:
            decide_pending()
            ev, verdict = kept.pop(e[1])
            t0 = clock()
            hub.learn(ev, verdict, e[2], e[3])
            t1 = clock()
            hub.metrics_snapshot()
            cost["learn"] += t1 - t0
            cost["refresh"] += clock() - t1
    decide_pending()
    if digest:
        h.update(repr(sorted(hub.metrics_now().items())).encode())
    return cost, h.hexdigest()[:16]


def main(passes: int, batch: bool) -> None:
    from streamfuse import warm_up
    from streamfuse.config import EngineConfig

    warm_up(EngineConfig())
    if not os.path.exists(RECORDING):
        with open(RECORDING, "wb") as f:
            pickle.dump(record(), f)
    with open(RECORDING, "rb") as f:
        events = pickle.load(f)
    windows = sum(1 for e in events if e[0] == "w")
    _, dg = replay(events, batch, digest=True)
    runs = [replay(events, batch, digest=False)[0] for _ in range(passes)]
    best = {k: min(r[k] for r in runs) for k in runs[0]}
    parts = "  ".join(f"{k} {v / windows * 1e6:.1f}" for k, v in best.items())
    total = sum(best.values()) / windows * 1e6
    print(f"digest {dg}  us per window{' (batched)' if batch else ''}: {parts}  total {total:.1f}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--batch"]
    main(int(args[0]) if args else 3, "--batch" in sys.argv)
