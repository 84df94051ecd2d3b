"""The end-to-end latency bench behind ``streamfuse bench``: one run, and the ramp.

Four processes share one broker (and this machine's wall clock, :func:`time.time`):

- the **gateway under test** runs in the calling process: the gateway's own server (the
  ``host`` :func:`run_bench` is given, :func:`streamfuse.gateway.server.bench_server` from the
  command line) hosting an :class:`~streamfuse.engine.Engine` (per-stage timer on), as ``streamfuse
  gateway`` runs it;
- a **publisher** process (:func:`publisher_main`) plays a simulated fleet at real rates: every
  chunk is pre-generated and encoded before the start, then published when its span ends on
  the wall clock, and the wall time just before each ``publish`` call is logged per
  (device, modality, seq). Each device has its own chunk phase (seeded, uniform in one chunk
  period, :class:`simulators.device.SimulatedDevice`'s ``start_s``), so the fleet's messages
  spread over each 100 ms as a real fleet's would; ``lockstep`` puts every device on phase 0
  (all chunks of the fleet due at the same instants: the worst case). With ``bundle`` each
  device sends its three chunks of a period as one bundle (``{prefix}/{device}/bundle``) when
  the last of them is complete; the log then holds one row per part, all with the bundle's
  publish time;
- a **relay** process (:func:`relay_main`), a gateway that does nothing: an aiomqtt client
  with the gateway's client options (TCP_NODELAY, keepalive, subscription QoS) subscribed to
  the data topics of the first ``floor_devices`` devices, which republishes each message's
  payload unchanged at QoS 0 to its :func:`echo_topic` (``{topic}/echo``, a level below the
  gateway's ``{prefix}/+/+`` subscription, so the gateway never sees an echo);
- a **subscriber** process (:func:`subscriber_main`) receives every prediction, the data
  messages of the same ``floor_devices`` devices and the relay's echoes of them, and stamps
  each with its receipt time.

Definitions (see ``docs/performance.md``):

- The *completing chunk* of a window is the chunk whose arrival let the window close: the
  harness replays the publisher's log (chunk times and sizes, arrival = publish time) through a
  shadow :class:`~streamfuse.align.device.DeviceAligner` with the engine's configuration and
  notes which chunk's ``add`` returned the window (a bundle's parts are added in their order,
  as the engine does, so a window completed by a bundle is timed from the bundle's publish).
  Windows the shadow closes only because their lateness budget ran out are counted apart, not
  timed.
- **end-to-end** = receipt of the prediction by the subscriber - publish of the completing chunk.
- **receive** = the gateway's clock reading when the completing chunk's bytes came off the
  gateway's socket (its arrival, the engine's ``now``: ``closed_at`` in the prediction) - its
  publish; **decode**, **align** (buffer, clock, window, resample + interleave),
  **features**, **predict** = the engine's own per-stage timings; **publish** = what is left
  (the wait in the gateway's queue, encode, publish, broker hop, subscriber read).
- **floor** = the broker's own pub->sub time for the same data messages in the same run
  (subscriber receipt - publish), i.e. what any client would pay for one hop.
- **round_trip** = publish of a data message -> the subscriber's receipt of the relay's echo
  of it: two broker hops and a client that only republishes, the path end-to-end takes
  (data in, prediction out) without the engine. The gateway-added figure is end-to-end p99
  minus this p99; minus the floor's p99 is reported beside it (``..._over_one_hop_ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import BrokerError
from .analysis import BenchResult, analyse, timed_samples
from .interrupt import BenchInterrupted, receive
from .publisher import publisher_main
from .relay import relay_main
from .settings import P99_TARGET_MS, BenchSettings
from .subscriber import subscriber_main

log = logging.getLogger("streamfuse.latency.orchestration")


def _machine() -> dict[str, object]:
    import platform

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }


class HostedGateway(Protocol):
    """What the bench needs of the gateway it measures (a
    :class:`streamfuse.gateway.server.Server`): its lifecycle and, once started, its parts."""

    should_exit: asyncio.Event
    started: asyncio.Event
    config: Any  # a GatewayConfig: engine_config(), mqtt.keepalive_s, mqtt.qos
    gateway: Any  # once started: .connected, .published, .engine

    async def serve(self) -> int: ...


#: builds the gateway under test for one run
GatewayHost = Callable[[BenchSettings], HostedGateway]


async def _started(
    server: HostedGateway, task: asyncio.Task[int], timeout: float, stop: asyncio.Event | None
) -> None:
    """Wait until the gateway under test is connected; raise why if it stopped first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stop is not None and stop.is_set():
            raise BenchInterrupted("interrupted")
        if task.done():
            task.result()
            raise BrokerError("the gateway under test stopped before it connected")
        if server.gateway is not None and server.gateway.connected.is_set():
            return
        await asyncio.sleep(0.02)
    raise BrokerError(f"the gateway under test did not connect within {timeout:.0f} s")


