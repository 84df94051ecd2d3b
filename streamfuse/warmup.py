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



def kernels_cached() -> bool:
    """True when Numba's cache holds compiled kernels and none of them is stale, so
    :func:`warm_up` will load rather than compile (the demo says "compiling" only otherwise).

    Looks where each cached kernel's index lives (``NUMBA_CACHE_DIR`` if set, else the
    ``__pycache__`` beside the source): no index at all (a first run, or a cache directory
    that cannot be written) or an index older than its source means compiling. A kernel with
    no index of its own is not counted (most configurations never use every kernel: the
    neuro-fuzzy model's, for one), so a first use of such a kernel compiles unannounced.
    """
    import importlib
    import os
    import pkgutil

    from numba.core.registry import CPUDispatcher

    from . import kernels

    found = 0
    for info in pkgutil.iter_modules(kernels.__path__):
        module = importlib.import_module(f"{kernels.__name__}.{info.name}")
        for value in vars(module).values():
            cache = getattr(value, "_cache", None) if isinstance(value, CPUDispatcher) else None
            # the kernel's own source: a module may import kernels defined in another one
            source = getattr(getattr(value, "py_func", None), "__code__", None)
            source = getattr(source, "co_filename", None)
            index = getattr(getattr(cache, "_cache_file", None), "_index_path", None)
            if index is None or source is None or not os.path.exists(index):
                continue
            try:
                if os.path.getmtime(index) < os.path.getmtime(source):
                    return False
            except OSError:
                return False
            found += 1
    return found > 0
