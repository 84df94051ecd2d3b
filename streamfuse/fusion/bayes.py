"""Bayesian late fusion: online-calibrated modalities combined as a product of experts.

Each modality's model gives class probabilities ``p_m(c)``. Its log-odds ``z = logit p_m(c)``
are calibrated online by Platt scaling (Platt 1999, "Probabilistic outputs for support vector
machines..."), ``logit P(c | z) = a z + b``, where ``(a, b)`` is not a point estimate but a
Gaussian posterior updated one label at a time by the extended-Kalman (one Newton step) rule
of online Bayesian logistic regression (Spiegelhalter and Lauritzen 1990, Networks 20:579-605):
``P <- P - s P phi phi' P / (1 + s phi' P phi)``, ``mu <- mu + P phi (y - p)`` with
``phi = (z, 1)``, ``p = sigmoid(mu . phi)`` and ``s = p (1 - p)``; a forgetting factor
(``P /= forget`` before each update) lets it follow a drifting member.

Assuming the modalities are conditionally independent given the class, Bayes' rule gives
(naive-Bayes / product-of-experts fusion, Hinton 2002, Neural Computation 14(8):1771-1800)::

    logit P(c | x_1..x_M) = logit pi(c) + sum_m [ logit P(c | x_m) - logit pi(c) ]

so the class prior ``pi`` (Dirichlet counts of the labels, with the same forgetting) is counted
once, and a modality missing from the window simply drops its term. Binary problems use one
calibrator per modality, for the positive class; with three or more classes every class has a
one-vs-rest calibrator and the fused one-vs-rest probabilities are normalised.

The uncertainty published beside the fused probability is the credible interval of the fused
log-odds: the variance of each calibrated term (``phi' P phi``) plus that of the prior term
(``(M - 1)^2 Var logit pi``, ``Var logit pi ~ 1/alpha + 1/beta`` for its Beta marginal),
mapped through the sigmoid. It narrows as the calibrators see more labels. It covers the
calibration's uncertainty only, not the members' own (their probabilities are taken as given)
nor the error of the independence assumption (correlated modalities make the product
over-confident).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from river import base

from ..errors import ConfigError
from .views import ModalityMembers, split_views

log = logging.getLogger("streamfuse.fusion.bayes")

Probas = Mapping[str, Mapping[Any, float]]

#: members' probabilities are clipped to [_P_CLIP, 1 - _P_CLIP] before taking log-odds
_P_CLIP = 1e-4
_L_MAX = 30.0


def _sigmoid(v: float) -> float:
    v = min(max(v, -_L_MAX), _L_MAX)
    return 1.0 / (1.0 + math.exp(-v))


def _logit(p: float) -> float:
    p = min(max(float(p), _P_CLIP), 1.0 - _P_CLIP)
    return math.log(p / (1.0 - p))


class OnlinePlatt:
    """Bayesian online Platt scaling of one log-odds stream: ``logit P(y | z) = a z + b``.

    Parameters
    ----------
    prior_sd
        Prior standard deviation of ``a`` (mean 1) and ``b`` (mean 0): the identity map.
    forget
        Covariance inflation per update, in (0, 1] (1: every label counts forever).

    Examples
    --------
    >>> cal = OnlinePlatt()
    >>> for _ in range(200):  # a member that says 0.9 but is right half the time
    ...     cal.update(_logit(0.9), True)
    ...     cal.update(_logit(0.9), False)
    >>> round(_sigmoid(cal.predict(_logit(0.9))[0]), 2)
    0.5
    """

    __slots__ = ("a", "b", "paa", "pab", "pbb", "forget")

    def __init__(self, *, prior_sd: float = 1.0, forget: float = 0.999) -> None:
        self.a, self.b = 1.0, 0.0
        v = float(prior_sd) ** 2
        self.paa, self.pab, self.pbb = v, 0.0, v
        self.forget = float(forget)

    def __getstate__(self) -> tuple[float, ...]:
        return (self.a, self.b, self.paa, self.pab, self.pbb, self.forget)

    def __setstate__(self, state: tuple[float, ...]) -> None:
        self.a, self.b, self.paa, self.pab, self.pbb, self.forget = state

    def predict(self, z: float) -> tuple[float, float]:
        """Mean and variance of the calibrated log-odds for member log-odds ``z``."""
        mean = self.a * z + self.b
        var = self.paa * z * z + 2.0 * self.pab * z + self.pbb
        return mean, max(var, 0.0)

    def update(self, z: float, y: bool) -> None:
        """One Bayesian (extended-Kalman) update with member log-odds ``z`` and outcome ``y``."""
        f = self.forget
        paa, pab, pbb = self.paa / f, self.pab / f, self.pbb / f
        p = _sigmoid(self.a * z + self.b)
        s = max(p * (1.0 - p), 1e-9)
        # P phi, phi = (z, 1)
        ga, gb = paa * z + pab, pab * z + pbb
        denom = 1.0 + s * (ga * z + gb)
        r = (1.0 if y else 0.0) - p
        self.a += ga * r / denom
        self.b += gb * r / denom
        k = s / denom
        self.paa, self.pab, self.pbb = paa - k * ga * ga, pab - k * ga * gb, pbb - k * gb * gb


@dataclass(frozen=True, slots=True)
class BayesOutcome:
    """One window's fused decision.

    ``proba``: fused class probabilities ({} before two classes are known);
    ``interval``: per class, the ``level`` credible interval ``(low, high)`` of its
    probability; ``contributions``: each present modality's log-odds term
    (``logit P(c | x_m) - logit pi(c)``, for the positive class when binary, else for the
    fused top class); ``prior``: ``logit pi`` of that class.
    """

    proba: dict[Hashable, float]
    interval: dict[Hashable, tuple[float, float]]
    contributions: dict[str, float]
    prior: float


class BayesianFusion:
    """Online-calibrated product-of-experts fusion with a credible interval.

    Parameters
    ----------
    level
        Credible level of the published interval, in (0, 1).
    prior_sd
        Prior standard deviation of every calibrator's slope and intercept.
    forget
        Forgetting factor of the calibrators and of the class counts, in (0, 1].
    positive
        The class whose log-odds are calibrated in a binary problem (default: the largest
        class by ``repr``, e.g. True, or "rest" of {"arithmetic", "rest"}).

    Examples
    --------
    >>> fusion = BayesianFusion()
    >>> for i in range(300):
    ...     y = i % 2 == 0
    ...     fusion.learn({"ecg": {True: 0.8 if y else 0.3, False: 0.2 if y else 0.7}}, y)
    >>> out = fusion.fuse({"ecg": {True: 0.8, False: 0.2}})
    >>> round(out.proba[True], 2), [round(v, 2) for v in out.interval[True]]
    (0.99, [0.96, 0.99])
    """

    def __init__(
        self,
        *,
        level: float = 0.95,
        prior_sd: float = 1.0,
        forget: float = 0.999,
        positive: Hashable | None = None,
    ) -> None:
        if not 0 < level < 1:
            raise ConfigError(f"BayesianFusion: level={level!r}; pass a float in (0, 1), e.g. 0.95")
        if not prior_sd > 0:
            raise ConfigError(f"BayesianFusion: prior_sd={prior_sd!r}; pass a float > 0")
        if not 0 < forget <= 1:
            raise ConfigError(f"BayesianFusion: forget={forget!r}; pass a float in (0, 1]")
        self.level = float(level)
        self.prior_sd = float(prior_sd)
        self.forget = float(forget)
        self.positive = positive
        self.z = _normal_quantile(0.5 + level / 2.0)
        self.counts: dict[Hashable, float] = {}
        self.calibrators: dict[tuple[str, Hashable], OnlinePlatt] = {}

    # ------------------------------------------------------------------ classes and prior
    def _modelled(self) -> list[Hashable]:
        """The classes with calibrators: the positive one when binary, else all."""
        classes = sorted(self.counts, key=repr)
        if len(classes) < 2:
            return []
        if len(classes) == 2:
            pos = self.positive if self.positive in self.counts else classes[-1]
            return [pos]
        return classes

    def _prior(self, c: Hashable) -> tuple[float, float]:
        """``logit pi(c)`` and its variance from the Dirichlet(1) posterior of the counts."""
        k = len(self.counts)
        total = sum(self.counts.values()) + k
        alpha = self.counts.get(c, 0.0) + 1.0
        beta = total - alpha
        return math.log(alpha / beta), 1.0 / alpha + 1.0 / beta

    # ------------------------------------------------------------------ fuse
    def fuse(self, members: Probas) -> BayesOutcome:
        """Fuse the present modalities' probabilities (an empty member counts as absent, a
        non-finite probability gives no term)."""
        modelled = self._modelled()
        if not modelled:
            if len(self.counts) == 1:
                only = next(iter(self.counts))
                return BayesOutcome({only: 1.0}, {only: (1.0, 1.0)}, {}, 0.0)
            return BayesOutcome({}, {}, {}, 0.0)
        fused: dict[Hashable, tuple[float, float, dict[str, float], float]] = {}
        for c in modelled:
            prior, prior_var = self._prior(c)
            total, var, terms = prior, 0.0, {}
            for m in sorted(members):
                p = members[m]
                if not p or c not in p or not math.isfinite(float(p[c])):
                    continue
                cal = self.calibrators.get((m, c))
                mean, v = cal.predict(_logit(p[c])) if cal else (_logit(p[c]), self.prior_sd**2)
                terms[m] = mean - prior
                total += mean - prior
                var += v
            var += (len(terms) - 1) ** 2 * prior_var if terms else prior_var
            fused[c] = (total, var, terms, prior)
        if len(modelled) == 1:
            pos = modelled[0]
            neg = next(c for c in self.counts if c != pos)
            total, var, terms, prior = fused[pos]
            sd = math.sqrt(var)
            lo, hi = _sigmoid(total - self.z * sd), _sigmoid(total + self.z * sd)
            p1 = _sigmoid(total)
            return BayesOutcome(
                {pos: p1, neg: 1.0 - p1}, {pos: (lo, hi), neg: (1.0 - hi, 1.0 - lo)}, terms, prior
            )
        raw = {c: _sigmoid(t[0]) for c, t in fused.items()}
        norm = sum(raw.values())
        proba = {c: r / norm for c, r in raw.items()}
        interval = {}
        for c, (total, var, _, _) in fused.items():
            sd = math.sqrt(var)
            interval[c] = (_sigmoid(total - self.z * sd), _sigmoid(total + self.z * sd))
        top = min(proba, key=lambda c: (-proba[c], repr(c)))
        return BayesOutcome(proba, interval, fused[top][2], fused[top][3])

    # ------------------------------------------------------------------ learn
    def learn(self, members: Probas, y: Hashable) -> None:
        """Update the class counts and every present modality's calibrators with label ``y``
        (``members``: the probabilities the modalities gave for this window)."""
        for c in self.counts:
            self.counts[c] *= self.forget
        self.counts[y] = self.counts.get(y, 0.0) + 1.0
        for c in self._modelled():
            for m, p in members.items():
                if not p or c not in p or not math.isfinite(float(p[c])):
                    continue
                cal = self.calibrators.get((m, c))
                if cal is None:
                    cal = self.calibrators[(m, c)] = OnlinePlatt(
                        prior_sd=self.prior_sd, forget=self.forget
                    )
                cal.update(_logit(p[c]), y == c)


def _normal_quantile(q: float) -> float:
    """Standard normal quantile (the standard library's, Wichura's AS241)."""
    return NormalDist().inv_cdf(q)


class BayesFusionClassifier(ModalityMembers, base.Classifier):
    """One model per modality, fused by :class:`BayesianFusion`.

    Parameters
    ----------
    member
        The model each modality gets a fresh clone of (default:
        :class:`~streamfuse.learn.linear.ScaledLogisticRegression`).
    level, prior_sd, forget, positive
        As in :class:`BayesianFusion`.
    separator
        Splits a flat feature key into ``<modality><separator><rest>``.

    Notes
    -----
    ``learn_one`` updates the fusion with the members' probabilities *before* they learn the
    window, then trains every present member. :meth:`fuse_views` returns the whole
    :class:`BayesOutcome` (probability, interval, per-modality contributions).

    Examples
    --------
    >>> import random
    >>> rng = random.Random(2)
    >>> model = BayesFusionClassifier()
    >>> for _ in range(400):
    ...     y = rng.random() < 0.5
    ...     s = 1.0 if y else -1.0
    ...     model.learn_one({"ecg_hr": s + rng.gauss(0, 1), "eeg_alpha": s + rng.gauss(0, 1)}, y)
    >>> out = model.fuse_views({"ecg": {"ecg_hr": 1.0}, "eeg": {"eeg_alpha": 1.0}})
    >>> out.proba[True] > 0.8, sorted(out.contributions)
    (True, ['ecg', 'eeg'])
    """

    def __init__(
        self,
        member: base.Classifier | None = None,
        level: float = 0.95,
        prior_sd: float = 1.0,
        forget: float = 0.999,
        positive: Hashable | None = None,
        separator: str = "_",
    ) -> None:
        self.member = member
        self.level = level
        self.prior_sd = prior_sd
        self.forget = forget
        self.positive = positive
        self.separator = separator
        self.fusion = BayesianFusion(
            level=level, prior_sd=prior_sd, forget=forget, positive=positive
        )
        self.members: dict[str, base.Classifier] = {}

    @property
    def _multiclass(self) -> bool:
        return True

    @classmethod
    def _unit_test_params(cls):  # type: ignore[no-untyped-def]
        yield {}
        yield {"level": 0.8, "forget": 1.0}

    def fuse_views(self, views: Mapping[str, Mapping[Hashable, Any]]) -> BayesOutcome:
        """The fused outcome for one window's modality views."""
        return self.fusion.fuse(self.member_probas(views))

    def learn_views(self, views: Mapping[str, Mapping[Hashable, Any]], y: Hashable) -> None:
        """Test-then-train on one window: calibrators on the members' current decisions, then
        every present member learns."""
        self.fusion.learn(self.member_probas(views), y)
        self.learn_members(views, y)

    def learn_one(self, x: dict, y: Hashable, **kwargs: Any) -> None:  # type: ignore[override]
        self.learn_views(split_views(x, self.separator, None)[0], y)

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict[Hashable, float]:  # type: ignore[override]
        return self.fuse_views(split_views(x, self.separator, None)[0]).proba
