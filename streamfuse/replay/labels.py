"""Ground truth for a replay from a file: a CSV of device-time intervals, or WFDB annotations.

A CSV has a header row naming ``device``, ``t_start``, ``t_end`` and ``value`` (any order;
``device`` may be left out when one device is replayed), one interval per row, times in seconds
on the device clock (for a recording: seconds from its start)::

    device,t_start,t_end,value
    Subject00_2,0,60,rest
    Subject00_2,60,120,task

A WFDB annotation file (``100.atr``) gives rhythm intervals when it holds rhythm annotations
of at least two kinds (``+`` with an ``aux_note`` such as ``(AFIB``: each lasts until the
next), else one interval per beat from each beat annotation to the next, valued with its
symbol (``N``, ``V``, ``A`` ...); a window then takes the beat type covering most of it.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

from ..errors import DataSourceError
from ..types import Label

CSV_COLUMNS = ("device", "t_start", "t_end", "value")


def read_labels(path: str | Path, device: str) -> list[Label]:
    """Labels from ``path`` (``.csv`` intervals or a WFDB annotation file), for ``device``
    when the file does not name devices; sorted by end time."""
    p = Path(path)
    if p.is_dir() or not p.exists():
        raise DataSourceError(f"{p}: no such labels file (give a .csv or a WFDB .atr file)")
    if p.suffix.lower() in (".csv", ".tsv", ".txt"):
        labels = _read_csv(p, device)
    else:
        labels = _read_wfdb(p, device)
    if not labels:
        raise DataSourceError(f"{p}: no labels in it")
    return sorted(labels, key=lambda lb: (lb.t_end, lb.t_start))


def _read_csv(p: Path, device: str) -> list[Label]:
    try:
        with p.open(encoding="utf-8", newline="") as fh:
            sample = fh.read(4096)
            fh.seek(0)
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t") if sample else csv.excel
            rows = list(csv.DictReader(fh, dialect=dialect))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataSourceError(f"{p}: not a readable labels CSV ({exc})") from exc
    header = set(rows[0]) if rows else set()
    missing = [c for c in ("t_start", "t_end", "value") if c not in header]
    if missing:
        raise DataSourceError(
            f"{p}: the labels CSV needs a header with {', '.join(CSV_COLUMNS)} (device optional); "
            f"missing {', '.join(missing)}"
        )
    out = []
    for line, row in enumerate(rows, start=2):
        try:
            t_start, t_end = float(row["t_start"]), float(row["t_end"])
        except (TypeError, ValueError):
            raise DataSourceError(f"{p}, line {line}: t_start and t_end must be numbers") from None
        value = (row["value"] or "").strip()
        if not (math.isfinite(t_start) and math.isfinite(t_end) and t_end > t_start and value):
            raise DataSourceError(
                f"{p}, line {line}: needs finite t_start < t_end and a value, got {row}"
            )
        out.append(Label((row.get("device") or device).strip(), t_start, t_end, value))
    return out


def _read_wfdb(p: Path, device: str) -> list[Label]:
    from .readers import load_wfdb

    wfdb = load_wfdb()

    record, extension = str(p.with_suffix("")), p.suffix.lstrip(".")
    try:
        with warnings.catch_warnings():  # wfdb's own pandas deprecations, not ours to fix
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            ann = wfdb.rdann(record, extension)
    except Exception as exc:  # wfdb raises bare Exceptions and ValueErrors alike
        raise DataSourceError(
            f"{p}: not a readable WFDB annotation file ({exc}); labels are a .csv "
            f"({', '.join(CSV_COLUMNS)}) or a WFDB annotation file such as 100.atr"
        ) from exc
    fs = float(ann.fs) if ann.fs else None
    if not fs:
        raise DataSourceError(f"{p}: the annotation file has no sampling rate")
    times = [float(s) / fs for s in ann.sample]
    end = times[-1] + 1.0 if times else 0.0
    notes = [(note or "").strip("\x00 (") for note in ann.aux_note]
    rhythm = [
        (t, note)
        for t, sym, note in zip(times, ann.symbol, notes, strict=True)
        if sym == "+" and note
    ]
    if len({note for _, note in rhythm}) < 2:  # one rhythm throughout says nothing: the beats
        rhythm = []
    marks = rhythm or [(t, sym) for t, sym in zip(times, ann.symbol, strict=True) if sym != "+"]
    out = []
    for k, (t, value) in enumerate(marks):
        t_next = marks[k + 1][0] if k + 1 < len(marks) else end
        if t_next > t:
            out.append(Label(device, t, t_next, value))
    return out
