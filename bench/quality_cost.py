"""CPU of ``window_quality`` per modality-window over recorded windows, and its outputs, so two
checkouts can be compared for speed and for bit-identity (issue 21).

    # once: every closed window of the two golden fleet sessions (~80 s)
    PYTHONPATH=. python bench/quality_cost.py capture /tmp/windows.pkl
    # A/B, alternating, from a directory outside both checkouts (``python -m`` / cwd would win):
    cd /tmp && PYTHONPATH=/path/to/base python /path/to/bench/quality_cost.py run /tmp/windows.pkl \
        --passes 3 --out /tmp/base.pkl
    cd /tmp && PYTHONPATH=/path/to/new  python /path/to/bench/quality_cost.py run /tmp/windows.pkl \
        --passes 3 --out /tmp/new.pkl
    python bench/quality_cost.py compare /tmp/base.pkl /tmp/new.pkl

``run`` prints the minimum over passes of process CPU time per modality-window (us).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time

import numpy as np


def capture(path: str) -> None:
    from streamfuse import Engine
    from streamfuse.config import EngineConfig
    from tests.golden import fleet

    out: list[tuple[str, np.ndarray, np.ndarray | None, float]] = []

    def observe(fused) -> None:  # type: ignore[no-untyped-def]
        w = fused.window
        for m, block in w.blocks.items():
            mask = w.masks.get(m)
            out.append((m, np.array(block), None if mask is None else np.array(mask), w.fs))

    for name in ("bundled", "permodality"):
        engine = Engine(
            EngineConfig(levels=("early", "intermediate", "late", "attention", "bayes"))
        )
        engine.on_window = observe
        for item, now in fleet.messages(name):
            engine.push(item, now)
        engine.flush()
    with open(path, "wb") as f:
        pickle.dump(out, f)
    print(f"{len(out)} modality-windows -> {path}")


def run(path: str, passes: int, out: str | None) -> None:
    from streamfuse.features.quality import window_quality

    with open(path, "rb") as f:
        windows = pickle.load(f)
    results = [window_quality(m, b, k, fs) for m, b, k, fs in windows]  # also warms the JIT
    best = float("inf")
    for _ in range(passes):
        t0 = time.process_time()
        for m, b, k, fs in windows:
            window_quality(m, b, k, fs)
        best = min(best, time.process_time() - t0)
    if out:
        with open(out, "wb") as f:
            pickle.dump(results, f)
    print(f"{best / len(windows) * 1e6:.1f} us a modality-window ({len(windows)} windows)")


def compare(a_path: str, b_path: str) -> int:
    with open(a_path, "rb") as f:
        a = pickle.load(f)
    with open(b_path, "rb") as f:
        b = pickle.load(f)

    def bits(d: dict[str, float]) -> list[tuple[str, bytes]]:
        return [(k, np.float64(v).tobytes()) for k, v in d.items()]

    differ = sum(bits(x) != bits(y) for x, y in zip(a, b, strict=True))
    print(f"{len(a)} windows, {differ} differ (keys, order or any bit)")
    return 1 if differ else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("capture").add_argument("path")
    r = sub.add_parser("run")
    r.add_argument("path")
    r.add_argument("--passes", type=int, default=3)
    r.add_argument("--out")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    args = p.parse_args()
    if args.cmd == "capture":
        capture(args.path)
    elif args.cmd == "run":
        run(args.path, args.passes, args.out)
    else:
        return compare(args.a, args.b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
