"""Learn+predict cost per window of the issue-16 fusion techniques, beside the intermediate level.

The inputs are real feature vectors: a simulated device's windows (ECG, 8-channel EEG, 3-axis
ACC, 2 s every 1 s on the 256 Hz grid) through ``DeviceFeatures`` and the per-device
``OnlineNormalizer``, as the engine computes them, plus each modality's quality indices
(``features/quality.py``); the label alternates every 30 windows. Every case times, per
window, what the engine would do on a labelled window (predict, then learn), over the windows
after a warm-up, on a model warmed on the same warm-up windows:

- ``intermediate``: the model ``learn/models.py`` makes by default (``"logreg"``,
  ``ScaledLogisticRegression``) on the concatenated features: the baseline;
- ``attention`` / ``bayes``: the river-API classifiers, each owning one member per modality;
- ``gate`` / ``bayes-combiner``: the combiners alone on given member probabilities (what they
  add when the engine reuses the late level's members);
- ``mkl``: ``OnlineMKLClassifier`` (3 kernels x 64 random features per modality);
- ``conformal``: ``AdaptiveConformal`` predict + learn on the intermediate probabilities;
- ``quality``: computing every modality's quality indices of one window.

``test_bench_hub_level`` times each level as the engine runs it: a
:class:`~streamfuse.fusion.levels.FusionHub` configured with that level alone (conformal sets
on, as by default) doing ``evidence`` (normalisation, and the quality indices for attention and
bayes), ``decide`` and ``learn`` per window, beside the hub running ``intermediate`` alone,
timed right after in the same process.

Each case prints its per-window median beside the intermediate baseline timed right after it,
in the same process (``extra_info`` holds both and their ratio). No thresholds.

Run: ``.venv/bin/pytest bench/test_bench_fusion_techniques.py -p no:cacheprovider -s``
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from timing import median_s

from streamfuse.config import EngineConfig
from streamfuse.features import DeviceFeatures, OnlineNormalizer, concat
from streamfuse.features.quality import window_quality
from streamfuse.fusion.attention import AttentionFusionClassifier, ModalityGate
from streamfuse.fusion.bayes import BayesFusionClassifier, BayesianFusion
from streamfuse.fusion.conformal import AdaptiveConformal
from streamfuse.fusion.levels import FusionHub
from streamfuse.fusion.mkl import OnlineMKLClassifier
from streamfuse.learn.models import make_model
from tests.feature_windows import simulated_windows

WARM = 30
ROUNDS = 7


class Window:
    __slots__ = ("views", "flat", "quality", "y", "blocks", "masks", "fs", "fused", "features")

    def __init__(self, **kw: Any) -> None:
        for k, v in kw.items():
            setattr(self, k, v)


@pytest.fixture(scope="module")
def windows() -> list[Window]:
    cfg = EngineConfig()
    feats, norm = DeviceFeatures(cfg), OnlineNormalizer(warmup=3)
    out = []
    for i, fw in enumerate(simulated_windows(150.0, seed=0)):
        w = fw.window
        per = {m: f for m, f in feats.update(w).items() if f}
        flat = concat(per)
        norm.learn_one(flat)
        z = norm.transform_one(flat)
        views = {m: {k: z[k] for k in f} for m, f in per.items()}
        quality = {m: window_quality(m, w.blocks[m], w.masks[m], w.fs) for m in w.blocks}
        y = "arithmetic" if (i // 30) % 2 else "rest"
        out.append(Window(views=views, flat=z, quality=quality, y=y, blocks=dict(w.blocks),
                          masks=dict(w.masks), fs=w.fs, fused=fw, features=per))
    return out


# ------------------------------------------------------------------ the cases
def _intermediate():
    model = make_model("logreg")

    def step(w: Window) -> None:
        model.predict_proba_one(w.flat)
        model.learn_one(w.flat, w.y)

    return step


def _attention():
    model = AttentionFusionClassifier()

    def step(w: Window) -> None:
        model.attend(w.views, w.quality)
        model.learn_views(w.views, w.y, w.quality)

    return step


def _bayes():
    model = BayesFusionClassifier()

    def step(w: Window) -> None:
        model.fuse_views(w.views)
        model.learn_views(w.views, w.y)

    return step


def _mkl():
    model = OnlineMKLClassifier(seed=0)

    def step(w: Window) -> None:
        model.predict_views(w.views)
        model.learn_views(w.views, w.y)

    return step


def _member_probas(w: Window) -> dict[str, dict[str, float]]:
    # fixed, plausible member probabilities: the combiners' cost does not depend on them
    p = 0.7 if w.y == "rest" else 0.3
    return {m: {"rest": p, "arithmetic": 1.0 - p} for m in w.views}


def _gate():
    gate = ModalityGate()

    def step(w: Window) -> None:
        members = _member_probas(w)
        gate.combine(members, w.quality)
        gate.learn(members, w.quality, w.y)

    return step


def _bayes_combiner():
    fusion = BayesianFusion()

    def step(w: Window) -> None:
        members = _member_probas(w)
        fusion.fuse(members)
        fusion.learn(members, w.y)

    return step


def _conformal():
    aci = AdaptiveConformal()

    def step(w: Window) -> None:
        proba = _member_probas(w)["ecg"]
        aci.learn(proba, w.y, aci.predict(proba))

    return step


def _quality():
    def step(w: Window) -> None:
        for m, block in w.blocks.items():
            window_quality(m, block, w.masks[m], w.fs)

    return step


CASES: dict[str, Callable[[], Callable[[Window], None]]] = {
    "attention": _attention,
    "bayes": _bayes,
    "mkl": _mkl,
    "gate": _gate,
    "bayes-combiner": _bayes_combiner,
    "conformal": _conformal,
    "quality": _quality,
}


def _warmed(make: Callable[[], Callable[[Window], None]], windows: list[Window]):
    step = make()
    for w in windows[:WARM]:
        step(w)
    return step


def _per_window_s(make, windows: list[Window]) -> float:
    """Median over ROUNDS of a warmed model's pass over the timed windows, per window."""
    timed = windows[WARM:]
    runs = []
    for _ in range(ROUNDS):
        step = _warmed(make, windows)
        t0 = time.perf_counter()
        for w in timed:
            step(w)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs) / len(timed)


