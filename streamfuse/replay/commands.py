"""The ``record``, ``replay`` and ``evaluate`` subcommands (registered by :mod:`streamfuse.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..argtypes import bounded, positive_float
from ..config import FUSION_LEVELS
from ..learn.names import MODEL_NAMES
from .evaluate_commands import register_evaluate
from .progress import progress as _progress

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..config import EngineConfig, ModalitySpec

log = logging.getLogger("streamfuse.replay.commands")

_plot_hz = bounded(float, 0, strict=False, what="0 (no signal channels) or a rate in Hz")
#: signal_plot.DEFAULT_MAX_HZ, spelt out: the command line is built without importing the
#: decoders (NumPy, Numba); tests/test_mcap_signals.py checks the two agree
DEFAULT_PLOT_HZ = 128.0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``record``, ``replay`` and ``evaluate`` (:mod:`.evaluate_commands`) to the
    ``streamfuse`` command line."""
    rec = sub.add_parser(
        "record",
        help="store every message under a prefix in an MCAP session file",
        description="Subscribe to {prefix}/# and write each message (topic, payload, arrival "
        "time on this machine's clock) to an MCAP file, flushing a chunk at least every "
        "--flush-s seconds so a killed recorder leaves a readable file.",
    )
    rec.add_argument("--broker", default="mqtt://127.0.0.1:1883", metavar="URL", help="broker")
    rec.add_argument("--prefix", default=None,
                     help="record {prefix}/# (default: --config's, else streamfuse)")
    rec.add_argument("--out", required=True, type=Path, help="MCAP file to write")
    rec.add_argument("--duration", type=positive_float, default=None, help="stop after S seconds")
    rec.add_argument("--flush-s", type=positive_float, default=1.0, help="chunk flush period (1 s)")
    rec.add_argument(
        "--plot-hz", type=_plot_hz, default=DEFAULT_PLOT_HZ, metavar="HZ",
        help="also write each stream's samples to a {topic}/signal channel that MCAP viewers "
        "(Foxglove) plot, at most HZ samples/s per stream (every k-th sample; default "
        f"{DEFAULT_PLOT_HZ:g}; inf: every sample); 0 writes none",
    )
    rec.add_argument(
        "--config", default=None, metavar="FILE",
        help="a gateway TOML: its [modalities] name the signal channels' fields and its prefix "
        "is the default --prefix",
    )
    rec.set_defaults(run=run_record)

    rp = sub.add_parser(
        "replay",
        help="replay a session or recording through the engine (or onto a broker)",
        description="SOURCE is a gateway's journal folder, an MCAP session (.mcap), an EDF/BDF "
        "file, a WFDB record (.hea) or a CSV-like text file. A journal is applied as the "
        "gateway applied it (give the gateway's --config): every prediction it published, "
        "field for field. By default it goes offline through the engine as fast as "
        "possible, each item pushed with its recorded (or derived) arrival time, so outputs "
        "are deterministic. With --to-broker its messages are republished at --speed x real "
        "time instead.",
    )
    rp.add_argument("source", type=Path, metavar="SOURCE",
                    help=".mcap session, EDF/BDF, WFDB .hea record or CSV file")
    rp.add_argument("--speed", type=positive_float, default=1.0, help="x real time (--to-broker)")
    rp.add_argument("--to-broker", default=None, metavar="URL", help="republish to this broker")
    rp.add_argument(
        "--out", type=Path, default=None, metavar="FILE",
        help="write predictions to FILE: .jsonl (the wire payloads), .csv or .parquet (flat "
        "rows; parquet needs pip install 'streamfuse[parquet]') (default: JSON lines on "
        "stdout when it is not a terminal, else none)",
    )
    rp.add_argument(
        "--labels", type=Path, default=None, metavar="FILE",
        help="ground truth: a CSV of device,t_start,t_end,value (device-clock seconds; device "
        "optional) or WFDB annotations (e.g. 100.atr); the summary then shows accuracy",
    )
    rp.add_argument("--prefix", default=None, help="topic prefix (default: from the session)")
    rp.add_argument("--mapping", default="auto", choices=["auto", "eegmat"],
                    help="channel map for files")
    rp.add_argument("--device", default=None, help="device id for files (default: file stem)")
    rp.add_argument("--fs", type=positive_float, default=None, help="CSV sampling rate")
    rp.add_argument("--time-column", default=None, help="CSV time column (seconds)")
    rp.add_argument(
        "--config", default=None, metavar="FILE",
        help="a gateway TOML (as 'streamfuse gateway --config'): the same engine (windows, "
        "model, level, limits, modalities for sessions) and prefix as that gateway; the "
        "flags below override it",
    )
    rp.add_argument("--model", default=None, choices=MODEL_NAMES,
                    help="online model (default: --config's, else logreg)")
    rp.add_argument(
        "--level", default=None, choices=("selected", *FUSION_LEVELS),
        help="fusion level published (default: --config's, else 'selected')",
    )
    rp.add_argument("--window-s", type=positive_float, default=None, metavar="S",
                    help="window length (default: --config's, else 2.0)")
    rp.add_argument("--hop-s", type=positive_float, default=None, metavar="S",
                    help="hop between windows (default: --config's, else 1.0)")
    rp.add_argument("--grid-fs", type=positive_float, default=None, metavar="HZ",
                    help="common resampling rate (default: --config's, else 256.0)")
    rp.add_argument("--no-progress", action="store_true", help="no progress bar")
    rp.set_defaults(run=run_replay)

    register_evaluate(sub)


