"""Where the live view's time goes: its frames, part by part, offline (no sockets, no real time).

    python bench/webview_frames.py [--devices 100] [--seconds 30] [--clients 1]

A simulated fleet (as ``bench/webview_cost.py``) is pushed through one engine as fast as it
goes, with the view's hooks installed and ``--clients`` clients watching the first device
(``--spread``: one device each); each client asks for a frame every 0.25 s of fleet time (the
view's default 4 frames a second). Reported: the engine's time per prediction beside the
view's own (hooks and frames, :attr:`ViewModel.spent_s`), how many frames carried something
and their size, the build time of a frame (p50, p99, max: how long it holds the gateway's loop),
and a profile of the frames by part (signals, heatmap, timeline, latest, ground truth, JSON).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from webview_cost import PREFIX, messages  # noqa: E402

from streamfuse.config import EngineConfig  # noqa: E402
from streamfuse.engine import Engine  # noqa: E402
from streamfuse.gateway.viewmodel import ViewModel  # noqa: E402
from streamfuse.types import Prediction  # noqa: E402
from streamfuse.warmup import warm_up  # noqa: E402

PARTS = ("signals", "heatmap", "timeline", "latest", "_device_truth", "_gateway_figures",
         "dumps")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--spread", action="store_true", help="each client its own device")
    args = ap.parse_args()
    warm_up()
    msgs = messages(args.devices, args.seconds)
    engine = Engine(EngineConfig(), prefix=PREFIX)
    view = ViewModel(engine)
    clients = [
        view.connect(f"dev{(i if args.spread else 0):03d}") for i in range(args.clients)
    ]
    profile = cProfile.Profile()
    builds: list[float] = []
    sizes: list[int] = []
    engine_s, predictions = 0.0, 0
    t_frame = t_tick = msgs[0][1]

    def hand(outs: list) -> None:
        nonlocal predictions
        for out in outs:
            if isinstance(out, Prediction):
                view.on_prediction(out)
                predictions += 1

    for raw, t in msgs:
        while t_tick <= t:  # the gateway's 0.1 s timer
            t0 = time.perf_counter()
            outs = engine.tick(t_tick)
            engine_s += time.perf_counter() - t0
            hand(outs)
            t_tick += 0.1
        t0 = time.perf_counter()
        outs = engine.push(raw, t)
        engine_s += time.perf_counter() - t0
        hand(outs)
        if t >= t_frame:
            t_frame += 0.25
            for client in clients:
                t0 = time.perf_counter()
                profile.enable()
                frame = view.frame(client)
                profile.disable()
                builds.append(time.perf_counter() - t0)
                if frame is not None:
                    sizes.append(len(frame))
    ms = np.asarray(builds) * 1e3
    per_pred = engine_s / max(1, predictions) * 1e6
    view_per_pred = view.spent_s / max(1, predictions) * 1e6
    print(f"{args.devices} devices, {args.seconds:g} s, {args.clients} client(s)"
          f"{' on different devices' if args.spread else ''}: {predictions} predictions")
    print(f"  engine {per_pred:.0f} us per prediction; the view {view_per_pred:.1f} us "
          f"({view_per_pred / per_pred:.2%} of the engine's time)")
    print(f"  frames: {len(sizes)} of {len(builds)} carried something, "
          f"{np.mean(sizes) / 1e3 if sizes else 0:.1f} kB each "
          f"({sum(sizes) / args.seconds / 1e3:.1f} kB/s); build p50 {np.median(ms):.3f} ms, "
          f"p99 {np.percentile(ms, 99):.3f} ms, max {ms.max():.3f} ms")
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    by_part = {p: 0.0 for p in PARTS}
    calls = {p: 0 for p in PARTS}
    for (_, _, name), (_, ncalls, _, cum, _) in stats.items():
        for part in PARTS:
            if name == part or name.endswith(f"'{part}' of 'orjson'>") or (
                part == "dumps" and "orjson.dumps" in name
            ):
                by_part[part] += cum
                calls[part] += ncalls
    total = ms.sum()
    print("  frame time by part (cumulative, ms over the run; calls):")
    for part in PARTS:
        print(f"    {part:18s} {by_part[part] * 1e3:8.1f} ms  {calls[part]:5d} calls "
              f"({by_part[part] * 1e3 / total if total else 0:.0%})")


if __name__ == "__main__":
    main()
