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

Inner loops are Numba kernels (:mod:`streamfuse.kernels.fuzzy`); the state they share and the
mapping of feature dicts onto fixed-order vectors are in :mod:`streamfuse.learn.evolving_ts`.
New features are appended (sorted, so the order in which a dict lists them does not matter);
a missing feature is ignored by the antecedents and imputed by its running mean in the
consequents.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

import numpy as np
from river import base
from river.base.typing import ClfTarget

from streamfuse.errors import ConfigError
from streamfuse.learn.evolving_ts import EvolvingTS, format_number


class EvolvingFuzzyRegressor(EvolvingTS, base.Regressor):
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
        return f"y ≈ {format_number(float(self._local_output(i)[0]))}"


class EvolvingFuzzyClassifier(EvolvingTS, base.Classifier):
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
