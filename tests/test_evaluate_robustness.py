"""``streamfuse evaluate --corrupt/--drop`` and the conformal figures on a short eegmat run."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamfuse.errors import DataSourceError
from streamfuse.replay.evaluate import EvalSettings, evaluate_eegmat
from tests.conftest import need_data

LEVELS = ("eeg", "intermediate", "attention", "bayes", "mkl")


@pytest.mark.parametrize("how", ["drop", "corrupt"])
def test_damaged_run_is_compared_with_a_clean_one_on_the_same_windows(
    data_dir: Path, how: str
) -> None:
    root = need_data(data_dir, "eegmat")
    s = EvalSettings(subjects=2, seconds=40.0, levels=LEVELS, controls=False, **{how: "eeg"})
    r = evaluate_eegmat(root, s)
    rob = r["robustness"]
    assert rob[how] == "eeg" and rob["fraction"] == 0.3
    # 2 subjects x 80 s: 10 segments of 8 s each, 3 damaged; windows half inside one of them
    assert rob["windows_clean"] == rob["windows_damaged"] > 0
    assert 2 * 3 <= rob["damaged_windows"] <= 2 * 3 * 2
    for level in LEVELS:
        entry = rob["levels"][level]
        for part in ("all", "damaged_windows"):
            e = entry[part]
            if level == "eeg" and how == "drop":  # the unimodal model cannot, without EEG
                assert e["unpredicted_damaged"] > e["unpredicted_clean"]
                continue
            # every fusion level predicts every window it predicted on the clean stream
            assert e["unpredicted_damaged"] == e["unpredicted_clean"], (level, part)
        assert entry["all"]["windows"] == rob["windows_damaged"]
        if entry["all"]["auc_clean"] is not None and entry["all"]["auc_damaged"] is not None:
            assert entry["all"]["loss"] == pytest.approx(
                entry["all"]["auc_clean"] - entry["all"]["auc_damaged"], abs=2e-6
            )
    assert r["levels"]["eeg"]["windows"] == rob["windows_damaged"] - rob["levels"]["eeg"][
        "all"]["unpredicted_damaged"]
    c = r["conformal"]
    assert c["target"] == 0.9 and 0.0 <= c["coverage"] <= 1.0
    assert 0.0 <= c["abstain_rate"] <= 1.0 and 0.0 <= c["mean_set_size"] <= 2.0
    assert c["windows"] > 0 and c["engine"]["n"] > 0


def test_corrupt_and_drop_together_are_refused(data_dir: Path) -> None:
    root = need_data(data_dir, "eegmat")
    with pytest.raises(DataSourceError, match="not both"):
        evaluate_eegmat(root, EvalSettings(subjects=1, corrupt="eeg", drop="ecg"))
