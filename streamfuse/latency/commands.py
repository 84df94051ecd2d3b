"""The ``bench`` subcommand (registered by :mod:`streamfuse.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from ..argtypes import bounded
from ..exits import EXIT_INTERRUPTED, EXIT_OK
from ..learn.names import MODEL_NAMES
from .settings import BenchSettings

if TYPE_CHECKING:
    from .orchestration import GatewayHost

log = logging.getLogger("streamfuse.latency.commands")
T = TypeVar("T")


_count = bounded(int, 1, strict=False, what="a whole number of at least 1")
_seconds = bounded(float, 2, strict=False, what="at least 2 s (one window)")
_warmup = bounded(float, 0, strict=False, what="0 s or more")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` to the ``streamfuse`` command line."""
    p = sub.add_parser(
        "bench",
        help="end-to-end latency benchmark: simulated fleet -> broker -> gateway -> subscriber",
        description="Publish N simulated devices at real rates (separate process), run the "
        "gateway here, receive predictions in a third process; report end-to-end and per-stage "
        "latency (HDR histograms) beside the broker's own time for the same payloads: one hop "
        "(pub->sub, the floor) and the round trip through a relay that republishes them "
        "unchanged (pub->broker->relay->broker->sub, a fourth process): end to end crosses the "
        "broker twice too, so the gateway-added p99 is taken over the round trip.",
    )
    p.add_argument("--devices", type=_count, default=100, help="simulated devices (100)")
    p.add_argument("--duration", type=_seconds, default=30.0, help="seconds per run (30)")
    p.add_argument("--broker", default=None, metavar="URL", help="use this broker")
    p.add_argument(
        "--broker-kind",
        choices=["auto", "mosquitto", "amqtt"],
        default="auto",
        help="private broker to start when --broker is not given (auto: Mosquitto if installed)",
    )
    p.add_argument(
        "--ramp",
        action="store_true",
        help="double devices from --devices until p99 >= --target-ms, then bisect",
    )
    p.add_argument("--ramp-limit", type=_count, default=4000, help="stop the ramp here (4000)")
    p.add_argument("--target-ms", type=float, default=50.0, help="p99 target of the ramp (50)")
    p.add_argument(
        "--floor-devices",
        type=_count,
        default=20,
        help="devices whose data the subscriber also receives (one-hop floor) and "
        "the relay echoes to it (round trip) (20)",
    )
    p.add_argument(
        "--bundle",
        action="store_true",
        help="each device publishes its chunks of a period as one bundle message "
        "({prefix}/{device}/bundle) instead of one message per modality",
    )
    p.add_argument(
        "--lockstep",
        action="store_true",
        help="every device on the same chunk phase (the whole fleet's chunks at the "
        "same instants: the worst case); default: each device its own seeded phase",
    )
    p.add_argument(
        "--warmup",
        type=_warmup,
        default=0.0,
        metavar="S",
        help="time the windows of the first S seconds apart (the 'startup' row: "
        "the whole fleet connecting at once) and leave them out of every other "
        "figure, the ramp's included (0: time everything as one)",
    )
    p.add_argument("--seed", type=int, default=0, help="simulation seed")
    p.add_argument("--model", default="logreg", choices=MODEL_NAMES, help="online model")
    p.add_argument("--out", metavar="FILE", help="write the JSON report here")
    p.add_argument("--plot", metavar="FILE", help="write the PNG plot here")
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="cProfile the gateway while the fleet publishes (pstats file)",
    )
    p.add_argument(
        "--cluster",
        action="store_true",
        help="ramp the same load through the single gateway process (the baseline), "
        "then a fleet of 1 and 2 shard-owner actors on a local Ray (extra: "
        "streamfuse[cluster]); report each one's sustained devices and the ratio",
    )
    p.add_argument(
        "--shards", type=_count, default=8, metavar="S", help="shards of the --cluster fleet (8)"
    )
    # run: set by streamfuse.cli, which hands run() the gateway to measure (latency/ does not
    # import the gateway shell)


async def _interruptible(work: Callable[[asyncio.Event], Awaitable[T]]) -> tuple[T, bool]:
    """``work(stop)`` with the first Ctrl-C (SIGINT) setting ``stop``: the bench stops its
    processes and reports what it measured so far; a second Ctrl-C interrupts at once
    (KeyboardInterrupt). Returns what ``work`` returned and whether it was stopped."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_sigint() -> None:
        print("\nstreamfuse bench: stopping, then reporting what was measured so far "
              "(Ctrl-C again to quit at once)", file=sys.stderr, flush=True)  # fmt: skip
        stop.set()
        loop.remove_signal_handler(signal.SIGINT)  # the next one raises KeyboardInterrupt

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    try:
        return await work(stop), stop.is_set()
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _nothing_measured() -> int:
    print("streamfuse bench: interrupted before the fleet began publishing: nothing was "
          "measured", file=sys.stderr)  # fmt: skip
    return EXIT_INTERRUPTED


def _settings(
    args: argparse.Namespace, url: str, prefix: str, broker_pid: int | None, shards: int = 0
) -> BenchSettings:
    """The bench's settings from its command line, on broker ``url`` under ``prefix``."""
    return BenchSettings(
        devices=args.devices,
        duration=args.duration,
        broker_url=url,
        prefix=prefix,
        broker_pid=broker_pid,
        seed=args.seed,
        model=args.model,
        floor_devices=args.floor_devices,
        bundle=args.bundle,
        lockstep=args.lockstep,
        warmup_s=args.warmup,
        shards=shards,
    )


