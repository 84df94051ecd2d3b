"""``streamfuse demo``: private broker + simulated wearables + gateway + live view, one command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..engine import Engine
from ..errors import BrokerError
from ..mqtt.broker import EmbeddedBroker
from ..warmup import kernels_cached
from .app import Gateway
from .loading import from_mapping
from .monitor import Scoreboard, watch
from .server import Server
from .webview import WebView

log = logging.getLogger("streamfuse.demo")

PREFIX = "streamfuse"


def render(
    engine: Engine, gateway: Gateway, board: Scoreboard, elapsed: float, total: float
) -> Group:
    """The live view: one line of totals and one row per device."""
    stats = engine.stats()
    eng = stats["engine"]
    assert isinstance(eng, dict)
    head = Text.assemble(
        ("streamfuse demo ", "bold"),
        f"{elapsed:5.1f}/{total:.0f} s   windows {eng.get('windows', 0)}   "
        f"published {gateway.published}   learned {eng.get('learned', 0)}   "
        f"rejected {eng.get('rejected', 0)}\n",
        f"online accuracy {board.accuracy:6.1%} over {board.scored} windows "
        f"(majority class {board.majority_rate:6.1%})   "
        f"latency close->receipt p50 {board.latency_ms(50):6.2f} ms  "
        f"p99 {board.latency_ms(99):6.2f} ms",
    )
    table = Table(expand=False)
    for col in ("device", "windows", "latest", "p", "modalities", "accuracy"):
        table.add_column(col)
    for device in sorted(board.devices):
        b = board.devices[device]
        latest = b.latest or {}
        proba = latest.get("proba") or {}
        label = latest.get("label")
        p = proba.get(label, float("nan")) if isinstance(proba, dict) else float("nan")
        table.add_row(
            device,
            str(b.predictions),
            str(label),
            f"{p:.2f}",
            ",".join(latest.get("modalities", [])),
            f"{b.correct / b.scored:.0%}" if b.scored else "-",
        )
    return Group(head, table)


def summary(
    engine: Engine, gateway: Gateway, board: Scoreboard, elapsed: float
) -> dict[str, object]:
    return {
        "elapsed_s": round(elapsed, 2),
        "devices": len(board.devices),
        "predictions_received": sum(b.predictions for b in board.devices.values()),
        "predictions_published": gateway.published,
        "scored_windows": board.scored,
        "online_accuracy": board.accuracy,
        "majority_class_rate": board.majority_rate,
        "latency_ms": {"p50": board.latency_ms(50), "p99": board.latency_ms(99)},
        "engine": engine.stats(),
    }


async def _until_connected(server: Server, task: asyncio.Task[int], timeout: float) -> Gateway:
    """Wait for the gateway's first connection; a server that failed first raises its error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if task.done():
            task.result()  # raises what stopped it (e.g. a BrokerError)
            raise BrokerError(
                f"the demo's gateway could not connect to {server.config.mqtt.broker}; is a "
                "broker running there? (without --broker the demo starts a private one)"
            )
        gateway = server.gateway
        if gateway is not None and gateway.connected.is_set():
            return gateway
        await asyncio.sleep(0.05)
    raise BrokerError(f"the demo's gateway did not connect within {timeout:.0f} s")


async def run_demo(args: argparse.Namespace) -> int:
    from simulators.device import Fleet
    from simulators.faults import FaultProfile
    from simulators.publisher import run_fleet

    console = Console()
    async with contextlib.AsyncExitStack() as stack:
        if args.broker:
            url = args.broker
        else:
            broker = stack.enter_context(EmbeddedBroker(kind=args.broker_kind))
            url = broker.url
            console.print(f"private {broker.kind} broker on {url}")
        if not kernels_cached():
            console.print("compiling kernels (cached after the first run)...")
        # a random client id and a clean session: a demo leaves no session on the broker
        config = from_mapping(
            {"mqtt": {"broker": url, "prefix": PREFIX, "client_id": ""},
             "engine": {"model": args.model},
             # a broker given by URL that cannot be reached ends the demo soon, with a message
             **({"mqtt": {"broker": url, "prefix": PREFIX, "client_id": "",
                          "connect_timeout_s": 10.0}} if args.broker else {})},
            where="the demo's settings",
        )
        speed = args.speed
        wall0 = time.time()

        def clock() -> float:
            return wall0 + (time.time() - wall0) * speed

        view = None if args.no_ui else WebView.at(args.ui)
        server = Server(config, clock=clock, on_prediction=view.on_prediction if view else None)
        if view is not None:
            view.attach(lambda: server.gateway)
            view_url = await stack.enter_async_context(view.running(any_port=args.ui is None))
            console.print(f"live view: {view_url} (open it while the demo runs)")
        stop = server.should_exit  # set by SIGINT/SIGTERM, or by us at the end
        board = Scoreboard()
        done = asyncio.Event()
        ready = asyncio.Event()
        srv_task = asyncio.create_task(server.serve(), name="streamfuse[demo].gateway")
        mon_task: asyncio.Task[None] | None = None
        try:
            gateway = await _until_connected(server, srv_task, 60)
            engine = gateway.engine
            mon_task = asyncio.create_task(
                watch(url, PREFIX, board, done, ready=ready, clock=clock),
                name="streamfuse[demo].monitor",
            )
            await asyncio.wait_for(ready.wait(), 10)
        except BaseException:
            stop.set()
            done.set()
            await asyncio.gather(srv_task, *([mon_task] if mon_task else []),
                                 return_exceptions=True)
            raise
        # simulated devices keep wall-clock time (as NTP-synced wearables would); the gateway
        # clock runs at the simulation speed so that speed > 1 is not mistaken for drift
        t_base = time.time()
        sim_stop = asyncio.Event()  # the fleet's end; the gateway then closes the last windows
        fleet = Fleet(args.devices, seed=args.seed, faults=FaultProfile(clock_offset_s=t_base))
        sim_task = asyncio.create_task(
            run_fleet(
                url, fleet, prefix=PREFIX, speed=args.speed, duration=args.duration,
                stop_event=sim_stop,
            ),
            name="streamfuse[demo].simulators",
        )
        start = time.time()
        total = args.duration / args.speed
        live = None if args.no_live else Live(console=console, refresh_per_second=4)
        if live is not None:
            live.start()
        try:
            while not (stop.is_set() or sim_task.done()):
                if live is not None:
                    live.update(render(engine, gateway, board, time.time() - start, total))
                await asyncio.sleep(0.25)
            sim_stop.set()
            await sim_task
            # let the last windows close (lateness budget) and their predictions arrive
            await asyncio.sleep(engine.config.lateness_s + 0.5)
            if live is not None:
                live.update(render(engine, gateway, board, time.time() - start, total))
        finally:
            if live is not None:
                live.stop()
            done.set()
            stop.set()
            await asyncio.gather(srv_task, mon_task, return_exceptions=True)
        result = summary(engine, gateway, board, time.time() - start)
    console.print(
        f"\n[bold]summary[/bold]: {result['devices']} devices, "
        f"{result['predictions_received']} predictions received, online accuracy "
        f"{board.accuracy:.1%} over {board.scored} labelled windows "
        f"(majority class {board.majority_rate:.1%}), latency p50 {board.latency_ms(50):.2f} ms "
        f"p99 {board.latency_ms(99):.2f} ms, rejected {engine.counters.get('rejected', 0)}"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2, default=str)
    return 0
