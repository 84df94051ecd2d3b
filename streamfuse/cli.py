"""The ``streamfuse`` command line."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .argtypes import positive_float, positive_int, shard_count
from .exits import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE
from .learn.names import MODEL_NAMES

log = logging.getLogger("streamfuse.cli")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default: X)`` to an option's help unless its help already says it or there is
    no default worth saying (None, False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            default in (None, False, argparse.SUPPRESS)
            or not action.option_strings
            or "default" in text
            or f"({default})" in text
        ):
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamfuse",
        formatter_class=HelpFormatter,
        description="Streaming wearable-sensor fusion: ECG, EEG and accelerometer streams over "
        "MQTT, aligned, fused early/intermediate/late, classified by online models.",
    )
    parser.add_argument("--version", action="version", version=f"streamfuse {__version__}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=LOG_LEVELS,
        help="logging threshold (default: WARNING); also accepted after the subcommand",
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
        "--speed", type=positive_float, default=1.0, help="simulation speed x real time (1)"
    )
    demo.add_argument("--seed", type=int, default=0, help="simulation seed (0)")
    demo.add_argument("--model", default="logreg", choices=MODEL_NAMES, help="online model")
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
    demo.add_argument(
        "--no-live", action="store_true", help="no live table in the terminal, only the summary"
    )
    demo.add_argument(
        "--ui",
        default=None,
        metavar="HOST:PORT",
        help="serve the live web view here (default 127.0.0.1:8765, or a free port if taken)",
    )
    demo.add_argument("--no-ui", action="store_true", help="no live web view")
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
    gw.add_argument(
        "--config", default=None, metavar="FILE",
        help="TOML settings file (default: none, every setting at its default; "
        "'streamfuse gateway --print-config' writes a complete one)",
    )
    gw.add_argument(
        "--print-config", action="store_true",
        help="print the complete default configuration as commented TOML and exit",
    )
    for flag, (key, kind, meta, text, choices) in GATEWAY_FLAG_HELP.items():
        gw.add_argument(
            f"--{flag.replace('_', '-')}", dest=flag, type=kind, default=None, metavar=meta,
            choices=choices,
            help=f"{text} (default: {_gateway_default(key)!r}, or {key} of --config)",
        )
    gw.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="json: one structured JSON object per log line",
    )
    gw.add_argument(
        "--duration", type=positive_float, default=None, help="stop after N seconds (default: "
        "run until SIGTERM/SIGINT)",
    )
    gw.add_argument(
        "--ui",
        default=None,
        metavar="HOST:PORT",
        help="serve the live web view at this address (off by default; :8765 is localhost only)",
    )

    sim = sub.add_parser(
        "simulate",
        help="publish simulated wearables to a broker",
        description="Simulated ECG + EEG + accelerometer devices publishing 100 ms chunks and "
        "their true state on the label topic.",
    )
    sim.add_argument("--broker", default="mqtt://127.0.0.1:1883", metavar="URL", help="broker")
    sim.add_argument("--prefix", default="streamfuse", help="topic prefix")
    sim.add_argument("--devices", type=positive_int, default=8, help="simulated devices")
    sim.add_argument("--duration", type=positive_float, default=30.0, help="seconds to run")
    sim.add_argument(
        "--speed",
        type=positive_float,
        default=1.0,
        help="x real time (1). Device clocks then run fast too, so a gateway on the wall clock "
        "sees them drift: use speed 1 against a real gateway",
    )
    sim.add_argument("--seed", type=int, default=0, help="simulation seed")
    sim.add_argument(
        "--bundle",
        action="store_true",
        help="each device sends its chunks of a period as one message on {prefix}/{device}/bundle",
    )
    sim.add_argument(
        "--shards", type=shard_count, default=0, metavar="S",
        help="publish under {prefix}/{shard}/{device}/... with shard = crc32(device) %% S, as a "
        "gateway with [shards] count = S expects (0: no shard level)",
    )

    demo.set_defaults(run=_demo)
    gw.set_defaults(run=_gateway)
    sim.set_defaults(run=_simulate)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    sub.choices["bench"].set_defaults(run=_bench)
    sub.choices["replay"].set_defaults(run=_replay)
    sub.choices["record"].set_defaults(run=_record)
    for command in sub.choices.values():
        command.formatter_class = HelpFormatter
        # accepted after the subcommand too; SUPPRESS leaves the global value when absent
        command.add_argument(
            "--log-level", default=argparse.SUPPRESS, choices=LOG_LEVELS,
            help="logging threshold (default: WARNING)",
        )
    return parser


#: modules that add their own subcommands: each has ``register(subparsers)``, which adds a parser
#: whose ``run`` default takes the parsed arguments and returns an exit code.
COMMAND_MODULES: list[str] = [
    "streamfuse.replay.commands", "streamfuse.latency.commands", "streamfuse.federated.commands",
    "streamfuse.cluster.commands",
]


#: ``streamfuse gateway`` flags: (configuration key, type, metavar, help, choices); a flag not
#: given leaves the key to the file and the environment
GATEWAY_FLAG_HELP: dict[str, tuple[str, Any, str | None, str, Sequence[str] | None]] = {
    "broker": ("mqtt.broker", str, "URL", "mqtt[s]://[user@]host[:port] of the broker", None),
    "prefix": ("mqtt.prefix", str, "PREFIX", "topic prefix: {prefix}/<device>/<modality>", None),
    "model": ("engine.model", str, None, "online model of every fusion level", MODEL_NAMES),
    "client_id": (
        "mqtt.client_id", str, "ID",
        "fixed MQTT client id: the broker keeps the session across restarts; '' for a random "
        "id and a clean session", None,
    ),
    "username": ("mqtt.username", str, "NAME", "broker login name", None),
    "password_file": (
        "mqtt.password_file", str, "FILE",
        "file whose first line is the broker password (or STREAMFUSE_MQTT_PASSWORD)", None,
    ),
    "checkpoint_dir": (
        "checkpoint.dir", str, "DIR", "save models and device state here ('': no checkpoints)",
        None,
    ),
    "checkpoint_interval": (
        "checkpoint.interval_s", positive_float, "S", "seconds between checkpoints", None,
    ),
    "idle_evict": (
        "resources.idle_evict_s", positive_float, "S",
        "forget a device silent this long (its state is checkpointed first)", None,
    ),
    "max_queued": (
        "mqtt.max_queued_incoming", positive_int, "N",
        "incoming queue size; beyond it messages are shed and counted", None,
    ),
    "metrics_port": (
        "metrics.port", int, "PORT", "serve Prometheus /metrics on this port (0: off)", None,
    ),
    "drain_timeout": (
        "shutdown.drain_timeout_s", positive_float, "S",
        "on SIGTERM, at most this long to drain the queue and checkpoint", None,
    ),
    "shards": (
        "shards.count", shard_count, "S",
        "serve devices under {prefix}/{shard}/{device}/..., shard = crc32(device) %% S, each "
        "shard on its own session and checkpoint folder (0: no shard level)", None,
    ),
    "own_shards": ("shards.own", str, "LIST", "with --shards: serve these, e.g. 0-3,7", None),
    "connect_timeout": (
        "mqtt.connect_timeout_s", float, "S",
        "exit with code 1 if the broker is not reached within this time (0: wait forever)",
        None,
    ),
}

#: ``streamfuse gateway`` flags and the configuration keys they set (None: not given)
GATEWAY_FLAGS: dict[str, str] = {flag: spec[0] for flag, spec in GATEWAY_FLAG_HELP.items()}


def _gateway_default(key: str) -> Any:
    """The default of configuration key ``section.name``."""
    from .gateway.config import GatewayConfig

    section, name = key.split(".")
    return getattr(getattr(GatewayConfig(), section), name)


def gateway_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration keys the ``gateway`` flags set."""
    return {key: getattr(args, flag) for flag, key in GATEWAY_FLAGS.items()}


