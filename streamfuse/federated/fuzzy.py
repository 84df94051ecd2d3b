"""Merge rule of the evolving neuro-fuzzy models (:mod:`streamfuse.learn.neurofuzzy`): rule
bases merged by centre distance, consequents averaged (a documented subset of the model).

A state (``kind = "ets"``) holds the model's hyperparameters, its feature and class names, the
running feature statistics, the reference frame its rules are written in, and its rules
(centres, radii, scatter, consequents, RLS matrices, support, birth, accumulated firing). The
engine's ``model = "neurofuzzy"`` is river's ``StandardScaler`` in front of the model; that
pipeline's state (``kind = "neurofuzzy"``) adds the scaler's per-feature count, mean and
variance.

Merge (FedAvg weights ``w_k``: windows each party learnt since the last round):

- running statistics (the model's own and the pipeline scaler's): the exact parallel merge of
  counts, means and M2 (Chan et al. 1979), with the previous round as base counted once;
- reference frame: the pooled moments of the parties' reference means and spreads (identical
  parties keep theirs). Every party's rules are first rewritten *exactly* in that frame (the
  model's own rescaling, :func:`streamfuse.kernels.fuzzy.rescale_kernel`: centres, radii,
  scatter, consequents and RLS matrices, so each party's model as a function of the raw
  features is unchanged);
- rules: greedy clusters, largest support first, of rules of different parties whose centres
  lie within the model's ``merge_distance`` radii (the distance the model itself merges rules
  by; at most one rule per party in a cluster). A cluster's centre, scatter, consequents and
  RLS matrix are the ``w``-weighted means of its rules' (radii: the root of the weighted mean
  square; support and accumulated firing: weighted means; birth: the earliest); a rule only one
  party has is kept as it is. At most ``max_rules`` clusters, by utility;
- the sample counter: the largest of the parties' (rule ages stay >= 0).

What this leaves out (the subset): rule identity (a rule born before the round is matched by
distance, not by name: if the parties moved its centre apart by more than ``merge_distance``
radii it is kept twice, and the model's own merge step may join the two later), and the
weighting of a cluster by how often each party's rule fired. Two copies of one model merge to
that model (the counts of its running statistics doubled, as for every merge without a base).

Not for sites that must keep their data: a rule is born with its centre at a standardised
sample and the state holds the frame, so a site's federation client refuses to send it
(:func:`.protocol.check_shareable`); the merge serves shards of one deployment.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..kernels import fuzzy as fk
from .learners import NotMergeable, State, _arr, _union, _weights, merge_moments

#: the hyperparameters a state carries; parties must agree on them
_HYPER = ("max_rules", "radius", "radius_rate", "min_radius", "coverage_radius",
          "replace_radius", "omega", "forgetting", "utility_threshold", "min_age",
          "merge_distance", "rescale_tolerance")


def _is_ets(model: Any) -> bool:
    from ..learn.evolving_ts import EvolvingTS

    return isinstance(model, EvolvingTS)


def _hyper(model: Any) -> dict[str, float]:
    out = {k: float(getattr(model, k)) for k in _HYPER}
    if hasattr(model, "temperature"):
        out["temperature"] = float(model.temperature)
    return out


# ---------------------------------------------------------------------------- state
def ets_state(model: Any) -> State:
    """The state of an :class:`~streamfuse.learn.neurofuzzy.EvolvingFuzzyClassifier` (or
    regressor)."""
    n = int(model._counters[0])
    classifier = hasattr(model, "_classes")
    return {
        "kind": "ets", "model": "classifier" if classifier else "regressor",
        "hyper": _hyper(model), "features": [str(f) for f in model._features],
        "classes": [str(c) for c in model._classes] if classifier else [],
        "outputs": int(model._theta.shape[2]), "samples": int(model._counters[1]),
        **{k: getattr(model, f"_{k}").copy() for k in ("mean", "m2", "cnt", "ref_mean",
                                                        "ref_std")},
        **{k: getattr(model, f"_{k}")[:n].copy() for k in ("centers", "radii", "scatter",
                                                            "theta", "cov", "support",
                                                            "birth", "usum")},
    }


def _check(s: Any) -> dict[str, Any]:
    if not isinstance(s, Mapping) or s.get("kind") != "ets":
        raise NotMergeable("neuro-fuzzy state: expected a dict with kind='ets'")
    feats, classes = s.get("features"), s.get("classes")
    if not isinstance(feats, list) or not all(isinstance(x, str) for x in feats) or \
            not isinstance(classes, list) or not all(isinstance(x, str) for x in classes) or \
            len(set(feats)) != len(feats) or len(set(classes)) != len(classes):
        raise NotMergeable("neuro-fuzzy state: 'features' and 'classes' must be lists of "
                           "distinct names")
    hyper = s.get("hyper")
    if not isinstance(hyper, Mapping) or set(_HYPER) - set(hyper):
        raise NotMergeable(f"neuro-fuzzy state: 'hyper' must hold {', '.join(_HYPER)}")
    o, samples = s.get("outputs"), s.get("samples")
    if not isinstance(o, int) or not isinstance(samples, int) or o < 0 or samples < 0:
        raise NotMergeable("neuro-fuzzy state: 'outputs' and 'samples' must be integers >= 0")
    if s.get("model") == "classifier" and o != len(classes):
        raise NotMergeable(f"neuro-fuzzy state: {o} outputs for {len(classes)} classes")
    d = len(feats)
    out: dict[str, Any] = {"features": feats, "classes": classes, "outputs": o,
                           "samples": samples, "model": s.get("model"),
                           "hyper": {k: float(v) for k, v in hyper.items()}}
    n = -1  # rules: the first per-rule array says how many
    shapes: dict[str, tuple[int | None, ...]] = {
              "mean": (d,), "m2": (d,), "cnt": (d,), "ref_mean": (d,), "ref_std": (d,),
              "centers": (None, d), "radii": (None, d), "scatter": (None, d),
              "theta": (None, d + 1, o), "cov": (None, d + 1, d + 1), "support": (None,),
              "birth": (None,), "usum": (None,)}
    for key, shape in shapes.items():
        a = _arr(s.get(key, ()), f"neuro-fuzzy state {key!r}")
        rest = tuple(int(x) for x in shape[1:] if x is not None)
        if shape[0] is None:
            if a.size == 0:
                a = a.reshape((0, *rest))  # JSON cannot say the shape of no rules
            n = a.shape[0] if n < 0 else n
        want = (n if shape[0] is None else int(shape[0]), *rest)
        if a.size == 0 and 0 in want:
            a = a.reshape(want)
        if a.shape != want:
            raise NotMergeable(f"neuro-fuzzy state {key!r}: shape {a.shape}, expected {want}")
        out[key] = a
    if n > int(out["hyper"]["max_rules"]):
        raise NotMergeable(f"neuro-fuzzy state: {n} rules > max_rules")
    if np.any(out["cnt"] < 0) or np.any(out["m2"] < 0) or np.any(out["ref_std"] < 0) or \
            np.any(out["radii"] <= 0):
        raise NotMergeable("neuro-fuzzy state: negative counts, M2 or spreads, or radii <= 0")
    return out


def _expand(p: dict[str, Any], feats: list[str], outs: list[str] | int) -> dict[str, Any]:
    """``p`` laid out on the union of features (and classes): a feature a party never saw
    sits at the reference mean of the others (centre 0), with the initial radius."""
    d, n = len(feats), p["centers"].shape[0]
    fi = np.array([feats.index(f) for f in p["features"]], dtype=np.int64)
    oi = (np.array([outs.index(c) for c in p["classes"]], dtype=np.int64)
          if isinstance(outs, list) else np.arange(p["outputs"]))
    o = len(outs) if isinstance(outs, list) else outs
    r0, omega = p["hyper"]["radius"], p["hyper"]["omega"]
    e: dict[str, Any] = {k: np.zeros(d) for k in ("mean", "m2", "cnt", "ref_mean", "ref_std")}
    for k in e:
        e[k][fi] = p[k]
    e["centers"] = np.zeros((n, d))
    e["radii"] = np.full((n, d), r0)
    e["scatter"] = np.full((n, d), r0 * r0)
    for k in ("centers", "radii", "scatter"):
        e[k][:, fi] = p[k]
    e["theta"] = np.zeros((n, d + 1, o))
    ti = np.concatenate([[0], fi + 1])
    e["theta"][np.ix_(np.arange(n), ti, oi)] = p["theta"]
    e["cov"] = np.zeros((n, d + 1, d + 1))
    e["cov"][:, np.arange(d + 1), np.arange(d + 1)] = omega
    e["cov"][np.ix_(np.arange(n), ti, ti)] = p["cov"]
    for k in ("support", "birth", "usum"):
        e[k] = p[k].copy()
    e["seen"] = np.zeros(d, dtype=bool)
    e["seen"][fi] = True
    return e


def _frame(parts: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The pooled reference frame: moments of the parties' reference means and spreads,
    each weighted by its feature count (parties without a spread for a feature left out)."""
    moments = [(np.where(p["ref_std"] > 0, p["cnt"], 0.0), p["ref_mean"],
                np.where(p["ref_std"] > 0, p["cnt"] * p["ref_std"] ** 2, 0.0)) for p in parts]
    n, mean, m2 = merge_moments(moments)
    std = np.sqrt(np.where(n > 0, m2 / np.where(n > 0, n, 1.0), 0.0))
    return np.where(n > 0, mean, 0.0), std


