"""One gateway lifecycle, hosted by ``streamfuse gateway``, the demo and the latency bench.

:meth:`Server.serve` follows uvicorn's ``Server.serve``:

1. **capture signals** (:meth:`Server.capture_signals`): SIGINT/SIGTERM set
   :attr:`Server.should_exit`; a second one is a force exit (code :data:`EXIT_INTERRUPTED`,
   at once, without draining); the previous handlers are put back afterwards;
2. **start-up** (:meth:`Server.startup`): compile the engine's kernels (warm-up), build the
   engine from the :class:`~.config.GatewayConfig`, restore the newest checkpoint, freeze the
   start-up heap, serve ``/metrics``;
3. **main loop**: the MQTT session and the housekeeping timers until ``should_exit``;
4. **shutdown**: stop taking messages (what arrives after the signal stays the broker's),
   drain what was queued into the engine, publish what is left, write the final checkpoint,
   all within ``shutdown.drain_timeout_s`` of the signal (phases of
   :class:`~.ingest.ShutdownBudget`: 60 % drain, 20 % publish, the rest the checkpoint); a
   watchdog thread, started by the first signal and independent of the event loop, dumps
   every stack and exits with :data:`EXIT_STUCK` if shutdown is still running
   :data:`SHUTDOWN_GRACE_S` after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..engine import Engine
from ..errors import BrokerError, ConfigError
from ..exits import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_STUCK
from ..types import Prediction, RawMessage
from ..warmup import warm_up
from .app import Gateway
from .config import GatewayConfig
from .loading import check_paths, from_mapping, load
from .logs import use_json_logs

log = logging.getLogger("streamfuse.gateway.server")

#: seconds past the drain timeout after which a stuck shutdown is cut short
SHUTDOWN_GRACE_S = 10.0
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _shutdown_stuck(drain_s: float) -> None:
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


class Server:
    """Runs one :class:`Gateway` from start-up to shutdown.

    Parameters
    ----------
    config
        The gateway's configuration; the engine is built from it.
    clock
        The gateway clock (``now`` for the engine); the demo scales it by its speed.
    duration
        Stop by itself after this many seconds of serving (``None``: until a signal).
    handle_signals
        Capture SIGINT/SIGTERM (only possible on the main thread; ignored elsewhere).
    warm
        Compile the engine's kernels at start-up (off for a second server in one process:
        the shards of :mod:`.shards` share the first one's).
    on_prediction, on_message
        Passed to the :class:`Gateway`.
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        clock: Callable[[], float] = time.time,
        duration: float | None = None,
        handle_signals: bool = True,
        on_prediction: Callable[[Prediction], None] | None = None,
        on_message: Callable[[RawMessage], None] | None = None,
        warm: bool = True,
    ) -> None:
        self.config = config
        self.warm = warm
        self.clock = clock
        self.duration = duration
        self.handle_signals = handle_signals
        self._on_prediction = on_prediction
        self._on_message = on_message
        self.should_exit = asyncio.Event()
        self.force_exit = False
        self.started = asyncio.Event()
        self.engine: Engine | None = None
        self.gateway: Gateway | None = None
        self.warm_up_s = 0.0
        self._watchdog: threading.Timer | None = None
        #: set when the first connection did not succeed within mqtt.connect_timeout_s
        self.never_connected = False
        self.stop_began: float | None = None  # monotonic time of the signal (or the stop)
        self.shutdown_s: float | None = None  # how long the shutdown took, from stop_began

    async def serve(self) -> int:
        """Start up, serve until :attr:`should_exit`, shut down; returns the exit code."""
        with self.capture_signals():
            self.startup()
            watch = asyncio.create_task(self._watch_first_connect())
            try:
                await self.main_loop()
            finally:
                watch.cancel()
                await self.shutdown()
        return EXIT_FAILURE if self.never_connected else EXIT_OK

    async def _watch_first_connect(self) -> None:
        """Stop serving if the broker was not reached within ``mqtt.connect_timeout_s``."""
        limit = self.config.mqtt.connect_timeout_s
        if limit <= 0 or self.gateway is None:
            return
        try:
            await asyncio.wait_for(self.gateway.connected.wait(), limit)
        except TimeoutError:
            self.never_connected = True
            log.error(
                "no connection to the broker %s within %.0f s (mqtt.connect_timeout_s); "
                "stopping", self.config.mqtt.broker, limit,
            )
            self.should_exit.set()

    # ------------------------------------------------------------------ signals
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Route SIGINT/SIGTERM to :meth:`handle_exit` while serving; restore them after."""
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()
        previous = {sig: signal.getsignal(sig) for sig in HANDLED_SIGNALS}
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, self.handle_exit, sig)
        try:
            yield
        finally:
            for sig in HANDLED_SIGNALS:
                loop.remove_signal_handler(sig)
                signal.signal(sig, previous[sig])

    def handle_exit(self, sig: signal.Signals) -> None:
        """First signal: drain and checkpoint (watchdog armed); the second: exit at once."""
        if self.should_exit.is_set():
            self.force_exit = True
            log.warning("second %s: exiting at once without draining", sig.name)
            logging.shutdown()
            os._exit(EXIT_INTERRUPTED)
        drain_s = self.config.shutdown.drain_timeout_s
        log.warning(
            "%s: draining and checkpointing (up to %.1f s); send it again to exit at once",
            sig.name,
            drain_s,
        )
        self.stop_began = time.monotonic()
        self.should_exit.set()
        self.arm_watchdog()

    def arm_watchdog(self) -> None:
        """A daemon must stop within a bound even if something in the shutdown path hangs (a
        broker that stops reading, a stuck HTTP client): start the watchdog thread."""
        if self._watchdog is not None:
            return
        drain_s = self.config.shutdown.drain_timeout_s
        self._watchdog = threading.Timer(drain_s + SHUTDOWN_GRACE_S, _shutdown_stuck, (drain_s,))
        self._watchdog.daemon = True
        self._watchdog.start()

    # ------------------------------------------------------------------ phases
    def startup(self) -> None:
        """Warm up the kernels, build the engine and the gateway, restore, serve metrics."""
        cfg = self.config
        engine_config = cfg.engine_config()
        if self.warm:
            self.warm_up_s = warm_up(engine_config)
            log.info("compiled the engine's kernels in %.1f s", self.warm_up_s)
        self.engine = Engine(engine_config, prefix=cfg.prefix, timer=time.perf_counter)
        self.gateway = Gateway(
            self.engine,
            cfg,
            clock=self.clock,
            on_prediction=self._on_prediction,
            on_message=self._on_message,
        )
        self.gateway.startup()
        self.engine = self.gateway.engine  # the restored one, if a checkpoint was found
        if self.duration is not None:
            asyncio.get_running_loop().call_later(self.duration, self.should_exit.set)
        log.info("gateway starting with settings from %s", cfg.source)
        self.started.set()

    async def main_loop(self) -> None:
        assert self.gateway is not None
        await self.gateway.main_loop(self.should_exit)

    async def shutdown(self) -> None:
        """Drain, publish, checkpoint (the watchdog bounds it once a signal armed it)."""
        gateway = self.gateway
        if gateway is None:
            return
        if self.stop_began is None:
            self.stop_began = time.monotonic()
        self.should_exit.set()
        saved = gateway.store.saved if gateway.store is not None else 0
        try:
            await gateway.shutdown()
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
        self.engine = gateway.engine
        self.shutdown_s = time.monotonic() - self.stop_began
        final = gateway.store is not None and gateway.store.saved > saved
        log.info(
            "shutdown took %.2f s of the %.1f s drain timeout: %d queued messages drained, "
            "%d dropped undrained, %d refused after the stop (left to the broker), %d "
            "predictions unpublished; final checkpoint %s",
            self.shutdown_s,
            self.config.shutdown.drain_timeout_s,
            gateway.ingest.drained,
            gateway.drain_left,
            sum(gateway.inbox.refused.values()),
            gateway.publish_dropped,
            "written" if final else ("not configured" if gateway.store is None else "FAILED"),
        )
        log.info(
            "gateway stopped: %d messages processed, %d predictions published, shed %s, %s",
            gateway.processed,
            gateway.published,
            dict(gateway.inbox.shed),
            gateway.engine.stats(),
        )


def run_gateway(
    config_path: str | None,
    overrides: Mapping[str, Any],
    *,
    duration: float | None = None,
    log_format: str = "text",
    ui: str | None = None,
) -> int:
    """``streamfuse gateway``: load the configuration (file, environment, flags), serve it
    until a signal (or ``duration``), print the totals; returns the exit code. ``ui``
    (``"HOST:PORT"``): serve the live web view there too."""
    if log_format == "json":
        use_json_logs()
    # fail fast, before compiling anything: settings, then the files and folders they name
    config = check_paths(load(config_path, overrides=overrides))
    if config.shards.count:
        if ui is not None:
            raise ConfigError("--ui shows one gateway; it does not combine shards yet")
        from .shards import serve_shards

        return asyncio.run(serve_shards(config, duration=duration))
    view = None
    if ui is not None:
        from .webview import WebView

        view = WebView.at(ui)
    server = Server(config, duration=duration, on_prediction=view.on_prediction if view else None)
    code = asyncio.run(_serve(server, view))
    if server.never_connected:
        raise BrokerError(
            f"could not connect to the broker at {config.mqtt.broker} within "
            f"{config.mqtt.connect_timeout_s:g} s; is it running and reachable? (the limit is "
            "mqtt.connect_timeout_s, --connect-timeout; 0 waits forever)"
        )
    gateway = server.gateway
    if gateway is not None:
        print(
            f"gateway stopped: {gateway.processed} messages, {gateway.published} predictions "
            f"published, shed {dict(gateway.inbox.shed)}"
        )
    return code


async def _serve(server: Server, view: Any) -> int:
    """``server.serve()``, with the web view (a :class:`~.webview.WebView`) around it."""
    if view is None:
        return await server.serve()
    view.attach(lambda: server.gateway)
    async with view.running() as url:
        print(f"live view on {url}", flush=True)
        return await server.serve()


def bench_server(settings: Any) -> Server:
    """The gateway the latency bench measures (``settings``: a
    :class:`~streamfuse.latency.settings.BenchSettings`): the daemon's defaults, on the bench's
    broker and prefix, its own persistent session, and predictions at QoS 0 (the write path
    the bench's figures in ``docs/performance.md`` are of). No signal handling: the bench's
    own orchestration stops it."""
    config = from_mapping(
        {
            "mqtt": {
                "broker": settings.broker_url,
                "prefix": settings.prefix,
                "client_id": f"{settings.prefix}-gateway",
                "publish_qos": 0,
            },
            "engine": {"model": settings.model},
        },
        where="the bench's gateway settings",
    )
    return Server(config, clock=time.time, handle_signals=False)
