"""The engine room of the evolving Takagi–Sugeno models of :mod:`streamfuse.learn.neurofuzzy`:
their state, the mapping of feature dicts onto fixed-order vectors for the Numba kernels
(:mod:`streamfuse.kernels.fuzzy`), and the rules written out as text."""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from streamfuse.errors import ConfigError
from streamfuse.kernels import fuzzy as fk

log = logging.getLogger("streamfuse.learn.neurofuzzy")


_TERMS = ((-1.5, "very low"), (-0.5, "low"), (0.5, "medium"), (1.5, "high"))


def _term(zc: float) -> str:
    for bound, name in _TERMS:
        if zc < bound:
            return name
    return "very high"


def format_number(v: float) -> str:
    return f"{v:.3g}"


def _sort_key(name: Hashable) -> tuple[str, str]:
    return (type(name).__name__, repr(name))


class EvolvingTS:
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
            terms.append(f"{self._features[j]} is {_term(zc)} (≈ {format_number(raw)})")
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
