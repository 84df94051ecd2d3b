"""Where one device-second of engine time goes, offline: pushes split by what they caused.

    python bench/engine_cost.py [DEVICES] [--bundle] [--passes N]   # from the repository root

A simulated fleet (ECG 250 Hz, EEG 8 x 256 Hz, ACC 3 x 50 Hz, 100 ms chunks, labels 1/s) is
encoded as the gateway's MQTT messages and pushed through one engine (all fusion levels); the
first 10 s are not timed. Prints ms per device-second in all, then the median cost and the
share per device-second of a chunk that closes no window, a push that closes one (features,
fusion, predict) and a label (test-then-train). ``--passes N`` repeats the timed part on N
fresh engines and prints each pass's total, the minimum first: on a shared VM the minimum is
the figure least disturbed by neighbours. To compare two commits, run it from each checkout in
turn (``PYTHONPATH=<checkout> python <checkout>/bench/engine_cost.py``).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from test_bench_engine import SECONDS, WARM, _messages  # the sibling file (run as a script)

from streamfuse import Engine, warm_up
from streamfuse.config import EngineConfig


def _pass(items: list, devices: int) -> dict[str, list[float]]:
    """One fresh engine: the first WARM seconds untimed, then each push timed by kind."""
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
    return cost


def main(devices: int, bundle: bool = False, passes: int = 1) -> None:
    items = _messages(bundle=bundle, devices=devices)
    warm_up(EngineConfig())
    per = devices * (SECONDS - WARM)
    runs = [_pass(items, devices) for _ in range(passes)]
    totals = [sum(sum(v) for v in cost.values()) / per * 1e3 for cost in runs]
    best = int(np.argmin(totals))
    kind = "bundled" if bundle else "per-modality"
    print(f"{devices} devices ({kind}): {totals[best]:.3f} ms per device-second")
    if passes > 1:
        print("  passes: " + ", ".join(f"{t:.3f}" for t in totals) + " (minimum above, below)")
    for name, v in runs[best].items():
        a = np.array(v)
        print(f"  {name:7s} n={len(a):6d}  median {np.median(a) * 1e6:8.1f} us  "
              f"{a.sum() / per * 1e3:.3f} ms per device-second")


if __name__ == "__main__":
    argv = sys.argv[1:]
    passes = 1
    if "--passes" in argv:
        i = argv.index("--passes")
        passes = int(argv[i + 1])
        del argv[i : i + 2]
    args = [a for a in argv if a != "--bundle"]
    main(int(args[0]) if args else 20, bundle="--bundle" in argv, passes=passes)
