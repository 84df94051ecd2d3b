"""Readers: real files in, deterministic time-ordered chunks out; clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyedflib
import pytest

from streamfuse.errors import DataSourceError
from streamfuse.replay.readers import (
    EEGMAT_EEG,
    EEGMAT_MAP,
    EEGMAT_MODALITIES,
    ChannelMap,
    chunk_stream,
    load_wfdb,
    read_csv,
    read_edf,
    read_file,
    read_wfdb,
)
from tests.conftest import need_data

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def subject00(data_dir: Path):
    return read_edf(need_data(data_dir, "eegmat", "Subject00_2.edf"), EEGMAT_MAP)


def test_eegmat_edf_maps_channels_and_values(data_dir: Path, subject00) -> None:
    path = need_data(data_dir, "eegmat", "Subject00_2.edf")
    assert list(subject00.streams) == ["eeg", "ecg"]
    eeg, ecg = subject00.streams["eeg"], subject00.streams["ecg"]
    assert eeg.channel_names == EEGMAT_EEG and ecg.channel_names == ("ecg",)
    assert eeg.fs == ecg.fs == 500.0
    assert eeg.data.dtype == np.float32 and eeg.data.shape == (31000, 19)
    assert subject00.modalities() == EEGMAT_MODALITIES
    with pyedflib.EdfReader(str(path)) as f:
        labels = f.getSignalLabels()
        pz = f.readSignal(labels.index("EEG Pz"))
        ecg_ref = f.readSignal(labels.index("ECG ECG"))
    np.testing.assert_array_equal(eeg.data[:, EEGMAT_EEG.index("Pz")], pz.astype(np.float32))
    np.testing.assert_array_equal(ecg.data[:, 0], ecg_ref.astype(np.float32))


def test_chunks_round_trip_in_arrival_order(subject00) -> None:
    chunks = list(chunk_stream(subject00, "s00", chunk_s=0.1, t_offset=10.0, t_stop=5.0))
    arrivals = [c.arrival for c in chunks]
    assert arrivals == sorted(arrivals)
    assert len(chunks) == 2 * 50
    for c in chunks:
        assert c.arrival == pytest.approx(c.t0 + c.n / c.fs, abs=1e-12)
        assert c.data.dtype == np.float32 and c.data.flags.c_contiguous
    for modality, stream in subject00.streams.items():
        mine = [c for c in chunks if c.modality == modality]
        assert [c.seq for c in mine] == list(range(50))
        assert mine[0].t0 == 10.0 and mine[1].t0 == pytest.approx(10.1)
        np.testing.assert_array_equal(np.concatenate([c.data for c in mine]), stream.data[:2500])
    # at equal arrival, modality order then seq decides: eeg before ecg
    assert [c.modality for c in chunks[:2]] == ["eeg", "ecg"]
    again = list(chunk_stream(subject00, "s00", chunk_s=0.1, t_offset=10.0, t_stop=5.0))
    assert [(c.modality, c.seq, c.t0) for c in again] == [(c.modality, c.seq, c.t0) for c in chunks]


def test_unknown_channel_is_named(data_dir: Path) -> None:
    path = need_data(data_dir, "eegmat", "Subject00_2.edf")
    partial = ChannelMap(
        "partial", {k: v for k, v in EEGMAT_MAP.channels.items() if k != "ECG ECG"}
    )
    with pytest.raises(DataSourceError, match=r"'ECG ECG' is not in the 'partial' channel map"):
        read_edf(path, partial)


def test_missing_and_corrupt_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.edf"
    with pytest.raises(DataSourceError, match=r"nope\.edf: no such recording"):
        read_edf(missing, EEGMAT_MAP)
    bad = tmp_path / "bad.edf"
    bad.write_bytes(b"0       this is not an EDF header" * 10)
    with pytest.raises(DataSourceError, match=r"bad\.edf: not a readable EDF"):
        read_edf(bad, EEGMAT_MAP)
    badhea = tmp_path / "rec.hea"
    badhea.write_text("rec 2 250 notanumber\n")
    with pytest.raises(DataSourceError, match=r"rec\.hea: not a readable WFDB"):
        read_wfdb(tmp_path / "rec")
    with pytest.raises(DataSourceError, match=r"gone\.hea: no such"):
        read_wfdb(tmp_path / "gone")
    badcsv = tmp_path / "x.csv"
    badcsv.write_text("ecg,eeg\n1,2\n3,oops\n")
    with pytest.raises(DataSourceError, match=r"x\.csv: not a readable CSV"):
        read_csv(badcsv, fs=100.0)


def test_wfdb_record_100(data_dir: Path) -> None:
    base = need_data(data_dir, "wfdb_sample_data", "100.hea").with_suffix("")
    rec = read_wfdb(base)  # keyword map: MLII, V5 are ECG leads
    ecg = rec.streams["ecg"]
    assert ecg.channel_names == ("MLII", "V5") and ecg.fs == 360.0
    ref = load_wfdb().rdrecord(str(base), sampto=1000)
    np.testing.assert_allclose(ecg.data[:1000], ref.p_signal.astype(np.float32))


def test_wfdb_multirate_needs_separate_modalities(data_dir: Path) -> None:
    base = need_data(data_dir, "wfdb_sample_data", "mixedsignals.hea").with_suffix("")
    together = ChannelMap(
        "mix", {"II": ("ecg", "II"), "III": ("ecg", "III"), "V": ("ecg", "V"),
                "ABP": ("ecg", "ABP"), "Pleth": None, "Resp": None},
    )  # fmt: skip
    with pytest.raises(DataSourceError, match=r"mixes rates"):
        read_wfdb(base, together)
    apart = ChannelMap(
        "mix", {"II": ("ecg", "II"), "III": ("ecg", "III"), "V": ("ecg", "V"),
                "ABP": ("abp", "ABP"), "Pleth": None, "Resp": ("resp", "resp")},
    )  # fmt: skip
    rec = read_wfdb(base, apart)
    fs = {m: s.fs for m, s in rec.streams.items()}
    assert fs["ecg"] == pytest.approx(4 * 62.4725) and fs["abp"] == pytest.approx(2 * 62.4725)
    chunks = list(chunk_stream(rec, "mix", chunk_s=0.5, t_stop=30.0))
    assert [c.arrival for c in chunks] == sorted(c.arrival for c in chunks)
    assert {c.modality for c in chunks} == {"ecg", "abp", "resp"}
    # the record's invalid ECG samples become gaps: no chunk carries a NaN, none is lost silently
    full = list(chunk_stream(rec, "mix", chunk_s=0.5))
    ecg = rec.streams["ecg"].data
    assert all(np.isfinite(c.data).all() for c in full)
    n_finite_rows = int(np.isfinite(ecg).all(axis=1).sum())
    assert n_finite_rows < len(ecg)
    assert sum(c.n for c in full if c.modality == "ecg") == n_finite_rows


def test_biosppy_text_as_csv(data_dir: Path, tmp_path: Path) -> None:
    path = need_data(data_dir, "biosppy", "acc.txt")
    rec = read_file(path, ChannelMap("acc", {f"acc_{a}": ("acc", a) for a in "xyz"}))
    acc = rec.streams["acc"]
    assert acc.fs == 100.0 and acc.channel_names == ("x", "y", "z")
    ref = np.loadtxt(path, ndmin=2)
    np.testing.assert_array_equal(acc.data, ref.astype(np.float32))
    # the same numbers written as a header + time column CSV give the same stream
    t = np.arange(len(ref)) / 100.0
    csv = tmp_path / "acc.csv"
    np.savetxt(csv, np.column_stack([t, ref]), delimiter=",", header="time,acc_x,acc_y,acc_z",
               comments="")  # fmt: skip
    again = read_csv(csv, ChannelMap("acc", {f"acc_{a}": ("acc", a) for a in "xyz"}),
                     time_column="time")  # fmt: skip
    assert again.streams["acc"].fs == pytest.approx(100.0)
    np.testing.assert_allclose(again.streams["acc"].data, acc.data, rtol=1e-6)
    # an unknown column is named
    with pytest.raises(DataSourceError, match=r"'acc_z'"):
        read_csv(csv, ChannelMap("xy", {"acc_x": ("acc", "x"), "acc_y": ("acc", "y")}),
                 time_column="time")  # fmt: skip
