"""How long a checkpoint stalls the gateway's event loop: inline against forked, same run.

    python bench/checkpoint_stall.py [DEVICES] [--seconds S] [--rounds N]

An engine is filled with a simulated fleet's state (``DEVICES`` devices, ``S`` seconds of
ECG/EEG/ACC and labels) and hosted by a :class:`~streamfuse.gateway.app.Gateway` with a
checkpoint folder and its journal. On the gateway's event loop a probe task sleeps 1 ms at a
time and records how late each wake-up is; the longest lateness while a checkpoint is being
taken is the stall the loop suffered for it (a message arriving then waits that long). Each
round takes one checkpoint of each kind, alternating:

- ``inline``: pickled and written on the loop (``Gateway.checkpoint()``, what every periodic
  checkpoint did before, and what shutdown still does);
- ``forked``: ``Gateway.checkpoint(background=True)``: the loop pays for the fork, a child
  pickles and writes; the loop reaps it on a later turn;
- ``idle``: as long again with no checkpoint at all: the stalls the machine's other load
  causes (on a shared VM the scheduler alone can hold the loop off for tens of ms).

The fork copies the process's page tables, so its cost follows the resident heap; with
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (glibc 2.35+, transparent huge pages in "madvise"
mode) malloc's memory comes in 2 MB pages and the copy is several times shorter.

Prints each kind's longest stall (max over rounds), the fork's own time, the time until the
forked file was on disk, and the checkpoint's size; the loop's probe resolution is ~1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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


async def measure(gw: Gateway, rounds: int) -> dict[str, list[float]]:
    probe = Probe()
    task = asyncio.create_task(probe.run())
    out: dict[str, list[float]] = {
        "inline": [], "forked": [], "fork_call": [], "forked_done": [], "idle": []
    }
    store = gw.store
    assert store is not None
    for _ in range(rounds):
        await asyncio.sleep(0.2)
        probe.reset()
        gw.checkpoint()
        await asyncio.sleep(0.05)  # the probe's first wake-up after the stall
        out["inline"].append(probe.longest)
        await asyncio.sleep(0.2)
        probe.reset()
        t0 = time.perf_counter()
        gw.checkpoint(background=True)
        out["fork_call"].append(time.perf_counter() - t0)
        while store.busy:
            await asyncio.sleep(0.01)
            gw.checkpoint_done()  # as the housekeeping tick does
        out["forked_done"].append(time.perf_counter() - t0)
        await asyncio.sleep(0.05)
        out["forked"].append(probe.longest)
        if VERBOSE:
            print("    forked round: stalls over 5 ms (s after the call, ms):",
                  ", ".join(f"{t:.2f}:{x * 1e3:.0f}" for t, x in probe.stalls))
        probe.reset()  # the baseline: as long again with no checkpoint (other processes' load)
        await asyncio.sleep(out["forked_done"][-1])
        out["idle"].append(probe.longest)
    probe.running = False
    await task
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("devices", nargs="?", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=3)
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
    items = messages(args.devices, args.seconds)
    for raw, now in items:
        engine.push(raw, now)
    fill = time.perf_counter() - t0
    n_items = len(items)
    del items, raw  # the fleet's messages are not gateway state: out of the fork's page tables
    gc.collect()
    if config.resources.gc_freeze:
        gc.freeze()  # as the gateway does at start-up and every resources.gc_refreeze_s

    async def run() -> dict[str, list[float]]:
        gw = Gateway(engine, config)
        gw.restore()
        return await measure(gw, args.rounds)

    out = asyncio.run(run())
    size = max(p.stat().st_size for p in (folder / "ckpt").glob("engine-*.ckpt"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open("/proc/self/status", encoding="ascii") as fh:
        now_rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024
    shutil.rmtree(folder, ignore_errors=True)
    print(f"{args.devices} devices, {n_items} messages of state ({fill:.1f} s to fill), "
          f"checkpoint {size / 1e6:.1f} MB, RSS {now_rss:.0f} MB (peak {rss:.0f} MB), "
          f"{args.rounds} rounds")
    ms = {k: [x * 1e3 for x in v] for k, v in out.items()}
    print(f"  inline: longest loop stall {max(ms['inline']):8.1f} ms  "
          f"(rounds: {', '.join(f'{x:.1f}' for x in ms['inline'])})")
    print(f"  forked: longest loop stall {max(ms['forked']):8.1f} ms  "
          f"(rounds: {', '.join(f'{x:.1f}' for x in ms['forked'])}); the fork call "
          f"{max(ms['fork_call']):.1f} ms, file on disk after {max(ms['forked_done']):.0f} ms")
    print(f"  idle:   longest loop stall {max(ms['idle']):8.1f} ms  "
          f"(rounds: {', '.join(f'{x:.1f}' for x in ms['idle'])}; no checkpoint, as long)")


if __name__ == "__main__":
    main()
