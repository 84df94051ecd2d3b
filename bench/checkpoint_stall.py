"""How long a checkpoint stalls the gateway's event loop: inline, forked and incremental, same run.

    PYTHONPATH=. python bench/checkpoint_stall.py [DEVICES] [--seconds S] [--rounds N]
                                                  [--traffic MSG_PER_S] [--verbose]

An engine is filled with a simulated fleet's state (``DEVICES`` devices, ``S`` seconds of
ECG/EEG/ACC and labels) and hosted by a :class:`~streamfuse.gateway.app.Gateway` with a
checkpoint folder and its journal. On the gateway's event loop a probe task sleeps 1 ms at a
time and records how late each wake-up is; the longest lateness while a checkpoint is being
taken is the stall the loop suffered for it (a message arriving then waits that long). Each
round takes one checkpoint of each kind, in turn:

- ``inline``: pickled and written on the loop (``Gateway.checkpoint()``, what shutdown does);
- ``forked``: ``Gateway.checkpoint(background=True, fork=True)``, the periodic way before the
  incremental one: the loop pays for the fork (the copy of the page tables, which follows the
  resident heap), a child pickles and writes; the loop reaps it on a later turn;
- ``incremental``: ``Gateway.checkpoint(background=True)``, the periodic way now
  (:mod:`streamfuse.gateway.snapshot`): the head at once, then devices for at most 2 ms per
  loop turn, a device about to change first, a thread writing;
- ``idle``: as long again with no checkpoint at all: the stalls the machine's other load
  causes (on a shared VM the scheduler alone can hold the loop off for tens of ms).

``--traffic`` feeds the fleet's following messages while measuring, as the ingest does (the
journal, then the engine, 64 at most per loop turn): then messages make devices change while
an incremental checkpoint runs (pickled on demand, counted), and every kind, the idle baseline
too, includes the loop turns the ingest takes.

Prints each kind's longest stall (max over rounds), the fork's own time, the incremental
head's and longest step's times, the time until each file was on disk, the checkpoint's size
and the load average; the loop's probe resolution is ~1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from journal_cost import messages  # the sibling script

from streamfuse.config import EngineConfig
from streamfuse.engine import Engine
from streamfuse.gateway.app import Gateway
from streamfuse.gateway.loading import from_mapping
from streamfuse.warmup import warm_up

VERBOSE = False


class Probe:
    """Wakes every 1 ms and remembers the longest lateness since :meth:`reset`."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.running = True
        self.stalls: list[tuple[float, float]] = []  # (when, how late) of those over 5 ms
        self.t0 = 0.0

    def reset(self) -> None:
        self.longest = 0.0
        self.stalls = []
        self.t0 = time.perf_counter()
        self.gc_longest = 0.0

    def on_gc(self, phase: str, info: dict) -> None:
        """gc's callback: the longest collection since :meth:`reset` (a cause of stalls)."""
        if phase == "start":
            self._gc0 = time.perf_counter()
        else:
            self.gc_longest = max(self.gc_longest, time.perf_counter() - self._gc0)

    async def run(self) -> None:
        clock = time.perf_counter
        while self.running:
            t0 = clock()
            await asyncio.sleep(0.001)
            late = clock() - t0 - 0.001
            if late > self.longest:
                self.longest = late
            if late > 0.005:
                self.stalls.append((t0 - self.t0, late))


class Feeder:
    """Plays the gateway's ingest: ``rate`` messages a second of the fleet's next seconds, taken
    in turns of up to 64 (the ingest's yield) through the journal and the engine, at the
    simulated clock the messages carry; the predictions they make are dropped as if
    published (the outbox would otherwise grow, and every checkpoint holds it)."""

    def __init__(self, gw: Gateway, items: list, rate: float, sim: list[float]) -> None:
        self.gw, self.items, self.rate, self.sim = gw, items, rate, sim
        self.running = True
        self.fed = 0

    async def run(self) -> None:
        gw, items, sim = self.gw, self.items, self.sim
        per_turn = max(1, min(64, int(self.rate / 100)))
        pause = per_turn / self.rate
        while self.running and self.fed < len(items):
            for raw, now in items[self.fed : self.fed + per_turn]:
                sim[0] = now
                gw.durable.accept(raw)
                gw.ingest.process(gw.inbox.get_nowait())
                self.fed += 1
                if gw.ingest._owed():  # as the ingest does: on-demand pickling has its budget
                    await asyncio.sleep(0)
            gw.durable.commit()
            gw.outbox.queue.clear()  # published, as the gateway's publisher would
            await asyncio.sleep(pause)