def run_record(
    args: argparse.Namespace,
    *,
    modalities: Mapping[str, ModalitySpec] | None = None,
    prefix: str | None = None,
) -> int:
    """``streamfuse record``; ``modalities`` and ``prefix`` are the gateway's (``--config``)."""
    from ..config import DEFAULT_MODALITIES
    from ..topics import DEFAULT_PREFIX
    from .recorder import record

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await record(
            args.broker, args.prefix or prefix or DEFAULT_PREFIX, args.out, stop=stop,
            duration=args.duration, flush_s=args.flush_s,
            modalities=modalities or DEFAULT_MODALITIES, plot_hz=args.plot_hz or None,
        )  # fmt: skip

    n = asyncio.run(main())
    print(f"recorded {n} messages into {args.out}")
    return 0


def _session_prefix(path: Path) -> str:
    from .. import topics
    from .mcap_io import read_session

    for m in read_session(path):
        levels = m.message.topic.split("/")
        if len(levels) >= 3:
            return "/".join(levels[:-2])
    return topics.DEFAULT_PREFIX


def run_replay(
    args: argparse.Namespace,
    *,
    engine_config: EngineConfig | None = None,
    prefix: str | None = None,
) -> int:
    """``streamfuse replay``. ``engine_config`` and ``prefix`` are the gateway's (from
    ``--config``, loaded by :mod:`streamfuse.cli`); flags given override them."""
    from .. import topics
    from ..config import EngineConfig
    from .outputs import check_out
    from .readers import EEGMAT_MAP, read_file
    from .replay import recording_items, session_items

    source: Path = args.source
    from .journal import is_journal

    if args.out is not None:
        check_out(args.out)
    if is_journal(source):
        return _replay_journal(args, engine_config, prefix)
    check_source(source)
    is_session = source.suffix.lower() == ".mcap"
    prefix = args.prefix or prefix or (
        _session_prefix(source) if is_session else topics.DEFAULT_PREFIX
    )
    flags = {
        k: v
        for k, v in (
            ("window_s", args.window_s), ("hop_s", args.hop_s), ("grid_fs", args.grid_fs),
            ("model", args.model), ("level", args.level),
        )
        if v is not None
    }
    base = engine_config if engine_config is not None else EngineConfig()
    if is_session:
        items = list(session_items(source))
        config = dataclasses.replace(base, **flags)
    else:
        mapping = EEGMAT_MAP if args.mapping == "eegmat" else None
        kw = {}
        if source.suffix.lower() not in (".edf", ".bdf", ".hea"):
            kw = {"fs": args.fs, "time_column": args.time_column}
        recording = read_file(source, mapping, **kw)
        device = args.device or topics.check_device(source.stem.replace(" ", "_"))
        items = list(recording_items(recording, device))
        config = dataclasses.replace(base, modalities=recording.modalities(), **flags)
    if args.labels is not None:
        from .labels import read_labels

        default_device = args.device or topics.check_device(source.stem.replace(" ", "_"))
        items = with_labels(items, read_labels(args.labels, default_device), is_session)
    span = items[-1][1] - items[0][1] if items else 0.0

    if args.to_broker:
        from .replay import republish

        with _progress(not args.no_progress, f"republishing at {args.speed:g}x", len(items)) as adv:
            n = asyncio.run(
                republish(args.to_broker, items, prefix=prefix, speed=args.speed, on_item=adv)
            )
        print(f"republished {n} messages ({span:.1f} s of recording) to {args.to_broker}")
        return 0

    from ..engine import Engine
    from .replay import replay_offline

    engine = Engine(config, prefix=prefix)
    t0 = time.perf_counter()
    with _progress(not args.no_progress, "replaying", len(items)) as adv:
        predictions, rejections = replay_offline(engine, items, on_item=adv)
    wall = time.perf_counter() - t0
    from .outputs import write_jsonl, write_predictions

    summary_to = sys.stdout
    if args.out:
        write_predictions(predictions, args.out)
    elif not sys.stdout.isatty():  # piped: the predictions are the output, the summary aside
        summary_to = sys.stderr
        try:
            write_jsonl(predictions, sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:  # the reader stopped early (| head): not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    speed = span / wall if wall > 0 else float("inf")
    print(
        f"replayed {len(items)} items ({span:.1f} s) in {wall:.2f} s ({speed:.0f}x real time): "
        f"{len(predictions)} predictions, {len(rejections)} rejected"
        + _accuracy(engine.metrics())
        + (f"; written to {args.out}" if args.out else ""),
        file=summary_to,
    )
    return 0


def _accuracy(metrics: dict[str, float]) -> str:
    """``; accuracy X over N labelled windows`` of the published choice, when labels existed."""
    n = metrics.get("selected.n") or 0
    acc = metrics.get("selected.accuracy")
    if not n or acc is None:
        return ""
    return f"; online accuracy {acc:.1%} over {int(n)} labelled windows"


#: what ``streamfuse replay`` reads, by suffix
SOURCE_KINDS = {
    ".mcap": "MCAP session", ".edf": "EDF", ".bdf": "BDF", ".hea": "WFDB record",
    ".csv": "CSV", ".tsv": "CSV", ".txt": "CSV",
}  # fmt: skip


def check_source(source: Path) -> None:
    """Refuse a directory or a suffix no reader knows, naming what would work."""
    from ..errors import DataSourceError

    known = ", ".join(SOURCE_KINDS)
    if source.is_dir():
        raise DataSourceError(
            f"{source} is a directory but no gateway journal; give one recording file "
            f"({known}) or a journal folder"
        )
    suffix = source.suffix.lower()
    if suffix and suffix not in SOURCE_KINDS:
        hint = " (a WFDB record: give its .hea)" if suffix in (".dat", ".atr") else ""
        raise DataSourceError(
            f"{source}: unknown recording type {suffix!r}{hint}; replay reads {known}"
        )


def with_labels(items: list, labels: list, is_session: bool) -> list:
    """Merge ``labels`` into ``items``. A recording's clock is its device clock, so each label
    arrives as its interval ends; a session's labels arrive after its last message (the
    device-to-gateway mapping is the engine's to make)."""
    if is_session:
        last = items[-1][1] if items else 0.0
        return [*items, *((label, last) for label in labels)]
    merged = [(now, 0, k, item) for k, (item, now) in enumerate(items)]
    merged += [(label.t_end, 1, k, label) for k, label in enumerate(labels)]
    merged.sort(key=lambda e: e[:3])
    return [(item, now) for now, _, _, item in merged]


def _replay_journal(
    args: argparse.Namespace, engine_config: EngineConfig | None, prefix: str | None
) -> int:
    from .. import topics
    from ..config import EngineConfig
    from ..engine import Engine
    from .journal import replay_journal

    flags = {
        k: v
        for k, v in (
            ("window_s", args.window_s), ("hop_s", args.hop_s), ("grid_fs", args.grid_fs),
            ("model", args.model), ("level", args.level),
        )
        if v is not None
    }
    config = dataclasses.replace(engine_config or EngineConfig(), **flags)
    prefix = args.prefix or prefix or topics.DEFAULT_PREFIX
    t0 = time.perf_counter()
    predictions, rejections, applied, scan = replay_journal(
        args.source, lambda: Engine(config, prefix=prefix)
    )
    wall = time.perf_counter() - t0
    if args.out:
        from .outputs import write_predictions

        write_predictions(predictions, args.out)
    print(
        f"replayed journal {args.source}: {applied.pushed} messages, {applied.ticks} ticks, "
        f"{applied.evictions} evictions, {applied.starts} gateway starts in {wall:.2f} s: "
        f"{len(predictions)} predictions ({len(applied.published)} journalled as published), "
        f"{len(rejections)} rejected; {len(scan.torn)} torn tails, "
        f"{applied.missing_messages} messages missing"
        + (f"; written to {args.out}" if args.out else "")
    )
    return 0
