"""MIT-BIH record 100 and the beat-matching rule, shared by the QRS tests and the QRS bench."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from streamfuse.replay.readers import load_wfdb

# beat annotation codes of the MIT-BIH database (non-beat codes such as '+' are rhythm notes)
BEAT_CODES = set("NLRBAaJSVrFejnE/fQ?")


def load_record100(root: Path) -> tuple[np.ndarray, float, np.ndarray]:
    """Lead MLII of record 100 under ``root`` (the data folder), its rate, and its beats."""
    wfdb = load_wfdb()
    base = str(root / "wfdb_sample_data" / "100")
    with warnings.catch_warnings():
        # wfdb calls a pandas API that pandas deprecated when reading; not ours to fix
        warnings.filterwarnings("ignore", message="The inplace keyword", category=Warning)
        rec = wfdb.rdrecord(base, channels=[0])
        ann = wfdb.rdann(base, "atr")
    assert rec.sig_name == ["MLII"]
    beats = np.array([s for s, c in zip(ann.sample, ann.symbol, strict=True) if c in BEAT_CODES])
    return rec.p_signal[:, 0].astype(np.float64), float(rec.fs), beats


def match(ref: np.ndarray, det: np.ndarray, tol: int) -> int:
    """True positives: one-to-one matches of sorted detections to references within ``tol``."""
    used = np.zeros(det.size, dtype=bool)
    tp = 0
    for r in ref:
        lo, hi = np.searchsorted(det, [r - tol, r + tol + 1])
        cands = [k for k in range(lo, hi) if not used[k]]
        if cands:
            k = min(cands, key=lambda k: abs(int(det[k]) - int(r)))
            used[k] = True
            tp += 1
    return tp
