"""The eegmat fusion-level comparison: protocol pieces exactly, a short real run end to end."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from streamfuse.cli import main
from streamfuse.replay.evaluate import (
    LEVELS,
    METRICS,
    EvalSettings,
    Subject,
    evaluate_eegmat,
    level_config,
    subject_items,
)
from streamfuse.types import Chunk, Label
from tests.conftest import need_data

pytestmark = pytest.mark.data


def test_truth_is_the_class_covering_most_of_the_window() -> None:
    s = Subject("S", start=100.0, boundary=282.0, end=344.0)
    assert s.truth(272.0, 280.0) == "rest"
    assert s.truth(276.0, 284.0) == "rest"  # 6 s rest, 2 s arithmetic
    assert s.truth(280.0, 288.0) == "arithmetic"  # 2 s rest, 6 s arithmetic
    assert s.truth(278.0, 286.0) == "arithmetic"  # a tie goes to the later class
    assert s.truth(340.0, 348.0) == "arithmetic"  # half covered
    assert s.truth(342.0, 350.0) is None  # mostly past the end: no truth


def test_level_configs() -> None:
    s = EvalSettings()
    assert tuple(level_config("eeg", s).modalities) == ("eeg",)
    assert tuple(level_config("ecg", s).modalities) == ("ecg",)
    late = level_config("late", s)
    assert set(late.modalities) == {"eeg", "ecg"} and late.level == "late"
    assert late.modalities["eeg"].fs == 500.0 and late.modalities["eeg"].channels == 19
    assert late.window_samples == 2000


def test_subject_timeline_and_delayed_labels(data_dir: Path) -> None:
    root = need_data(data_dir, "eegmat")
    s = EvalSettings(seconds=20.0, label_delay_s=3.0, labels="window")
    subj, items = subject_items(root, "Subject00", 100.0, s)
    assert (subj.start, subj.boundary, subj.end) == (100.0, 120.0, 140.0)
    nows = [now for _, now in items]
    assert nows == sorted(nows)
    chunks = [i for i, _ in items if isinstance(i, Chunk)]
    for modality in ("eeg", "ecg"):
        mine = [c for c in chunks if c.modality == modality]
        assert [c.seq for c in mine] == list(range(400))  # 2 x 20 s of 0.1 s chunks
        assert mine[200].t0 == pytest.approx(120.0)  # arithmetic follows rest on one timeline
    labels = [(i, now) for i, now in items if isinstance(i, Label)]
    # windows [100+4j, 108+4j) inside [100, 140]: j = 0..8
    assert [lab.t_start for lab, _ in labels] == [100.0 + 4 * j for j in range(9)]
    assert all(now == lab.t_end + 3.0 for lab, now in labels)
    values = [lab.value for lab, _ in labels]
    assert values == ["rest"] * 4 + ["arithmetic"] * 5  # [112,120) rest; [116,124) tie -> task
    # the default (session labels): the same labels, all after the session (end 140 + 8 + 3)
    _, items = subject_items(root, "Subject00", 100.0, replace(s, labels="session"))
    late = [(i, now) for i, now in items if isinstance(i, Label)]
    assert [lab for lab, _ in late] == [lab for lab, _ in labels]
    assert all(now == 151.0 for _, now in late)
    assert min(now for _, now in late) > max(now for i, now in items if isinstance(i, Chunk))


def test_short_run_shape_and_sanity(data_dir: Path) -> None:
    root = need_data(data_dir, "eegmat")
    s = EvalSettings(
        subjects=2, seconds=40.0, levels=("eeg", "ecg", "intermediate"), labels="window"
    )
    r = evaluate_eegmat(root, s)
    assert [x["name"] for x in r["subjects"]] == ["Subject00", "Subject01"]
    assert set(r["levels"]) == {"eeg", "ecg", "intermediate"}
    for entry in r["levels"].values():
        assert set(METRICS) <= set(entry)
        for k in METRICS:
            m = entry[k]
            assert m["mean"] is None or 0.0 <= m["mean"] <= 1.0
        # 80 s per subject: 8 s windows every 4 s on the subject's own phase (off its 4 s
        # grid) that hold any of its data start in (start-8, end): 22 each; the 2 of them
        # holding less than half a window have no truth, and the first ones of the first
        # subject come before any label arrived: both unscored, not scored
        assert sum(entry["published_levels"].values()) == 2 * 22
        assert entry["windows"] + entry["unscored"] == 2 * 22
        assert 2 * 2 < entry["unscored"] <= 2 * 2 + 4
        # 19 labels per subject, each window learnt once when labels cover half of it
        assert 2 * 19 <= entry["learned"] <= 2 * 21
    assert r["windows"] == r["levels"]["eeg"]["windows"]
    again = evaluate_eegmat(root, s)
    assert json.dumps(again, sort_keys=True) == json.dumps(r, sort_keys=True)


def test_cli_evaluate_writes_json_and_png(data_dir: Path, tmp_path: Path, capsys) -> None:
    root = need_data(data_dir, "eegmat")
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    code = main(["evaluate", "--dataset", "eegmat", "--data-dir", str(root), "--out", str(out),
                 "--plot", str(png), "--subjects", "1", "--no-progress"])  # fmt: skip
    assert code == 0
    r = json.loads(out.read_text())
    assert list(r["levels"]) == list(LEVELS)
    auc = r["levels"]["ecg"]["auc"]
    assert set(auc) >= {"mean", "sd"} and (auc["mean"] is None or math.isfinite(auc["mean"]))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| ecg |" in capsys.readouterr().out


def test_cli_replay_file_is_deterministic(data_dir: Path, tmp_path: Path) -> None:
    src = need_data(data_dir, "eegmat", "Subject00_2.edf")
    outs = []
    for k in range(2):
        out = tmp_path / f"p{k}.jsonl"
        args = ["replay", str(src), "--mapping", "eegmat", "--out", str(out), "--no-progress",
                "--window-s", "8", "--hop-s", "4", "--grid-fs", "250"]  # fmt: skip
        assert main(args) == 0
        outs.append(out.read_text())
    lines = outs[0].splitlines()
    assert len(lines) >= 12 and outs[0] == outs[1]
    first = json.loads(lines[0])
    assert first["device"] == "Subject00_2" and set(first["modalities"]) == {"eeg", "ecg"}


def test_cli_errors_name_the_file(data_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["replay", str(tmp_path / "absent.edf"), "--no-progress"]) == 1
    assert "absent.edf: no such recording" in capsys.readouterr().err
    csv = tmp_path / "rec.csv"
    csv.write_text("ECG,Marker\n0.1,0\n0.2,1\n")
    assert main(["replay", str(csv), "--fs", "250", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "rec.csv" in err and "'Marker'" in err
