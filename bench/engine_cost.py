"""Where one device-second of engine time goes, offline: pushes split by what they caused.

    python bench/engine_cost.py [DEVICES] [--bundle]   # default 20; from the repository root

A simulated fleet (ECG 250 Hz, EEG 8 x 256 Hz, ACC 3 x 50 Hz, 100 ms chunks, labels 1/s) is
encoded as the gateway's MQTT messages and pushed through one engine (all fusion levels); the
first 10 s are not timed. Prints ms per device-second in all, then the median cost and the
share per device-second of a chunk that closes no window, a push that closes one (features,
fusion, predict) and a label (test-then-train). To compare two commits, run it from each
checkout in turn (``PYTHONPATH=<checkout> python <checkout>/bench/engine_cost.py``).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from test_bench_engine import SECONDS, WARM, _messages  # the sibling file (run as a script)

from streamfuse.config import EngineConfig
from streamfuse.engine import Engine, warm_up


def main(devices: int, bundle: bool = False) -> None:
    items = _messages(bundle=bundle, devices=devices)
    warm_up(EngineConfig())
    engine = Engine(EngineConfig())
    split = next(i for i, (_, t) in enumerate(items) if t > WARM)
    engine.push_many(items[:split])
    clock = time.perf_counter
    cost: dict[str, list[float]] = {"chunk": [], "window": [], "label": []}
    for item, now in items[split:]:
        t0 = clock()
        out = engine.push(item, now)
        dt = clock() - t0
        kind = "label" if item.topic.endswith("/label") else ("window" if out else "chunk")
        cost[kind].append(dt)
    per = devices * (SECONDS - WARM)
    total = sum(sum(v) for v in cost.values())
    kind = "bundled" if bundle else "per-modality"
    print(f"{devices} devices ({kind}): {total / per * 1e3:.3f} ms per device-second")
    for kind, v in cost.items():
        a = np.array(v)
        print(f"  {kind:7s} n={len(a):6d}  median {np.median(a) * 1e6:8.1f} us  "
              f"{a.sum() / per * 1e3:.3f} ms per device-second")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--bundle"]
    main(int(args[0]) if args else 20, bundle="--bundle" in sys.argv[1:])