def run(args: argparse.Namespace, host: GatewayHost) -> int:
    """``streamfuse bench``: one run (or the ramp) against ``host``'s gateway; print, write.
    Ctrl-C stops it within a second or two and reports what was measured until then (exit
    code 130)."""
    from .interrupt import BenchInterrupted
    from .orchestration import broker_for, run_bench, run_ramp
    from .report import format_ramp, format_table, plot, write_json

    prefix = f"sfbench{uuid.uuid4().hex[:6]}"
    profiler = None
    if args.profile:
        import cProfile
        import time

        profiler = cProfile.Profile(time.process_time)  # CPU time: preemption is not ours
    with broker_for(args.broker, args.broker_kind) as (url, kind, broker_pid):
        settings = _settings(args, url, prefix, broker_pid)
        ramp_docs: list[dict[str, object]] = []
        if args.ramp:
            (runs, best), stopped = asyncio.run(_interruptible(
                lambda stop: run_ramp(settings, host=host, start=args.devices,
                                      limit=args.ramp_limit, target_ms=args.target_ms, stop=stop)
            ))  # fmt: skip
            if not runs:
                return _nothing_measured()
            for r in runs:
                r.broker_kind = kind
            ramp_docs = [r.to_json() for r in runs]
            held = [r for r in runs if r.settings.devices == best] or runs[:1]
            main = held[0].to_json()
            main["ramp"] = {
                "largest_sustained_devices": best,
                "target_p99_ms": args.target_ms,
                "steps": [{k: v for k, v in d.items() if k != "hdr"} for d in ramp_docs],
            }
        else:
            try:
                result, stopped = asyncio.run(_interruptible(
                    lambda stop: run_bench(settings, host=host, profiler=profiler, stop=stop)
                ))  # fmt: skip
            except BenchInterrupted:
                return _nothing_measured()
            result.broker_kind = kind
            main = result.to_json()
    print(format_table(main))
    print(f"publisher mode: {settings.mode}")
    if args.ramp:
        print()
        print(format_ramp(ramp_docs, main["ramp"]["largest_sustained_devices"], args.target_ms))  # type: ignore[index]
    if args.out:
        write_json(args.out, main)
        print(f"wrote {args.out}")
    if args.plot:
        plot(args.plot, main, ramp_docs)
        print(f"wrote {args.plot}")
    if profiler is not None:
        profiler.dump_stats(args.profile)
        print(f"wrote {args.profile}")
    return EXIT_INTERRUPTED if stopped else EXIT_OK


def run_cluster(args: argparse.Namespace, hosts: dict[int, GatewayHost]) -> int:
    """``streamfuse bench --cluster``: the ramp through each fleet of ``hosts`` (owner count
    -> builder; 0: the single-process gateway without shards, the baseline) on one broker;
    print each one's sustained devices and their ratio."""
    import json
    import os

    from .orchestration import broker_for, run_ramp
    from .report import format_ramp

    load = [os.getloadavg()]
    found: dict[int, dict[str, object]] = {}
    with broker_for(args.broker, args.broker_kind) as (url, kind, broker_pid):
        for actors, host in hosts.items():
            prefix = f"sfbench{uuid.uuid4().hex[:6]}"
            settings = _settings(args, url, prefix, broker_pid, args.shards if actors else 0)
            runs, best = asyncio.run(
                run_ramp(
                    settings,
                    host=host,
                    start=args.devices,
                    limit=args.ramp_limit,
                    target_ms=args.target_ms,
                )
            )
            docs = [r.to_json() for r in runs]
            print(f"\n{_fleet_name(actors, args.shards)}, broker {kind}:")
            print(format_ramp(docs, best, args.target_ms))
            found[actors] = {
                "sustained_devices": best,
                "steps": [{k: v for k, v in d.items() if k != "hdr"} for d in docs],
            }
            load.append(os.getloadavg())
    counts = sorted(n for n in found if n)
    print()
    for n in sorted(found):
        print(
            f"{_fleet_name(n, args.shards)}: {found[n]['sustained_devices']} devices "
            f"sustained at p99 < {args.target_ms:g} ms"
        )
    ratio = None
    if len(counts) > 1 and found[counts[0]]["sustained_devices"]:
        ratio = found[counts[-1]]["sustained_devices"] / found[counts[0]]["sustained_devices"]  # type: ignore[operator]
        print(f"scaling {counts[0]} -> {counts[-1]} actors: x{ratio:.2f}")
    print(
        f"all on this machine's {os.cpu_count()} cores, shared by the broker, the load "
        "generator (publisher, subscriber, relay processes) and the actors; load average "
        f"(1 min) before and after each fleet: {[round(x[0], 2) for x in load]}"
    )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "fleets": found,
                    "ratio": ratio,
                    "target_p99_ms": args.target_ms,
                    "cpus": os.cpu_count(),
                    "loadavg": load,
                },
                f,
                indent=2,
            )
        print(f"wrote {args.out}")
    return 0


def _fleet_name(actors: int, shards: int) -> str:
    if not actors:
        return "single gateway process (no Ray, no shards; the baseline)"
    return f"{actors} actor(s) on Ray, {shards} shards"
