"""What the live web view costs the gateway, A/B in one run.

    python bench/webview_cost.py [--devices 100] [--seconds 20] [--rounds 2] [--clients 1]

One simulated fleet (ECG, EEG, ACC in 100 ms chunks, labels 1/s) is encoded once as the
gateway's MQTT messages; each arm pushes it through a fresh engine in real time on one asyncio
loop (messages handed over at their send time, the engine ticked every 0.1 s, as the gateway
does), and arms alternate, ``--rounds`` times each:

- ``off``: no view at all;
- ``attached``: the view's server listening and its ``on_prediction`` hook installed, no browser;
- ``client``: the same with ``--clients`` server-sent-event streams of one device each
  (``curl -N``, separate processes, as a browser would be), at the view's default 4 frames/s.

Per arm: the loop thread's CPU time per prediction (everything: engine, hooks, frames, HTTP
writes; on a shared machine this moves by ~10 % between rounds of the same arm), the view's own
time per prediction (its hooks and frame building as the view itself counts them,
``ViewModel.spent_s``: the precise figure; socket writes are only in the CPU figure), the
added latency of each prediction (output time minus the arrival time of the message that
closed its window; a window closed by a tick is measured from its tick), the loop's longest
stall seen by a 5 ms probe, and for ``client`` the time to build a frame and the bytes
streamed. The first ``--warm`` seconds of each arm are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulators.device import Fleet  # noqa: E402
from simulators.faults import FaultProfile  # noqa: E402
from simulators.publisher import encode_event, event_topic  # noqa: E402
from streamfuse.config import EngineConfig  # noqa: E402
from streamfuse.engine import Engine  # noqa: E402
from streamfuse.gateway.webview import WebView  # noqa: E402
from streamfuse.types import Prediction, RawMessage  # noqa: E402
from streamfuse.warmup import warm_up  # noqa: E402

PREFIX = "streamfuse"


def messages(devices: int, seconds: float) -> list[tuple[RawMessage, float]]:
    fleet = Fleet(devices, seed=0, faults=FaultProfile(jitter_dist="none", jitter_mean_s=0.0))
    return [
        (RawMessage(event_topic(PREFIX, ev.payload.device, ev.kind), encode_event(ev.payload)),
         ev.send_time)
        for ev in fleet.advance(seconds)
    ]


async def arm(kind: str, items: list[tuple[RawMessage, float]], warm: float,
              clients: int) -> dict[str, float]:
    engine = Engine(EngineConfig(), prefix=PREFIX, timer=time.perf_counter)
    view = WebView(engine, port=0) if kind != "off" else None
    frame_s: list[float] = []
    procs: list[subprocess.Popen[bytes]] = []
    outs: list[Path] = []
    if view is not None:
        url = await view.start()
        model = view.model
        build = model.frame

        def timed(client):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            out = build(client)
            frame_s.append(time.perf_counter() - t0)
            return out

        model.frame = timed  # type: ignore[method-assign]
        if kind == "client":
            for i in range(clients):
                out = Path(tempfile.mkstemp(prefix="webview-bench-")[1])
                outs.append(out)
                procs.append(subprocess.Popen(
                    ["curl", "-sN", "-o", str(out), f"{url}events?device=dev{i:03d}"]))
            while len(model.clients) < clients:
                await asyncio.sleep(0.02)
    hook = view.on_prediction if view is not None else None
    lat: list[float] = []
    stalls: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            stalls.append(time.perf_counter() - t0 - 0.005)

    prober = asyncio.create_task(probe())
    start = time.time() + 0.2
    predictions = 0
    cpu0 = None
    i = 0
    next_tick = start
    n = len(items)
    while i < n:
        now = time.time()
        if cpu0 is None and now - start >= warm:
            cpu0, counted_from, frames_from = time.thread_time(), predictions, len(frame_s)
            spent0 = view.model.spent_s if view is not None else 0.0
            lat.clear()
            stalls.clear()
        while i < n and start + items[i][1] <= now:
            msg, sent = items[i]
            i += 1
            for out in engine.push(msg, start + sent):
                if isinstance(out, Prediction):
                    predictions += 1
                    lat.append(time.time() - (start + sent))
                    if hook is not None:
                        hook(out)
        if now >= next_tick:
            for out in engine.tick(now):
                if isinstance(out, Prediction):
                    predictions += 1
                    lat.append(time.time() - now)
                    if hook is not None:
                        hook(out)
            next_tick += 0.1
        await asyncio.sleep(0.002)
    assert cpu0 is not None
    cpu = time.thread_time() - cpu0
    spent = (view.model.spent_s - spent0) if view is not None else 0.0
    counted = predictions - counted_from
    done.set()
    await prober
    frames = frame_s[frames_from:]
    streamed = 0
    if view is not None:
        await view.stop()
    for proc in procs:
        proc.terminate()
        proc.wait()
    for out in outs:
        streamed += out.stat().st_size
        out.unlink()
    a = np.array(lat) * 1e3
    seconds = items[-1][1] - warm
    return {
        "cpu_us_per_prediction": cpu / max(counted, 1) * 1e6,
        "view_us_per_prediction": spent / max(counted, 1) * 1e6,
        "predictions": counted,
        "latency_p50_ms": float(np.percentile(a, 50)),
        "latency_p99_ms": float(np.percentile(a, 99)),
        "stall_max_ms": max(stalls) * 1e3 if stalls else 0.0,
        "frames": len(frames),
        "frame_p50_ms": float(np.percentile(frames, 50)) * 1e3 if frames else float("nan"),
        "frame_max_ms": max(frames) * 1e3 if frames else float("nan"),
        "kB_per_s": streamed / 1e3 / seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warm", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--clients", type=int, default=1)
    args = ap.parse_args()
    if shutil.which("curl") is None:
        sys.exit("the client arm streams with curl; install it (Debian: apt-get install curl)")
    warm_up(EngineConfig())
    items = messages(args.devices, args.seconds)
    print(f"{args.devices} devices, {args.seconds:.0f} s per arm ({args.warm:.0f} s not counted), "
          f"{len(items)} messages, {args.clients} client(s), cores {os.cpu_count()}")
    results: dict[str, list[dict[str, float]]] = {"off": [], "attached": [], "client": []}
    for r in range(args.rounds):
        for kind in ("off", "attached", "client"):
            res = asyncio.run(arm(kind, items, args.warm, args.clients))
            results[kind].append(res)
            print(f"  round {r + 1} {kind:8s} " + "  ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()))
    print("medians over rounds:")
    keys = ("cpu_us_per_prediction", "view_us_per_prediction", "latency_p50_ms",
            "latency_p99_ms", "stall_max_ms", "frame_p50_ms", "frame_max_ms", "kB_per_s")
    for kind, runs in results.items():
        print(f"  {kind:9s}" + "  ".join(
            f"{k} {float(np.median([run[k] for run in runs])):.3f}" for k in keys))
    off = float(np.median([run["cpu_us_per_prediction"] for run in results["off"]]))
    for kind in ("attached", "client"):
        v = float(np.median([run["cpu_us_per_prediction"] for run in results[kind]]))
        print(f"  {kind}: {v - off:+.1f} us CPU per prediction against off ({(v / off - 1):+.1%})")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