def _demo(args: argparse.Namespace) -> int:
    from .gateway.demo import run_demo

    return asyncio.run(run_demo(args))


def _gateway(args: argparse.Namespace) -> int:
    if args.print_config:
        from .gateway.template import default_toml

        sys.stdout.write(default_toml())
        return 0
    from .gateway.server import run_gateway

    return run_gateway(
        args.config,
        gateway_overrides(args),
        duration=args.duration,
        log_format=args.log_format,
        ui=args.ui,
    )


def _bench(args: argparse.Namespace) -> int:
    if args.cluster:
        from .cluster.bench import fleet_hosts
        from .gateway.server import bench_server
        from .latency.commands import run_cluster

        with fleet_hosts((1, 2), args.shards) as hosts:
            return run_cluster(args, {0: bench_server, **hosts})
    from .gateway.server import bench_server
    from .latency.commands import run

    return run(args, host=bench_server)


def _replay(args: argparse.Namespace) -> int:
    from .replay.commands import run_replay

    if args.config is None:
        return run_replay(args)
    from .gateway.loading import load

    config = load(args.config)  # the gateway's file, environment included
    return run_replay(args, engine_config=config.engine_config(), prefix=config.prefix)


def _record(args: argparse.Namespace) -> int:
    from .replay.commands import run_record

    if args.config is None:
        return run_record(args)
    from .gateway.loading import load

    config = load(args.config)  # the gateway's file, environment included
    return run_record(args, modalities=config.engine_config().modalities, prefix=config.prefix)


def _simulate(args: argparse.Namespace) -> int:
    from simulators.publisher import simulate

    return simulate(
        args.broker, prefix=args.prefix, devices=args.devices, duration=args.duration,
        speed=args.speed, seed=args.seed, bundle=args.bundle, shards=args.shards,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from .errors import ConfigError, StreamfuseError

    try:
        return int(args.run(args))
    except ConfigError as exc:  # a setting to fix: the same code as bad usage
        print(f"streamfuse: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StreamfuseError as exc:
        print(f"streamfuse: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