async def measure(gw: Gateway, rounds: int) -> dict[str, list[float]]:
    probe = Probe()
    probe.reset()
    gc.callbacks.append(probe.on_gc)
    task = asyncio.create_task(probe.run())
    out: dict[str, list[float]] = {k: [] for k in (
        "inline", "forked", "fork_call", "fork_call_cpu", "forked_done", "incremental",
        "incr_head", "incr_head_cpu", "incr_spawn", "incr_step", "incr_step_cpu", "incr_done",
        "incr_on_demand", "idle", "forked_gc", "incremental_gc")}
    store = gw.store
    assert store is not None

    async def background(kind: str) -> float:
        await asyncio.sleep(0.2)
        probe.reset()
        t0, c0 = time.perf_counter(), time.thread_time()
        gw.checkpoint(background=True, fork=kind == "forked")
        if kind == "forked":
            out["fork_call"].append(time.perf_counter() - t0)
            out["fork_call_cpu"].append(time.thread_time() - c0)
        while gw.saver.busy:
            await asyncio.sleep(0.01)
            gw.checkpoint_done()  # as the housekeeping tick does
        took = time.perf_counter() - t0
        await asyncio.sleep(0.05)
        out[kind].append(probe.longest)
        out[f"{kind}_gc"].append(probe.gc_longest)
        if VERBOSE:
            print(f"    {kind} round: stalls over 5 ms (s after the call, ms):",
                  ", ".join(f"{t:.2f}:{x * 1e3:.0f}" for t, x in probe.stalls))
        return took

    for _ in range(rounds):
        await asyncio.sleep(0.2)
        probe.reset()
        gw.checkpoint()
        await asyncio.sleep(0.05)  # the probe's first wake-up after the stall
        out["inline"].append(probe.longest)
        out["forked_done"].append(await background("forked"))
        out["incr_done"].append(await background("incremental"))
        snap = gw.saver.last
        assert snap is not None
        out["incr_head"].append(snap.head_s)
        out["incr_step"].append(snap.step_max_s)
        out["incr_step_cpu"].append(snap.step_cpu_max_s)
        out["incr_spawn"].append(snap.spawn_s)
        out["incr_head_cpu"].append(snap.head_cpu_s)
        out["incr_on_demand"].append(snap.taken_on_demand / 1e3)  # printed as a count
        probe.reset()  # the baseline: as long again with no checkpoint (other processes' load)
        await asyncio.sleep(max(out["forked_done"][-1], out["incr_done"][-1]))
        out["idle"].append(probe.longest)
    probe.running = False
    await task
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("devices", nargs="?", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--traffic", type=float, default=0.0, metavar="MSG_PER_S",
                    help="feed the fleet's next messages at this rate while measuring "
                         "(as the ingest does, 64 at most per loop turn); 0: an idle loop")
    ap.add_argument("--verbose", action="store_true", help="list every stall over 5 ms")
    args = ap.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    warm_up(EngineConfig())
    folder = Path(tempfile.mkdtemp(prefix="sf-ckpt-bench-"))
    config = from_mapping(
        {"mqtt": {"client_id": ""}, "checkpoint": {"dir": str(folder / "ckpt"), "keep": 2}},
        where="the checkpoint bench",
    )
    engine = Engine(config.engine_config())
    t0 = time.perf_counter()
    extra = 3.0 if args.traffic else 0.0
    items = messages(args.devices, args.seconds + extra)
    cut = next((i for i, (_, now) in enumerate(items) if now >= items[0][1] + args.seconds),
               len(items))
    later = items[cut:]
    for raw, now in items[:cut]:
        engine.push(raw, now)
    fill = time.perf_counter() - t0
    n_items = cut
    del items, raw  # the fleet's messages are not gateway state: out of the fork's page tables
    gc.collect()
    if config.resources.gc_freeze:
        gc.freeze()  # as the gateway does at start-up and every resources.gc_refreeze_s
    sim = [later[0][1] if later else 0.0]

    async def run() -> tuple[dict[str, list[float]], int]:
        gw = Gateway(engine, config, clock=lambda: sim[0])
        gw.restore()
        feeder = Feeder(gw, later, args.traffic, sim)
        feeding = asyncio.create_task(feeder.run()) if args.traffic else None
        out = await measure(gw, args.rounds)
        feeder.running = False
        if feeding is not None:
            await feeding
        gw.checkpoint_done(wait=True)
        return out, feeder.fed

    out, fed = asyncio.run(run())
    size = max(p.stat().st_size for p in (folder / "ckpt").glob("engine-*.ckpt"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open("/proc/self/status", encoding="ascii") as fh:
        now_rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024
    shutil.rmtree(folder, ignore_errors=True)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{args.devices} devices, {n_items} messages of state ({fill:.1f} s to fill), "
          f"checkpoint {size / 1e6:.1f} MB, RSS {now_rss:.0f} MB (peak {rss:.0f} MB), "
          f"{args.rounds} rounds, load average {load}")
    if args.traffic:
        print(f"  traffic: {args.traffic:.0f} messages/s fed while measuring ({fed} in all), "
              "64 at most per loop turn")
    ms = {k: [x * 1e3 for x in v] for k, v in out.items()}

    def rounds(k: str) -> str:
        return ", ".join(f"{x:.1f}" for x in ms[k])

    print(f"  inline:      longest loop stall {max(ms['inline']):8.1f} ms  "
          f"(rounds: {rounds('inline')})")
    print(f"  forked:      longest loop stall {max(ms['forked']):8.1f} ms  "
          f"(rounds: {rounds('forked')}); the fork call {max(ms['fork_call']):.1f} ms "
          f"({max(ms['fork_call_cpu']):.1f} ms of CPU), file on disk after "
          f"{max(ms['forked_done']):.0f} ms")
    print(f"  incremental: longest loop stall {max(ms['incremental']):8.1f} ms  "
          f"(rounds: {rounds('incremental')}); the start {max(ms['incr_head']):.1f} ms "
          f"({max(ms['incr_head_cpu']):.1f} ms of CPU; the writer's spawn "
          f"{max(ms['incr_spawn']):.1f} ms), the longest step "
          f"{max(ms['incr_step']):.1f} ms ({max(ms['incr_step_cpu']):.1f} ms of CPU), "
          f"devices pickled on demand {max(out['incr_on_demand']) * 1e3:.0f}, file on disk "
          f"after {max(ms['incr_done']):.0f} ms")
    print(f"  the longest garbage collection while a background checkpoint ran: forked "
          f"{max(ms['forked_gc']):.1f} ms, incremental {max(ms['incremental_gc']):.1f} ms")
    print(f"  idle:        longest loop stall {max(ms['idle']):8.1f} ms  "
          f"(rounds: {rounds('idle')}; no checkpoint, as long)")


if __name__ == "__main__":
    main()
