"""Model merging: a weighted average (FedAvg) of the state of every learner a FusionHub uses.

A *state* is a plain dict of names (str), numbers and NumPy arrays (:func:`to_wire` makes it
JSON), never a pickle, so it can travel between sites safely. A round merges the states of
K parties, each weighted by the number of examples it learnt since the previous round
(McMahan et al. 2017, "Communication-efficient learning of deep networks from decentralized
data", FedAvg):

- **parameters** (the logistic regression's weights and intercepts, the LDA's temperature,
  the selector's rolling scores): ``sum_k w_k p_k / sum_k w_k``, per entry over the
  parties that have it (a feature or class a party never saw does not pull the others'
  weights towards 0);
- **running statistics** (the standard scaler inside the logistic regression, the online
  normalisers): the exact parallel merge of counts, means and sums of squared deviations
  (Chan, Golub & LeVeque 1979). Statistics accumulate since the start, so when the parties
  share a *base* (the previous round's merged state) its part is taken out of each party first
  and counted once: merged = base + each party's increment since it. Late fusion's Hedge
  losses are discounted sums, accumulators too: the base discounted once by every window of the
  round plus each party's increment (:func:`_hedge_loss`).

What stays local, by design: the per-device normalisers of an engine (one device is one
person; its statistics and its id are the data a site must not send), and the level
selector when it ranks (``selector_score = "auc"``: its memory is (device, label,
probabilities) triples). :func:`merge_normalizers` still merges normalisers, for shards of one
deployment. The evolving neuro-fuzzy models merge their rule bases by centre distance
(:mod:`.fuzzy`). A learner with no merge rule (the other river pipelines, the
attention/Bayes/MKL/conformal levels) raises :class:`NotMergeable` naming it. The diagonal
LDA (``model = "lda"``) is its sufficient statistics, so its merge is exact: per class and
feature the parallel merge of the values' moments.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import levels as review
from .learners import (
    NotMergeable,
    State,
    _arr,
    _check_lda,
    _check_logreg,
    _union,
    _weights,
    lda_state,
    load_lda,
    load_logreg,
    load_model,
    logreg_state,
    merge_lda,
    merge_logreg,
    merge_model_states,
    merge_moments,
    model_state,
)

__all__ = [
    "NotMergeable", "State", "lda_state", "load_lda", "load_logreg", "load_model",
    "logreg_state", "merge_lda", "merge_logreg", "merge_model_states", "merge_moments",
    "model_state",
]


# ---------------------------------------------------------------------------- normalisers
def normalizer_state(norm: Any) -> State:
    """The statistics of an :class:`~streamfuse.features.OnlineNormalizer`."""
    d = len(norm._slot)
    return {"kind": "normalizer", "features": [str(k) for k in norm._slot],
            "count": norm._count[:d].astype(np.float64), "mean": norm._mean[:d].copy(),
            "m2": norm._m2[:d].copy()}


def merge_normalizers(states: Sequence[State], base: State | None = None) -> State:
    """The exact parallel merge of normaliser statistics (a normaliser's counts are its own
    weights)."""
    def check(s: Mapping[str, Any]) -> tuple[list[str], list[np.ndarray]]:
        if not isinstance(s, Mapping) or s.get("kind") != "normalizer":
            raise NotMergeable("normalizer state: expected a dict with kind='normalizer'")
        f = s.get("features")
        if not isinstance(f, list) or not all(isinstance(x, str) for x in f):
            raise NotMergeable("normalizer state: 'features' must be a list of names")
        arrs = [_arr(s.get(k, ()), f"normalizer {k!r}") for k in ("count", "mean", "m2")]
        if any(a.shape != (len(f),) for a in arrs):
            raise NotMergeable(f"normalizer state: arrays must have shape ({len(f)},)")
        return f, arrs

    checked = [check(s) for s in states]
    b = check(base) if base is not None else None
    names = _union(([b[0]] if b else []) + [f for f, _ in checked])

    def expand(f: list[str], arrs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = [names.index(x) for x in f]
        n, m, s = (np.zeros(len(names)) for _ in range(3))
        n[idx], m[idx], s[idx] = arrs
        return n, m, s

    n, mean, m2 = merge_moments([expand(*c) for c in checked], expand(*b) if b else None)
    return {"kind": "normalizer", "features": names, "count": n, "mean": mean, "m2": m2}


def load_normalizer(norm: Any, state: State) -> None:
    merged = merge_normalizers([state])
    for f in merged["features"]:
        norm._slots((f,))
    idx = np.array([norm._slot[f] for f in merged["features"]], dtype=np.int64)
    norm._count[idx] = np.rint(merged["count"]).astype(np.int64)
    norm._mean[idx] = merged["mean"]
    norm._m2[idx] = merged["m2"]


# ---------------------------------------------------------------------------- late fusion
def late_state(late: Any) -> State:
    return {"kind": "late", "discount": float(late.discount),
            "losses": {m: float(v) for m, v in late.losses.items()},
            "models": {m: model_state(mod, f"late member {m!r}")
                       for m, mod in late.models.items()}}


def _hedge_loss(vals: np.ndarray, n: np.ndarray, base: float | None, discount: float) -> float:
    """One member's merged Hedge loss ``L`` (``L <- discount * L + loss`` per window learnt).

    ``L`` is an accumulator, not an estimate each party makes of one quantity: with ``base``
    (the loss every party started the round from) party k's increment is
    ``L_k - discount^n_k * base``, and the union of the windows gives
    ``discount^N * base + sum_k increment_k`` (``N = sum_k n_k``), exact when one party
    learnt in the round, and up to the unknown interleaving of the parties' windows (a factor
    ``discount^j``, ``j < N``, on an increment) otherwise. Without a base (independent
    models): the mean weighted by ``n``."""
    if base is None:
        return float(np.average(vals, weights=n)) if n.sum() > 0 else float(vals.mean())
    inc = vals - discount ** n * base
    return float(discount ** n.sum() * base + inc.sum())


def merge_late(states: Sequence[State], weights: Sequence[float],
               base: State | None = None) -> State:
    """Each member merged over the parties that have it; Hedge losses as accumulators
    (:func:`_hedge_loss`)."""
    w = _weights(weights, len(states))
    for s in states:
        if not isinstance(s, Mapping) or s.get("kind") != "late" or not isinstance(
                s.get("losses"), Mapping) or not isinstance(s.get("models"), Mapping):
            raise NotMergeable("late state: expected kind='late' with 'losses' and 'models'")
    discounts = {float(s.get("discount", 1.0)) for s in states}
    if len(discounts) != 1 or not 0 < next(iter(discounts)) <= 1:
        raise NotMergeable(f"late state: parties discount Hedge losses differently "
                           f"({sorted(discounts)}); one discount in (0, 1] is needed")
    discount = discounts.pop()
    members = _union([list(s["models"]) for s in states])
    losses: dict[str, float] = {}
    models: dict[str, State] = {}
    b_models = base["models"] if base is not None else {}
    b_losses = base["losses"] if base is not None else {}
    for m in members:
        have = [i for i, s in enumerate(states) if m in s["models"] and m in s["losses"]]
        vals = np.array([float(states[i]["losses"][m]) for i in have])
        if not np.all(np.isfinite(vals)):
            raise NotMergeable(f"late state: non-finite Hedge loss of member {m!r}")
        b = float(b_losses[m]) if m in b_losses else None
        losses[m] = _hedge_loss(vals, w[have], b, discount)
        models[m] = merge_model_states([states[i]["models"][m] for i in have], list(w[have]),
                                       b_models.get(m), f"late member {m!r}")
    return {"kind": "late", "discount": discount, "losses": losses, "models": models}


def load_late(late: Any, state: State) -> None:
    for m, ms in state["models"].items():
        model = late.models.get(m)
        if model is None:
            model = late.models[m] = late.factory(m)
        load_model(model, ms, f"late member {m!r}")
        late.losses[m] = float(state["losses"][m])


# ---------------------------------------------------------------------------- selector
def selector_state(selector: Any) -> State:
    """The selector's rolling mean score per level (log_loss / accuracy only)."""
    if selector.score == "auc":
        raise NotMergeable(
            "LevelSelector(score='auc') has no merge rule: its memory is (device, label, "
            "probabilities) triples, which must not leave a site; it stays local")
    return {"kind": "selector", "score": selector.score,
            "mean": {lv: float(sum(q) / len(q)) for lv, q in selector._recent.items() if q},
            "n": {lv: len(q) for lv, q in selector._recent.items() if q}}


