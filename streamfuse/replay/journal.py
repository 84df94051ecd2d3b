"""Replaying a gateway's journal (``streamfuse replay JOURNAL_DIR --config gateway.toml``).

The journal (:mod:`streamfuse.journal`) holds every message the gateway accepted and every
call it made into its engine, with the exact ``now`` it gave; applying it to an engine built
from the gateway's configuration makes the same calls, so every prediction the gateway
published comes out again, field for field, except ``latency_ms`` (replay runs without a
timer). Windows made but never published (still queued when the gateway stopped) come out too.
The gateway's restarts are in the journal: one that restored its state continues it, one that
started fresh (no usable checkpoint) starts a fresh engine here too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .. import journal as fmt
from ..engine import Engine
from ..errors import ConfigError
from ..types import Prediction, Rejection


def is_journal(path: Path) -> bool:
    """``path`` is a folder holding journal segments."""
    return path.is_dir() and bool(fmt.segments(path))


def replay_journal(
    directory: str | Path, new_engine: Callable[[], Engine]
) -> tuple[list[Prediction], list[Rejection], fmt.Applied, fmt.Scan]:
    """Apply a whole journal to ``new_engine()``; its predictions and rejections in order,
    what was applied and what the scan found (torn tails, missing positions)."""
    found = fmt.segments(directory)
    if not found:
        raise ConfigError(f"{directory} holds no journal segments (journal-*.wal)")
    if found[0][0] != 0:
        raise ConfigError(
            f"the journal in {directory} starts at position {found[0][0]}, not 0: older "
            "segments were pruned after checkpoints. Replay needs the whole history: set "
            "journal.prune = false in the gateway's configuration to keep it"
        )
    predictions: list[Prediction] = []
    rejections: list[Rejection] = []

    def keep(outputs: list) -> None:
        for out in outputs:
            (predictions if isinstance(out, Prediction) else rejections).append(out)

    scan = fmt.Scan()
    _, applied = fmt.apply(
        new_engine(), fmt.records(directory, 0, scan), emit=keep, new_engine=new_engine
    )
    return predictions, rejections, applied, scan
