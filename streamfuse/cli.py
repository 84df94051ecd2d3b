"""The ``streamfuse`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from . import __version__
from .argtypes import positive_float, positive_int

if TYPE_CHECKING:  # imported lazily at run time: the CLI starts fast
    from .gateway.app import GatewaySettings
    from .gateway.settings import DaemonConfig

log = logging.getLogger("streamfuse.cli")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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
    demo.add_argument("--devices", type=positive_int, default=8, help="simulated devices (8)")
    demo.add_argument("--duration", type=positive_float, default=30.0, help="seconds to run (30)")
    demo.add_argument(
        "--speed", type=positive_float, default=1.0, help="simulation speed x real time"
    )
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
        "windows, publish predictions on {prefix}/<device>/prediction. Settings come from "
        "--config (TOML, see deploy/gateway.toml), then STREAMFUSE_<SECTION>_<KEY> environment "
        "variables (e.g. STREAMFUSE_MQTT_PASSWORD), then these flags. SIGTERM/SIGINT drain and "
        "checkpoint; a second signal exits at once (code 130).",
    )
    gw.add_argument("--config", default=None, metavar="FILE", help="TOML settings file")
    gw.add_argument("--broker", default=None, metavar="URL", help="mqtt[s]://[user@]host[:port]")
    gw.add_argument("--prefix", default=None)
    gw.add_argument("--model", default=None)
    gw.add_argument("--client-id", default=None, help="fixed id: persistent MQTT session")
    gw.add_argument("--username", default=None)
    gw.add_argument("--password-file", default=None, metavar="FILE")
    gw.add_argument("--checkpoint-dir", default=None, metavar="DIR")
    gw.add_argument("--checkpoint-interval", type=positive_float, default=None, metavar="S")
    gw.add_argument("--idle-evict", type=positive_float, default=None, metavar="S")
    gw.add_argument(
        "--max-queued",
        type=positive_int,
        default=None,
        metavar="N",
        help="incoming queue size; beyond it messages are shed and counted",
    )
    gw.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus /metrics on this port (0: off)",
    )
    gw.add_argument("--drain-timeout", type=positive_float, default=None, metavar="S")
    gw.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="json: one structured JSON object per log line",
    )
    gw.add_argument("--duration", type=positive_float, default=None, help="stop after N seconds")

    sim = sub.add_parser(
        "simulate",
        help="publish simulated wearables to a broker",
        description="Simulated ECG + EEG + accelerometer devices publishing 100 ms chunks and "
        "their true state on the label topic.",
    )
    sim.add_argument("--broker", default="mqtt://127.0.0.1:1883", metavar="URL")
    sim.add_argument("--prefix", default="streamfuse")
    sim.add_argument("--devices", type=positive_int, default=8)
    sim.add_argument("--duration", type=positive_float, default=30.0)
    sim.add_argument(
        "--speed",
        type=positive_float,
        default=1.0,
        help="x real time (1). Device clocks then run fast too, so a gateway on the wall clock "
        "sees them drift: use speed 1 against a real gateway",
    )
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument(
        "--bundle",
        action="store_true",
        help="each device sends its chunks of a period as one message on {prefix}/{device}/bundle",
    )

    demo.set_defaults(run=_run_demo)
    gw.set_defaults(run=lambda a: asyncio.run(_gateway(a)))
    sim.set_defaults(run=lambda a: asyncio.run(_simulate(a)))
    for module in COMMAND_MODULES:
        import importlib

        importlib.import_module(module).register(sub)
    return parser


#: modules that add their own subcommands: each has ``register(subparsers)``, which adds a parser
#: whose ``run`` default takes the parsed arguments and returns an exit code.
COMMAND_MODULES: list[str] = ["streamfuse.replay.commands", "streamfuse.latency.commands"]


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


def _gateway_settings(args: argparse.Namespace) -> tuple[DaemonConfig, GatewaySettings]:
    """The validated daemon config and the :class:`GatewaySettings` built from it."""
    from .gateway import settings as gs
    from .gateway.app import GatewaySettings

    cfg = gs.load(
        args.config,
        overrides={
            "mqtt.broker": args.broker,
            "mqtt.prefix": args.prefix,
            "mqtt.client_id": args.client_id,
            "mqtt.username": args.username,
            "mqtt.password_file": args.password_file,
            "engine.model": args.model,
            "checkpoint.dir": args.checkpoint_dir,
            "checkpoint.interval_s": args.checkpoint_interval,
            "resources.idle_evict_s": args.idle_evict,
            "mqtt.max_queued_incoming": args.max_queued,
            "metrics.port": args.metrics_port,
            "shutdown.drain_timeout_s": args.drain_timeout,
        },
    )
    m, r = cfg.mqtt, cfg.resources
    settings = GatewaySettings(
        broker_url=m.broker,
        prefix=m.prefix,
        client_id=m.client_id or None,
        qos=m.qos,
        publish_qos=m.publish_qos,
        backoff_initial_s=m.backoff_initial_s,
        backoff_max_s=m.backoff_max_s,
        username=m.username or None,
        password=cfg.password(),
        tls_ca_file=m.ca_file or None,
        tls_cert_file=m.cert_file or None,
        tls_key_file=m.key_file or None,
        tls_insecure=m.tls_insecure,
        keepalive_s=m.keepalive_s,
        max_queued_incoming=m.max_queued_incoming,
        max_outbox=r.max_outbox,
        checkpoint_dir=cfg.checkpoint.dir or None,
        checkpoint_interval_s=cfg.checkpoint.interval_s,
        checkpoint_keep=cfg.checkpoint.keep,
        idle_evict_s=r.idle_evict_s,
        evict_every_s=r.evict_every_s,
        metrics_port=cfg.metrics.port or None,
        metrics_host=cfg.metrics.host,
        metrics_refresh_s=cfg.metrics.refresh_s,
        drain_timeout_s=cfg.shutdown.drain_timeout_s,
    )
    return cfg, settings


#: seconds past the drain timeout after which a stuck shutdown is cut short
SHUTDOWN_GRACE_S = 10.0
EXIT_STUCK = 3


def _shutdown_stuck(drain_s: float) -> None:
    import faulthandler
    import os

    log.error(
        "shutdown still running %.0f s after the signal (drain timeout %.0f s): dumping stacks "
        "and exiting with code %d",
        drain_s + SHUTDOWN_GRACE_S,
        drain_s,
        EXIT_STUCK,
    )
    faulthandler.dump_traceback(all_threads=True)
    logging.shutdown()
    os._exit(EXIT_STUCK)


def _install_gateway_signals(stop: asyncio.Event, drain_s: float) -> None:
    """First SIGINT/SIGTERM: drain and checkpoint; the second: exit at once with 130."""
    import os

    loop = asyncio.get_running_loop()
    hits = {"n": 0}

    def on_signal(sig: signal.Signals) -> None:
        hits["n"] += 1
        if hits["n"] > 1:
            log.warning("second %s: exiting at once without draining", sig.name)
            logging.shutdown()
            os._exit(EXIT_INTERRUPTED)
        log.warning(
            "%s: draining and checkpointing (up to %.1f s); send it again to exit at once",
            sig.name,
            drain_s,
        )
        stop.set()
        # a daemon must stop within a bound even if something in the shutdown path hangs
        # (a broker that stops reading, a stuck HTTP client): a watchdog thread, independent of
        # the event loop, dumps every stack for the post-mortem and exits
        watchdog = threading.Timer(drain_s + SHUTDOWN_GRACE_S, _shutdown_stuck, (drain_s,))
        watchdog.daemon = True
        watchdog.start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)


async def _gateway(args: argparse.Namespace) -> int:
    import time

    if args.log_format == "json":
        from .gateway.logs import use_json_logs

        use_json_logs()
    cfg, settings = _gateway_settings(args)  # fail fast, before compiling anything
    from . import Engine, warm_up
    from .gateway.app import Gateway

    log.info("compiled the engine's kernels in %.1f s", warm_up(cfg.engine_config()))
    engine = Engine(cfg.engine_config(), prefix=settings.prefix, timer=time.perf_counter)
    gateway = Gateway(engine, settings)
    stop = asyncio.Event()
    _install_gateway_signals(stop, settings.drain_timeout_s)
    if args.duration:
        asyncio.get_running_loop().call_later(args.duration, stop.set)
    log.info("gateway starting with settings from %s", cfg.source)
    await gateway.run(stop)
    engine = gateway.engine
    log.info(
        "gateway stopped: %d messages processed, %d predictions published, shed %s, %s",
        gateway.processed,
        gateway.published,
        dict(gateway.inbox.shed),
        engine.stats(),
    )
    print(
        f"gateway stopped: {gateway.processed} messages, {gateway.published} predictions "
        f"published, shed {dict(gateway.inbox.shed)}"
    )
    return EXIT_OK


async def _simulate(args: argparse.Namespace) -> int:
    import time

    from simulators.device import Fleet
    from simulators.faults import FaultProfile
    from simulators.publisher import run_fleet

    stop = asyncio.Event()
    _install_signals(stop)
    # device clocks read wall-clock time, as NTP-synced wearables would
    fleet = Fleet(
        args.devices,
        seed=args.seed,
        faults=FaultProfile(clock_offset_s=time.time()),
        bundle=args.bundle,
    )
    stats = await run_fleet(
        args.broker,
        fleet,
        prefix=args.prefix,
        speed=args.speed,
        duration=args.duration,
        stop_event=stop,
    )
    print(
        f"published {stats.messages} messages ({stats.bytes} bytes; {dict(stats.by_kind)}) "
        f"covering {stats.sim_s:.1f} simulated s in {stats.wall_s:.1f} s"
        + (" - stopped early" if stats.stopped else "")
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