def merge_selectors(states: Sequence[State], weights: Sequence[float]) -> State:
    w = _weights(weights, len(states))
    if len({s.get("score") for s in states}) != 1:
        raise NotMergeable("selector states: parties rank by different scores")
    out: State = {"kind": "selector", "score": states[0]["score"], "mean": {}, "n": {}}
    for lv in _union([list(s["mean"]) for s in states]):
        have = [i for i, s in enumerate(states) if lv in s["mean"]]
        vals = np.array([float(states[i]["mean"][lv]) for i in have])
        wk = w[have] if w[have].sum() > 0 else np.ones(len(have))
        out["mean"][lv] = float(np.average(vals, weights=wk))
        out["n"][lv] = max(int(states[i]["n"][lv]) for i in have)
    return out


def load_selector(selector: Any, state: State) -> None:
    """Each level's recent scores become ``n`` copies of the merged mean (a documented
    subset: the mean is what :meth:`LevelSelector.best` ranks by)."""
    for lv, mean in state["mean"].items():
        if lv in selector._recent:
            q = selector._recent[lv]
            selector._recent[lv] = deque([mean] * min(int(state["n"][lv]), q.maxlen or 1),
                                         maxlen=q.maxlen)
    selector._best = None


# ---------------------------------------------------------------------------- the hub
def hub_state(hub: Any) -> State:
    """Everything a site shares of a :class:`~streamfuse.fusion.levels.FusionHub`: its level
    models, late fusion (members and Hedge losses) and, when it is mergeable, the selector."""
    out: State = {"kind": "hub",
                  "models": {lv: model_state(m, f"level {lv!r}") for lv, m in hub.models.items()},
                  "late": late_state(hub.late)}
    levels = {name: rule[1](getattr(hub, rule[0])) for name, rule in _LEVELS.items()
              if getattr(hub, rule[0], None) is not None}
    if levels:
        out["levels"] = levels
    if hub.selector.score != "auc":
        out["selector"] = selector_state(hub.selector)
    return out


