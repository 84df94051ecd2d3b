"""The federated evaluation's arms (issue 18): local, federated and central on the same windows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamfuse.cli import main
from streamfuse.errors import DataSourceError
from streamfuse.replay.eegmat import EvalSettings
from streamfuse.replay.federated_eval import ARMS, evaluate_federated, site_of
from tests.conftest import need_data

pytestmark = pytest.mark.data


def test_one_site_makes_the_three_arms_one_model(data_dir: Path) -> None:
    """With one site, local, federated (merging with itself every 5 windows) and central see
    the same stream: the merge must leave the model as it was, so the figures agree."""
    root = need_data(data_dir, "eegmat")
    s = EvalSettings(subjects=2, seconds=24.0, controls=False, levels=("intermediate", "late"))
    r = evaluate_federated(root, s, sites=1, rounds_every=5)
    assert r["rounds"] > 0
    for lv in ("intermediate", "late"):
        aucs = [r["arms"][arm]["levels"][lv]["per_subject_auc"] for arm in ARMS]
        assert aucs[0] == aucs[2]  # local and central: one engine, the same items
        assert aucs[1] == pytest.approx(aucs[0], abs=1e-9)


def test_a_round_after_every_window_gives_the_central_model(data_dir: Path) -> None:
    """The merge of sufficient statistics is exact: with a round after every labelled window
    (only one site learnt in each round) the federated arm must predict every window with the
    central arm's model, so its figures equal central's. Tolerance 1e-9 on per-subject AUC:
    the merged moments differ from the sequential ones by rounding only (~1e-15 relative), and
    a rank-based AUC moves only if rounding breaks a tie. The AUC selector stays local
    ("selected" is not compared)."""
    root = need_data(data_dir, "eegmat")
    levels = ("eeg", "ecg", "early", "intermediate", "late", "attention", "bayes", "mkl")
    s = EvalSettings(subjects=6, seconds=48.0, controls=False, levels=levels)
    r = evaluate_federated(root, s, sites=3, rounds_every=1)
    assert r["rounds"] >= 100
    differs_from_local = False
    for lv in levels:
        fed, central, local = (r["arms"][arm]["levels"][lv]["per_subject_auc"]
                               for arm in ("federated", "central", "local"))
        assert sum(a is not None for a in central) >= 3
        assert fed == pytest.approx(central, abs=1e-9), lv
        differs_from_local |= local != pytest.approx(central, abs=1e-3)
    assert differs_from_local  # the sites alone learn something else: the test can fail


def test_the_quiet_trigger_merges_each_burst_before_the_next_session(data_dir: Path) -> None:
    """Session labels come in one burst per subject. A count of 7 (which divides no burst)
    leaves each burst's tail at one site, unmerged during the next session; the round
    policy's quiet trigger (no window learnt for 10 s with windows unmerged) merges the tails
    before the next subject's first window is predicted, so the federated arm comes closer
    to central (not exactly: the sites' bursts come together, so a round often holds two
    sites' windows, whose averaged temperature and Hedge losses are not the sequential
    ones). Measured (3 sites, 6 subjects of 48 s): summed |federated - central| per-subject
    AUC over eeg, ecg, intermediate, late 0.042 with the quiet trigger, 0.077 without."""
    root = need_data(data_dir, "eegmat")
    levels = ("eeg", "ecg", "intermediate", "late")
    s = EvalSettings(subjects=6, seconds=48.0, controls=False, levels=levels)
    on = evaluate_federated(root, s, sites=3, rounds_every=7)
    off = evaluate_federated(root, s, sites=3, rounds_every=7, round_quiet_s=None)
    assert on["cost"]["triggers"].get("quiet", 0) > 0 and "quiet" not in off["cost"]["triggers"]
    assert on["cost"]["bytes_per_round"] > 0 and on["cost"]["rounds_per_hour"] > 0

    def gap(r: dict[str, Any]) -> float:
        total, scored = 0.0, 0
        for lv in levels:
            fed, central = (r["arms"][arm]["levels"][lv]["per_subject_auc"]
                            for arm in ("federated", "central"))
            for f, c in zip(fed, central, strict=True):
                if f is not None and c is not None:
                    total, scored = total + abs(f - c), scored + 1
        assert scored >= 8
        return total

    assert gap(on) < gap(off)


def test_cli_reports_three_arms_on_the_same_windows(data_dir: Path, tmp_path: Path) -> None:
    root = need_data(data_dir, "eegmat")
    out = tmp_path / "r.json"
    rc = main(["evaluate", "--dataset", "eegmat", "--data-dir", str(root), "--subjects", "4",
               "--sites", "2", "--rounds-every", "10", "--out", str(out), "--no-progress",
               "--no-controls", "--levels", "intermediate,late"])
    assert rc == 0
    r = json.loads(out.read_text())
    assert set(r["arms"]) == {"local", "federated", "central"}
    assert r["sites"] == {"0": ["Subject00", "Subject02"], "1": ["Subject01", "Subject03"]}
    assert r["rounds"] >= 1
    for lv in ("intermediate", "late"):
        # every arm predicts the same windows; a window is scored once the arm has a model
        # (central may have one a few windows before a site that has not merged yet)
        predicted = {arm: r["arms"][arm]["levels"][lv]["windows"]
                     + r["arms"][arm]["levels"][lv]["unscored"] for arm in ARMS}
        assert len(set(predicted.values())) == 1
        assert r["arms"]["central"]["levels"][lv]["windows"] > 0
        for arm in ARMS:
            entry = r["arms"][arm]["levels"][lv]
            assert {"auc", "accuracy", "f1", "precision", "recall", "specificity"} <= set(entry)
            assert 1 <= entry["auc"]["n"] <= 4  # session labels: a first subject is unscored
    assert r["best_fusion_level"]["level"] in ("intermediate", "late")
    # what a round leaves at each site is named (the AUC selector, the conformal calibration)
    assert r["protocol"]["not_merged"] == ["selector", "conformal"]


def test_sites_are_checked_and_assigned_round_robin(data_dir: Path) -> None:
    root = need_data(data_dir, "eegmat")
    assert [site_of(i, 3) for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(DataSourceError, match="--sites"):
        evaluate_federated(root, EvalSettings(subjects=2), sites=3)
    with pytest.raises(DataSourceError, match=">= 1"):
        evaluate_federated(root, EvalSettings(subjects=2), sites=0)