def _reframe(p: dict[str, Any], ref_mean: np.ndarray, ref_std: np.ndarray) -> None:
    """Rewrite ``p``'s rules exactly in the frame ``(ref_mean, ref_std)`` (in place)."""
    # a feature the party never saw: its rules sat at the mean (z = 0) of the new frame
    p["ref_mean"] = np.where(p["seen"], p["ref_mean"], ref_mean)
    n = p["centers"].shape[0]
    d = ref_mean.shape[0]
    cnt = np.full(d, 2.0)  # the kernel reads a spread from (m2, cnt): give it ref_std
    fk.rescale_kernel(ref_mean.copy(), 2.0 * ref_std**2, cnt, p["ref_mean"], p["ref_std"],
                      p["centers"], p["radii"], p["scatter"], p["theta"], p["cov"], n, 0.0,
                      np.zeros(d + 1))


def _distance(a: np.ndarray, ra: np.ndarray, b: np.ndarray, rb: np.ndarray) -> float:
    d = a.shape[0]
    return math.sqrt(float(np.mean(((a - b) / (0.5 * (ra + rb))) ** 2))) if d else 0.0


def merge_ets(states: Sequence[State], weights: Sequence[float],
              base: State | None = None) -> State:
    """Merge evolving neuro-fuzzy states (module doc)."""
    w = _weights(weights, len(states))
    if not states:
        raise NotMergeable("neuro-fuzzy merge: no parties to merge")
    checked = [_check(s) for s in states]
    bc = _check(base) if base is not None else None
    first = checked[0]
    for other in checked[1:] + ([bc] if bc else []):
        if other["hyper"] != first["hyper"] or other["model"] != first["model"]:
            raise NotMergeable("neuro-fuzzy states: the parties' models differ in kind or "
                               "hyperparameters; merge only models built alike")
    if first["model"] == "regressor" and len({c["outputs"] for c in checked}) != 1:
        raise NotMergeable("neuro-fuzzy states: regressors with different output counts")
    feats = _union(([bc["features"]] if bc else []) + [c["features"] for c in checked])
    outs: list[str] | int = (
        _union(([bc["classes"]] if bc else []) + [c["classes"] for c in checked])
        if first["model"] == "classifier" else first["outputs"])
    parts = [_expand(c, feats, outs) for c in checked]
    bx = _expand(bc, feats, outs) if bc else None
    n, mean, m2 = merge_moments([(p["cnt"], p["mean"], p["m2"]) for p in parts],
                                (bx["cnt"], bx["mean"], bx["m2"]) if bx else None)
    ref_mean, ref_std = _frame(parts)
    for p in parts:
        _reframe(p, ref_mean, ref_std)
    ww = w if w.sum() > 0 else np.ones_like(w)
    md = first["hyper"]["merge_distance"]
    rules = sorted(((k, i) for k, p in enumerate(parts) for i in range(p["centers"].shape[0])),
                   key=lambda ki: (-parts[ki[0]]["support"][ki[1]], ki))
    clusters: list[list[tuple[int, int]]] = []
    for k, i in rules:
        c_k = parts[k]["centers"][i]
        r_k = parts[k]["radii"][i]
        best: list[tuple[int, int]] | None = None
        best_d = math.inf
        for c in clusters:
            if any(kk == k for kk, _ in c):
                continue
            k0, i0 = c[0]
            dist = _distance(c_k, r_k, parts[k0]["centers"][i0], parts[k0]["radii"][i0])
            if dist <= md and dist < best_d:
                best, best_d = c, dist
        if best is None:
            clusters.append([(k, i)])
        else:
            best.append((k, i))
    clusters.sort(key=min)  # rules in the order the parties list them (party 0's first)
    samples = max(int(x["samples"]) for x in checked)
    merged = [_join(parts, c, ww) for c in clusters]
    cap = int(first["hyper"]["max_rules"])
    if len(merged) > cap:
        keep = sorted(range(len(merged)), key=lambda j: -merged[j]["usum"] / (
            samples - merged[j]["birth"] + 1.0))[:cap]
        merged = [merged[j] for j in sorted(keep)]
    d, o = len(feats), (len(outs) if isinstance(outs, list) else outs)

    def stack(key: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.array([r[key] for r in merged]) if merged else np.zeros((0, *shape))

    return {
        "kind": "ets", "model": first["model"], "hyper": dict(first["hyper"]),
        "features": feats, "classes": outs if isinstance(outs, list) else [], "outputs": o,
        "samples": samples, "mean": mean, "m2": m2, "cnt": n, "ref_mean": ref_mean,
        "ref_std": ref_std, "centers": stack("centers", (d,)), "radii": stack("radii", (d,)),
        "scatter": stack("scatter", (d,)), "theta": stack("theta", (d + 1, o)),
        "cov": stack("cov", (d + 1, d + 1)), "support": stack("support", ()),
        "birth": stack("birth", ()), "usum": stack("usum", ()),
    }


def _join(parts: Sequence[dict[str, Any]], cluster: list[tuple[int, int]],
          w: np.ndarray) -> dict[str, Any]:
    """One merged rule from a cluster (module doc); a one-rule cluster is that rule."""
    a = np.array([w[k] for k, _ in cluster], dtype=float)
    if not a.sum() > 0:
        a = np.array([parts[k]["support"][i] for k, i in cluster], dtype=float)
    a = a / a.sum()

    def avg(key: str) -> Any:
        return sum(ak * parts[k][key][i] for ak, (k, i) in zip(a, cluster, strict=True))

    out = {key: avg(key) for key in ("centers", "scatter", "theta", "cov", "support", "usum")}
    out["radii"] = np.sqrt(sum(ak * parts[k]["radii"][i] ** 2
                               for ak, (k, i) in zip(a, cluster, strict=True)))
    out["birth"] = min(parts[k]["birth"][i] for k, i in cluster)
    return out


def load_ets(model: Any, state: State) -> None:
    """Put ``state`` into an evolving neuro-fuzzy model built with the same hyperparameters
    (its features and classes become the state's, by name)."""
    c = _check(state)
    if c["hyper"] != _hyper(model):
        raise NotMergeable(f"neuro-fuzzy state: hyperparameters {c['hyper']} do not match "
                           f"the model's {_hyper(model)}")
    classifier = hasattr(model, "_classes")
    if (c["model"] == "classifier") != classifier:
        raise NotMergeable(f"cannot load a {c['model']} state into {type(model).__name__}")
    d, o, n = len(c["features"]), c["outputs"], c["centers"].shape[0]
    model._features = list(c["features"])
    model._index = {f: j for j, f in enumerate(model._features)}
    if classifier:
        model._classes = list(c["classes"])
        model._class_index = {y: j for j, y in enumerate(model._classes)}
    model._alloc(d, o)
    for k in ("mean", "m2", "cnt", "ref_mean", "ref_std"):
        setattr(model, f"_{k}", c[k].copy())
    for k in ("centers", "radii", "scatter", "theta", "cov", "support", "birth", "usum"):
        getattr(model, f"_{k}")[:n] = c[k]
    model._counters[:] = (n, c["samples"])


# ---------------------------------------------------------------------------- the pipeline
def _scaler_state(scaler: Any) -> State:
    if getattr(scaler, "window_size", None) is not None or not scaler.with_std:
        raise NotMergeable("StandardScaler(window_size=...) or with_std=False has no merge "
                           "rule")
    names = [str(f) for f in scaler.counts]
    return {"features": names,
            "count": np.array([float(scaler.counts[f]) for f in scaler.counts]),
            "mean": np.array([float(scaler.means[f]) for f in scaler.counts]),
            "var": np.array([float(scaler.vars[f]) for f in scaler.counts])}


def pipeline_state(model: Any, where: str) -> State:
    """``StandardScaler | EvolvingFuzzyClassifier`` (the engine's ``"neurofuzzy"``)."""
    steps = list(model.steps.values())
    from river import preprocessing

    if len(steps) != 2 or type(steps[0]) is not preprocessing.StandardScaler or not _is_ets(
            steps[1]):
        raise NotMergeable(
            f"{where}: a river pipeline of {' | '.join(type(s).__name__ for s in steps)} has "
            "no merge rule; federate with model = \"logreg\", \"lda\" or \"neurofuzzy\"")
    return {"kind": "neurofuzzy", "scaler": _scaler_state(steps[0]), "ets": ets_state(steps[1])}


def _check_scaler(s: Any) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(s, Mapping) or not isinstance(s.get("features"), list):
        raise NotMergeable("neuro-fuzzy pipeline state: 'scaler' needs 'features'")
    f = [str(x) for x in s["features"]]
    arrs = [_arr(s.get(k, ()), f"scaler {k!r}").reshape(-1) for k in ("count", "mean", "var")]
    if any(a.shape != (len(f),) for a in arrs) or np.any(arrs[0] < 0) or np.any(arrs[2] < 0):
        raise NotMergeable(f"neuro-fuzzy pipeline state: scaler arrays must be ({len(f)},), "
                           "counts and variances >= 0")
    return f, arrs[0], arrs[1], arrs[2]


def merge_pipeline(states: Sequence[State], weights: Sequence[float],
                   base: State | None = None) -> State:
    for s in states:
        if not isinstance(s, Mapping) or s.get("kind") != "neurofuzzy":
            raise NotMergeable("neuro-fuzzy pipeline state: expected kind='neurofuzzy'")
    scalers = [_check_scaler(s.get("scaler")) for s in states]
    b = _check_scaler(base.get("scaler")) if base is not None else None
    names = _union(([b[0]] if b else []) + [x[0] for x in scalers])

    def moments(x: tuple[list[str], np.ndarray, np.ndarray, np.ndarray],
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = [names.index(f) for f in x[0]]
        n, m, s2 = (np.zeros(len(names)) for _ in range(3))
        n[idx], m[idx], s2[idx] = x[1], x[2], x[3] * x[1]
        return n, m, s2

    n, mean, m2 = merge_moments([moments(x) for x in scalers], moments(b) if b else None)
    return {"kind": "neurofuzzy",
            "scaler": {"features": names, "count": n, "mean": mean,
                       "var": np.where(n > 0, m2 / np.where(n > 0, n, 1.0), 0.0)},
            "ets": merge_ets([s["ets"] for s in states], weights,
                             base.get("ets") if base is not None else None)}


def load_pipeline(model: Any, state: State) -> None:
    steps = list(model.steps.values())
    pipeline_state(model, "model")  # the same shape of pipeline, or NotMergeable
    f, count, mean, var = _check_scaler(state.get("scaler"))
    scaler = steps[0]
    scaler.counts = Counter({k: int(round(c)) for k, c in zip(f, count, strict=True)})
    scaler.means = defaultdict(float, zip(f, map(float, mean), strict=True))
    scaler.vars = defaultdict(float, zip(f, map(float, var), strict=True))
    load_ets(steps[1], state["ets"])