#: the review's levels (issue 16) and their merge rules (:mod:`.levels`): (hub attribute,
#: state, merge, load)
_LEVELS = {
    "attention": ("gate", review.gate_state, review.merge_gate, review.load_gate),
    "bayes": ("bayes", review.bayes_state, review.merge_bayes, review.load_bayes),
    "mkl": ("mkl", review.mkl_state, review.merge_mkl, review.load_mkl),
}


def local_levels(hub: Any) -> list[str]:
    """What of ``hub`` a round leaves at the site, by name: ``"selector"`` when it ranks by
    AUC, ``"conformal"`` when it makes conformal sets (their calibration is each site's
    own)."""
    out = []
    if hub.selector.score == "auc":
        out.append("selector")
    if getattr(hub, "conformal", None) is not None:
        out.append("conformal")
    return out


def merge_hubs(states: Sequence[State], weights: Sequence[float],
               base: State | None = None) -> State:
    """FedAvg of hub states weighted by the examples each party learnt since ``base``."""
    if not states:
        raise NotMergeable("merge_hubs: no parties to merge")
    w = _weights(weights, len(states))
    for s in states:
        if not isinstance(s, Mapping) or s.get("kind") != "hub" or not isinstance(
                s.get("models"), Mapping):
            raise NotMergeable("hub state: expected a dict with kind='hub' and 'models'")
    levels = _union([list(s["models"]) for s in states])
    models = {}
    for lv in levels:
        have = [i for i, s in enumerate(states) if lv in s["models"]]
        b = base["models"].get(lv) if base is not None else None
        models[lv] = merge_model_states([states[i]["models"][lv] for i in have], list(w[have]),
                                        b, f"level {lv!r}")
    out: State = {"kind": "hub", "models": models,
                  "late": merge_late([s["late"] for s in states], list(w),
                                     base["late"] if base is not None else None)}
    b_levels = base.get("levels", {}) if base is not None else {}
    merged_levels = {}
    for name in _union([list(s.get("levels", {})) for s in states]):
        if name not in _LEVELS:
            raise NotMergeable(f"hub state: unknown level {name!r}")
        have = [i for i, s in enumerate(states) if name in s.get("levels", {})]
        merged_levels[name] = _LEVELS[name][2]([states[i]["levels"][name] for i in have],
                                               list(w[have]), b_levels.get(name))
    if merged_levels:
        out["levels"] = merged_levels
    sel = [i for i, s in enumerate(states) if "selector" in s]
    if sel:
        out["selector"] = merge_selectors([states[i]["selector"] for i in sel], list(w[sel]))
    return out


