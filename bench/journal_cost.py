"""What the gateway's journal costs per message, beside no journal, in the same run.

    python bench/journal_cost.py [DEVICES] [--seconds S] [--passes N] [--dir DIR]

A simulated fleet (ECG 250 Hz, EEG 8 x 256 Hz, ACC 3 x 50 Hz in 100 ms chunks, labels 1/s) is
encoded as the gateway's MQTT messages; each pass pushes them through a fresh engine the way
the gateway does with a journal (:class:`~streamfuse.gateway.journal.Journal`): the message
journalled and written to the OS as paho's callback would (before the acknowledgement), then
the push record, then ``Engine.push``. The variants, interleaved pass by pass so that a noisy
neighbour hits them alike:

- ``none``: ``Engine.push`` only (the baseline);
- ``never``, ``interval`` (a thread fsyncs every 100 ms), ``always`` (an fsync before every
  acknowledgement): the journal under each fsync policy, each message written (and fsynced)
  on its own, as the gateway did before acknowledgements followed the journal;
- ``interval/read``, ``always/read``: as the gateway does now: the messages of one socket
  read (:data:`PER_READ` of them here) journalled, written (and fsynced) once, then
  acknowledged, then pushed.

Prints, per variant, the minimum over passes of us per message and ms per device-second, the
journal's bytes per device-second and the longest fsync seen. ``--dir`` puts the journal on a
given file system (default: a temporary folder under the system's temp dir).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from simulators import FaultProfile, Fleet
from simulators.publisher import encode_event, event_topic
from streamfuse import topics
from streamfuse.config import EngineConfig
from streamfuse.engine import Engine
from streamfuse.gateway.journal import Journal
from streamfuse.types import RawMessage
from streamfuse.warmup import warm_up

VARIANTS = ("none", "never", "interval", "always", "interval/read", "always/read")
#: messages per socket read in the batched variants (the gateway commits once per read; how
#: many a read brings depends on the load: one at a trickle, hundreds in a burst)
PER_READ = 32


def messages(devices: int, seconds: float) -> list[tuple[RawMessage, float]]:
    fleet = Fleet(
        devices, seed=0, faults=FaultProfile(jitter_dist="none", jitter_mean_s=0.0)
    )
    prefix = topics.DEFAULT_PREFIX
    return [
        (RawMessage(event_topic(prefix, ev.payload.device, ev.kind), encode_event(ev.payload)),
         ev.send_time + 0.003)
        for ev in fleet.advance(seconds)
    ]  # fmt: skip


def one_pass(items: list, variant: str, folder: Path) -> tuple[float, int, float]:
    """Seconds for all items, journal bytes, longest fsync (s)."""
    engine = Engine(EngineConfig())
    journal = None
    policy, _, batched = variant.partition("/")
    if variant != "none":
        shutil.rmtree(folder, ignore_errors=True)
        journal = Journal(folder, fsync=policy, fsync_interval_s=0.1)
        journal.open()
    clock = time.perf_counter
    t0 = clock()
    if journal is None:
        for raw, now in items:
            engine.push(raw, now)
    elif not batched:
        accept, push = journal.accept, journal.push
        for raw, now in items:
            pos = accept(raw.topic, raw.payload)  # paho's callback, before the PUBACK
            push(pos, now)
            engine.push(raw, now)
    else:  # as the gateway does now: the read's messages journalled, committed, acknowledged
        accept, push, commit = journal.accept, journal.push, journal.commit
        for i in range(0, len(items), PER_READ):
            read = items[i : i + PER_READ]
            positions = [accept(raw.topic, raw.payload, write=False) for raw, _ in read]
            commit()  # then the read's PUBACKs
            for pos, (raw, now) in zip(positions, read, strict=True):
                push(pos, now)
                engine.push(raw, now)
    dt = clock() - t0
    size, longest = 0, 0.0
    if journal is not None:
        journal.close()
        size = journal.position
        longest = journal.fsync_max_s
    return dt, size, longest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("devices", nargs="?", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    items = messages(args.devices, args.seconds)
    warm_up(EngineConfig())
    base = args.dir or Path(tempfile.mkdtemp(prefix="sf-journal-bench-"))
    folder = base / "journal"
    results: dict[str, list[tuple[float, int, float]]] = {v: [] for v in VARIANTS}
    for _ in range(args.passes):
        for variant in VARIANTS:
            results[variant].append(one_pass(items, variant, folder))
    shutil.rmtree(folder, ignore_errors=True)
    if args.dir is None:
        shutil.rmtree(base, ignore_errors=True)
    n = len(items)
    dev_s = args.devices * args.seconds
    best_none = min(r[0] for r in results["none"])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{args.devices} devices x {args.seconds:g} s = {n} messages, {args.passes} passes "
          f"(minimum shown), journal on {base}, load average {load}")
    for variant in VARIANTS:
        runs = results[variant]
        best = min(r[0] for r in runs)
        extra = (best - best_none) / n * 1e6
        line = (f"  {variant:13s} {best / n * 1e6:7.2f} us/message  "
                f"{best / dev_s * 1e3:6.3f} ms per device-second")
        if variant != "none":
            line += (f"  (+{extra:5.2f} us/message, {extra * n / best_none / 1e6 * 100:+5.1f} %)"
                     f"  {runs[0][1] / dev_s / 1e3:6.1f} kB per device-second"
                     f"  longest fsync {max(r[2] for r in runs) * 1e3:6.2f} ms")
        print(line)


if __name__ == "__main__":
    main()
