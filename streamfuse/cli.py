"""The ``streamfuse`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from . import __version__

log = logging.getLogger("streamfuse.cli")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _positive(kind: type = float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamfuse",
        description="Streaming wearable-sensor fusion: ECG, EEG and accelerometer streams over "
        "MQTT, aligned, fused early/intermediate/late, classified by online models.",
    )
    parser.add_argument("--version", action="version", version=f"streamfuse {__version__}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging threshold (default: WARNING)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        help="run simulated devices through a private broker and the gateway, with a live view",
        description="Start a private MQTT broker on a free loopback port (Mosquitto if installed, "
        "else amqtt), simulated wearables and the gateway; show a live view, then a summary.",
    )
    demo.add_argument("--devices", type=_positive(int), default=8, help="simulated devices (8)")
    demo.add_argument("--duration", type=_positive(), default=30.0, help="seconds to run (30)")
    demo.add_argument("--speed", type=_positive(), default=1.0, help="simulation speed x real time")
    demo.add_argument("--seed", type=int, default=0, help="simulation seed (0)")
    demo.add_argument("--model", default="logreg", help="online model (logreg)")
    demo.add_argument(
        "--broker",
        default=None,
        metavar="URL",
        help="use this broker (mqtt://host:port) instead of starting a private one",
    )
    demo.add_argument(
        "--broker-kind",
        choices=["auto", "mosquitto", "amqtt"],
        default="auto",
        help="which private broker to start (auto: Mosquitto if on PATH, else amqtt)",
    )
    demo.add_argument("--no-live", action="store_true", help="no live view, only the summary")
    demo.add_argument("--json", metavar="FILE", help="also write the summary as JSON")

    gw = sub.add_parser(
        "gateway",
        help="run the gateway daemon against a broker",
        description="Subscribe to {prefix}/+/+ on the broker, fuse and classify every device's "
        "windows, publish predictions on {prefix}/<device>/prediction.",
    )
    gw.add_argument("--broker", default="mqtt://127.0.0.1:1883", metavar="URL")
    gw.add_argument("--prefix", default="streamfuse")
    gw.add_argument("--model", default="logreg")
    gw.add_argument("--client-id", default=None)
    gw.add_argument("--duration", type=_positive(), default=None, help="stop after N seconds")

    sim = sub.add_parser(
        "simulate",
        help="publish simulated wearables to a broker",
        description="Simulated ECG + EEG + accelerometer devices publishing 100 ms chunks and "
        "their true state on the label topic.",
    )
    sim.add_argument("--broker", default="mqtt://127.0.0.1:1883", metavar="URL")
    sim.add_argument("--prefix", default="streamfuse")
    sim.add_argument("--devices", type=_positive(int), default=8)
    sim.add_argument("--duration", type=_positive(), default=30.0)
    sim.add_argument("--speed", type=_positive(), default=1.0)
    sim.add_argument("--seed", type=int, default=0)

    demo.set_defaults(run=_run_demo)
    gw.set_defaults(run=lambda a: asyncio.run(_gateway(a)))
    sim.set_defaults(run=lambda a: asyncio.run(_simulate(a)))
    for module in COMMAND_MODULES:
        import importlib

        importlib.import_module(module).register(sub)
    return parser


#: modules that add their own subcommands: each has ``register(subparsers)``, which adds a parser
#: whose ``run`` default takes the parsed arguments and returns an exit code.
COMMAND_MODULES: list[str] = ["streamfuse.replay.commands"]


def _run_demo(args: argparse.Namespace) -> int:
    from .gateway.demo import run_demo

    return asyncio.run(run_demo(args))


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    hits = {"n": 0}

    def on_signal() -> None:
        hits["n"] += 1
        if hits["n"] > 1:
            log.warning("second signal: exiting at once")
            raise SystemExit(EXIT_INTERRUPTED)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)


async def _gateway(args: argparse.Namespace) -> int:
    import time

    from .gateway.broker import parse_broker_url

    parse_broker_url(args.broker)  # fail fast, before compiling anything
    from .config import EngineConfig
    from .engine import Engine
    from .gateway.app import Gateway, GatewaySettings
    from .kernels import warmup

    warmup()
    engine = Engine(EngineConfig(model=args.model), prefix=args.prefix, timer=time.perf_counter)
    gateway = Gateway(
        engine,
        GatewaySettings(broker_url=args.broker, prefix=args.prefix, client_id=args.client_id),
    )
    stop = asyncio.Event()
    _install_signals(stop)
    if args.duration:
        asyncio.get_running_loop().call_later(args.duration, stop.set)
    await gateway.run(stop)
    print(f"gateway stopped: {gateway.published} predictions published; {engine.stats()}")
    return EXIT_OK


async def _simulate(args: argparse.Namespace) -> int:
    from simulators.device import Fleet
    from simulators.publisher import run_fleet

    stop = asyncio.Event()
    _install_signals(stop)
    fleet = Fleet(args.devices, seed=args.seed)
    await run_fleet(
        args.broker,
        fleet,
        prefix=args.prefix,
        speed=args.speed,
        duration=args.duration,
        stop_event=stop,
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from .errors import StreamfuseError

    try:
        return int(args.run(args))
    except StreamfuseError as exc:
        print(f"streamfuse: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
