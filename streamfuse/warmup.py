"""Compile every Numba kernel the engine uses before the first real message arrives."""

from __future__ import annotations

import time

import numpy as np

from .config import EngineConfig
from .engine import Engine
from .kernels import warmup as warm_kernels
from .state_layout import code_layout
from .types import Chunk, Label


def warm_up(config: EngineConfig | None = None) -> float:
    """Compile every Numba kernel the engine will use, before the first real message.

    Pushes a few windows of seeded noise for every configured modality, and a label, through
    a throwaway engine of the same configuration: alignment, feature, early-fusion and model
    kernels all compile (or load from numba's cache) here instead of stalling the first
    live windows; the classes a checkpoint records are read for its layout. Returns the
    seconds it took (a figure for logs, not a decision).
    """
    started = time.perf_counter()
    warm_kernels()
    cfg = config or EngineConfig()
    engine = Engine(cfg)
    rng = np.random.default_rng(0)
    chunk_s = 0.1
    steps = int(round(3 * cfg.window_s / chunk_s))
    for step in range(steps):
        t0 = step * chunk_s
        for spec in cfg.modalities.values():
            n = max(1, int(round(chunk_s * spec.fs)))
            data = rng.standard_normal((n, spec.channels)).astype(np.float32)
            engine.push(Chunk("warm-up", spec.name, step, t0, spec.fs, data), t0 + chunk_s)
        if step and step % 10 == 0:
            label = "a" if (step // 10) % 2 else "b"
            engine.push(Label("warm-up", t0 - 1.0, t0, label), t0 + chunk_s)
    engine.flush()
    # a checkpoint's layout reads our classes' sources once per process (~0.3 s): here, not on
    # the event loop at the first checkpoint
    code_layout()
    return time.perf_counter() - started
