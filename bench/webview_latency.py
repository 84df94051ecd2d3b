"""Does a browser on the live view move the gateway-added latency? A/B in one run.

    python bench/webview_latency.py [--devices 100] [--duration 20] [--rounds 2] [--broker URL]

``streamfuse bench``'s own harness (a real broker; publisher, subscriber and relay processes;
the gateway's own :class:`~streamfuse.gateway.server.Server` in this process), arms alternating
round by round:

- ``off``: the gateway exactly as ``streamfuse bench`` runs it (no view);
- ``browser``: the same gateway with the view attached (``on_prediction``) and one
  server-sent-event stream open on it (``curl -N``, a separate process, as a browser tab;
  the view's default 4 frames a second, the first device).

Per run: the gateway-added p99 (end-to-end p99 minus the broker round trip's p99, as
``streamfuse bench`` reports it), end-to-end p50/p99, the gateway process's CPU share, and in
the ``browser`` arm the view's own time (hooks and frame building) per prediction.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamfuse.gateway.server import Server, bench_server  # noqa: E402
from streamfuse.gateway.webview import WebView  # noqa: E402
from streamfuse.latency.orchestration import broker_for, run_bench  # noqa: E402
from streamfuse.latency.settings import BenchSettings  # noqa: E402


class WithBrowser:
    """The bench's gateway with the view attached and one SSE stream reading it."""

    def __init__(self, settings: BenchSettings) -> None:
        base = bench_server(settings)
        self.view = WebView(port=0)
        self.server = Server(
            base.config, clock=time.time, handle_signals=False,
            on_prediction=self.view.on_prediction,
        )
        self.view.attach(lambda: self.server.gateway)
        self.should_exit = self.server.should_exit
        self.started = self.server.started
        self.config = self.server.config
        self.frames = 0

    @property
    def gateway(self) -> Any:
        return self.server.gateway

    async def serve(self) -> int:
        async with self.view.running() as url:
            curl = subprocess.Popen(["curl", "-sN", "-o", "/dev/null", f"{url}events"])
            try:
                while not self.view.model.clients:
                    await asyncio.sleep(0.02)
                return await self.server.serve()
            finally:
                self.frames = sum(c.frames for c in self.view.model.clients)
                curl.terminate()
                curl.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--broker", default=None, help="mqtt://host:port (default: a private one)")
    args = ap.parse_args()
    if shutil.which("curl") is None:
        sys.exit("the browser arm streams with curl; install it (Debian: apt-get install curl)")
    rows: dict[str, list[dict[str, float]]] = {"off": [], "browser": []}
    with broker_for(args.broker, "auto") as (url, kind):
        print(f"{args.devices} devices, {args.duration:.0f} s per run, broker {kind} {url}")
        base = BenchSettings(devices=args.devices, duration=args.duration, broker_url=url,
                             prefix="x")
        for r in range(args.rounds):
            for arm in ("off", "browser"):
                settings = replace(base, prefix=f"sfwv{uuid.uuid4().hex[:6]}")
                hosted: list[WithBrowser] = []

                def host(s: BenchSettings, arm: str = arm, hosted: list = hosted) -> Any:
                    if arm == "off":
                        return bench_server(s)
                    hosted.append(WithBrowser(s))
                    return hosted[-1]

                res = asyncio.run(run_bench(settings, host=host))
                row = {
                    "gateway_added_p99_ms": res.gateway_added_p99_ms,
                    "end_to_end_p50_ms": res.end_to_end.percentile_ms(50),
                    "end_to_end_p99_ms": res.end_to_end.percentile_ms(99),
                    "cpu_fraction": res.cpu_fraction,
                    "predictions": float(res.end_to_end.count),
                }
                if hosted:  # over the whole run: every prediction the engine made
                    made = res.engine["engine"]["predictions"]  # type: ignore[index]
                    spent = hosted[0].view.model.spent_s
                    row["view_us_per_prediction"] = spent / max(1, made) * 1e6
                    row["frames"] = float(hosted[0].frames)
                rows[arm].append(row)
                print(f"  round {r + 1} {arm:8s} "
                      + "  ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    print("medians:")
    for arm, runs in rows.items():
        keys = runs[0].keys()
        print(f"  {arm:8s} " + "  ".join(
            f"{k} {float(np.median([run[k] for run in runs])):.3f}" for k in keys))
    off = float(np.median([run["gateway_added_p99_ms"] for run in rows["off"]]))
    on = float(np.median([run["gateway_added_p99_ms"] for run in rows["browser"]]))
    print(f"  gateway-added p99: {off:.2f} ms without a browser, {on:.2f} ms with one "
          f"({on / off - 1:+.1%})")


if __name__ == "__main__":
    main()
