"""Does a browser on the live view move the gateway-added latency? Interleaved A/B in one run.

    python bench/webview_latency.py [--devices 100] [--duration 300] [--phase 10] [--broker URL]

One ``streamfuse bench`` run (a real broker; publisher, subscriber and relay processes; the
gateway's own :class:`~streamfuse.gateway.server.Server` in this process, the view attached to
it throughout). Within the run a browser-like stream (``curl -N`` on ``/events``, a separate
process, the view's default 4 frames a second on the first device) is switched on and off
every ``--phase`` seconds: off, on, off, on, ... Phase by phase:

- the gateway-added p99: the p99 of the end-to-end latencies of the predictions received in
  the phase minus the p99 of the broker round trips received in it (as ``streamfuse bench``
  computes it over a whole run); the first ``--guard`` seconds of a phase are left out (the
  stream connecting or closing), and so is the warm-up (``--warmup``);
- the gateway process's CPU share and the view's own time (its hooks and frames).

Each ``on`` phase is compared with the mean of the two ``off`` phases around it, so a load
that drifts linearly over the three cancels, giving one relative difference per ``on`` phase.
The report is the median of those differences with a 95 % bootstrap interval (the ``on``
phases resampled): on a noisy host the interval is wide rather than the answer wrong. "The
view changes the p99 by less than 10 %" is shown only when the whole interval lies within
+-10 %.

A p99 over one phase rests on its few slowest predictions, so the per-phase comparison is
wide. The report therefore also pools every receipt of each arm (all ``on`` phases against all
``off`` phases, the same guard) and gives the change of the pooled p99 and p50 with a 95 %
cluster-bootstrap interval that resamples whole phases; interleaving keeps slow drifts of the
host's load out of the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamfuse.gateway.server import Server, bench_server  # noqa: E402
from streamfuse.gateway.webview import WebView  # noqa: E402
from streamfuse.latency.orchestration import broker_for, run_bench  # noqa: E402
from streamfuse.latency.settings import BenchSettings  # noqa: E402


@dataclass(slots=True)
class Phase:
    """One stretch of the run with the browser stream off or on."""

    on: bool
    start: float  # time.time()
    end: float
    cpu_s: float  # this process's CPU time over the phase (the gateway, the view, curl's pipe)
    view_s: float  # the view's own time (ViewModel.spent_s) over the phase
    frames: int


class Toggled:
    """The bench's gateway with the view attached, a browser stream switched on and off."""

    def __init__(self, settings: BenchSettings, phase_s: float) -> None:
        base = bench_server(settings)
        self.view = WebView(port=0)
        self.server = Server(
            base.config, clock=time.time, handle_signals=False,
            on_prediction=self.view.on_prediction,
        )  # fmt: skip
        self.view.attach(lambda: self.server.gateway)
        self.should_exit = self.server.should_exit
        self.started = self.server.started
        self.config = self.server.config
        self.phase_s = phase_s
        self.phases: list[Phase] = []

    @property
    def gateway(self) -> Any:
        return self.server.gateway

    async def serve(self) -> int:
        async with self.view.running() as url:
            toggler = asyncio.create_task(self._toggle(url), name="bench.toggle")
            try:
                return await self.server.serve()
            finally:
                toggler.cancel()
                await asyncio.gather(toggler, return_exceptions=True)

    async def _toggle(self, url: str) -> None:
        on = False
        model = self.view.model
        while True:
            start, cpu, spent = time.time(), time.process_time(), model.spent_s
            curl = None
            if on:
                curl = subprocess.Popen(["curl", "-sN", "-o", "/dev/null", f"{url}events"])
            frames = 0
            try:
                await asyncio.sleep(self.phase_s)
                frames = sum(c.frames for c in model.clients)
            finally:
                if curl is not None:
                    curl.terminate()
                    await asyncio.to_thread(curl.wait)
            self.phases.append(
                Phase(on, start, time.time(), time.process_time() - cpu, model.spent_s - spent,
                      frames)
            )  # fmt: skip
            on = not on


def added_ms(
    samples: dict[str, np.ndarray], lo: float, hi: float, q: float = 99
) -> tuple[float, int]:
    """Gateway-added ``q``-th percentile (ms: end to end minus the broker round trip) over
    receipts in ``[lo, hi)``, and how many predictions it saw."""
    e2e, trips = samples["end_to_end"], samples["round_trip"]
    a = e2e[(e2e[:, 0] >= lo) & (e2e[:, 0] < hi), 1]
    b = trips[(trips[:, 0] >= lo) & (trips[:, 0] < hi), 1]
    if len(a) < 100 or len(b) < 100:
        return float("nan"), len(a)
    return float(np.percentile(a, q) - np.percentile(b, q)) * 1e3, len(a)


