"""Quality-aware modality attention: a learnt gate that weighs each modality's decision.

Each window, every present modality ``m`` gives its own model's class probabilities ``p_m`` and
a small vector of signal-quality indices ``q_m`` (:mod:`streamfuse.features.quality`). The gate
scores each modality with a linear function of its own quality, ``s_m = b_m + a_m . q_m``, and
turns the scores of the modalities present into weights by a softmax; a missing modality (or
one whose model cannot predict yet) gets weight 0. The fused decision is the mixture
``p = sum_m w_m p_m`` (a mixture of experts, Jacobs, Jordan, Nowlan and Hinton 1991, "Adaptive
mixtures of local experts", Neural Computation 3(1):79-87, with the decisions of the experts
given and the gating network fed by quality instead of the input).

Mixing probabilities rather than log-odds is deliberate: a corrupted modality that is
confidently wrong can lower the probability of the true class by at most its weight, and the
mixture's log-loss ``-log p(y)`` has the simple gradient ``dL/ds_m = w_m - h_m`` where
``h_m = w_m p_m(y) / p(y)`` is the modality's share of the credit (its posterior
responsibility). When the label arrives, the gate takes one gradient step on that loss, scored
on the probabilities the members gave *before* they learn the window (test-then-train).

:class:`ModalityGate` is the gate alone (for the engine, which already holds each modality's
probabilities); :class:`AttentionFusionClassifier` is a river classifier that owns one member
model per modality and the gate.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from river import base

from ..errors import ConfigError
from .standardize import QualityScaler
from .views import ModalityMembers, split_views

log = logging.getLogger("streamfuse.fusion.attention")

Probas = Mapping[str, Mapping[Any, float]]
QualityByModality = Mapping[str, Mapping[str, float]]

#: floor of a member's probability of the true class in the gate's gradient
_P_FLOOR = 1e-6
#: bound on a standardised quality index
_Z_MAX = 5.0
#: bound on a gate score (the softmax of scores this far apart is 0/1 in float64 anyway)
_S_MAX = 30.0


def _speaking(members: Probas) -> list[str]:
    """The members with a usable decision: non-empty, every probability finite."""
    return [m for m, p in members.items()
            if p and all(math.isfinite(float(v)) for v in p.values())]


class ModalityGate:
    """Softmax gate over modalities, linear in each modality's quality indices.

    Parameters
    ----------
    lr
        Gradient step on the mixture's log-loss.
    l2
        L2 penalty on the gate parameters (keeps them bounded when a modality is always best).
    standardize
        Feed the gate each index z-scored against its running mean and spread (per modality,
        learnt from the labelled windows, clipped to ``±5``) rather than raw. The indices
        live on very different scales (a clipped fraction of 0.06 can be as bad as a flat
        channel share of 1), and a raw small index barely moves its weight: on eegmat with
        30 % corrupted EEG windows the raw gate gave EEG the same weight on corrupted and
        clean windows (0.22 vs 0.24).

    Notes
    -----
    State: ``bias[m]`` and ``coef[m][index]``, created at 0 the first time ``m`` (or one of
    its indices) is seen; ``scaler``, the running moments of the indices
    (:class:`~streamfuse.fusion.standardize.QualityScaler`). Quality values that are not
    finite count as absent (term 0); an index that has not varied yet contributes 0.

    Examples
    --------
    >>> gate = ModalityGate(lr=0.5)
    >>> good, noise = {"a": 0.9, "b": 0.1}, {"a": 0.5, "b": 0.5}
    >>> for _ in range(50):
    ...     gate.learn({"ecg": good, "eeg": noise}, {}, "a")
    >>> w = gate.weights({}, ["ecg", "eeg"])
    >>> round(w["ecg"], 2), round(w["eeg"], 2)
    (0.95, 0.05)
    """

    def __init__(self, *, lr: float = 0.1, l2: float = 1e-3, standardize: bool = True) -> None:
        if not lr > 0:
            raise ConfigError(f"ModalityGate: lr={lr!r}; pass a float > 0, e.g. 0.1")
        if not l2 >= 0:
            raise ConfigError(f"ModalityGate: l2={l2!r}; pass a float >= 0, e.g. 1e-3")
        self.lr = float(lr)
        self.l2 = float(l2)
        self.standardize = bool(standardize)
        self.bias: dict[str, float] = {}
        self.coef: dict[str, dict[str, float]] = {}
        self.scaler = QualityScaler(_Z_MAX)

    def _inputs(self, modality: str, quality: Mapping[str, float] | None) -> dict[str, float]:
        """The gate's inputs from one modality's indices (finite ones only)."""
        if not self.standardize:
            return {k: float(v) for k, v in (quality or {}).items() if math.isfinite(v)}
        return self.scaler.transform(modality, quality)

    def score(self, modality: str, quality: Mapping[str, float] | None) -> float:
        """The gate score ``b_m + a_m . q_m`` of one modality (0 for one never learnt)."""
        return self._score(modality, self._inputs(modality, quality))

    def _score(self, modality: str, inputs: Mapping[str, float]) -> float:
        s = self.bias.get(modality, 0.0)
        coef = self.coef.get(modality)
        if coef:
            for k, v in inputs.items():
                a = coef.get(k)
                if a is not None:
                    s += a * v
        return min(max(s, -_S_MAX), _S_MAX)

    def weights(self, quality: QualityByModality, present: Iterable[str]) -> dict[str, float]:
        """Gate weights over the ``present`` modalities (sorted), summing to 1; {} if none."""
        mods = sorted(set(present))
        return self._weights({m: self._inputs(m, quality.get(m)) for m in mods})

    def _weights(self, inputs: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
        mods = sorted(inputs)
        if not mods:
            return {}
        scores = [self._score(m, inputs[m]) for m in mods]
        top = max(scores)
        raw = [math.exp(s - top) for s in scores]
        total = sum(raw)
        return {m: r / total for m, r in zip(mods, raw, strict=True)}

    def combine(
        self, members: Probas, quality: QualityByModality
    ) -> tuple[dict[Hashable, float], dict[str, float]]:
        """The mixture of the members' probabilities and the weights used.

        Parameters
        ----------
        members
            ``{modality: {class: p}}`` of the modalities present; an empty dict (a model that
            cannot predict yet) or one with a non-finite probability counts as absent.
        quality
            ``{modality: {index: value}}``; a modality without an entry is scored by its bias.

        Returns
        -------
        (proba, weights)
            Probabilities over the union of the members' classes (a member lacking a class
            gives it 0), and each contributing modality's weight; both {} when no member
            speaks.
        """
        speaking = _speaking(members)
        w = self.weights(quality, speaking)
        proba: dict[Hashable, float] = {}
        for m in w:
            for c, v in members[m].items():
                proba[c] = proba.get(c, 0.0) + w[m] * float(v)
        total = sum(proba.values())
        if total > 0:
            proba = {c: v / total for c, v in proba.items()}
        return proba, w

    def learn(self, members: Probas, quality: QualityByModality, y: Hashable) -> None:
        """One gradient step on ``-log p(y)`` of the mixture of ``members`` (the probabilities
        the members gave before learning this window). Nothing to learn with < 2 members."""
        speaking = _speaking(members)
        for m in speaking:
            self.bias.setdefault(m, 0.0)
            coef = self.coef.setdefault(m, {})
            for k in quality.get(m, {}):
                coef.setdefault(k, 0.0)
        if len(speaking) >= 2:
            self._step(members, quality, speaking, y)
        if self.standardize:
            for m in speaking:
                self.scaler.learn(m, quality.get(m))

    def _step(
        self, members: Probas, quality: QualityByModality, speaking: list[str], y: Hashable
    ) -> None:
        inputs = {m: self._inputs(m, quality.get(m)) for m in speaking}
        w = self._weights(inputs)
        py = {m: max(float(members[m].get(y, 0.0)), _P_FLOOR) for m in w}
        p = sum(w[m] * py[m] for m in w)
        for m in w:
            g = w[m] - w[m] * py[m] / p  # dL/ds_m: weight minus posterior responsibility
            self.bias[m] -= self.lr * (g + self.l2 * self.bias[m])
            coef = self.coef[m]
            q = inputs[m]
            for k, a in coef.items():
                coef[k] = a - self.lr * (g * q.get(k, 0.0) + self.l2 * a)


class AttentionFusionClassifier(ModalityMembers, base.Classifier):
    """One model per modality, their decisions mixed by a quality-aware :class:`ModalityGate`.

    Parameters
    ----------
    member
        The model each modality gets a fresh clone of (default:
        :class:`~streamfuse.learn.linear.ScaledLogisticRegression`).
    lr
        The gate's learning rate.
    l2
        The gate's L2 penalty.
    standardize
        Whether the gate z-scores the quality indices (:class:`ModalityGate`).
    separator
        Splits a flat feature key into ``<modality><separator><rest>``
        (:func:`~streamfuse.fusion.views.split_views`).
    quality_tag
        Keys ``<modality>_<quality_tag>_<name>`` are the modality's quality indices, fed to
        the gate and not to the member.

    Notes
    -----
    ``learn_one`` scores the members on the window *before* they learn it, steps the gate on
    that mixture, then trains every present member. The engine, which keeps modalities apart,
    calls :meth:`attend` (which also returns the gate weights to publish) and
    :meth:`learn_views` directly.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> model = AttentionFusionClassifier()
    >>> for _ in range(400):
    ...     y = rng.random() < 0.5
    ...     x = {"ecg_hr": (1.0 if y else -1.0) + rng.gauss(0, 0.5), "eeg_alpha": rng.gauss(0, 1)}
    ...     model.learn_one(x, y)
    >>> w = model.attend({"ecg": {"ecg_hr": 1.0}, "eeg": {"eeg_alpha": 0.3}})[1]
    >>> w["ecg"] > 0.8
    True
    """

    def __init__(
        self,
        member: base.Classifier | None = None,
        lr: float = 0.1,
        l2: float = 1e-3,
        standardize: bool = True,
        separator: str = "_",
        quality_tag: str = "q",
    ) -> None:
        self.member = member
        self.lr = lr
        self.l2 = l2
        self.standardize = standardize
        self.separator = separator
        self.quality_tag = quality_tag
        self.gate = ModalityGate(lr=lr, l2=l2, standardize=standardize)
        self.members: dict[str, base.Classifier] = {}
        self.classes: list[Hashable] = []

    @property
    def _multiclass(self) -> bool:
        return True

    @classmethod
    def _unit_test_params(cls):  # type: ignore[no-untyped-def]
        yield {}
        yield {"lr": 0.5, "l2": 0.0, "standardize": False}

    def attend(
        self,
        views: Mapping[str, Mapping[Hashable, Any]],
        quality: QualityByModality | None = None,
    ) -> tuple[dict[Hashable, float], dict[str, float], dict[str, dict]]:
        """``(proba, gate weights, members' probabilities)`` for one window's modality views."""
        members = self.member_probas(views)
        proba, w = self.gate.combine(members, quality or {})
        if proba:
            for c in self.classes:
                proba.setdefault(c, 0.0)
        return proba, w, members

    def learn_views(
        self,
        views: Mapping[str, Mapping[Hashable, Any]],
        y: Hashable,
        quality: QualityByModality | None = None,
    ) -> None:
        """Test-then-train on one window: gate step on the members' current decisions, then
        every present member learns."""
        if y not in self.classes:
            self.classes.append(y)
        q = quality or {}
        self.gate.learn(self.member_probas(views), q, y)
        self.learn_members(views, y)

    def learn_one(self, x: dict, y: Hashable, **kwargs: Any) -> None:  # type: ignore[override]
        views, quality = split_views(x, self.separator, self.quality_tag)
        self.learn_views(views, y, quality)

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict[Hashable, float]:  # type: ignore[override]
        views, quality = split_views(x, self.separator, self.quality_tag)
        return self.attend(views, quality)[0]