async def run_bench(
    settings: BenchSettings,
    *,
    host: GatewayHost,
    profiler: Any = None,
    keep_samples: bool = False,
    stop: asyncio.Event | None = None,
) -> BenchResult:
    """Run one benchmark against ``settings.broker_url`` (the broker must be running).

    ``host`` builds the gateway under test from the settings (the command line passes
    :func:`streamfuse.gateway.server.bench_server`). ``profiler`` (e.g. a
    :class:`cProfile.Profile`) is enabled in this process, the gateway's, only while the
    fleet publishes. ``keep_samples`` keeps every timed latency with its receipt time in
    :attr:`BenchResult.samples` (:func:`~.analysis.timed_samples`), for figures over parts of
    the run.

    ``stop`` (optional; ``streamfuse bench`` sets it on Ctrl-C): once set, the run ends at
    once. Set while the fleet publishes, the publisher stops and what was measured so far is
    analysed and returned (:attr:`BenchResult.interrupted_after_s` says when); set before,
    :class:`BenchInterrupted` is raised. Either way the processes are stopped within a second
    or so, not after their timeouts.
    """
    server = host(settings)
    config = server.config.engine_config()
    keepalive, qos = server.config.mqtt.keepalive_s, server.config.mqtt.qos
    ctx = mp.get_context("spawn")
    pub_parent, pub_child = ctx.Pipe()
    sub_parent, sub_child = ctx.Pipe()
    relay_parent, relay_child = ctx.Pipe()
    publisher = ctx.Process(
        target=publisher_main,
        args=(settings, pub_child),
        name="streamfuse-bench-publisher",
        daemon=True,
    )
    subscriber = ctx.Process(
        target=subscriber_main,
        args=(settings, sub_child),
        name="streamfuse-bench-subscriber",
        daemon=True,
    )
    relay = ctx.Process(
        target=relay_main,
        args=(settings, relay_child, keepalive, qos),
        name="streamfuse-bench-relay",
        daemon=True,
    )
    gw_task = asyncio.create_task(server.serve(), name="streamfuse[bench].gateway")
    interrupted_after: float | None = None
    grace = 5.0  # seconds each helper process is given to end on its own
    try:
        await _started(server, gw_task, 120, stop)  # the kernels' warm-up included
        publisher.start()
        subscriber.start()
        relay.start()
        await receive(sub_parent, "subscriber", 60, stop)
        await receive(relay_parent, "relay", 60, stop)
        gen_budget = 120 + settings.devices * settings.duration / 50
        ready = await receive(pub_parent, "publisher", gen_budget, stop)
        log.info("publisher ready: %s", ready)
        t_base = time.time() + settings.start_delay_s
        # a gateway in other processes (a fleet's actors) says what CPU it used
        cpu_time: Callable[[], float] = getattr(server, "cpu_time", time.process_time)
        broker_cpu = functools.partial(process_cpu_s, settings.broker_pid)
        mark = [cpu_time(), time.perf_counter(), broker_cpu()]

        def _warm() -> None:  # CPU is measured over the same span as the timed windows
            mark[:] = [cpu_time(), time.perf_counter(), broker_cpu()]

        if settings.warmup_s > 0:
            asyncio.get_running_loop().call_later(settings.start_delay_s + settings.warmup_s, _warm)
        if profiler is not None:
            profiler.enable()
        pub_parent.send(("go", t_base))
        try:
            log_rec = await receive(pub_parent, "publisher", settings.duration + 120, stop)
        except BenchInterrupted:
            # what was published so far is the run: the publisher stops and sends its log
            interrupted_after = max(0.0, time.time() - t_base)
            grace = 0.5
            pub_parent.send(("stop", None))
            log_rec = await receive(pub_parent, "publisher", 10)
        if profiler is not None:
            profiler.disable()
        cpu_s, wall_s = cpu_time() - mark[0], time.perf_counter() - mark[1]
        broker_cpu_s = broker_cpu() - mark[2]
        if interrupted_after is None:
            # the last window holding data (its start is on the device's own phase) ends less
            # than window_s after the data does, then waits out its lateness budget
            await asyncio.sleep(settings.settle_s + config.window_s + config.lateness_s)
        # the relay first, so that every echo it sent is in the subscriber's record
        with contextlib.suppress(OSError):  # a relay that failed has said why on its pipe
            relay_parent.send("stop")
        relay_stats = await receive(relay_parent, "relay", 60)
        sub_parent.send("stop")
        preds, floor, echoes = await receive(sub_parent, "subscriber", 120)
    except BaseException:
        grace = 0.5  # interrupted or failed: nothing more is wanted of the helpers
        raise
    finally:
        server.should_exit.set()
        await asyncio.gather(gw_task, return_exceptions=True)
        for proc in (publisher, subscriber, relay):
            if proc.pid is None:
                continue
            proc.join(timeout=grace)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
    _, first = np.unique(log_rec["msg"], return_index=True)  # one row per message
    sent = log_rec[first]
    lag = (sent["published"] - sent["scheduled"]) * 1e3
    publisher_stats = {
        "messages": int(len(sent)),
        "generate_s": float(ready["generate_s"]),
        "lag_p50_ms": float(np.percentile(lag, 50)) if len(lag) else math.nan,
        "lag_p99_ms": float(np.percentile(lag, 99)) if len(lag) else math.nan,
        "lag_max_ms": float(lag.max()) if len(lag) else math.nan,
        "messages_per_s": float(
            len(sent) / (settings.duration if interrupted_after is None else max(wall_s, 1e-9))
        ),
    }
    hists, counts = analyse(settings, log_rec, preds, floor, config, echoes)
    gateway = server.gateway
    counts["published_by_gateway"] = gateway.published
    counts["relayed"] = int(relay_stats["messages"])
    samples = None
    if keep_samples:
        e2e, trips = timed_samples(settings, log_rec, preds, config, echoes)
        samples = {"end_to_end": e2e, "round_trip": trips}
    return BenchResult(
        settings=settings,
        histograms=hists,
        counts=counts,
        gateway_cpu_s=cpu_s,
        wall_s=wall_s,
        broker_cpu_s=broker_cpu_s,
        publisher=publisher_stats,
        engine=gateway.engine.stats(),
        relay=relay_stats,
        machine=_machine(),
        samples=samples,
        interrupted_after_s=interrupted_after,
    )