def triples(rows: list[tuple], col: int) -> tuple[list[float], list[float]]:
    """Each ``on`` phase's figure (column ``col``) against the mean of the ``off`` phases
    before and after it: relative changes and differences."""
    rel, diff = [], []
    for i in range(1, len(rows) - 1):
        here, before, after = rows[i], rows[i - 1], rows[i + 1]
        if here[0].on and not before[0].on and not after[0].on:
            base = (before[col] + after[col]) / 2
            if np.isfinite(here[col]) and np.isfinite(base) and base > 0:
                rel.append(here[col] / base - 1)
                diff.append(here[col] - base)
    return rel, diff


def phase_samples(
    samples: dict[str, np.ndarray], lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray]:
    """End-to-end latencies and broker round trips (s) received in ``[lo, hi)``."""
    e2e, trips = samples["end_to_end"], samples["round_trip"]
    return (e2e[(e2e[:, 0] >= lo) & (e2e[:, 0] < hi), 1],
            trips[(trips[:, 0] >= lo) & (trips[:, 0] < hi), 1])  # fmt: skip


def pooled_change(
    on: list[tuple[np.ndarray, np.ndarray]], off: list[tuple[np.ndarray, np.ndarray]],
    rng: np.random.Generator, q: float = 99, n: int = 2_000,
) -> tuple[float, float, float, float, float]:
    """The gateway-added ``q``-th percentile over all ``on`` phases' receipts pooled against
    all ``off`` phases' (ms each), the relative change, and a 95 % interval for it from a
    cluster bootstrap that resamples whole phases (a phase's receipts are not independent)."""

    def added(parts: list[tuple[np.ndarray, np.ndarray]]) -> float:
        a = np.concatenate([p[0] for p in parts])
        b = np.concatenate([p[1] for p in parts])
        return float(np.percentile(a, q) - np.percentile(b, q)) * 1e3

    a_on, a_off = added(on), added(off)
    rel = []
    for _ in range(n):
        x = added([on[i] for i in rng.integers(0, len(on), len(on))])
        y = added([off[i] for i in rng.integers(0, len(off), len(off))])
        if y > 0:
            rel.append(x / y - 1)
    lo, hi = np.percentile(rel, (2.5, 97.5))
    return a_on, a_off, a_on / a_off - 1, float(lo), float(hi)


