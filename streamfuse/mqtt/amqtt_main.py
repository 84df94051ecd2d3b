"""The amqtt broker the supervisor runs when Mosquitto is not installed (its child's entry point).

``python -m streamfuse.mqtt.amqtt_main --port N`` serves one loopback TCP listener with
anonymous authentication until SIGTERM/SIGINT. Not a public command.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from .address import LOOPBACK

log = logging.getLogger("streamfuse.mqtt.amqtt_main")


def amqtt_config(port: int, host: str = LOOPBACK) -> dict[str, Any]:
    """The amqtt broker configuration the child uses: one TCP listener, anonymous auth only.

    Naming the plugins explicitly keeps amqtt from loading its defaults (``$SYS`` broadcast
    every 20 s, packet and event loggers).
    """
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 0}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


async def _serve_amqtt(port: int, host: str) -> int:
    from amqtt.broker import Broker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    broker = Broker(amqtt_config(port, host))
    try:
        await broker.start()
    except Exception as exc:
        log.error("amqtt broker could not start on %s:%s: %s", host, port, exc)
        return 1
    log.info("amqtt broker listening on %s:%s", host, port)
    await stop.wait()
    await broker.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamfuse.mqtt.amqtt_main",
        description="Run the embedded amqtt broker (used by EmbeddedBroker; not a public CLI).",
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log.setLevel(logging.INFO)
    return asyncio.run(_serve_amqtt(args.port, args.host))


if __name__ == "__main__":
    sys.exit(main())
