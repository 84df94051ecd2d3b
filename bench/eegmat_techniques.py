"""A first look at the issue-16 techniques on eegmat, before they were engine levels.

Superseded: ``attention``, ``mkl`` and ``bayes`` now run in the engine and in ``streamfuse
evaluate`` (with ``--corrupt`` / ``--drop``; docs/evaluation.md); this script is kept as the
record of the preliminary look, NOT the evaluation protocol: windows are cut straight from the
EDF recordings (500 Hz decimated to 250 Hz, 8 s every 4 s, rest then arithmetic per subject),
the features are the engine's (``DeviceFeatures`` + per-device ``OnlineNormalizer``), models
learn across subjects in sorted order, each label two windows after its window's decision.
Scored per subject: AUC of P(arithmetic), mean ± sd over subjects.

Levels: ``intermediate`` (default logreg on all features), ``late`` (a logreg per modality,
Hedge-weighted), ``attention`` (a ``ModalityGate`` over the late members' probabilities and
each modality's quality indices), ``bayes`` (``BayesianFusion`` over the late members),
``mkl`` (``OnlineMKLClassifier``) and the unimodal members; adaptive conformal sets at 90 % on
``intermediate``.

``--corrupt eeg|ecg`` injects artefacts into a seeded 30 % of each subject's 8 s segments
(EEG: electrode pop, saturation or flat line; ECG: lead-off flat line or baseline wander);
``--drop eeg|ecg`` removes the modality from a seeded 30 % of the windows.

Run: ``.venv/bin/python bench/eegmat_techniques.py ../shared/data/eegmat [--corrupt eeg]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import deque
from pathlib import Path

import numpy as np

from streamfuse.config import EngineConfig
from streamfuse.features import DeviceFeatures, OnlineNormalizer, concat
from streamfuse.features.quality import window_quality
from streamfuse.fusion.attention import ModalityGate
from streamfuse.fusion.bayes import BayesianFusion
from streamfuse.fusion.conformal import AdaptiveConformal
from streamfuse.fusion.late import LateFusion
from streamfuse.fusion.mkl import OnlineMKLClassifier
from streamfuse.learn.metrics import auc
from streamfuse.learn.models import make_model
from streamfuse.replay.evaluate import subject_names
from streamfuse.replay.readers import EEGMAT_MAP, EEGMAT_MODALITIES, read_edf
from streamfuse.types import Window

FS, WIN, HOP, DELAY = 250.0, 8.0, 4.0, 2
POS = "arithmetic"


def _corrupt(x: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    x = x.copy()
    if kind == "eeg":
        art = rng.integers(0, 3)
        if art == 0:  # electrode pop: a step on a few channels, decaying
            t = np.arange(x.shape[0]) / FS
            for c in rng.choice(x.shape[1], size=3, replace=False):
                x[:, c] += 300.0 * np.exp(-t / 0.5)
        elif art == 1:  # amplifier saturation
            x = np.clip(x * 8.0, -100.0, 100.0)
        else:  # flat line
            x[:] = x[0]
    else:
        if rng.integers(0, 2) == 0:  # lead off
            x[:] = x[0]
        else:  # baseline wander, 0.3 Hz, large
            t = np.arange(x.shape[0]) / FS
            x += (3.0 * np.abs(x).max() + 1e-3) * np.sin(2 * np.pi * 0.3 * t)[:, None]
    return x


def subject_windows(data_dir: Path, name: str, corrupt: str | None, drop: str | None, seed: int):
    rest = read_edf(data_dir / f"{name}_1.edf", EEGMAT_MAP)
    task = read_edf(data_dir / f"{name}_2.edf", EEGMAT_MAP)
    sig = {m: np.concatenate([rest.streams[m].data[::2], task.streams[m].data[::2]]).astype(
        np.float64) for m in ("eeg", "ecg")}
    boundary = rest.streams["eeg"].data[::2].shape[0] / FS
    n = min(s.shape[0] for s in sig.values())
    k, h = int(WIN * FS), int(HOP * FS)
    rng = np.random.default_rng([seed, int(name[-2:])])
    hit = np.zeros(n, dtype=bool)
    if corrupt:
        for s0 in range(0, n - k + 1, k):  # 30 % of the 8 s segments
            if rng.random() < 0.3:
                sig[corrupt][s0 : s0 + k] = _corrupt(sig[corrupt][s0 : s0 + k], corrupt, rng)
                hit[s0 : s0 + k] = True
    out = []
    for j, s0 in enumerate(range(0, n - k + 1, h)):
        t0, t1 = s0 / FS, (s0 + k) / FS
        rest_s = max(0.0, min(t1, boundary) - t0)
        y = "rest" if rest_s > 0.5 * WIN else POS
        mods = ["eeg", "ecg"]
        if drop and rng.random() < 0.3:
            mods.remove(drop)
        blocks = {m: sig[m][s0 : s0 + k].astype(np.float32) for m in mods}
        masks = {m: np.ones(k, dtype=bool) for m in mods}
        out.append((Window(name, t0, t1, FS, blocks, masks, index=j), y,
                    bool(hit[s0 : s0 + k].mean() >= 0.5)))
    return out


def run(data_dir: Path, corrupt: str | None, drop: str | None, seed: int = 0) -> dict:
    cfg = EngineConfig(modalities=dict(EEGMAT_MODALITIES), window_s=WIN, hop_s=HOP, grid_fs=FS)
    intermediate = make_model("logreg")
    late = LateFusion(lambda m: make_model("logreg"))
    gate, bayes = ModalityGate(), BayesianFusion(positive=POS)
    mkl = OnlineMKLClassifier(seed=seed)
    aci = AdaptiveConformal(target=0.9, gamma=0.005)
    names = ("intermediate", "late", "attention", "bayes", "mkl", "eeg", "ecg")
    per_subject: dict[str, dict[str, list[float]]] = {lv: {} for lv in names}
    truth: dict[str, list[bool]] = {}
    gate_w: dict[str, list[float]] = {"clean": [], "corrupted": []}
    py: dict[tuple[str, str], list[float]] = {(a, b): [] for a in ("clean", "corrupted")
                                              for b in ("eeg", "ecg")}
    q_seen: dict[str, dict[str, list[float]]] = {"clean": {}, "corrupted": {}}
    for subj in subject_names(data_dir):
        feats, norm = DeviceFeatures(cfg), OnlineNormalizer(warmup=cfg.normalize_warmup)
        pending: deque = deque()
        for w, y, bad in subject_windows(data_dir, subj, corrupt, drop, seed):
            per = {m: f for m, f in feats.update(w).items() if f}
            if not per:
                continue
            names_z, z = norm.learn_transform(concat(per))
            flat = dict(zip(names_z, z, strict=True))
            views = {m: {kk: flat[kk] for kk in f} for m, f in per.items()}
            quality = {m: window_quality(m, w.blocks[m], w.masks[m], w.fs) for m in w.blocks}
            members = {m: dict(p) for m, p in late._member_probas(views).items()}
            decided = {
                "intermediate": intermediate.predict_proba_one(flat),
                "late": late.predict_proba(views)[0],
                "mkl": mkl.predict_views(views)[0],
                "eeg": members.get("eeg", {}),
                "ecg": members.get("ecg", {}),
            }
            p_att, w_att = gate.combine(members, quality)
            decided["attention"] = p_att
            decided["bayes"] = bayes.fuse(members).proba if members else {}
            watch = corrupt or "eeg"
            if watch in w_att and len(w_att) > 1:
                gate_w["corrupted" if bad else "clean"].append(w_att[watch])
                py[("corrupted" if bad else "clean", watch)].append(members[watch].get(y, 0.0))
                other = "ecg" if watch == "eeg" else "eeg"
                py[("corrupted" if bad else "clean", other)].append(members[other].get(y, 0.0))
                for key, v in quality.get(watch, {}).items():
                    q_seen["corrupted" if bad else "clean"].setdefault(key, []).append(v)
            made = aci.predict(decided["intermediate"]) if decided["intermediate"] else None
            truth.setdefault(subj, []).append(y == POS)
            for lv in names:
                p = decided[lv]
                per_subject[lv].setdefault(subj, []).append(p.get(POS, np.nan) if p else np.nan)
            pending.append((flat, views, quality, members, y, decided, made))
            if len(pending) > DELAY:
                _learn(pending.popleft(), intermediate, late, gate, bayes, mkl, aci)
        while pending:
            _learn(pending.popleft(), intermediate, late, gate, bayes, mkl, aci)
    result: dict = {"corrupt": corrupt, "drop": drop, "subjects": len(truth)}
    for lv in names:
        aucs = []
        for subj, scores in per_subject[lv].items():
            s = np.array(scores)
            t = np.array(truth[subj])
            ok = np.isfinite(s)
            if ok.sum() > 5:
                a = auc(s[ok], t[ok])
                if np.isfinite(a):
                    aucs.append(float(a))
        result[lv] = {"auc": statistics.mean(aucs), "sd": statistics.stdev(aucs), "n": len(aucs)}
    result["conformal"] = {k: aci.metrics()[k] for k in
                           ("target", "coverage", "mean_set_size", "abstain_rate")}
    result["gate_weight_of_" + (corrupt or "eeg")] = {
        k: (statistics.mean(v) if v else None, len(v)) for k, v in gate_w.items()}
    result["quality_means"] = {k: {i: round(statistics.mean(v), 4) for i, v in d.items()}
                               for k, d in q_seen.items()}
    result["mkl_modality_weights"] = mkl.modality_weights()
    result["member_p_true_class"] = {f"{a}/{b}": round(statistics.mean(v), 3)
                                     for (a, b), v in py.items() if v}
    result["gate"] = {"bias": gate.bias, "coef": gate.coef}
    return result


def _learn(item, intermediate, late, gate, bayes, mkl, aci) -> None:
    flat, views, quality, members, y, decided, made = item
    gate.learn(members, quality, y)
    bayes.learn(members, y)
    if made is not None:
        aci.learn(decided["intermediate"], y, made)
    intermediate.learn_one(flat, y)
    late.learn(views, y)
    mkl.learn_views(views, y)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--corrupt", choices=["eeg", "ecg"])
    ap.add_argument("--drop", choices=["eeg", "ecg"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(json.dumps(run(args.data_dir, args.corrupt, args.drop, args.seed), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
