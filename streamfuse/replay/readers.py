"""Recordings on disk turned into deterministic, time-ordered chunk streams.

A reader loads one file (EDF/BDF, WFDB, CSV-like text) into a :class:`Recording`: per modality
one ``float32[n, ch]`` block at one rate. Which file channel feeds which modality is said by a
:class:`ChannelMap`; a channel the map does not know is an error naming that channel, so a
recording is never silently half-read. :func:`.chunks.chunk_stream` then cuts a recording into
:class:`~streamfuse.types.Chunk` objects whose ``arrival`` is the moment the chunk would have
arrived in real time: its last sample's time plus one sample period (``t0 + n / fs``), nothing
more.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, Unpack

import numpy as np

from ..config import ModalitySpec
from ..errors import DataSourceError
from ..types import F32

log = logging.getLogger("streamfuse.replay.readers")

#: a file channel's destination: ``(modality, channel name)``, or ``None`` to drop it
Target = tuple[str, str] | None


@dataclass(frozen=True, slots=True)
class ChannelMap:
    """Which file channel feeds which modality (and under what channel name).

    Parameters
    ----------
    name
        A short name for messages (``"eegmat"``).
    channels
        File channel label → ``(modality, channel name)``, or ``None`` to drop the channel.
        Labels are compared after stripping surrounding blanks.

    Examples
    --------
    >>> m = ChannelMap("demo", {"ECG I": ("ecg", "I"), "Marker": None})
    >>> m.target("ECG I", "x.edf")
    ('ecg', 'I')
    """

    name: str
    channels: Mapping[str, Target]

    def target(self, label: str, source: str | Path) -> Target:
        """Where ``label`` goes; :class:`DataSourceError` naming it if the map does not know it."""
        key = label.strip()
        if key not in self.channels:
            known = ", ".join(sorted(self.channels))
            raise DataSourceError(
                f"{source}: channel {key!r} is not in the {self.name!r} channel map "
                f"(known: {known}); add it to the map or drop it explicitly"
            )
        return self.channels[key]


EEGMAT_EEG = (
    "Fp1", "Fp2", "F3", "F4", "F7", "F8", "T3", "T4", "C3", "C4",
    "T5", "T6", "P3", "P4", "O1", "O2", "Fz", "Cz", "Pz",
)  # fmt: skip

#: PhysioNet "EEG During Mental Arithmetic Tasks": 19 EEG channels, the ECG, A2-A1 dropped
EEGMAT_MAP = ChannelMap(
    "eegmat",
    {
        **{f"EEG {c}": ("eeg", c) for c in EEGMAT_EEG},
        "EEG A2-A1": None,
        "ECG ECG": ("ecg", "ecg"),
    },
)

#: eegmat's modalities as the engine must be configured for them (500 Hz, units as in the EDF)
EEGMAT_MODALITIES: dict[str, ModalitySpec] = {
    "eeg": ModalitySpec("eeg", EEGMAT_EEG, 500.0, "uV"),
    "ecg": ModalitySpec("ecg", ("ecg",), 500.0, "mV"),
}

_KEYWORDS = (("ecg", "ecg"), ("eeg", "eeg"), ("acc", "acc"))
_ECG_LEADS = frozenset(
    {"I", "II", "III", "AVR", "AVL", "AVF", "V", "V1", "V2", "V3", "V4", "V5", "V6", "MLII", "MCL1"}
)


def keyword_map(labels: list[str], name: str = "auto") -> ChannelMap:
    """A map guessed from labels: ``ECG``/ECG lead names → ecg, ``EEG`` → eeg, ``ACC`` → acc.

    Any other label is left out of the map, so reading fails naming it (state the mapping
    yourself for such recordings).
    """
    out: dict[str, Target] = {}
    for label in labels:
        key = label.strip()
        low = key.lower()
        name_part = re.sub(r"^(ecg|eeg|acc)[\s_:-]*", "", key, flags=re.IGNORECASE) or key
        for word, modality in _KEYWORDS:
            if low.startswith(word):
                out[key] = (modality, name_part)
                break
        else:
            if key.upper() in _ECG_LEADS:
                out[key] = ("ecg", key)
    return ChannelMap(name, out)


@dataclass(frozen=True, slots=True)
class Stream:
    """One modality of a recording: ``data`` is ``float32[n, ch]`` sampled at ``fs`` from ``t0``."""

    modality: str
    channel_names: tuple[str, ...]
    fs: float
    data: F32
    t0: float = 0.0
    unit: str = ""

    @property
    def duration(self) -> float:
        return self.data.shape[0] / self.fs

    def spec(self) -> ModalitySpec:
        return ModalitySpec(self.modality, self.channel_names, self.fs, self.unit)


@dataclass(frozen=True, slots=True)
class Recording:
    """A file read into per-modality streams (modalities in the map's first-seen order)."""

    source: Path
    streams: Mapping[str, Stream]

    @property
    def duration(self) -> float:
        return max(s.duration for s in self.streams.values())

    def modalities(self) -> dict[str, ModalitySpec]:
        """The engine's modality specs for this recording."""
        return {m: s.spec() for m, s in self.streams.items()}


def _assemble(
    source: Path,
    labels: list[str],
    signals: list[np.ndarray],
    rates: list[float],
    units: list[str],
    mapping: ChannelMap,
) -> Recording:
    """Group mapped channels into modalities; every channel of a modality must share a rate."""
    groups: dict[str, list[int]] = {}
    names: dict[str, list[str]] = {}
    for i, label in enumerate(labels):
        target = mapping.target(label, source)
        if target is None:
            continue
        modality, channel = target
        groups.setdefault(modality, []).append(i)
        names.setdefault(modality, []).append(channel)
    if not groups:
        raise DataSourceError(f"{source}: the {mapping.name!r} map drops every channel")
    streams: dict[str, Stream] = {}
    for modality, idx in groups.items():
        fss = {rates[i] for i in idx}
        if len(fss) != 1:
            raise DataSourceError(
                f"{source}: modality {modality!r} mixes rates {sorted(fss)} Hz across channels "
                f"{[labels[i] for i in idx]}; map them to separate modalities"
            )
        n = min(len(signals[i]) for i in idx)
        data = np.empty((n, len(idx)), dtype=np.float32)
        for j, i in enumerate(idx):
            data[:, j] = signals[i][:n]
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            log.info(
                "%s: modality %r holds %d invalid samples (become gaps)", source, modality, bad
            )
        streams[modality] = Stream(
            modality, tuple(names[modality]), float(fss.pop()), data, 0.0, units[idx[0]]
        )
    return Recording(source, streams)


def _existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataSourceError(f"{p}: no such recording file")
    return p


def read_edf(path: str | Path, mapping: ChannelMap | None = None) -> Recording:
    """Read an EDF/EDF+/BDF file with pyedflib (physical units).

    ``mapping`` defaults to :func:`keyword_map` of the file's labels.
    """
    import pyedflib

    p = _existing(path)
    try:
        reader = pyedflib.EdfReader(str(p))
    except OSError as exc:
        raise DataSourceError(f"{p}: not a readable EDF/BDF file ({exc})") from exc
    try:
        labels = list(reader.getSignalLabels())
        mapping = mapping or keyword_map(labels)
        # check the map before reading any samples
        for label in labels:
            mapping.target(label, p)
        rates = [float(r) for r in reader.getSampleFrequencies()]
        units = [reader.getPhysicalDimension(i) for i in range(len(labels))]
        signals = [
            reader.readSignal(i) if mapping.target(labels[i], p) is not None else np.empty(0)
            for i in range(len(labels))
        ]
    finally:
        reader.close()
    return _assemble(p, labels, signals, rates, units, mapping)


def read_wfdb(record: str | Path, mapping: ChannelMap | None = None) -> Recording:
    """Read a WFDB record (``path/100`` or ``path/100.hea``) with wfdb, multi-rate aware."""
    wfdb = load_wfdb()
    base = Path(record)
    if base.suffix in (".hea", ".dat", ".mat"):
        base = base.with_suffix("")
    _existing(base.with_suffix(".hea"))
    try:
        rec = wfdb.rdrecord(str(base), smooth_frames=False)
    except Exception as exc:  # wfdb raises many kinds (ValueError, OSError, IndexError, ...)
        raise DataSourceError(f"{base}.hea: not a readable WFDB record ({exc})") from exc
    labels = list(rec.sig_name)
    signals = list(rec.e_p_signal)
    rates = [float(rec.fs) * int(k) for k in rec.samps_per_frame]
    units = list(rec.units or [""] * len(labels))
    return _assemble(
        base.with_suffix(".hea"), labels, signals, rates, units, mapping or keyword_map(labels)
    )


def load_wfdb():  # noqa: ANN201 - the module
    """Import wfdb, silencing its import-time pandas deprecation (fixed upstream, not ours)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The inplace keyword in DataFrame\.set_index")
        import wfdb
    return wfdb


def read_csv(
    path: str | Path,
    mapping: ChannelMap | None = None,
    *,
    fs: float | None = None,
    time_column: str | None = None,
) -> Recording:
    """Read delimited text: a header row of channel names (or a BioSPPy ``# Labels:=`` line).

    The rate comes from ``fs``, else from a ``# Sampling Rate (Hz):=`` comment, else from the
    median step of ``time_column`` (seconds), which must be strictly increasing.
    """
    p = _existing(path)
    header: list[str] | None = None
    comment_fs: float | None = None
    skip = 0
    try:
        with p.open(encoding="utf-8") as fh:
            for line in fh:
                s = line.strip()
                if s.startswith("#"):
                    skip += 1
                    body = s.lstrip("#").strip()
                    if body.lower().startswith("labels:="):
                        header = body.split(":=", 1)[1].split()
                    elif body.lower().startswith("sampling rate"):
                        comment_fs = float(body.split(":=", 1)[1])
                    continue
                if not s:
                    skip += 1
                    continue
                if header is None:
                    header = [h.strip() for h in re.split(r"[,\t;]", s)]
                    skip += 1
                break
        if header is None:
            raise DataSourceError(f"{p}: no header row of channel names")
        values = np.loadtxt(p, skiprows=skip, delimiter=_delimiter(p, skip), ndmin=2)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataSourceError(f"{p}: not a readable CSV recording ({exc})") from exc
    if values.shape[1] != len(header):
        raise DataSourceError(
            f"{p}: header names {len(header)} columns but rows hold {values.shape[1]}"
        )
    cols = list(header)
    rate = fs if fs is not None else comment_fs
    if time_column is not None:
        if time_column not in cols:
            raise DataSourceError(f"{p}: time column {time_column!r} not among {cols}")
        t = values[:, cols.index(time_column)]
        steps = np.diff(t)
        if len(t) < 2 or not (steps > 0).all():
            raise DataSourceError(f"{p}: time column {time_column!r} must increase strictly")
        rate = rate or float(1.0 / np.median(steps))
        keep = [i for i, c in enumerate(cols) if c != time_column]
        values, cols = values[:, keep], [cols[i] for i in keep]
    if rate is None or not (math.isfinite(rate) and rate > 0):
        raise DataSourceError(f"{p}: give a sampling rate (fs=...) or a time column")
    signals = [values[:, i] for i in range(len(cols))]
    return _assemble(
        p, cols, signals, [float(rate)] * len(cols), [""] * len(cols), mapping or keyword_map(cols)
    )


def _delimiter(p: Path, skip: int) -> str | None:
    with p.open(encoding="utf-8") as fh:
        for _ in range(skip):
            fh.readline()
        first = fh.readline()
    for d in (",", ";", "\t"):
        if d in first:
            return d
    return None


class CsvOptions(TypedDict, total=False):
    """The keywords :func:`read_file` hands to :func:`read_csv`."""

    fs: float | None
    time_column: str | None


def read_file(
    path: str | Path, mapping: ChannelMap | None = None, **kw: Unpack[CsvOptions]
) -> Recording:
    """Pick the reader by suffix: ``.edf``/``.bdf``, ``.hea`` (WFDB), anything else as CSV."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".edf", ".bdf"):
        return read_edf(p, mapping)
    if suffix == ".hea" or (not suffix and p.with_suffix(".hea").is_file()):
        return read_wfdb(p, mapping)
    return read_csv(p, mapping, **kw)


# chunk_stream moved to .chunks (cutting a recording, not reading one); kept importable here
from .chunks import chunk_stream  # noqa: E402, F401
