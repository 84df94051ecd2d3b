"""Evolving neuro-fuzzy models (eTS family) with river's API.

First-order Takagi–Sugeno rules that evolve online, after Angelov & Filev, "An approach to
online identification of Takagi-Sugeno fuzzy models", IEEE Trans. SMC-B 34(1), 2004 (eTS), and
Angelov, "Evolving Takagi-Sugeno fuzzy systems from streaming data (eTS+)", 2010:

- antecedents: Gaussian memberships per feature, centre and radius per rule, in units of the
  running standard deviation of each feature;
- structure: a sample whose global (Cauchy) density is above or below that of every rule centre
  starts a rule, or replaces a centre it lies close to; a sample farther than
  ``coverage_radius`` radii from every centre also starts one; radii adapt to the local scatter;
  rules with low utility (mean normalised firing since birth) are pruned once ``min_age`` old;
  rules whose centres come within ``merge_distance`` radii merge; at most ``max_rules`` rules;
- consequents: one linear model per rule, fitted by fuzzily weighted recursive least squares.

The classifier regresses a class-indicator vector (one output per class, learned together since
all outputs share each rule's RLS matrix) and turns outputs into probabilities with a softmax of
temperature ``temperature``.

Inner loops are Numba kernels (:mod:`streamfuse.learn.fuzzy_kernels`); the classes here map
feature dicts onto fixed-order vectors. New features are appended (sorted, so the order in which
a dict lists them does not matter); a missing feature is ignored by the antecedents and imputed
by its running mean in the consequents.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Hashable, Iterator, Mapping
from typing import Any

import numpy as np
from river import base
from river.base.typing import ClfTarget

from streamfuse.errors import ConfigError
from streamfuse.learn import fuzzy_kernels as fk

log = logging.getLogger("streamfuse.learn.neurofuzzy")

_TERMS = ((-1.5, "very low"), (-0.5, "low"), (0.5, "medium"), (1.5, "high"))


def _term(zc: float) -> str:
    for bound, name in _TERMS:
        if zc < bound:
            return name
    return "very high"


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _sort_key(name: Hashable) -> tuple[str, str]:
    return (type(name).__name__, repr(name))


class _EvolvingTS:
    """State and dict <-> vector plumbing shared by the classifier and the regressor."""

    max_rules: int
    radius: float
    radius_rate: float
    min_radius: float
    coverage_radius: float
    replace_radius: float
    omega: float
    forgetting: float
    utility_threshold: float
    min_age: int
    merge_distance: float
    rescale_tolerance: float

    def _check_params(self) -> None:
        checks = (
            ("max_rules", self.max_rules >= 1, "an int >= 1, e.g. 30"),
            ("radius", self.radius > 0, "a float > 0, e.g. 0.5"),
            ("radius_rate", 0 <= self.radius_rate <= 1, "a float in [0, 1], e.g. 0.5"),
            ("min_radius", self.min_radius > 0, "a float > 0, e.g. 0.05"),
            ("coverage_radius", self.coverage_radius > 0, "a float > 0, e.g. 2.0"),
            ("replace_radius", self.replace_radius >= 0, "a float >= 0, e.g. 0.5"),
            ("omega", self.omega > 0, "a float > 0, e.g. 1000.0"),
            ("forgetting", 0 < self.forgetting <= 1, "a float in (0, 1], e.g. 1.0"),
            ("utility_threshold", self.utility_threshold >= 0, "a float >= 0, e.g. 0.01"),
            ("min_age", self.min_age >= 0, "an int >= 0, e.g. 50"),
            ("merge_distance", self.merge_distance >= 0, "a float >= 0 (0 disables merging)"),
            ("rescale_tolerance", self.rescale_tolerance >= 0, "a float >= 0, e.g. 0.01"),
        )
        for name, ok, hint in checks:
            if not ok:
                raise ConfigError(f"{type(self).__name__}: {name}={getattr(self, name)!r}; "
                                  f"pass {hint}")

    def _reset(self, n_out: int) -> None:
        self._features: list[Hashable] = []
        self._index: dict[Hashable, int] = {}
        self._params = np.zeros(fk.N_PARAMS)
        p = self._params
        p[fk.P_RADIUS] = self.radius
        p[fk.P_RHO] = self.radius_rate
        p[fk.P_MIN_RADIUS] = self.min_radius
        p[fk.P_COVERAGE] = self.coverage_radius
        p[fk.P_REPLACE] = self.replace_radius
        p[fk.P_OMEGA] = self.omega
        p[fk.P_FORGET] = self.forgetting
        p[fk.P_UTILITY] = self.utility_threshold
        p[fk.P_MIN_AGE] = self.min_age
        p[fk.P_MERGE] = self.merge_distance
        p[fk.P_RESCALE] = self.rescale_tolerance
        self._counters = np.zeros(2, dtype=np.int64)
        self._alloc(0, n_out)

    def _alloc(self, d: int, n_out: int) -> None:
        r = int(self.max_rules)
        self._mean = np.zeros(d)
        self._m2 = np.zeros(d)
        self._cnt = np.zeros(d)
        self._ref_mean = np.zeros(d)
        self._ref_std = np.zeros(d)
        self._centers = np.zeros((r, d))
        self._radii = np.full((r, d), float(self.radius))
        self._scatter = np.zeros((r, d))
        self._theta = np.zeros((r, d + 1, n_out))
        self._cov = np.zeros((r, d + 1, d + 1))
        self._support = np.zeros(r)
        self._birth = np.zeros(r)
        self._usum = np.zeros(r)
        self._work(d, n_out)

    def _work(self, d: int, n_out: int) -> None:
        r = int(self.max_rules)
        self._z = np.zeros(d)
        self._logtau = np.zeros(r)
        self._lam = np.zeros(r)
        self._cx = np.zeros(d + 1)
        self._out = np.zeros(n_out)

    # -- growth ------------------------------------------------------------------------------

    def _grow_features(self, names: list[Hashable]) -> None:
        d0 = len(self._features)
        d = d0 + len(names)
        r = int(self.max_rules)
        n_out = self._theta.shape[2]
        for name in names:
            self._index[name] = len(self._features)
            self._features.append(name)

        def pad(a: np.ndarray, fill: float = 0.0) -> np.ndarray:
            return np.concatenate([a, np.full(d - d0, fill)])

        self._mean, self._m2, self._cnt = pad(self._mean), pad(self._m2), pad(self._cnt)
        self._ref_mean, self._ref_std = pad(self._ref_mean), pad(self._ref_std)
        centers = np.zeros((r, d))
        centers[:, :d0] = self._centers
        radii = np.full((r, d), float(self.radius))
        radii[:, :d0] = self._radii
        scatter = np.full((r, d), float(self.radius) ** 2)
        scatter[:, :d0] = self._scatter
        theta = np.zeros((r, d + 1, n_out))
        theta[:, : d0 + 1] = self._theta
        cov = np.zeros((r, d + 1, d + 1))
        cov[:, : d0 + 1, : d0 + 1] = self._cov
        for j in range(d0 + 1, d + 1):
            cov[:, j, j] = self.omega
        self._centers, self._radii, self._scatter = centers, radii, scatter
        self._theta, self._cov = theta, cov
        self._work(d, n_out)
        log.debug("features grew from %d to %d", d0, d)

    def _grow_outputs(self, n_new: int) -> None:
        r, d1, n_out = self._theta.shape
        theta = np.zeros((r, d1, n_out + n_new))
        theta[:, :, :n_out] = self._theta
        self._theta = theta
        self._out = np.zeros(n_out + n_new)

    def _vector(self, x: Mapping[Hashable, Any], grow: bool) -> tuple[np.ndarray, np.ndarray]:
        if grow:
            new = [k for k in x if k not in self._index and isinstance(x[k], numbers.Number)]
            if new:
                self._grow_features(sorted(new, key=_sort_key))
        d = len(self._features)
        vec = np.zeros(d)
        mask = np.zeros(d, dtype=np.bool_)
        index = self._index
        for name, value in x.items():
            j = index.get(name)
            if j is None or value is None:
                continue
            try:
                v = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(v):
                vec[j] = v
                mask[j] = True
        return vec, mask

    # -- kernels -----------------------------------------------------------------------------

    def _raw_output(self, x: Mapping[Hashable, Any]) -> np.ndarray:
        vec, mask = self._vector(x, grow=False)
        out = self._out
        fk.predict_kernel(vec, mask, self._ref_mean, self._ref_std, self._centers,
                          self._radii, self._theta, self._counters, self._z, self._logtau,
                          self._lam, out)
        return out.copy()

    def _learn_vector(self, x: Mapping[Hashable, Any], target: np.ndarray) -> int:
        vec, mask = self._vector(x, grow=True)
        event = fk.learn_kernel(
            vec, mask, target, self._mean, self._m2, self._cnt, self._ref_mean, self._ref_std,
            self._centers, self._radii,
            self._scatter, self._theta, self._cov, self._support, self._birth, self._usum,
            self._counters, self._params, self._z, self._logtau, self._lam, self._cx,
        )
        if event != fk.EVENT_NONE:
            log.debug("sample %d: %s, %d rules", self._counters[1],
                      "rule created" if event == fk.EVENT_CREATED else "centre replaced",
                      self._counters[0])
        return int(event)

    # -- introspection -----------------------------------------------------------------------

    @property
    def n_rules(self) -> int:
        """How many rules the model holds now."""
        return int(self._counters[0])

    def _firing(self, x: Mapping[Hashable, Any]) -> np.ndarray:
        vec, mask = self._vector(x, grow=False)
        n = self.n_rules
        z = np.zeros(vec.shape[0])
        logtau = np.zeros(self._logtau.shape[0])
        lam = np.zeros(self._lam.shape[0])
        fk.standardize(vec, mask, self._ref_mean, self._ref_std, z)
        fk.log_firing(z, mask, self._centers, self._radii, n, logtau)
        fk.normalise(logtau, n, lam)
        return lam[:n]

    def _antecedent(self, i: int, max_terms: int | None) -> str:
        d = len(self._features)
        order = list(range(d))
        if max_terms is not None:
            order = sorted(order, key=lambda j: -abs(self._centers[i, j]))[:max_terms]
            order.sort()
        terms = []
        for j in order:
            zc = float(self._centers[i, j])
            raw = float(self._ref_mean[j] + self._ref_std[j] * zc)
            terms.append(f"{self._features[j]} is {_term(zc)} (≈ {_fmt(raw)})")
        return " AND ".join(terms) if terms else "always"

    def _local_output(self, i: int) -> np.ndarray:
        return self._theta[i, 0, :] + self._centers[i] @ self._theta[i, 1:, :]

    def _consequent(self, i: int) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def rules(self, max_terms: int | None = None) -> list[str]:
        """The rules as readable text, one string per rule.

        Parameters
        ----------
        max_terms
            Keep only this many antecedent terms per rule (those whose centres lie farthest
            from the feature's mean); ``None`` keeps every feature.

        Returns
        -------
        list of str
            E.g. ``"IF ecg_hr is high (≈ 92) AND eeg_alpha_rel is low (≈ 0.18) THEN
            arithmetic 0.81"``; the value in brackets is the centre in the feature's own units.
        """
        return [f"IF {self._antecedent(i, max_terms)} THEN {self._consequent(i)}"
                for i in range(self.n_rules)]

    def explain_one(self, x: Mapping[Hashable, Any], top: int = 3,
                    max_terms: int | None = None) -> list[tuple[str, float]]:
        """The rules that fired most for ``x``, strongest first.

        Parameters
        ----------
        x
            Features, as for ``predict_one``.
        top
            How many rules to return.
        max_terms
            As in :meth:`rules`.

        Returns
        -------
        list of (str, float)
            Rule text and normalised firing strength (the strengths of all rules sum to 1).
        """
        if self.n_rules == 0:
            return []
        lam = self._firing(x)
        order = sorted(range(lam.shape[0]), key=lambda i: (-lam[i], i))[: max(top, 0)]
        texts = self.rules(max_terms)
        return [(texts[i], float(lam[i])) for i in order]


class EvolvingFuzzyRegressor(_EvolvingTS, base.Regressor):
    """Evolving first-order Takagi–Sugeno regressor (eTS family, Numba inner loops).

    Parameters
    ----------
    max_rules
        Cap on the number of rules; at the cap a new rule replaces the least useful one.
    radius
        Initial radius of a rule's Gaussian memberships, in standard deviations.
    radius_rate
        How much of the old radius survives each update (eTS+ ``rho``); the rest moves toward
        the rule's local scatter.
    min_radius
        Floor on the radii, in standard deviations.
    coverage_radius
        A sample farther than this (root mean square over features, in radii) from every
        centre starts a new rule.
    replace_radius
        A density-selected sample closer than this to a centre replaces that centre.
    omega
        Initial diagonal of each rule's RLS inverse-correlation matrix.
    forgetting
        RLS forgetting factor (1 keeps everything; 0.99 tracks drift).
    utility_threshold
        Rules whose mean normalised firing since birth falls below this are pruned.
    min_age
        Samples a rule lives before it may be pruned.
    merge_distance
        Rules whose centres lie within this many radii merge (0 disables merging).
    rescale_tolerance
        When a feature's running mean or std moves more than this fraction of the reference
        std, the rules are rewritten exactly in the new standardised units (0: every sample).
    seed
        Unused (the model is deterministic); kept for river's conventions.

    Examples
    --------
    >>> from streamfuse.learn.neurofuzzy import EvolvingFuzzyRegressor
    >>> model = EvolvingFuzzyRegressor()
    >>> for i in range(200):
    ...     x = {"a": (i % 20) / 10.0}
    ...     model.learn_one(x, 2.0 * x["a"] + 1.0)
    >>> round(model.predict_one({"a": 0.5}), 2)
    2.0

    """

    def __init__(
        self,
        max_rules: int = 30,
        radius: float = 0.5,
        radius_rate: float = 0.5,
        min_radius: float = 0.1,
        coverage_radius: float = 2.0,
        replace_radius: float = 0.5,
        omega: float = 1000.0,
        forgetting: float = 1.0,
        utility_threshold: float = 0.01,
        min_age: int = 50,
        merge_distance: float = 0.3,
        rescale_tolerance: float = 0.01,
        seed: int | None = None,
    ) -> None:
        self.max_rules = max_rules
        self.radius = radius
        self.radius_rate = radius_rate
        self.min_radius = min_radius
        self.coverage_radius = coverage_radius
        self.replace_radius = replace_radius
        self.omega = omega
        self.forgetting = forgetting
        self.utility_threshold = utility_threshold
        self.min_age = min_age
        self.merge_distance = merge_distance
        self.rescale_tolerance = rescale_tolerance
        self.seed = seed
        self._check_params()
        self._reset(1)

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {"max_rules": 5, "forgetting": 0.99, "merge_distance": 0.0}

    def learn_one(self, x: dict[Hashable, Any], y: float, **kwargs: Any) -> None:
        self._learn_vector(x, np.array([float(y)]))

    def predict_one(self, x: dict[Hashable, Any], **kwargs: Any) -> float:
        return float(self._raw_output(x)[0])

    def _consequent(self, i: int) -> str:
        return f"y ≈ {_fmt(float(self._local_output(i)[0]))}"


class EvolvingFuzzyClassifier(_EvolvingTS, base.Classifier):
    """Evolving first-order Takagi–Sugeno classifier (eTS family, Numba inner loops).

    Multi-class by indicator-matrix regression: each rule's consequent predicts one output per
    class (1 for the true class, 0 otherwise); probabilities are a softmax of the outputs with
    ``temperature`` (a softmax, rather than clipping, keeps scores ranked, which AUC needs).

    Parameters
    ----------
    max_rules, radius, radius_rate, min_radius, coverage_radius, replace_radius, omega, \
forgetting, utility_threshold, min_age, merge_distance, rescale_tolerance
        As in :class:`EvolvingFuzzyRegressor`.
    temperature
        Softmax temperature applied to the indicator outputs.
    seed
        Unused (the model is deterministic); kept for river's conventions.

    Examples
    --------
    >>> from streamfuse.learn.neurofuzzy import EvolvingFuzzyClassifier
    >>> model = EvolvingFuzzyClassifier()
    >>> for i in range(300):
    ...     hr = 60.0 + (i % 40)
    ...     model.learn_one({"hr": hr}, "stress" if hr > 80 else "rest")
    >>> model.predict_one({"hr": 95.0})
    'stress'

    """

    def __init__(
        self,
        max_rules: int = 30,
        radius: float = 0.5,
        radius_rate: float = 0.5,
        min_radius: float = 0.1,
        coverage_radius: float = 2.0,
        replace_radius: float = 0.5,
        omega: float = 1000.0,
        forgetting: float = 1.0,
        utility_threshold: float = 0.01,
        min_age: int = 50,
        merge_distance: float = 0.3,
        rescale_tolerance: float = 0.01,
        temperature: float = 0.25,
        seed: int | None = None,
    ) -> None:
        self.max_rules = max_rules
        self.radius = radius
        self.radius_rate = radius_rate
        self.min_radius = min_radius
        self.coverage_radius = coverage_radius
        self.replace_radius = replace_radius
        self.omega = omega
        self.forgetting = forgetting
        self.utility_threshold = utility_threshold
        self.min_age = min_age
        self.merge_distance = merge_distance
        self.rescale_tolerance = rescale_tolerance
        self.temperature = temperature
        self.seed = seed
        self._check_params()
        if not temperature > 0:
            raise ConfigError(f"EvolvingFuzzyClassifier: temperature={temperature!r}; "
                              "pass a float > 0, e.g. 0.25")
        self._classes: list[ClfTarget] = []
        self._class_index: dict[ClfTarget, int] = {}
        self._reset(0)

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {}
        yield {"max_rules": 5, "forgetting": 0.99, "merge_distance": 0.0}

    @property
    def _multiclass(self) -> bool:
        return True

    @property
    def classes(self) -> list[ClfTarget]:
        """Classes seen so far, in order of first appearance."""
        return list(self._classes)

    def learn_one(self, x: dict[Hashable, Any], y: ClfTarget, **kwargs: Any) -> None:
        if y not in self._class_index:
            self._class_index[y] = len(self._classes)
            self._classes.append(y)
            self._grow_outputs(1)
        target = np.zeros(len(self._classes))
        target[self._class_index[y]] = 1.0
        self._learn_vector(x, target)

    def _proba(self, out: np.ndarray) -> np.ndarray:
        s = out / self.temperature
        s = np.exp(s - s.max())
        return s / s.sum()

    def predict_proba_one(
        self, x: dict[Hashable, Any], **kwargs: Any
    ) -> dict[ClfTarget, float]:
        if not self._classes:
            return {}
        p = self._proba(self._raw_output(x))
        return {c: float(p[i]) for i, c in enumerate(self._classes)}

    def _consequent(self, i: int) -> str:
        if not self._classes:
            return "nothing"
        p = self._proba(self._local_output(i))
        best = int(np.argmax(p))
        return f"{self._classes[best]} {p[best]:.2f}"
