"""Merge rules of the models a level learns (logistic regression, diagonal LDA) and the
parallel moments and weighted averages they and :mod:`.merge` share; see :mod:`.merge` for what
a state is and how a round weighs its parties."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import StreamfuseError

State = dict[str, Any]


class NotMergeable(StreamfuseError):
    """A learner (named in the message) has no merge rule, or states that cannot be merged."""


# ---------------------------------------------------------------------------- moments
def _arr(v: Any, name: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise NotMergeable(f"{name}: non-finite values; a state must hold finite numbers")
    return a


def _combine(n_a: np.ndarray, m_a: np.ndarray, s_a: np.ndarray,
             n_b: np.ndarray, m_b: np.ndarray, s_b: np.ndarray,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chan et al.'s pairwise merge of (count, mean, M2) per entry."""
    n = n_a + n_b
    safe = np.where(n > 0, n, 1.0)
    d = m_b - m_a
    mean = np.where(n > 0, m_a + d * n_b / safe, 0.0)
    m2 = s_a + s_b + d * d * n_a * n_b / safe
    return n, mean, m2


def _remove(n: np.ndarray, m: np.ndarray, s: np.ndarray,
            n_a: np.ndarray, m_a: np.ndarray, s_a: np.ndarray,
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inverse of :func:`_combine`: what was added to (n_a, m_a, s_a) to give (n, m, s)."""
    n_d = np.maximum(n - n_a, 0.0)
    safe = np.where(n_d > 0, n_d, 1.0)
    m_d = np.where(n_d > 0, (n * m - n_a * m_a) / safe, 0.0)
    tot = np.where(n > 0, n, 1.0)
    s_d = np.where(n_d > 0, s - s_a - (m_d - m_a) ** 2 * n_a * n_d / tot, 0.0)
    return n_d, m_d, np.maximum(s_d, 0.0)


def merge_moments(
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    base: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-entry (count, mean, M2) of several parties (same layout).

    With ``base`` (the moments every party started this round from), each party's increment
    since ``base`` is merged and ``base`` counted once."""
    if not parts:
        raise NotMergeable("merge_moments: no parties to merge")
    if base is None:
        acc = parts[0]
        rest = parts[1:]
    else:
        acc = base
        rest = [_remove(*p, *base) for p in parts]
    for p in rest:
        acc = _combine(*acc, *p)
    return acc


# ---------------------------------------------------------------------------- weights
def _weights(weights: Sequence[float], k: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (k,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise NotMergeable(f"weights {list(weights)!r}: pass one count >= 0 per party ({k})")
    return w


def _average(values: Sequence[np.ndarray], masks: Sequence[np.ndarray], w: np.ndarray,
             fallback: np.ndarray) -> np.ndarray:
    """Per-entry weighted mean over the parties whose mask is set; ``fallback`` where none
    with positive weight has the entry."""
    num = np.zeros_like(fallback)
    den = np.zeros_like(fallback)
    for v, m, wk in zip(values, masks, w, strict=True):
        num += np.where(m, wk * v, 0.0)
        den += np.where(m, wk, 0.0)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), fallback)


def _union(lists: Sequence[Sequence[str]]) -> list[str]:
    out: dict[str, None] = {}
    for names in lists:
        for n in names:
            out.setdefault(n, None)
    return list(out)


# ---------------------------------------------------------------------------- logreg
def logreg_state(model: Any) -> State:
    """The state of a :class:`~streamfuse.learn.linear.ScaledLogisticRegression`."""
    d = len(model._columns)
    c = len(model.classes)
    return {
        "kind": "logreg",
        "classes": [str(x) for x in model.classes],
        "features": [str(f) for f in model._columns],
        "counts": model._counts[:d].copy(),
        "means": model._means[:d].copy(),
        "vars": model._vars[:d].copy(),
        "W": model._W[:c, :d].copy(),
        "b": model._b[:c].copy(),
    }


def _check_logreg(s: Mapping[str, Any]) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    if not isinstance(s, Mapping) or s.get("kind") != "logreg":
        raise NotMergeable("logreg state: expected a dict with kind='logreg'")
    classes, features = s.get("classes"), s.get("features")
    if not isinstance(classes, list) or not all(isinstance(x, str) for x in classes):
        raise NotMergeable("logreg state: 'classes' must be a list of names")
    if not isinstance(features, list) or not all(isinstance(x, str) for x in features):
        raise NotMergeable("logreg state: 'features' must be a list of names")
    if len(set(classes)) != len(classes) or len(set(features)) != len(features):
        raise NotMergeable("logreg state: repeated class or feature names")
    c, d = len(classes), len(features)
    shapes = {"counts": (d,), "means": (d,), "vars": (d,), "W": (c, d), "b": (c,)}
    arrays = {}
    for key, shape in shapes.items():
        a = _arr(s.get(key, ()), f"logreg state {key!r}")
        if a.size == 0 and 0 in shape:
            a = a.reshape(shape)  # JSON cannot say the shape of an empty matrix
        if a.shape != shape:
            raise NotMergeable(f"logreg state {key!r}: shape {a.shape}, expected {shape} "
                               f"({c} classes, {d} features)")
        arrays[key] = a
    if np.any(arrays["counts"] < 0) or np.any(arrays["vars"] < 0):
        raise NotMergeable("logreg state: negative counts or variances")
    return classes, features, arrays


def _expand(classes: list[str], features: list[str], a: dict[str, np.ndarray],
            all_c: list[str], all_f: list[str]) -> dict[str, np.ndarray]:
    ci = [all_c.index(x) for x in classes]
    fi = [all_f.index(x) for x in features]
    out = {k: np.zeros(len(all_f)) for k in ("counts", "means", "vars")}
    for k in out:
        out[k][fi] = a[k]
    out["W"] = np.zeros((len(all_c), len(all_f)))
    out["W"][np.ix_(ci, fi)] = a["W"]
    out["b"] = np.zeros(len(all_c))
    out["b"][ci] = a["b"]
    out["has_c"] = np.zeros(len(all_c), dtype=bool)
    out["has_c"][ci] = True
    out["has_f"] = np.zeros(len(all_f), dtype=bool)
    out["has_f"][fi] = True
    return out


def merge_logreg(states: Sequence[State], weights: Sequence[float],
                 base: State | None = None) -> State:
    """FedAvg of logistic-regression states; the scalers merged exactly (see module doc)."""
    w = _weights(weights, len(states))
    checked = [_check_logreg(s) for s in states]
    b_checked = _check_logreg(base) if base is not None else None
    all_c = _union(([b_checked[0]] if b_checked else []) + [c for c, _, _ in checked])
    all_f = _union(([b_checked[1]] if b_checked else []) + [f for _, f, _ in checked])
    parts = [_expand(c, f, a, all_c, all_f) for c, f, a in checked]
    bx = _expand(*b_checked, all_c, all_f) if b_checked else None

    def moments(p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return p["counts"], p["means"], p["vars"] * p["counts"]

    n, mean, m2 = merge_moments([moments(p) for p in parts], moments(bx) if bx else None)
    fallback_W = bx["W"] if bx else parts[0]["W"]
    fallback_b = bx["b"] if bx else parts[0]["b"]
    if bx is None and not np.any(w > 0):
        w = np.ones_like(w)  # nobody learnt and there is no base: a plain average
    W = _average([p["W"] for p in parts],
                 [p["has_c"][:, None] & p["has_f"][None, :] for p in parts], w, fallback_W)
    b = _average([p["b"] for p in parts], [p["has_c"] for p in parts], w, fallback_b)
    return {
        "kind": "logreg", "classes": all_c, "features": all_f,
        "counts": n, "means": mean, "vars": np.where(n > 0, m2 / np.where(n > 0, n, 1), 0.0),
        "W": W, "b": b,
    }


def load_logreg(model: Any, state: State) -> None:
    """Put ``state`` into a ScaledLogisticRegression (its classes and features by name)."""
    classes, features, a = _check_logreg(state)
    for f in features:
        model._columns.setdefault(f, len(model._columns))
    model._grow_columns(len(model._columns))
    for y in classes:
        if y not in model._class_index:
            model._add_class(y)
    model._key_sets.clear()
    cols = np.array([model._columns[f] for f in features], dtype=np.int64)
    rows = np.array([model._class_index[y] for y in classes], dtype=np.int64)
    model._counts[cols] = a["counts"]
    model._means[cols] = a["means"]
    model._vars[cols] = a["vars"]
    if rows.size and cols.size:
        model._W[np.ix_(rows, cols)] = a["W"]
    model._b[rows] = a["b"]


# ---------------------------------------------------------------------------- diagonal LDA
def lda_state(model: Any) -> State:
    """The state of a :class:`~streamfuse.learn.lda.DiagonalLDA`: per class and feature the
    count, mean and M2 of its values, per class the samples learnt, the log temperature."""
    c, d = len(model.classes), len(model._columns)
    return {
        "kind": "lda", "classes": [str(x) for x in model.classes],
        "features": [str(f) for f in model._columns],
        "n": model._n[:c, :d].copy(), "mu": model._mu[:c, :d].copy(),
        "m2": model._m2[:c, :d].copy(), "seen": model._seen[:c].copy(),
        "log_a": float(model._log_a) if math.isfinite(model._log_a) else None,
    }


def _check_lda(s: Mapping[str, Any]) -> tuple[list[str], list[str], dict[str, np.ndarray],
                                              float | None]:
    if not isinstance(s, Mapping) or s.get("kind") != "lda":
        raise NotMergeable("lda state: expected a dict with kind='lda'")
    classes, features = s.get("classes"), s.get("features")
    if not isinstance(classes, list) or not all(isinstance(x, str) for x in classes) or \
            not isinstance(features, list) or not all(isinstance(x, str) for x in features):
        raise NotMergeable("lda state: 'classes' and 'features' must be lists of names")
    if len(set(classes)) != len(classes) or len(set(features)) != len(features):
        raise NotMergeable("lda state: repeated class or feature names")
    c, d = len(classes), len(features)
    arrays = {}
    for key, shape in {"n": (c, d), "mu": (c, d), "m2": (c, d), "seen": (c,)}.items():
        a = _arr(s.get(key, ()), f"lda state {key!r}")
        if a.size == 0 and 0 in shape:
            a = a.reshape(shape)
        if a.shape != shape:
            raise NotMergeable(f"lda state {key!r}: shape {a.shape}, expected {shape}")
        arrays[key] = a
    if np.any(arrays["n"] < 0) or np.any(arrays["m2"] < 0) or np.any(arrays["seen"] < 0):
        raise NotMergeable("lda state: negative counts or M2")
    log_a = s.get("log_a")
    if log_a is not None and (not isinstance(log_a, int | float) or not math.isfinite(log_a)):
        raise NotMergeable("lda state: 'log_a' must be a finite number or null")
    return classes, features, arrays, None if log_a is None else float(log_a)


def merge_lda(states: Sequence[State], weights: Sequence[float],
              base: State | None = None) -> State:
    """Exact: per class and feature the parallel merge of the values' moments (the model is
    its sufficient statistics); samples per class added; the temperature averaged."""
    w = _weights(weights, len(states))
    checked = [_check_lda(s) for s in states]
    bc = _check_lda(base) if base is not None else None
    all_c = _union(([bc[0]] if bc else []) + [x[0] for x in checked])
    all_f = _union(([bc[1]] if bc else []) + [x[1] for x in checked])

    def expand(x: tuple[list[str], list[str], dict[str, np.ndarray], float | None],
               ) -> dict[str, np.ndarray]:
        ci = [all_c.index(v) for v in x[0]]
        fi = [all_f.index(v) for v in x[1]]
        out: dict[str, np.ndarray] = {k: np.zeros((len(all_c), len(all_f)))
                                      for k in ("n", "mu", "m2")}
        for k in out:
            out[k][np.ix_(ci, fi)] = x[2][k]
        out["seen"] = np.zeros(len(all_c))
        out["seen"][ci] = x[2]["seen"]
        return out

    parts = [expand(x) for x in checked]
    bx = expand(bc) if bc else None
    n, mu, m2 = merge_moments([(p["n"], p["mu"], p["m2"]) for p in parts],
                              (bx["n"], bx["mu"], bx["m2"]) if bx else None)
    if bx is None:
        seen = sum((p["seen"] for p in parts), np.zeros(len(all_c)))
    else:
        seen = bx["seen"] + sum((np.maximum(p["seen"] - bx["seen"], 0.0) for p in parts),
                                np.zeros(len(all_c)))
    temps = [(x[3], wk) for x, wk in zip(checked, w, strict=True) if x[3] is not None]
    if temps and sum(wk for _, wk in temps) > 0:
        log_a: float | None = float(np.average([t for t, _ in temps],
                                               weights=[wk for _, wk in temps]))
    elif bc is not None and bc[3] is not None:
        log_a = bc[3]
    else:
        log_a = float(np.mean([t for t, _ in temps])) if temps else None
    return {"kind": "lda", "classes": all_c, "features": all_f, "n": n, "mu": mu, "m2": m2,
            "seen": seen, "log_a": log_a}


def load_lda(model: Any, state: State) -> None:
    classes, features, a, log_a = _check_lda(state)
    for f in features:
        model._columns.setdefault(f, len(model._columns))
    for y in classes:
        if y not in model._class_index:
            model._class_index[y] = len(model.classes)
            model.classes.append(y)
    model._grow(len(model._columns), len(model.classes))
    model._key_sets.clear()
    rows = np.array([model._class_index[y] for y in classes], dtype=np.int64)
    cols = np.array([model._columns[f] for f in features], dtype=np.int64)
    if rows.size and cols.size:
        for k in ("n", "mu", "m2"):
            getattr(model, f"_{k}")[np.ix_(rows, cols)] = a[k]
    model._seen[rows] = a["seen"]
    model._log_a = math.nan if log_a is None else log_a


# ---------------------------------------------------------------------------- models
def _kinds() -> dict[str, tuple[Any, Any]]:
    from . import fuzzy

    return {"logreg": (merge_logreg, load_logreg), "lda": (merge_lda, load_lda),
            "ets": (fuzzy.merge_ets, fuzzy.load_ets),
            "neurofuzzy": (fuzzy.merge_pipeline, fuzzy.load_pipeline)}


def model_state(model: Any, where: str = "model") -> State:
    """The state of a model the engine uses; :class:`NotMergeable` for one without a rule."""
    from river import compose

    from ..learn.evolving_ts import EvolvingTS
    from ..learn.lda import DiagonalLDA
    from ..learn.linear import ScaledLogisticRegression
    from . import fuzzy

    if isinstance(model, ScaledLogisticRegression):
        return logreg_state(model)
    if isinstance(model, DiagonalLDA):
        return lda_state(model)
    if isinstance(model, EvolvingTS):
        return fuzzy.ets_state(model)
    if isinstance(model, compose.Pipeline):
        return fuzzy.pipeline_state(model, where)
    raise NotMergeable(
        f"{where}: {type(model).__name__} has no merge rule; federate with model = \"logreg\", "
        "\"lda\" or \"neurofuzzy\"")


def merge_model_states(states: Sequence[State], weights: Sequence[float],
                       base: State | None = None, where: str = "model") -> State:
    kinds = {s.get("kind") if isinstance(s, Mapping) else None for s in states}
    rules = _kinds()
    if len(kinds) != 1 or next(iter(kinds)) not in rules:
        raise NotMergeable(f"{where}: cannot merge model states of kinds {sorted(map(str, kinds))}")
    kind = str(next(iter(kinds)))
    if base is not None and base.get("kind") != kind:
        base = None  # the model changed kind: start afresh
    return rules[kind][0](states, weights, base)


def load_model(model: Any, state: State, where: str = "model") -> None:
    try:
        kind = model_state(model, where)["kind"]
    except NotMergeable:
        kind = None
    if kind is None or state.get("kind") != kind:
        raise NotMergeable(f"{where}: cannot load a {state.get('kind')!r} state into "
                           f"{type(model).__name__}")
    _kinds()[kind][1](model, state)
