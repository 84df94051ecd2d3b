"""``streamfuse cluster run|resize|status``: a fleet of shard owners on Ray.

Imports no Ray until a command runs; without it installed, the command says which extra to
install. ``run`` joins (``--address``) or starts a Ray cluster, starts the controller and the
owners, prints a status line every ``--status-every`` seconds and on SIGINT/SIGTERM releases
every shard (drain, checkpoint, disconnect) before it leaves. ``resize`` and ``status`` talk
to the running fleet's controller from another terminal.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import threading
import time
from typing import Any

from ..argtypes import positive_float, positive_int
from ..errors import ConfigError
from .runtime import CONTROLLER, NAMESPACE, controller, join


def register(sub: Any) -> None:
    cl = sub.add_parser(
        "cluster",
        help="run the gateway as a fleet of shard owners on Ray (extra: streamfuse[cluster])",
        description="Device shards ({prefix}/{shard}/{device}/..., shard = crc32(device) % S) "
        "owned by gateway actors on Ray: each shard has its own persistent MQTT session and "
        "checkpoint, so shards move between actors (resize) and survive an actor's death.",
    )
    csub = cl.add_subparsers(dest="cluster_command", metavar="ACTION", required=True,
                             help="run a fleet; resize or inspect a running one")
    run = csub.add_parser("run", help="start a fleet and serve until SIGINT/SIGTERM")
    run.add_argument("--config", default=None, metavar="FILE",
                     help="the gateway's TOML settings (see streamfuse gateway --print-config)")
    run.add_argument("--shards", type=positive_int, default=None, metavar="S",
                     help="shards of the deployment (default: [shards] count of --config, "
                     "else 64); devices publish with simulate --shards S")
    run.add_argument("--actors", type=positive_int, default=2, metavar="N",
                     help="shard-owner actors to start with")
    run.add_argument("--store", default=None, metavar="DIR",
                     help="checkpoint store every node reaches, one folder per shard "
                     "(default: checkpoint.dir of --config)")
    run.add_argument("--broker", default=None, metavar="URL", help="the broker (mqtt.broker)")
    run.add_argument("--prefix", default=None, help="topic prefix (mqtt.prefix)")
    run.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                     help="owner i serves /metrics on PORT+i (default metrics.port; 0: free)")
    run.add_argument("--cpus-per-actor", type=positive_float, default=1.0, metavar="C",
                     help="Ray CPUs each owner reserves")
    run.add_argument("--duration", type=positive_float, default=None,
                     help="stop after N seconds (default: until SIGINT/SIGTERM)")
    run.add_argument("--merge-every", type=positive_float, default=None, metavar="S",
                     help="merge the shards' models every S seconds (federated averaging over "
                     "the broker; each shard a site); default: each shard learns alone")
    run.add_argument("--status-every", type=positive_float, default=10.0, metavar="S",
                     help="print a status line this often")
    size = csub.add_parser("resize", help="grow or shrink a running fleet to N owners")
    size.add_argument("actors", type=positive_int, metavar="N", help="owners after the resize")
    status = csub.add_parser("status", help="shards, owners, devices and lag of a running fleet")
    status.add_argument("--json", action="store_true", help="print the whole status as JSON")
    for p in (run, size, status):
        p.add_argument("--address", default=None if p is run else "auto", metavar="ADDR",
                       help="Ray cluster to join" + (" (default: start a local one)" if p is run
                                                     else " (default: auto, this machine's)"))
        p.add_argument("--name", default=CONTROLLER, help="the fleet's name in Ray")
        p.add_argument("--log-level", default=argparse.SUPPRESS,
                       choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                       help="logging threshold (default: WARNING)")
    run.set_defaults(run=run_fleet)
    size.set_defaults(run=resize_fleet)
    status.set_defaults(run=show_status)


def fleet_config(args: argparse.Namespace) -> Any:
    """The gateway settings of ``cluster run``: --config, then the flags."""
    from ..gateway.loading import check_paths, load

    overrides = {"mqtt.broker": args.broker, "mqtt.prefix": args.prefix,
                 "checkpoint.dir": args.store, "metrics.port": args.metrics_port}
    config = load(args.config, overrides=overrides)
    count = args.shards or config.shards.count or 64
    config = dataclasses.replace(config, shards=dataclasses.replace(config.shards, count=count,
                                                                    own=""))
    if args.merge_every:
        config = dataclasses.replace(config, federated=dataclasses.replace(
            config.federated, federation=config.federated.federation or args.name,
            round_interval_s=args.merge_every))
    if not config.checkpoint.dir:
        raise ConfigError("a fleet needs a checkpoint store: --store DIR (or checkpoint.dir)")
    if not os.path.isabs(config.checkpoint.dir):
        config = dataclasses.replace(config, checkpoint=dataclasses.replace(
            config.checkpoint, dir=os.path.abspath(config.checkpoint.dir)))
    return check_paths(config)


def launch(config: Any, actors: int, *, name: str = CONTROLLER,
           cpus_per_actor: float = 1.0) -> Any:  # fmt: skip
    """Start a fleet on the Ray this process has joined; returns the controller's handle once
    every owner serves its shards."""
    import ray

    from .controller import FleetController

    remote = ray.remote(FleetController).options(  # type: ignore[attr-defined]
        name=name, namespace=NAMESPACE, num_cpus=0, max_concurrency=64
    )
    handle = remote.remote(config, actors, name=name, cpus_per_actor=cpus_per_actor)
    ray.get(handle.start.remote())  # type: ignore[attr-defined]
    return handle


def run_fleet(args: argparse.Namespace) -> int:
    config = fleet_config(args)
    ray = join(args.address)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT,
                                                                    signal.SIGTERM)}
    try:
        handle = launch(config, args.actors, name=args.name, cpus_per_actor=args.cpus_per_actor)
        print(f"fleet {args.name!r}: {config.shards.count} shards on {args.actors} owners; "
              f"devices publish under {config.prefix}/<shard>/<device>/<modality>", flush=True)
        print(summary(ray.get(handle.status.remote())), flush=True)
        deadline = time.monotonic() + args.duration if args.duration else float("inf")
        while not stop.wait(min(args.status_every, max(0.0, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                break
            print(summary(ray.get(handle.status.remote())), flush=True)
        history = ray.get(handle.stop.remote())
        print(f"fleet stopped: {len(history['holdings'])} shard holdings, every shard "
              "released (drained, checkpointed)", flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ray.shutdown()
    return 0


def resize_fleet(args: argparse.Namespace) -> int:
    ray = join(args.address)
    out = ray.get(controller(ray, args.name).resize.remote(args.actors))
    print(f"resized to {len(out['owners'])} owners in {out['seconds']:.1f} s; moved "
          f"{len(out['moved'])} shards: " + ", ".join(f"{s} {a}->{b}" for s, a, b in out["moved"]))
    return 0


def show_status(args: argparse.Namespace) -> int:
    ray = join(args.address)
    status = ray.get(controller(ray, args.name).status.remote())
    print(json.dumps(status, indent=2, default=str) if args.json else summary(status))
    return 0


def summary(status: dict[str, Any]) -> str:
    """A table: one line per owner, one per shard it serves."""
    lines = [f"{'owner':<28} {'pid':>7} {'shard':>5} {'devices':>7} {'messages':>9} "
             f"{'predictions':>11} {'lag':>5}  metrics"]
    for name, o in sorted(status["owners"].items()):
        if "error" in o:
            lines.append(f"{name:<28} unreachable: {o['error']}")
            continue
        url = o["metrics_url"]
        for shard, s in sorted(o["serving"].items(), key=lambda kv: int(kv[0])):
            lines.append(f"{name:<28} {o['pid']:>7} {shard:>5} {s.get('devices', 0):>7} "
                         f"{s.get('processed', 0):>9} {s.get('published', 0):>11} "
                         f"{s.get('queued', 0):>5}  {url}")
        if not o["serving"]:
            lines.append(f"{name:<28} {o['pid']:>7} (no shards)  {url}")
    m = status.get("merging")
    lines.append("models: each shard learns alone" if m is None else
                 f"models merged across shards (federation {m['federation']}): round "
                 f"{m['round']}, {m['completed']} merged, {m['short']} short of parties")
    return "\n".join(lines)