async def run_ramp(
    base: BenchSettings,
    *,
    host: GatewayHost,
    start: int = 50,
    limit: int = 4000,
    target_ms: float = P99_TARGET_MS,
    refine: int = 2,
    stop: asyncio.Event | None = None,
) -> tuple[list[BenchResult], int]:
    """Double the device count from ``start`` until a run fails, then bisect ``refine`` times.

    Returns every run and the largest device count that held (0 if none did). ``stop`` (see
    :func:`run_bench`) ends the ramp: a run it cut short is the last one returned, and
    counts neither as held nor as failed.
    """
    from dataclasses import replace

    runs: list[BenchResult] = []
    best, worst = 0, None
    n = start

    async def one(settings: BenchSettings) -> BenchResult | None:
        try:
            result = await run_bench(settings, host=host, stop=stop)
        except BenchInterrupted:
            return None
        runs.append(result)
        return None if result.interrupted_after_s is not None else result

    while n <= limit:
        result = await one(replace(base, devices=n, prefix=f"{base.prefix}{n}"))
        if result is None:
            return runs, best
        log.warning(
            "ramp: %d devices -> p99 %.2f ms, %s",
            n,
            result.end_to_end.percentile_ms(99),
            "held" if result.sustained(target_ms) else "failed",
        )
        if result.sustained(target_ms):
            best = n
            n *= 2
        else:
            worst = n
            break
    if worst is not None:  # a run failed: bisect between the last held and the failed count
        for _ in range(refine):
            n = (best + worst) // 2 if best else worst // 2
            if n in (best, worst) or n < 1:
                break
            result = await one(replace(base, devices=n, prefix=f"{base.prefix}{n}"))
            if result is None:
                break
            if result.sustained(target_ms):
                best = n
            else:
                worst = n
    return runs, best


@contextlib.contextmanager
def broker_for(url: str | None, kind: str = "auto") -> Any:
    """Yield ``(url, kind, pid)``: the given broker (``pid`` None: not ours to measure), or a
    private one started for the run."""
    if url:
        yield url, "external", None
        return
    from ..mqtt.broker import EmbeddedBroker

    with EmbeddedBroker(kind=kind) as broker:  # type: ignore[arg-type]
        yield broker.url, broker.kind, broker.pid


def process_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) process ``pid`` has used, from Linux's ``/proc/<pid>/stat``;
    NaN without a pid, once the process is gone, or where there is no ``/proc``."""
    if pid is None:
        return math.nan
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    # fields after the parenthesised command name (which may hold spaces): utime is the 14th
    # field of the line, stime the 15th, in clock ticks
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
