"""Replay speed: one eegmat subject (rest + arithmetic, 244 s, 19 EEG + 1 ECG channels at 500 Hz)
through every fusion level of the evaluation, as a multiple of real time.

Figures (``extra_info["x_real_time"]``): the evaluation's own engine running every fusion level
at once (early, intermediate, late with its per-modality models, the selector: what
``streamfuse evaluate`` costs per subject), each level alone, and, in the same run, the baseline
of merely iterating the prepared items without an engine (the floor the shell itself costs).
The EDFs are read once, outside the timing. A reported figure, not an assertion.

Run: ``/work/venv/bin/pytest bench/test_bench_replay.py -p no:cacheprovider``
"""

from __future__ import annotations

import pytest
from timing import median_s

from streamfuse.engine import Engine
from streamfuse.replay.evaluate import (
    LEVELS,
    EvalSettings,
    eval_config,
    level_config,
    subject_items,
)
from streamfuse.replay.replay import replay_offline
from streamfuse.types import Chunk
from tests.conftest import data_root

ROOT = data_root() / "eegmat"
pytestmark = pytest.mark.skipif(
    not (ROOT / "Subject00_1.edf").is_file(), reason=f"eegmat recordings not found at {ROOT}"
)
# one subject: window labels, so the models learn during the run (session labels would
# arrive only after it, timing prediction alone)
SETTINGS = EvalSettings(labels="window")


def _only(modalities, items):
    """The items without chunks of modalities the engine is not configured for (a level
    alone runs on its modality only; the engine would refuse and count the others)."""
    for item, now in items:
        if isinstance(item, Chunk) and item.modality not in modalities:
            continue
        yield item, now


@pytest.fixture(scope="module")
def prepared():
    subj, items = subject_items(ROOT, "Subject00", 0.0, SETTINGS)
    for level in LEVELS:  # warm up every JIT kernel and model path before timing
        cfg = level_config(level, SETTINGS)
        replay_offline(Engine(cfg), _only(tuple(cfg.modalities), items[:2000]))
    return subj.end - subj.start, items


def _run(levels, items):
    out = 0
    for level in levels:
        cfg = level_config(level, SETTINGS)
        preds, _ = replay_offline(Engine(cfg), _only(tuple(cfg.modalities), items))
        out += len(preds)
    return out


def test_baseline_iterate_items(benchmark, prepared) -> None:
    seconds, items = prepared
    n = benchmark.pedantic(lambda: sum(1 for _ in _only(("eeg", "ecg"), items)), rounds=5)
    benchmark.extra_info["x_real_time"] = round(seconds / median_s(benchmark), 1)
    assert n == len([1 for _ in items])


@pytest.mark.parametrize("level", LEVELS)
def test_replay_one_level(benchmark, prepared, level) -> None:
    seconds, items = prepared
    n = benchmark.pedantic(_run, args=((level,), items), rounds=3)
    benchmark.extra_info["x_real_time"] = round(seconds / median_s(benchmark), 1)
    benchmark.extra_info["predictions"] = n
    assert n > 0


def _run_all_at_once(items):
    cfg = eval_config(SETTINGS)
    preds, _ = replay_offline(Engine(cfg), _only(tuple(cfg.modalities), items))
    return len(preds)


def test_replay_all_levels_in_one_engine(benchmark, prepared) -> None:
    seconds, items = prepared
    n = benchmark.pedantic(_run_all_at_once, args=(items,), rounds=3)
    benchmark.extra_info["x_real_time"] = round(seconds / median_s(benchmark), 1)
    benchmark.extra_info["predictions"] = n
    assert n > 0


def test_replay_all_levels_one_second_chunks(benchmark, prepared) -> None:
    """The same subject read from its files in 1 s blocks instead of device-like 100 ms chunks:
    windows are chunking-invariant, so the predictions must be the same (checked here); what
    changes is the per-chunk cost the engine pays."""
    from dataclasses import replace

    seconds, fine_items = prepared
    settings = replace(SETTINGS, chunk_s=1.0)
    _, items = subject_items(ROOT, "Subject00", 0.0, settings)
    cfg = eval_config(settings)

    def run() -> list:
        preds, _ = replay_offline(Engine(cfg), _only(tuple(cfg.modalities), items))
        return preds

    coarse = benchmark.pedantic(run, rounds=3)
    benchmark.extra_info["x_real_time"] = round(seconds / median_s(benchmark), 1)
    fine, _ = replay_offline(Engine(cfg), _only(tuple(cfg.modalities), fine_items))
    assert len(coarse) > 0
    assert [(p.t_start, p.proba) for p in coarse] == [(p.t_start, p.proba) for p in fine]
