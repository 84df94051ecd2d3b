"""``streamfuse federation``: run a federation server (registered by :mod:`streamfuse.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
from pathlib import Path

from ..argtypes import positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "federation",
        help="run a federation server: rounds over MQTT, the sites' models merged (FedAvg)",
        description="When a site asks for a round (its round policy: 20 windows learnt, or its "
        "learning quiet 10 s; [federated] round_every, round_quiet_s), and at the latest "
        "--interval-s after the previous round, announce a round on "
        "streamfuse-fed/<federation>/round, collect the sites' updates for up to --wait-s, "
        "merge them when at least "
        "--min-parties answered and publish the model (retained). Gateways join with a "
        "[federated] section. See docs/federated.md.",
    )
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", metavar="URL",
                   help="the broker the sites' gateways use (default: %(default)s)")
    p.add_argument("--federation", required=True, help="the federation's name (topic level)")
    p.add_argument("--interval-s", type=positive_float, default=60.0,
                   help="the longest time between rounds, a backstop for a lost request "
                   "(default: %(default)s)")
    p.add_argument("--wait-s", type=positive_float, default=10.0,
                   help="how long a round collects updates (default: %(default)s)")
    p.add_argument("--min-parties", type=positive_int, default=2,
                   help="sites needed for a round to merge (default: %(default)s)")
    p.add_argument("--rounds", type=positive_int, default=None, help="stop after N rounds")
    p.add_argument("--status", type=Path, default=None, metavar="FILE",
                   help="write the server's status as JSON after every round")
    p.set_defaults(run=run_federation)


def run_federation(args: argparse.Namespace) -> int:
    from .server import FederationServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        server = FederationServer(args.broker, args.federation, interval_s=args.interval_s,
                                  wait_s=args.wait_s, min_parties=args.min_parties)
    except ValueError as exc:
        print(f"streamfuse: error: {exc}")
        return 2

    def write(s: FederationServer) -> None:
        if args.status is not None:
            tmp = args.status.with_suffix(".tmp")
            tmp.write_text(json.dumps(s.status(), indent=2) + "\n", encoding="utf-8")
            tmp.replace(args.status)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.run(stop, rounds=args.rounds, on_round=write)

    asyncio.run(main())
    write(server)
    return 0
