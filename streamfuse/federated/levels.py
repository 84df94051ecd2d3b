"""Merge rules of the review's fusion levels (issue 16): the attention gate, the Bayesian
product of experts and the multiple-kernel Hedge (:mod:`streamfuse.fusion`).

Same principle as :mod:`.merge`: what a party *estimates* (SGD weights) is averaged, weighted
by the windows it learnt since the last round; what *accumulates* (counts, moments,
discounted sums, Gaussian information) is merged from the shared base: the base once, plus
each party's increment, so a round in which one party learnt gives exactly its state.

- ``attention`` (:class:`~streamfuse.fusion.attention.ModalityGate`): gate biases and
  coefficients weighted means; the quality indices' running moments merged exactly;
- ``bayes`` (:class:`~streamfuse.fusion.bayes.BayesianFusion`): the discounted class counts
  as accumulators (``forget^N base + sum_k (c_k - forget^n_k base)``); each member's online
  Platt calibration, a Gaussian over ``(a, b)``, in information form (precision ``L``,
  ``h = L mean``): ``forget^N L_base + sum_k (L_k - forget^n_k L_base)``, likewise ``h``
  (without a base, or if that is not positive definite: the weighted mean of means and
  covariances);
- ``mkl`` (:class:`~streamfuse.fusion.mkl.OnlineMKLClassifier`): per modality the features'
  moments exactly and each kernel's softmax weights as weighted means (the random features
  are drawn from the seed and the feature names, the same at every party: parties must share
  ``seed``, ``gammas`` and ``n_components``); the Hedge losses as discounted accumulators.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .learners import NotMergeable, State, _arr, _union, _weights, merge_moments


def _avg(vals: Sequence[float], w: np.ndarray, fallback: float) -> float:
    return float(np.average(vals, weights=w)) if len(vals) and w.sum() > 0 else (
        float(np.mean(vals)) if len(vals) else fallback)


def _acc(vals: np.ndarray, n: np.ndarray, base: Any, discount: float) -> Any:
    """An accumulator ``A <- discount * A + x`` merged from ``base`` (module doc); without a
    base the parties' sum (each counted what it saw)."""
    if base is None:
        return vals.sum(axis=0)
    shape = (-1,) + (1,) * (np.ndim(base))
    return discount ** n.sum() * base + (vals - discount ** n.reshape(shape) * base).sum(axis=0)