@pytest.mark.parametrize("case", list(CASES))
def test_bench_fusion_technique(benchmark, windows, case):
    timed = windows[WARM:]
    assert len(timed) >= 60 and sum(len(w.views) == 3 for w in timed) >= 0.9 * len(timed)

    def run(step):
        for w in timed:
            step(w)

    benchmark.pedantic(run, setup=lambda: ((_warmed(CASES[case], windows),), {}),
                       rounds=ROUNDS, warmup_rounds=1)
    ours_us = median_s(benchmark) / len(timed) * 1e6
    base_us = _per_window_s(_intermediate, windows) * 1e6  # same protocol, right after
    n_features = len(timed[0].flat)
    benchmark.extra_info.update(
        windows=len(timed), features=n_features, per_window_us=ours_us,
        intermediate_per_window_us=base_us, ratio=ours_us / base_us,
    )
    what = "all modalities' indices" if case == "quality" else "predict + learn"
    print(f"\n{case}: {ours_us:.1f} us/window ({what}); intermediate logreg on the "
          f"same {n_features} features {base_us:.1f} us/window ({ours_us / base_us:.1f}x)")


# ------------------------------------------------------------------ each level in the hub
HUB_LEVELS = ("intermediate", "late", "attention", "mkl", "bayes")


def _hub(level: str):
    hub = FusionHub(EngineConfig(levels=(level,), level=level), partial(make_model, "logreg"))
    device = hub.new_device()

    def step(w: Window) -> None:
        ev = hub.evidence(w.fused, w.features, device)
        hub.learn(ev, hub.decide(ev), w.y)

    return step


@pytest.mark.parametrize("level", HUB_LEVELS)
def test_bench_hub_level(benchmark, windows, level):
    timed = windows[WARM:]
    hub_probe = FusionHub(EngineConfig(levels=(level,), level=level),
                          partial(make_model, "logreg"))  # fmt: skip
    dev = hub_probe.new_device()
    for w in windows[: WARM + 5]:
        ev = hub_probe.evidence(w.fused, w.features, dev)
        v = hub_probe.decide(ev)
        hub_probe.learn(ev, v, w.y)
    assert v.levels[level] and v.decision.level == level  # the level really decides

    def run(step):
        for w in timed:
            step(w)

    benchmark.pedantic(run, setup=lambda: ((_warmed(partial(_hub, level), windows),), {}),
                       rounds=ROUNDS, warmup_rounds=1)
    ours_us = median_s(benchmark) / len(timed) * 1e6
    base_us = _per_window_s(partial(_hub, "intermediate"), windows) * 1e6
    benchmark.extra_info.update(
        windows=len(timed), per_window_us=ours_us, intermediate_hub_per_window_us=base_us,
        ratio=ours_us / base_us,
    )
    print(f"\nhub[{level}]: {ours_us:.1f} us/window (evidence + decide + learn); "
          f"hub[intermediate] {base_us:.1f} us/window ({ours_us / base_us:.2f}x)")
