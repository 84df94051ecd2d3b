"""One call to run a finished stream of items through an engine (notebooks, scripts, tests).

The shells feed a long-lived :class:`~streamfuse.engine.Engine` item by item; offline, the
whole input is at hand, so :func:`run` pushes it all, flushes the windows still open and
hands back what came out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .config import EngineConfig
from .engine import Engine, Item
from .types import Prediction, Rejection


@dataclass(frozen=True, slots=True)
class RunResult:
    """What :func:`run` produced: every prediction and rejection in output order, and the
    engine (its :meth:`~streamfuse.engine.Engine.metrics` and
    :meth:`~streamfuse.engine.Engine.stats`, or to push more)."""

    predictions: list[Prediction]
    rejections: list[Rejection]
    engine: Engine


def run(
    items: Iterable[tuple[Item, float]],
    config: EngineConfig | None = None,
    *,
    engine: Engine | None = None,
) -> RunResult:
    """Push every ``(item, now)`` pair into an engine, then flush it.

    Parameters
    ----------
    items
        :class:`~streamfuse.types.Chunk`, :class:`~streamfuse.types.Label` or
        :class:`~streamfuse.types.RawMessage` items, each with its arrival time ``now`` on the
        gateway clock (seconds, not decreasing).
    config
        The configuration of a new engine (``None``: the defaults); not with ``engine``.
    engine
        An engine to continue (its state changes in place).

    Examples
    --------
    >>> import numpy as np
    >>> import streamfuse
    >>> acc = streamfuse.ModalitySpec("acc", ("x", "y", "z"), 50.0)
    >>> config = streamfuse.EngineConfig(modalities={"acc": acc})
    >>> rng = np.random.default_rng(0)
    >>> items = [
    ...     (streamfuse.Chunk("wrist", "acc", i, i * 0.1, 50.0,
    ...                       rng.standard_normal((5, 3)).astype(np.float32)), i * 0.1 + 0.1)
    ...     for i in range(60)
    ... ]
    >>> result = streamfuse.run(items, config)
    >>> len(result.predictions), len(result.rejections)
    (8, 0)
    """
    if engine is not None and config is not None:
        raise ValueError("pass config (for a new engine) or engine (to continue one), not both")
    engine = engine if engine is not None else Engine(config)
    predictions: list[Prediction] = []
    rejections: list[Rejection] = []
    for item, now in items:
        for out in engine.push(item, now):
            if isinstance(out, Prediction):
                predictions.append(out)
            else:
                rejections.append(out)
    predictions.extend(engine.flush())
    return RunResult(predictions, rejections, engine)
