"""The fusion levels side by side: what each level sees of a window, how it decides and learns.

Every window is decided by each configured level (``EngineConfig.levels``), all from what the
window gave once (features are never recomputed per level):

- ``early`` (data level): one model over a compact description of the *raw* early-fusion
  matrix, every aligned channel of every modality (:class:`~streamfuse.fusion.early.EarlyFeatures`:
  per-channel sub-window log-variance, line length, zero crossings, Hjorth mobility; masked
  samples ignored, a missing modality contributes no inputs);
- ``intermediate`` (feature level): one model over the concatenated per-modality features
  (:func:`streamfuse.features.concat`);
- ``late`` (decision level): :class:`~streamfuse.fusion.late.LateFusion`, one model per
  modality on that modality's features, decisions combined (Hedge-weighted average or vote);
  a modality missing from the window neither speaks nor learns, the others' weights are
  renormalised. Each member's own probabilities are kept: they are the unimodal decisions.

The review's techniques (issue 16) run beside them on the same window:

- ``attention``: the late members' decisions mixed by a quality-aware
  :class:`~streamfuse.fusion.attention.ModalityGate` (softmax over modalities of a linear
  function of each one's signal-quality indices, :mod:`streamfuse.features.quality`);
- ``bayes``: the late members' decisions calibrated online and multiplied as a product of
  experts (:class:`~streamfuse.fusion.bayes.BayesianFusion`), with a credible interval;
- ``mkl``: Hedge over (modality, Gaussian kernel) random-feature experts
  (:class:`~streamfuse.fusion.mkl.OnlineMKLClassifier`) on each modality's features.

When ``attention`` or ``bayes`` runs, each window's quality indices are computed per modality;
a modality whose indices cross the fixed limits of :mod:`streamfuse.fusion.trust` counts as
missing for those two levels (with member smoothing they hear its decision held from earlier
usable windows instead) and its member does not learn from the window (``late`` still hears
it). Every published decision says what each modality contributed
(:attr:`Decision.explanation`) and, with ``EngineConfig.conformal_target``, carries an adaptive
conformal prediction set (:mod:`streamfuse.fusion.conformal`).

With ``EngineConfig.normalize`` each device's inputs are z-scored online against that
device's own running mean and spread (:class:`~streamfuse.features.OnlineNormalizer`,
label-free, causal). With ``EngineConfig.member_smoothing`` the members' decisions are averaged
over the device's recent windows (:mod:`streamfuse.fusion.smoothing`) before any level uses them.

Test-then-train: :meth:`FusionHub.decide` predicts with every level before the window's label
is known; :meth:`FusionHub.learn` later scores those stored predictions (prequential metrics
per level, per modality and for the published choice; the :class:`LevelSelector`'s rolling
score), then trains every model on the window. A level that could not predict yet (no class
learnt) is neither scored nor counted by the selector for that window. The published level
is the pinned one (``EngineConfig.level``) or the selector's best when the window is decided.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, cast

import numpy as np
from river import base
from river.base.typing import FeatureName

from ..config import EngineConfig
from ..features import OnlineNormalizer, concat
from ..features.quality import window_quality
from ..learn import vector
from ..learn.metrics import PrequentialMetrics
from ..learn.models import explain, final_step, model_name
from ..learn.vector import FeatureVector
from ..types import FusedWindow
from .attention import ModalityGate
from .bayes import BayesianFusion
from .conformal import AdaptiveConformal, PredictionSet
from .early import ArrayNormalizer, EarlyFeatures
from .late import LateFusion
from .mkl import OnlineMKLClassifier
from .selector import LevelSelector
from .smoothing import DecisionSmoother
from .trust import heard, unusable

#: the levels decided from the late members' own probabilities
MEMBER_LEVELS = frozenset(("late", "attention", "bayes"))
#: the levels that need each window's signal-quality indices
QUALITY_LEVELS = frozenset(("attention", "bayes"))

#: how river's type hints spell a feature dict (ours are ``dict[str, float]``)
RiverX = dict[FeatureName, Any]

log = logging.getLogger("streamfuse.fusion.levels")

FeatureSet = Mapping[str, Mapping[str, float]]
Proba = dict[str, float]


def _argmax(proba: Mapping[str, float]) -> str | None:
    """Most probable class; ties go to the smallest name (deterministic).

    The first class whose ``(-p, str(c))`` is smallest, as ``min`` with that key finds it,
    without a key call per class."""
    best: str | None = None
    top = 0.0
    name: str | None = None  # str(best), made when a tie needs it
    first = True
    for c, v in proba.items():
        neg = -v
        if first:
            best, top, first = c, neg, False
        elif neg == top:
            if name is None:
                name = str(best)
            s = str(c)
            if s < name:
                best, top, name = c, neg, s
        elif neg < top:
            best, top, name = c, neg, None
    return best


class _Fresh:
    """``factory(modality)`` for :class:`LateFusion` from a no-argument factory (picklable,
    so an engine checkpoints whenever its model factory does)."""

    def __init__(self, factory: Callable[[], base.Classifier]) -> None:
        self.factory = factory

    def __call__(self, modality: str) -> base.Classifier:
        return self.factory()


@dataclass(slots=True)
class DeviceFusion:
    """Per-device state of the fusion stage: the online normalisers of its inputs."""

    features: OnlineNormalizer | None
    early: ArrayNormalizer | None


@dataclass(slots=True)
class Evidence:
    """What a window gave the models, kept until its label arrives.

    ``x_early`` is the early level's input, ``x_modalities`` each present modality's
    (normalised) features, ``x_intermediate`` their concatenation; ``device`` the window's
    device (the selector ranks windows of one device against each other); ``quality`` each
    present modality's signal-quality indices and ``unusable`` the modalities whose indices
    cross the limits of :mod:`~streamfuse.fusion.trust` (both empty unless a quality-aware
    level runs).
    """

    x_early: Mapping[str, float]
    x_modalities: Mapping[str, Mapping[str, float]]
    x_intermediate: Mapping[str, float]
    device: str = ""
    quality: dict[str, dict[str, float]] = field(default_factory=dict)
    unusable: tuple[str, ...] = ()


@dataclass(slots=True)
class Decision:
    """The published answer for one window (the chosen level's).

    ``prediction_set``: the conformal set (classes sorted; two or more: abstain), () when
    conformal sets are off or the level could not predict; ``explanation``: what each
    modality contributed under the published level (:meth:`FusionHub.explain`);
    ``interval``: per class, the credible interval of its probability (``bayes`` only).
    """

    level: str
    proba: dict[str, float]
    label: str | None
    model: str
    rules: tuple[str, ...] = ()
    prediction_set: tuple[str, ...] = ()
    explanation: dict[str, float] = field(default_factory=dict)
    interval: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(slots=True)
class Verdict:
    """Every level's and every late member's probabilities for one window, and the choice.

    ``weights`` are the late-fusion weights used over the modalities that spoke (sum 1);
    ``explanations`` each level's per-modality contributions (:meth:`FusionHub.explain`);
    ``conformal`` the prediction set made for the published level (None: sets off, or the
    level could not predict).
    """

    levels: dict[str, Proba]
    members: dict[str, Proba]
    weights: dict[str, float]
    decision: Decision
    explanations: dict[str, dict[str, float]] = field(default_factory=dict)
    conformal: PredictionSet | None = None

    @property
    def chosen(self) -> str:
        """The published level."""
        return self.decision.level


#: a window's feature layout -> the concatenated names, each present modality's names and
#: slice of them, and the modalities in concatenation order (None: a feature name in two
#: modalities, which concat merges: the dict path then)
Split = (
    tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...], slice], ...], tuple[str, ...]]
    | None
)

#: distinct feature layouts remembered before the cache of their splits starts afresh
_MAX_LAYOUTS = 256


def _split(present: tuple[str, ...], keys: tuple[tuple[str, ...], ...]) -> Split:
    """The concatenated names (:func:`~streamfuse.features.concat` order: modalities sorted,
    each one's keys together and in order), each present modality's names and slice, and the
    concatenation order, for the modalities ``present`` with feature names ``keys``."""
    names: list[str] = []
    span: dict[str, tuple[str, tuple[str, ...], slice]] = {}
    of = dict(zip(present, keys, strict=True))
    mods = tuple(sorted(present))
    for m in mods:
        span[m] = (m, of[m], slice(len(names), len(names) + len(of[m])))
        names.extend(of[m])
    if len(set(names)) != len(names):
        return None
    return tuple(names), tuple(span[m] for m in present), mods


def _normalised(
    features: FeatureSet,
    normalizer: OnlineNormalizer,
    layouts: dict[tuple[Any, ...], Split] | None = None,
) -> tuple[dict[str, FeatureVector] | dict[str, dict[str, float]], Mapping[str, float]]:
    """Learn one window's features into the device's normaliser, then its z-scores: per
    modality (in ``features``' order) and flat (:func:`~streamfuse.features.concat`), as
    :class:`~streamfuse.learn.vector.FeatureVector` sharing one array."""
    present = tuple(m for m, f in features.items() if f)
    keys = tuple([tuple(features[m]) for m in present])
    key = (present, keys)
    if layouts is None:
        layouts = {}
    try:
        split = layouts[key]
    except KeyError:
        split = _split(present, keys)
        if len(layouts) >= _MAX_LAYOUTS:
            layouts.clear()
        layouts[key] = split
    if split is None:
        return _normalised_dicts(features, normalizer)
    names, spans, mods = split
    values = np.fromiter(
        chain.from_iterable([features[m].values() for m in mods]), np.float64, len(names)
    )
    z = normalizer.learn_transform_array(names, values)
    return {m: FeatureVector(k, z[at]) for m, k, at in spans}, FeatureVector(names, z)


def _normalised_dicts(
    features: FeatureSet, normalizer: OnlineNormalizer
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """:func:`_normalised` as dicts, for a layout with a name in two modalities."""
    present = {m: cast(dict[str, float], f) for m, f in features.items() if f}
    names, z = normalizer.learn_transform(concat(present))
    flat = dict(zip(cast(tuple[str, ...], names), z, strict=True))
    return {m: {k: flat[k] for k in f} for m, f in present.items()}, flat


class FusionHub:
    """Runs every configured fusion level on each window; learns when its label arrives.

    Parameters
    ----------
    config
        Levels, published level, selector, late combination, normalisation, metrics.
    model_factory
        Makes a fresh river classifier; called once for ``early``, once for ``intermediate``
        and once per modality for ``late``.
    model_label
        The model's name in predictions (default: derived from the first model made).
    """

    def __init__(
        self,
        config: EngineConfig,
        model_factory: Callable[[], base.Classifier],
        model_label: str | None = None,
    ) -> None:
        self.config = config
        self.levels = tuple(config.levels)
        self.models: dict[str, base.Classifier] = {
            lv: model_factory() for lv in self.levels if lv in ("early", "intermediate")
        }
        self.late = LateFusion(_Fresh(model_factory), combine=config.late_combine)
        self._members = bool(MEMBER_LEVELS & set(self.levels))
        self._quality = bool(QUALITY_LEVELS & set(self.levels))
        self.gate = ModalityGate() if "attention" in self.levels else None
        self.bayes = BayesianFusion(positive=config.positive) if "bayes" in self.levels else None
        self.mkl = OnlineMKLClassifier(seed=0) if "mkl" in self.levels else None
        t = config.conformal_target
        self.conformal = None if t is None else AdaptiveConformal(
            target=t, gamma=config.conformal_gamma, window=config.conformal_window)
        h = config.member_smoothing
        self.smoother = DecisionSmoother(h, config.max_devices) if h > 0 else None
        probe = next(iter(self.models.values())) if self.models else model_factory()
        self.model_name = model_label or model_name(probe)
        # every model comes from the one factory: rules exist for all of them or for none
        self._explains = hasattr(final_step(probe), "explain_one")
        self.early = EarlyFeatures(config.early_segments)
        self.selector = LevelSelector(
            self.levels,
            horizon=config.selector_horizon,
            score=config.selector_score,
            pinned=None if config.level == "selected" else config.level,
        )
        self.metrics: dict[str, PrequentialMetrics] = {}
        self._snapshot: dict[str, float] = {}
        self._refreshed = -math.inf  # gateway time of the label that last refreshed them
        self._refresh_due = False

    # ------------------------------------------------------------------ per device
    def new_device(self) -> DeviceFusion:
        """Fresh per-device state (normalisers, when configured)."""
        if not self.config.normalize:
            return DeviceFusion(None, None)
        w = self.config.normalize_warmup
        return DeviceFusion(OnlineNormalizer(warmup=w), ArrayNormalizer(warmup=w))

    # ------------------------------------------------------------------ predict
    def evidence(self, fused: FusedWindow, features: FeatureSet, device: DeviceFusion) -> Evidence:
        """The inputs of every level for one window (normalisers updated first, causally)."""
        feats: Mapping[str, Mapping[str, float]]
        flat: Mapping[str, float]
        if device.features is None:
            plain = {m: dict(f) for m, f in features.items() if f}
            feats, flat = plain, concat(plain)
        else:
            layouts = self.__dict__.setdefault("_layouts", {})  # absent from old checkpoints
            feats, flat = _normalised(features, device.features, layouts)
        x_early: Mapping[str, float] = {}
        if "early" in self.levels:
            x_early = self.early.vector(fused, device.early)
        quality: dict[str, dict[str, float]] = {}
        if self._quality:
            w = fused.window
            quality = {
                m: window_quality(m, w.blocks[m], w.masks.get(m), w.fs)
                for m in w.blocks if m in feats
            }
        return Evidence(
            x_early,
            feats,
            flat if "intermediate" in self.levels else {},
            fused.window.device,
            quality,
            unusable(quality) if quality else (),
        )

    def _single(self, level: str, x: Mapping[str, float]) -> Proba:
        if not x:
            return {}
        return vector.predict_named(self.models[level], x)

    def decide(self, evidence: Evidence) -> Verdict:
        """Every level's probabilities, the late members' own, and the level to publish."""
        early = self._single("early", evidence.x_early) if "early" in self.models else {}
        inter = (
            self._single("intermediate", evidence.x_intermediate)
            if "intermediate" in self.models
            else {}
        )
        members = self.late.member_probas(evidence.x_modalities) if self._members else {}
        return self._decide(evidence, early, inter, members)

    def decide_many(self, batch: Sequence[Evidence]) -> list[Verdict]:
        """:meth:`decide` of each window of ``batch`` in order, the same verdicts, with each
        model predicting all the windows that share a feature layout in one call (e.g. the
        windows of many devices closed between two labels: deciding learns nothing, so their
        order among themselves does not matter to the models; per-device state, the member
        smoother's, still advances window by window)."""
        n = len(batch)
        none: list[Proba] = [{} for _ in range(n)]
        early = none
        if "early" in self.models:
            early = vector.predict_named_many(self.models["early"], [e.x_early for e in batch])
        inter = none
        if "intermediate" in self.models:
            inter = vector.predict_named_many(
                self.models["intermediate"], [e.x_intermediate for e in batch]
            )
        members: list[dict[str, Proba]] = [{} for _ in range(n)]
        if self._members:
            asked: dict[str, list[int]] = {}
            for i, e in enumerate(batch):
                for m in self.late._present(e.x_modalities):
                    if m in self.late.models:
                        asked.setdefault(m, []).append(i)
            said: dict[str, dict[int, Proba]] = {}
            for m, at in asked.items():
                xs = [batch[i].x_modalities[m] for i in at]
                said[m] = dict(zip(at, vector.predict_named_many(self.late.models[m], xs),
                                   strict=True))
            for m in sorted(said):  # members in modality order, as LateFusion makes them
                for i, p in said[m].items():
                    if p:
                        members[i][m] = p
        return [
            self._decide(e, early[i], inter[i], members[i]) for i, e in enumerate(batch)
        ]

    def _decide(
        self, evidence: Evidence, early: Proba, inter: Proba, members: dict[str, Proba]
    ) -> Verdict:
        """:meth:`decide` given the early and intermediate models' probabilities and the
        late members' (before smoothing)."""
        levels: dict[str, Proba] = {}
        held: frozenset[str] = frozenset()
        weights: dict[str, float] = {}
        explanations: dict[str, dict[str, float]] = {}
        intervals: dict[str, tuple[float, float]] = {}
        if self._members:
            smoother = getattr(self, "smoother", None)  # None in checkpoints made before it
            if smoother is not None:
                members, held = smoother.smooth_held(evidence.device, members, evidence.unusable)
        bad = getattr(evidence, "unusable", ())
        trusted: dict[str, Mapping[str, float]] = {}
        quality: dict[str, Mapping[str, float]] = {}
        if self._quality:  # only attention and bayes hear them
            trusted, quality = heard(members, bad, held, getattr(evidence, "quality", {}))
        for lv in self.levels:
            if lv == "early":
                levels[lv] = early
            elif lv == "intermediate":
                levels[lv] = inter
            elif lv == "late":
                weights, levels[lv] = self._late(members)
                explanations[lv] = {f"weight.{m}": w for m, w in weights.items()}
            elif lv == "attention":
                assert self.gate is not None
                p, gw = self.gate.combine(trusted, quality)
                levels[lv] = {str(c): float(v) for c, v in p.items()}
                explanations[lv] = {f"weight.{m}": w for m, w in gw.items()}
            elif lv == "bayes":
                assert self.bayes is not None
                out = self.bayes.fuse(trusted) if trusted else None
                levels[lv] = {} if out is None else {str(c): v for c, v in out.proba.items()}
                if out is not None and out.proba:
                    explanations[lv] = {
                        **{f"logodds.{m}": v for m, v in out.contributions.items()},
                        "logodds.prior": out.prior,
                    }
                    intervals = {str(c): iv for c, iv in out.interval.items()}
            elif lv == "mkl":
                assert self.mkl is not None
                p, kw = self.mkl.predict_views(evidence.x_modalities)
                levels[lv] = {str(c): float(v) for c, v in p.items()}
                explanations[lv] = {f"weight.{k}": w for k, w in kw.items()}
        for m in bad:
            if m in members:
                for lv in QUALITY_LEVELS & set(self.levels):
                    explanations.setdefault(lv, {})[f"unusable.{m}"] = 1.0
                    if m in held:
                        explanations[lv][f"held.{m}"] = 1.0
        chosen = self.selector.best()
        proba = levels[chosen]
        made = self.conformal.predict(proba) if self.conformal is not None and proba else None
        decision = Decision(
            chosen,
            proba,
            _argmax(proba),
            self.model_name,
            self._rules(chosen, evidence, weights) if self._explains else (),
            () if made is None else tuple(str(c) for c in made.classes),
            dict(explanations.get(chosen, {})),
            intervals if chosen == "bayes" else {},
        )
        return Verdict(levels, members, weights, decision, explanations, made)

    def _late(self, members: dict[str, Proba]) -> tuple[dict[str, float], Proba]:
        """Late fusion of the members' own probabilities (each member predicted once).

        Combines exactly as :meth:`LateFusion.predict_proba`: weights over the members that
        spoke, then a weighted average of probabilities (or of votes for their decisions).
        """
        weights = self.late.weights(list(members))
        if not weights:
            return {}, {}
        proba: Proba = {}
        if self.late.combine == "vote":
            for m, p in members.items():
                c = _argmax(p)
                if c is not None:
                    proba[c] = proba.get(c, 0.0) + weights[m]
        else:
            for m, p in members.items():
                w = weights[m]
                for c, v in p.items():
                    proba[c] = proba.get(c, 0.0) + w * v
        total = sum(proba.values())
        if total > 0:
            proba = {c: v / total for c, v in proba.items()}
        return weights, proba

    def _rules(
        self, level: str, evidence: Evidence, weights: Mapping[str, float]
    ) -> tuple[str, ...]:
        top = self.config.rules_top
        if top <= 0 or not self._explains:
            return ()
        if level == "late":
            if not weights:
                return ()
            m = min(weights, key=lambda k: (-weights[k], k))  # the member trusted most
            fired = explain(self.late.models[m], evidence.x_modalities[m], top)
            return tuple(f"[{m}] {text} (firing {w:.2f})" for text, w in fired)
        x = evidence.x_early if level == "early" else evidence.x_intermediate
        if not x:
            return ()
        fired = explain(self.models[level], x, top)
        return tuple(f"{text} (firing {w:.2f})" for text, w in fired)

    def published(self, verdict: Verdict) -> Decision:
        """The decision to publish for ``verdict``'s window."""
        return verdict.decision

    # ------------------------------------------------------------------ learn
    def _metric(self, key: str) -> PrequentialMetrics:
        m = self.metrics.get(key)
        if m is None:
            m = self.metrics[key] = PrequentialMetrics(
                positive=self.config.positive, window=self.config.metrics_window
            )
        return m

    def learn(self, evidence: Evidence, verdict: Verdict, y: str, now: float = math.nan) -> None:
        """Score the window's stored predictions against ``y``, then train every level on it.

        ``now`` (the label's gateway arrival time; NaN: always) schedules the refresh of the
        published prequential figures (:meth:`metrics_snapshot`)."""
        metrics = self.metrics
        scored: dict[str, Proba] = {}
        decided: dict[str, str | None] = {}
        for key, p in verdict.levels.items():
            if p:
                scored[key] = p
                c = decided[key] = _argmax(p)
                (metrics.get(key) or self._metric(key)).update(y, p, c)
        chosen = verdict.levels.get(verdict.chosen)
        if chosen:
            c = decided[verdict.chosen]  # scored above: the same probabilities
            (metrics.get("selected") or self._metric("selected")).update(y, chosen, c)
        for key, p in verdict.members.items():
            if p:
                (metrics.get(key) or self._metric(key)).update(y, p, _argmax(p))
        if scored:
            # evidence pickled before it had a device (an older checkpoint) groups as ""
            self.selector.update(y, scored, group=getattr(evidence, "device", ""))
        if not now - self._refreshed < self.config.metrics_refresh_s:  # NaN: due
            self._refresh_due = True
            self._refreshed = now if math.isfinite(now) else -math.inf
        made = getattr(verdict, "conformal", None)
        if self.conformal is not None and made is not None and chosen:
            self.conformal.learn(chosen, y, made)
        for lv, model in self.models.items():
            x = evidence.x_early if lv == "early" else evidence.x_intermediate
            if x:
                vector.learn(model, x, y)
        bad = getattr(evidence, "unusable", ())
        trusted = {m: p for m, p in verdict.members.items() if m not in bad}
        if self.gate is not None:
            self.gate.learn(trusted, getattr(evidence, "quality", {}), y)
        if self.bayes is not None:
            self.bayes.learn(trusted, y)
        if self.mkl is not None and evidence.x_modalities:
            self.mkl.learn_views(evidence.x_modalities, y)
        if self._members:
            views = evidence.x_modalities
            if bad:  # a damaged modality's member does not learn from the window
                views = {m: f for m, f in views.items() if m not in bad}
            self.late.learn(views, y)

    def metrics_snapshot(self) -> dict[str, float]:
        """The figures published with each prediction (see :meth:`metrics_now`).

        All of them (the prequential figures, whose rolling AUCs cost ~0.1 ms each, and the
        selector's scores) are those of the last refresh, made by the first label learnt at
        least ``config.metrics_refresh_s`` (gateway time) after the previous refresh. Only
        learnt labels move it, so what a device's predictions carry never depends on other
        devices' windows or on anyone asking for :meth:`metrics_now`; and between refreshes
        every prediction carries the same mapping. The level *chosen* for publishing is
        always current (:meth:`decide`).
        """
        if self._refresh_due:
            self._snapshot = self.metrics_now()
            self._refresh_due = False
        return self._snapshot

    def metrics_now(self) -> dict[str, float]:
        """Flat, JSON-friendly prequential figures, all current:
        ``"<level|modality|selected>.<metric>"`` (auc, accuracy, f1, precision, recall,
        specificity, n), ``"selector.<level>"`` (the selector's rolling score) and
        ``"conformal.<coverage|mean_set_size|abstain_rate>"`` (running, over the published
        decisions' sets); undefined (NaN) figures are left out."""
        return {**self._prequential_now(), **self._selector_now(), **self._conformal_now()}

    def _conformal_now(self) -> dict[str, float]:
        if self.conformal is None:
            return {}
        m = self.conformal.metrics()
        return {
            f"conformal.{k}": float(m[k])
            for k in ("coverage", "mean_set_size", "abstain_rate")
            if math.isfinite(m[k])
        }

    def _prequential_now(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name in sorted(self.metrics):
            for k, v in self.metrics[name].get().items():
                if math.isfinite(v):
                    out[f"{name}.{k}"] = float(v)
        return out

    def _selector_now(self) -> dict[str, float]:
        return {
            f"selector.{lv}": float(v)
            for lv, v in self.selector.scores().items()
            if math.isfinite(v)
        }