def _moments(parts: Sequence[Sequence[float] | None], base: Sequence[float] | None,
             ) -> list[float]:
    """Exact merge of (count, mean, M2) triples of the parties that have the entry (with the
    base counted once when it has it)."""
    def arr(p: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = _arr(p, "moments")
        if a.shape != (3,) or a[0] < 0 or a[2] < 0:
            raise NotMergeable("moments: expected [count >= 0, mean, M2 >= 0]")
        return a[0:1], a[1:2], a[2:3]

    n, m, s = merge_moments([arr(p) for p in parts if p is not None],
                            arr(base) if base is not None else None)
    return [float(n[0]), float(m[0]), float(s[0])]


# ---------------------------------------------------------------------------- attention
def gate_state(gate: Any) -> State:
    return {"kind": "gate", "bias": {m: float(v) for m, v in gate.bias.items()},
            "coef": {m: {k: float(v) for k, v in c.items()} for m, c in gate.coef.items()},
            "moments": {m: {k: [float(x) for x in st] for k, st in q.items()}
                        for m, q in gate.scaler.moments.items()}}


def merge_gate(states: Sequence[State], weights: Sequence[float],
               base: State | None = None) -> State:
    w = _weights(weights, len(states))
    for s in states:
        if not isinstance(s, Mapping) or s.get("kind") != "gate":
            raise NotMergeable("attention state: expected kind='gate'")
    out: State = {"kind": "gate", "bias": {}, "coef": {}, "moments": {}}
    b = base or {"bias": {}, "coef": {}, "moments": {}}
    for m in _union([list(s["bias"]) for s in states]):
        have = [i for i, s in enumerate(states) if m in s["bias"]]
        out["bias"][m] = _avg([float(states[i]["bias"][m]) for i in have], w[have],
                              float(b["bias"].get(m, 0.0)))
        coef: dict[str, float] = {}
        for k in _union([list(states[i]["coef"].get(m, {})) for i in have]):
            hk = [i for i in have if k in states[i]["coef"].get(m, {})]
            coef[k] = _avg([float(states[i]["coef"][m][k]) for i in hk], w[hk],
                           float(b["coef"].get(m, {}).get(k, 0.0)))
        out["coef"][m] = coef
    for m in _union([list(s["moments"]) for s in states]):
        keys = _union([list(s["moments"].get(m, {})) for s in states])
        out["moments"][m] = {
            k: _moments([s["moments"].get(m, {}).get(k) for s in states],
                        b["moments"].get(m, {}).get(k)) for k in keys}
    return out


def load_gate(gate: Any, state: State) -> None:
    gate.bias = {m: float(v) for m, v in state["bias"].items()}
    gate.coef = {m: {k: float(v) for k, v in c.items()} for m, c in state["coef"].items()}
    gate.scaler.moments = {m: {k: [float(x) for x in st] for k, st in q.items()}
                           for m, q in state["moments"].items()}


# ---------------------------------------------------------------------------- bayes
def bayes_state(bayes: Any) -> State:
    return {"kind": "bayes", "forget": float(bayes.forget),
            "counts": {str(c): float(v) for c, v in bayes.counts.items()},
            "calibrators": [[str(m), str(c), cal.a, cal.b, cal.paa, cal.pab, cal.pbb]
                            for (m, c), cal in bayes.calibrators.items()]}


def _gauss(row: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    a = _arr(row[2:], "bayes calibrator")
    if a.shape != (5,):
        raise NotMergeable("bayes calibrator: expected [member, class, a, b, Paa, Pab, Pbb]")
    return a[:2], np.array([[a[2], a[3]], [a[3], a[4]]])


def _pd(m: np.ndarray) -> bool:
    return bool(m[0, 0] > 0 and np.linalg.det(m) > 0)


def merge_bayes(states: Sequence[State], weights: Sequence[float],
                base: State | None = None) -> State:
    w = _weights(weights, len(states))
    for s in states:
        if not isinstance(s, Mapping) or s.get("kind") != "bayes":
            raise NotMergeable("bayes state: expected kind='bayes'")
    forgets = {float(s["forget"]) for s in states}
    if len(forgets) != 1 or not 0 < next(iter(forgets)) <= 1:
        raise NotMergeable(f"bayes states: parties forget differently ({sorted(forgets)})")
    f = forgets.pop()
    bc = base["counts"] if base is not None else {}
    counts = {}
    for c in _union([list(s["counts"]) for s in states]):
        vals = np.array([float(s["counts"].get(c, bc.get(c, 0.0))) for s in states])
        counts[c] = float(_acc(vals, w, float(bc[c]) if c in bc else None, f))
    tables = [{(r[0], r[1]): _gauss(r) for r in s["calibrators"]} for s in states]
    btable = {(r[0], r[1]): _gauss(r) for r in base["calibrators"]} if base is not None else {}
    cals = []
    for key in dict.fromkeys(k for t in tables for k in t):
        have = [i for i, t in enumerate(tables) if key in t]
        mus = np.array([tables[i][key][0] for i in have])
        covs = np.array([tables[i][key][1] for i in have])
        wk = w[have] if w[have].sum() > 0 else np.ones(len(have))
        mean, cov = np.average(mus, axis=0, weights=wk), np.average(covs, axis=0, weights=wk)
        if key in btable and all(_pd(c) for c in covs) and _pd(btable[key][1]):
            lam_b = np.linalg.inv(btable[key][1])
            lams = np.array([np.linalg.inv(c) for c in covs])
            hs = np.einsum("kij,kj->ki", lams, mus)
            lam = _acc(lams, w[have], lam_b, f)
            h = _acc(hs, w[have], lam_b @ btable[key][0], f)
            if _pd(lam):
                cov = np.linalg.inv(lam)
                mean = cov @ h
        cals.append([key[0], key[1], float(mean[0]), float(mean[1]), float(cov[0, 0]),
                     float(cov[0, 1]), float(cov[1, 1])])
    return {"kind": "bayes", "forget": f, "counts": counts, "calibrators": cals}


def load_bayes(bayes: Any, state: State) -> None:
    from ..fusion.bayes import OnlinePlatt

    if float(state["forget"]) != float(bayes.forget):
        raise NotMergeable("bayes state: a different forget factor than this level's")
    bayes.counts = {c: float(v) for c, v in state["counts"].items()}
    cals = {}
    for row in state["calibrators"]:
        cal = OnlinePlatt(prior_sd=bayes.prior_sd, forget=bayes.forget)
        cal.a, cal.b, cal.paa, cal.pab, cal.pbb = (float(v) for v in row[2:])
        cals[(row[0], row[1])] = cal
    bayes.calibrators = cals


# ---------------------------------------------------------------------------- mkl
def mkl_state(mkl: Any) -> State:
    if mkl.seed is None:
        raise NotMergeable("mkl: OnlineMKLClassifier(seed=None) draws its own random "
                           "features; parties must share a seed to merge")
    mods = {}
    for m, ex in mkl.experts.items():
        d = len(ex.columns)
        mods[m] = {"features": [str(f) for f in ex.columns], "count": ex.count[:d].copy(),
                   "mean": ex.mean[:d].copy(), "m2": ex.m2[:d].copy(),
                   "W": ex.W[:, : len(mkl.classes)].copy()}
    return {"kind": "mkl", "hyper": [int(mkl.seed), [float(g) for g in mkl.gammas],
                                     int(mkl.n_components), float(mkl.discount)],
            "classes": [str(c) for c in mkl.classes], "modalities": mods,
            "losses": {m: np.asarray(v, dtype=float).copy() for m, v in mkl.losses.items()}}


def merge_mkl(states: Sequence[State], weights: Sequence[float],
              base: State | None = None) -> State:
    w = _weights(weights, len(states))
    for s in states:
        if not isinstance(s, Mapping) or s.get("kind") != "mkl":
            raise NotMergeable("mkl state: expected kind='mkl'")
    if len({repr(s["hyper"]) for s in states} | ({repr(base["hyper"])} if base else set())) != 1:
        raise NotMergeable("mkl states: parties differ in seed, gammas, components or discount")
    hyper = states[0]["hyper"]
    k_kern, comp, discount = len(hyper[1]), int(hyper[2]), float(hyper[3])
    classes = _union(([base["classes"]] if base else []) + [s["classes"] for s in states])
    bm = base["modalities"] if base else {}
    mods: dict[str, State] = {}
    losses: dict[str, np.ndarray] = {}
    for m in _union([list(s["modalities"]) for s in states]):
        have = [i for i, s in enumerate(states) if m in s["modalities"]]
        parts = [states[i]["modalities"][m] for i in have]
        feats = _union(([bm[m]["features"]] if m in bm else []) + [p["features"] for p in parts])

        n, mean, m2 = merge_moments([_lay(p, feats, m) for p in parts],
                                    _lay(bm[m], feats, m) if m in bm else None)
        Ws, masks = [], []
        for i, p in zip(have, parts, strict=True):
            W = _arr(p["W"], f"mkl {m!r} W").reshape(k_kern, -1, comp + 1)
            if W.shape[1] != len(states[i]["classes"]):
                raise NotMergeable(f"mkl {m!r} W: {W.shape[1]} class rows, expected "
                                   f"{len(states[i]['classes'])}")
            full = np.zeros((k_kern, len(classes), comp + 1))
            rows = [classes.index(c) for c in states[i]["classes"]]
            full[:, rows] = W
            mask = np.zeros((k_kern, len(classes), comp + 1), dtype=bool)
            mask[:, rows] = True
            Ws.append(full)
            masks.append(mask)
        wk = w[have] if w[have].sum() > 0 else np.ones(len(have))
        num = sum((np.where(mk, wi * Wi, 0.0) for Wi, mk, wi in zip(Ws, masks, wk, strict=True)),
                  np.zeros_like(Ws[0]))
        den = sum((np.where(mk, wi, 0.0) for mk, wi in zip(masks, wk, strict=True)),
                  np.zeros_like(Ws[0]))
        mods[m] = {"features": feats, "count": n, "mean": mean, "m2": m2,
                   "W": np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)}
        vals = np.array([_arr(states[i]["losses"][m], f"mkl {m!r} losses") for i in have])
        if vals.shape != (len(have), k_kern):
            raise NotMergeable(f"mkl {m!r} losses: expected {k_kern} per party")
        b = base["losses"].get(m) if base else None
        losses[m] = (np.average(vals, axis=0, weights=wk) if b is None
                     else _acc(vals, w[have], _arr(b, "mkl losses"), discount))
    return {"kind": "mkl", "hyper": hyper, "classes": classes, "modalities": mods,
            "losses": losses}


def _lay(p: Mapping[str, Any], feats: list[str], m: str,
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One modality's feature moments laid out on ``feats``."""
    idx = [feats.index(f) for f in p["features"]]
    out = [np.zeros(len(feats)) for _ in range(3)]
    for o, k in zip(out, ("count", "mean", "m2"), strict=True):
        a = _arr(p[k], f"mkl {m!r} {k}")
        if a.shape != (len(idx),):
            raise NotMergeable(f"mkl {m!r} {k}: shape {a.shape}, expected ({len(idx)},)")
        o[idx] = a
    return out[0], out[1], out[2]


def load_mkl(mkl: Any, state: State) -> None:
    from ..fusion.mkl import _ModalityExperts

    if repr(mkl_state(mkl)["hyper"]) != repr(state["hyper"]):
        raise NotMergeable("mkl state: a different seed, gammas, components or discount")
    for c in state["classes"]:
        if c not in mkl._class_index:
            mkl._class_index[c] = len(mkl.classes)
            mkl.classes.append(c)
    rows = [mkl._class_index[c] for c in state["classes"]]
    for m, p in state["modalities"].items():
        ex = mkl.experts.get(m)
        if ex is None:
            ex = mkl.experts[m] = _ModalityExperts(m, len(mkl.gammas), int(mkl.n_components),
                                                   mkl._entropy)
        ex.cols({f: 0.0 for f in p["features"]}, add=True)  # columns and their frequencies
        idx = np.array([ex.columns[f] for f in p["features"]], dtype=np.int64)
        ex.count[idx], ex.mean[idx], ex.m2[idx] = p["count"], p["mean"], p["m2"]
        ex.ensure_classes(len(mkl.classes))
        ex.W[:, rows] = np.asarray(p["W"], dtype=float).reshape(ex.W.shape[0], len(rows), -1)
        mkl.losses[m] = np.asarray(state["losses"][m], dtype=float).copy()
