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
from typing import Any

from river import base
from river.base.typing import FeatureName

from ..config import EngineConfig
from ..features import OnlineNormalizer, concat
from ..features.quality import modality_quality
from ..learn import vector
from ..learn.metrics import PrequentialMetrics
from ..learn.models import final_step, fired_rules, model_name
from ..types import FusedWindow
from .attention import ModalityGate
from .bayes import BayesianFusion
from .conformal import AdaptiveConformal, PredictionSet
from .early import ArrayNormalizer, EarlyFeatures
from .figures import figures
from .lane import FeatureSet, normalised
from .late import LateFusion, best_class
from .mkl import OnlineMKLClassifier
from .selector import LevelSelector
from .smoothing import DecisionSmoother
from .trust import heard, unheard_marks, unusable

#: the levels decided from the late members' own probabilities
MEMBER_LEVELS = frozenset(("late", "attention", "bayes"))
#: the levels that need each window's signal-quality indices
QUALITY_LEVELS = frozenset(("attention", "bayes"))

#: how river's type hints spell a feature dict (ours are ``dict[str, float]``)
RiverX = dict[FeatureName, Any]

log = logging.getLogger("streamfuse.fusion.levels")

Proba = dict[str, float]


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
        self.conformal = (
            None
            if t is None
            else AdaptiveConformal(
                target=t, gamma=config.conformal_gamma, window=config.conformal_window
            )
        )
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
            feats, flat = normalised(features, device.features, layouts)
        x_early: Mapping[str, float] = {}
        if "early" in self.levels:
            x_early = self.early.vector(fused, device.early)
        quality = modality_quality(fused.window, feats) if self._quality else {}
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
            members = self.late.member_probas_many([e.x_modalities for e in batch])
        return [self._decide(e, early[i], inter[i], members[i]) for i, e in enumerate(batch)]

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
                weights, levels[lv] = self.late.combine_named(members)
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
        marks = unheard_marks(bad, members, held)
        for lv in QUALITY_LEVELS & set(self.levels) if marks else ():
            explanations.setdefault(lv, {}).update(marks)
        chosen = self.selector.best()
        proba = levels[chosen]
        made = self.conformal.predict(proba) if self.conformal is not None and proba else None
        decision = Decision(
            chosen,
            proba,
            best_class(proba),
            self.model_name,
            self._rules(chosen, evidence, weights) if self._explains else (),
            () if made is None else tuple(str(c) for c in made.classes),
            dict(explanations.get(chosen, {})),
            intervals if chosen == "bayes" else {},
        )
        return Verdict(levels, members, weights, decision, explanations, made)

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
            return fired_rules(self.late.models[m], evidence.x_modalities[m], top, f"[{m}] ")
        x = evidence.x_early if level == "early" else evidence.x_intermediate
        return fired_rules(self.models[level], x, top) if x else ()

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
                c = decided[key] = best_class(p)
                (metrics.get(key) or self._metric(key)).update(y, p, c)
        chosen = verdict.levels.get(verdict.chosen)
        if chosen:
            c = decided[verdict.chosen]  # scored above: the same probabilities
            (metrics.get("selected") or self._metric("selected")).update(y, chosen, c)
        for key, p in verdict.members.items():
            if p:
                (metrics.get(key) or self._metric(key)).update(y, p, best_class(p))
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
        """Flat, JSON-friendly prequential, selector and conformal figures, all current (named
        in :mod:`~streamfuse.fusion.figures`); undefined (NaN) figures are left out."""
        return figures(self.metrics, self.selector, self.conformal)