def load_hub(hub: Any, state: State) -> None:
    """Put a merged hub state into ``hub`` (it keeps predicting with it at once)."""
    for lv, ms in state["models"].items():
        if lv in hub.models:
            load_model(hub.models[lv], ms, f"level {lv!r}")
    load_late(hub.late, state["late"])
    for name, st in state.get("levels", {}).items():
        attr, _, _, load = _LEVELS[name]
        if getattr(hub, attr, None) is not None:
            load(getattr(hub, attr), st)
    if "selector" in state and hub.selector.score != "auc":
        load_selector(hub.selector, state["selector"])


# ---------------------------------------------------------------------------- wire form
def to_wire(state: Any) -> Any:
    """``state`` with every array a (nested) list of floats: JSON-serialisable."""
    if isinstance(state, np.ndarray):
        return state.tolist()
    if isinstance(state, Mapping):
        return {str(k): to_wire(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return [to_wire(v) for v in state]
    if isinstance(state, np.floating | np.integer):
        return state.item()
    return state


def _canonical(state: Any) -> Any:
    """``state`` with every model's classes and features in sorted order (a model does not
    depend on the order it first met them in)."""
    if isinstance(state, Mapping):
        if state.get("kind") == "logreg":
            classes, features, a = _check_logreg(state)
            ci = sorted(range(len(classes)), key=lambda i: classes[i])
            fi = sorted(range(len(features)), key=lambda i: features[i])
            return {"kind": "logreg", "classes": [classes[i] for i in ci],
                    "features": [features[i] for i in fi],
                    **{k: a[k][fi] for k in ("counts", "means", "vars")},
                    "W": a["W"][np.ix_(ci, fi)], "b": a["b"][ci]}
        if state.get("kind") == "lda":
            lc, lf, la, log_a = _check_lda(state)
            ci = sorted(range(len(lc)), key=lambda i: lc[i])
            fi = sorted(range(len(lf)), key=lambda i: lf[i])
            return {"kind": "lda", "classes": [lc[i] for i in ci],
                    "features": [lf[i] for i in fi],
                    **{k: la[k][np.ix_(ci, fi)] for k in ("n", "mu", "m2")},
                    "seen": la["seen"][ci], "log_a": log_a}
        return {k: _canonical(v) for k, v in state.items()}
    return state


def fingerprint(state: State) -> str:
    """A short hash of a state (its wire form, classes and features sorted), to compare models
    across sites."""
    import hashlib
    import json

    blob = json.dumps(to_wire(_canonical(state)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
