"""Per-device smoothing of the late members' decisions (``EngineConfig.member_smoothing``,
:mod:`streamfuse.fusion.smoothing`): the average a plain loop gives, per device, causal and
label-free, and what the engine's levels combine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamfuse.config import EngineConfig
from streamfuse.engine import Engine
from streamfuse.errors import ConfigError
from streamfuse.fusion.smoothing import DecisionSmoother
from streamfuse.types import Prediction
from tests.naive import naive_smoothed
from tests.streams import device_messages


def _random_decisions(seed: int, n: int) -> list[tuple[str, dict[str, dict[str, float]]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        members = {}
        for m in ("eeg", "ecg"):
            if rng.random() < 0.8:  # a modality is sometimes missing
                p = float(rng.choice([rng.random(), 0.0, 1.0], p=[0.9, 0.05, 0.05]))
                members[m] = {"rest": 1 - p, "task": p}
        out.append((str(rng.choice(["d1", "d2", "d3"])), members))
    return out


@pytest.mark.parametrize("half_life", [0.5, 1.0, 3.0])
def test_smoother_matches_a_plain_loop_per_device(half_life: float) -> None:
    decisions = _random_decisions(int(half_life * 10), 400)
    smoother = DecisionSmoother(half_life)
    got = [smoother.smooth(d, m) for d, m in decisions]
    want = naive_smoothed(decisions, half_life)
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for m in g:
            for c in g[m]:
                assert g[m][c] == pytest.approx(w[m][c], abs=1e-9)


def test_a_modality_unusable_in_a_window_stays_out_of_the_average() -> None:
    decisions = _random_decisions(11, 400)
    rng = np.random.default_rng(5)
    skipped = [tuple(m for m in ms if rng.random() < 0.2) for _, ms in decisions]
    smoother = DecisionSmoother(1.0)
    got = [smoother.smooth(d, m, skip) for (d, m), skip in zip(decisions, skipped, strict=True)]
    want = naive_smoothed(decisions, 1.0, skipped)
    assert sum(map(len, skipped)) > 50
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for m in g:
            for c in g[m]:
                assert g[m][c] == pytest.approx(w[m][c], abs=1e-9)


def test_a_skipped_modality_is_held_only_when_an_earlier_usable_window_gave_it() -> None:
    """``smooth_held`` names the skipped modalities that answer with their average over the
    device's earlier usable windows; a skipped modality never usable before answers with its
    own (damaged) decision and is not held."""
    decisions = _random_decisions(13, 400)
    rng = np.random.default_rng(6)
    skipped = [tuple(m for m in ms if rng.random() < 0.3) for _, ms in decisions]
    smoother = DecisionSmoother(1.0)
    first = {"ecg": {"rest": 0.2, "task": 0.8}}
    assert smoother.smooth_held("new", first, ("ecg",)) == (first, frozenset())
    usable_before: set[tuple[str, str]] = set()
    n_held = n_not = 0
    for (d, ms), skip in zip(decisions, skipped, strict=True):
        out, held = smoother.smooth_held(d, ms, skip)
        want = {m for m in skip if m in ms and (d, m) in usable_before}
        assert held == want
        for m in set(skip) & set(ms) - held:
            assert out[m] == pytest.approx(ms[m], abs=1e-9)  # its own decision
        n_held += len(held)
        n_not += len(set(skip) & set(ms) - held)
        usable_before |= {(d, m) for m in ms if m not in skip}
    assert n_held > 50


def test_devices_do_not_leak_into_each_other_and_the_oldest_is_forgotten_at_the_cap() -> None:
    decisions = _random_decisions(7, 300)
    together = DecisionSmoother(2.0)
    mixed = [together.smooth(d, m) for d, m in decisions]
    for device in ("d1", "d2", "d3"):
        alone = DecisionSmoother(2.0)
        for (d, m), out in zip(decisions, mixed, strict=True):
            if d == device:
                assert alone.smooth(d, m) == out
    capped = DecisionSmoother(1.0, max_devices=2)
    first = {"eeg": {"rest": 0.9, "task": 0.1}}
    capped.smooth("a", first)
    capped.smooth("b", first)
    capped.smooth("c", first)  # "a" was the least recently decided: forgotten
    again = capped.smooth("a", {"eeg": {"rest": 0.2, "task": 0.8}})
    assert again["eeg"]["task"] == pytest.approx(0.8)


def test_config_refuses_a_bad_half_life() -> None:
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="member_smoothing"):
            EngineConfig(member_smoothing=bad)
    with pytest.raises(ConfigError, match="half_life"):
        DecisionSmoother(0.0)


def _predictions(config: EngineConfig) -> list[Prediction]:
    engine = Engine(config)
    out: list[Prediction] = []
    for device, seed in (("a", 3), ("b", 4)):
        for msg, now in device_messages(device, 40, seed=seed):
            out.extend(o for o in engine.push(msg, now) if isinstance(o, Prediction))
    out.extend(o for o in engine.flush() if isinstance(o, Prediction))
    return out


def test_engine_levels_combine_the_smoothed_members_and_the_members_learn_as_before() -> None:
    """Smoothing changes no member's learning (late fusion's members and Hedge losses see the
    raw decisions), so the smoothed run's members are the plain run's averaged per device as
    the plain loop does, and late fusion mixes those."""
    levels = ("intermediate", "late", "attention", "bayes")
    # attention published: each prediction's explanation names the modalities left out of it
    plain = _predictions(EngineConfig(levels=levels, level="attention", member_smoothing=0.0))
    smooth = _predictions(EngineConfig(levels=levels, level="attention", member_smoothing=1.5))
    assert [p.index for p in plain] == [p.index for p in smooth]
    skipped = [
        tuple(k.split(".", 1)[1] for k in p.explanation if k.startswith("unusable."))
        for p in smooth
    ]
    assert any(skipped)  # the first window of a device is half empty: its gap crosses the limit
    want = naive_smoothed([(p.device, dict(p.modality_proba)) for p in plain], 1.5, skipped)
    checked = changed = 0
    for p, s, w in zip(plain, smooth, want, strict=True):
        assert s.levels["intermediate"] == p.levels["intermediate"]  # not a member level
        assert s.modality_proba.keys() == w.keys()
        for m in w:
            for c in w[m]:
                assert s.modality_proba[m][c] == pytest.approx(w[m][c], abs=1e-9)
        if s.levels["late"] and len(s.modality_proba) > 1:
            # late fusion is a weighted average of the smoothed members, not of the raw ones
            for c, v in s.levels["late"].items():
                said = [pr.get(c, 0.0) for pr in s.modality_proba.values()]
                assert min(said) - 1e-12 <= v <= max(said) + 1e-12
            changed += any(
                abs(s.modality_proba[m][c] - p.modality_proba[m][c]) > 1e-3
                for m in p.modality_proba for c in p.modality_proba[m]
            )
            checked += 1
    assert checked > 50 and changed > 25
