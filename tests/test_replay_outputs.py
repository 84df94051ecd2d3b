"""``streamfuse replay``: predictions to .jsonl/.csv/.parquet or, piped, to stdout; ground truth
from a labels CSV or WFDB annotations, with the accuracy in the summary; sources it cannot read
refused with a message that says what it reads."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamfuse.cli import main
from streamfuse.exits import EXIT_USAGE
from tests.conftest import need_data
from tests.prediction_schema import problems

REPO = Path(__file__).resolve().parents[1]


def _recording(folder: Path) -> tuple[Path, Path]:
    """60 s of accelerometer, still and walking in turns of 10 s, and its labels CSV."""
    rng = np.random.default_rng(5)
    t = np.arange(0, 60, 1 / 50)
    walking = (t // 10) % 2 == 1
    data = rng.normal(0, 1, (t.size, 3)) * np.where(walking, 1.0, 0.1)[:, None]
    rec = folder / "wrist.csv"
    np.savetxt(rec, data, delimiter=",", header="acc_x,acc_y,acc_z", comments="", fmt="%.5f")
    labels = folder / "truth.csv"
    rows = ["t_start,t_end,value"]
    rows += [f"{a},{a + 10},{'walk' if (a // 10) % 2 else 'still'}" for a in range(0, 60, 10)]
    labels.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return rec, labels


def _replay(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamfuse.cli", "replay", *args, "--no-progress"],
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip


def test_piped_replay_writes_json_lines_to_stdout_and_the_summary_aside(tmp_path: Path) -> None:
    rec, labels = _recording(tmp_path)
    done = _replay(str(rec), "--fs", "50", "--labels", str(labels), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    docs = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(docs) >= 55 and all(problems(d) == [] for d in docs)
    assert "replayed" in done.stderr and "replayed" not in done.stdout
    # labels were learnt from, and the summary says how well the published choice did
    assert "online accuracy" in done.stderr and "labelled windows" in done.stderr
    assert any(d["label"] for d in docs)


def test_without_labels_the_summary_has_no_accuracy(tmp_path: Path) -> None:
    rec, _ = _recording(tmp_path)
    done = _replay(str(rec), "--fs", "50", "--out", str(tmp_path / "p.jsonl"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "online accuracy" not in done.stdout and done.stdout.startswith("replayed")


def test_csv_rows_match_the_json_lines(tmp_path: Path) -> None:
    rec, labels = _recording(tmp_path)
    common = [str(rec), "--fs", "50", "--labels", str(labels)]
    assert main(["replay", *common, "--out", str(tmp_path / "p.jsonl"), "--no-progress"]) == 0
    assert main(["replay", *common, "--out", str(tmp_path / "p.csv"), "--no-progress"]) == 0
    docs = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    with (tmp_path / "p.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(docs)
    for row, doc in zip(rows, docs, strict=True):
        assert row["device"] == doc["device"] == "wrist"
        assert int(row["index"]) == doc["index"]
        assert float(row["device_t_start"]) == pytest.approx(doc["device_t_start"])
        assert row["label"] == (doc["label"] or "")
        for cls, p in doc["proba"].items():
            assert float(row[f"p_{cls}"]) == pytest.approx(p)
        for key, value in doc["metrics"].items():
            cell = row[f"metrics.{key}"]
            assert cell == "" if value is None else float(cell) == pytest.approx(value)


def test_parquet_round_trips_or_names_the_extra(tmp_path: Path, capsys) -> None:
    rec, _ = _recording(tmp_path)
    out = tmp_path / "p.parquet"
    code = main(["replay", str(rec), "--fs", "50", "--out", str(out), "--no-progress"])
    if importlib.util.find_spec("pyarrow") is None:
        assert code == EXIT_USAGE and not out.exists()  # a setting to fix
        assert "pip install 'streamfuse[parquet]'" in capsys.readouterr().err
    else:
        import pyarrow.parquet as pq

        assert code == 0
        table = pq.read_table(out)
        assert table.num_rows >= 55 and "device_t_start" in table.column_names


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d, "is a directory but no gateway journal; give one recording file"),
        (lambda d: d / "100.dat", "unknown recording type '.dat' (a WFDB record: give its .hea)"),
        (lambda d: d / "notes.docx", "unknown recording type '.docx'"),
    ],
)
def test_unreadable_sources_get_a_message_naming_what_works(
    tmp_path: Path, capsys, make, message: str
) -> None:
    source = make(tmp_path)
    if source != tmp_path:
        source.write_bytes(b"\x00\x01")
    assert main(["replay", str(source), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert message in err and ".mcap" in err and ".hea" in err
    assert "not a readable CSV" not in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("start,end,value\n0,1,a\n", "needs a header with device, t_start, t_end, value"),
        ("t_start,t_end,value\n0,x,a\n", "line 2: t_start and t_end must be numbers"),
        ("t_start,t_end,value\n5,1,a\n", "line 2: needs finite t_start < t_end"),
    ],
)
def test_a_bad_labels_file_is_refused_with_the_line(
    tmp_path: Path, capsys, text: str, message: str
) -> None:
    rec, _ = _recording(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text(text, encoding="utf-8")
    out = tmp_path / "p.jsonl"
    args = ["replay", str(rec), "--fs", "50", "--labels", str(bad), "--out", str(out)]
    assert main([*args, "--no-progress"]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_wfdb_annotations_label_a_wfdb_record(data_dir: Path, tmp_path: Path, capsys) -> None:
    from streamfuse.replay.labels import read_labels

    hea = need_data(data_dir, "wfdb_sample_data", "100.hea")
    atr = hea.with_suffix(".atr")
    labels = read_labels(atr, "100")
    # MIT-BIH 100 holds one rhythm (normal) throughout: its beats label it instead
    assert {lb.value for lb in labels} == {"N", "A", "V"}
    assert all(a.t_end == b.t_start for a, b in zip(labels, labels[1:], strict=False))
    out = tmp_path / "p.jsonl"
    code = main(["replay", str(hea), "--labels", str(atr), "--out", str(out), "--no-progress"])
    assert code == 0
    summary = capsys.readouterr().out
    assert "online accuracy" in summary
    docs = [json.loads(x) for x in out.read_text().splitlines()]
    assert sum(1 for d in docs if d["label"] == "N") > 0.9 * len(docs)