def bootstrap_median(values: np.ndarray, rng: np.random.Generator, n: int = 10_000) -> tuple:
    """The median of ``values`` and a 95 % percentile-bootstrap interval for it."""
    draws = rng.choice(values, size=(n, len(values)), replace=True)
    lo, hi = np.percentile(np.median(draws, axis=1), (2.5, 97.5))
    return float(np.median(values)), float(lo), float(hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--duration", type=float, default=300.0, help="seconds of the run")
    ap.add_argument("--phase", type=float, default=10.0, help="seconds per on/off phase")
    ap.add_argument("--guard", type=float, default=1.0, help="seconds left out after a switch")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds left out at the start")
    ap.add_argument("--broker", default=None, help="mqtt://host:port (default: a private one)")
    args = ap.parse_args()
    if shutil.which("curl") is None:
        sys.exit("the browser arm streams with curl; install it (Debian: apt-get install curl)")
    load0 = os.getloadavg()
    with broker_for(args.broker, "auto") as (url, kind, broker_pid):
        print(f"{args.devices} devices, {args.duration:.0f} s, phases of {args.phase:g} s "
              f"(first {args.guard:g} s of each left out), broker {kind} {url}; "
              f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}", flush=True)
        settings = BenchSettings(devices=args.devices, duration=args.duration, broker_url=url,
                                 broker_pid=broker_pid, prefix=f"sfwv{uuid.uuid4().hex[:6]}",
                                 warmup_s=args.warmup)
        hosted: list[Toggled] = []

        def host(s: BenchSettings) -> Any:
            hosted.append(Toggled(s, args.phase))
            return hosted[-1]

        res = asyncio.run(run_bench(settings, host=host, keep_samples=True))
    load1 = os.getloadavg()
    assert res.samples is not None
    e2e = res.samples["end_to_end"]
    t_first, t_last = float(e2e[:, 0].min()), float(e2e[:, 0].max())
    rows = []
    for ph in hosted[0].phases:
        lo, hi = ph.start + args.guard, ph.end
        if lo < t_first + args.warmup or hi > t_last:
            continue  # warm-up, or the fleet had stopped
        p99, n = added_ms(res.samples, lo, hi, 99)
        p50, _ = added_ms(res.samples, lo, hi, 50)
        wall = ph.end - ph.start
        rows.append((ph, p99, n, ph.cpu_s / wall, ph.view_s / wall * 1e3, p50))
        print(f"  {'on ' if ph.on else 'off'} {ph.start - t_first:7.1f} s  gateway-added p99 "
              f"{p99:7.2f} ms, p50 {p50:6.2f} ms over {n:5d} predictions  CPU "
              f"{ph.cpu_s / wall:5.1%}  view {ph.view_s / wall * 1e3:5.2f} ms/s  "
              f"frames {ph.frames}")
    rel, diff = triples(rows, 1)
    print(f"load average after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} (2 cores)")
    for arm in (False, True):
        sel = [r for r in rows if r[0].on is arm and np.isfinite(r[1])]
        if sel:
            print(f"  {'browser' if arm else 'no browser':10s}: {len(sel)} phases, median "
                  f"gateway-added p99 {np.median([r[1] for r in sel]):.2f} ms, p50 "
                  f"{np.median([r[5] for r in sel]):.2f} ms, CPU "
                  f"{np.median([r[3] for r in sel]):.1%}, view "
                  f"{np.median([r[4] for r in sel]):.2f} ms/s")
    if len(rel) < 3:
        print("too few complete off/on/off triples for an interval; run longer")
        return
    rng = np.random.default_rng(0)
    m, lo, hi = bootstrap_median(np.asarray(rel), rng)
    dm, dlo, dhi = bootstrap_median(np.asarray(diff), rng)
    verdict = (
        "within +-10 %" if -0.10 < lo and hi < 0.10
        else "not resolved at 10 % (interval too wide)" if lo < 0.10 < hi or lo < -0.10 < hi
        else "outside 10 %"
    )
    print(f"browser on vs the off phases around it, {len(rel)} triples: median change of the "
          f"gateway-added p99 {m:+.1%} (95 % bootstrap interval {lo:+.1%} .. {hi:+.1%}); "
          f"{dm:+.2f} ms ({dlo:+.2f} .. {dhi:+.2f}); {verdict}")
    rel50, diff50 = triples(rows, 5)
    if len(rel50) >= 3:
        m, lo, hi = bootstrap_median(np.asarray(rel50), rng)
        dm, dlo, dhi = bootstrap_median(np.asarray(diff50), rng)
        print(f"  the same for the gateway-added p50: {m:+.1%} ({lo:+.1%} .. {hi:+.1%}); "
              f"{dm:+.2f} ms ({dlo:+.2f} .. {dhi:+.2f})")
    # all receipts of each arm pooled: a p99 over ~50x more predictions than one phase's
    parts = {arm: [phase_samples(res.samples, r[0].start + args.guard, r[0].end)
                   for r in rows if r[0].on is arm] for arm in (False, True)}  # fmt: skip
    for q in (99, 50):
        a_on, a_off, rel_q, lo, hi = pooled_change(parts[True], parts[False], rng, q)
        verdict = (
            "within +-10 %" if -0.10 < lo and hi < 0.10
            else "outside 10 %" if lo > 0.10 or hi < -0.10
            else "not resolved at 10 % (interval too wide)"
        )
        print(f"pooled over {len(parts[True])} browser and {len(parts[False])} no-browser "
              f"phases: gateway-added p{q} {a_on:.2f} ms with the browser, {a_off:.2f} ms "
              f"without: {rel_q:+.1%} (95 % phase-bootstrap interval {lo:+.1%} .. {hi:+.1%})"
              + (f"; {verdict}" if q == 99 else ""))
    on_cpu = [r[3] for r in rows if r[0].on]
    off_cpu = [r[3] for r in rows if not r[0].on]
    view = [r[4] for r in rows if r[0].on]
    print(f"  the view's own time with the browser on: median {np.median(view):.2f} ms/s "
          f"against the gateway process's {np.median(on_cpu) * 1e3:.0f} ms/s of CPU "
          f"({np.median(view) / (np.median(on_cpu) * 1e3):.1%}); CPU share on/off "
          f"{np.median(on_cpu):.1%} / {np.median(off_cpu):.1%}")


if __name__ == "__main__":
    main()
