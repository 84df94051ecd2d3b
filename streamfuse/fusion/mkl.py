"""Online multiple kernel learning: per modality, random-Fourier-feature experts under Hedge.

Each modality gets ``len(gammas)`` Gaussian kernels ``k(x, x') = exp(-gamma ||x - x'||^2 / d)``
(``d`` the modality's number of features, which the modality's own online z-scoring makes
comparable across modalities), each approximated by ``n_components`` random Fourier features
(Rahimi and Recht 2007, "Random features for large-scale kernel machines", NIPS):
``z(x) = sqrt(2/D) cos(W x + b)``, ``W ~ N(0, 2 gamma / d)``, ``b ~ U(0, 2 pi)``. Every
(modality, kernel) pair is an expert: an online softmax regression on its features. Experts are
combined by Hedge (Freund and Schapire 1997) on their discounted log-loss, as in online
multiple kernel classification (Hoi, Jin, Zhao and Yang 2013, "Online multiple kernel
classification", Machine Learning 90:289-316) and its random-feature form Raker (Shen, Chen and
Giannakis 2019, "Random feature-based online multi-kernel learning in environments with
unknown dynamics", JMLR 20(22):1-36). The Hedge weights say which modality, at which
bandwidth, the fusion trusts: they are published as the level's explanation.

A modality missing from a window takes no part: its experts neither predict nor learn, and
the weights of the others are renormalised.

river's ``feature_extraction.RBFSampler`` builds the same features as a dict of
``n_components`` entries *per input feature* (``{(feature, j): cos(...)}``), one Python call per
entry: at 60 EEG features, 64 components and three bandwidths that is ~11,500 dict entries a
window, where the arrays here do one ``(D, d) @ (d,)`` product per modality.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from river import base

from ..errors import ConfigError
from ..kernels import mkl as kern
from .views import split_views

log = logging.getLogger("streamfuse.fusion.mkl")

_P_FLOOR = 1e-6
_CACHED_KEY_SETS = 64


def _crc(value: Hashable) -> int:
    return zlib.crc32(repr(value).encode())


class _ModalityExperts:
    """One modality's z-scoring moments, random features and ``K`` softmax regressions."""

    def __init__(self, modality: str, n_kernels: int, n_components: int, entropy: int) -> None:
        self.modality = modality
        self.entropy = entropy
        self.columns: dict[Hashable, int] = {}
        cap = 8
        self.count = np.zeros(cap)
        self.mean = np.zeros(cap)
        self.m2 = np.zeros(cap)
        self.G = np.zeros((n_components, cap))  # standard normal frequencies, one column/feature
        rng = np.random.default_rng([entropy, _crc(modality), 1])
        self.offsets = rng.uniform(0.0, 2.0 * math.pi, size=(n_kernels, n_components))
        self.W = np.zeros((n_kernels, 2, n_components + 1))
        self._u = np.zeros(n_components)
        self._Z = np.zeros((n_kernels, n_components + 1))
        self._key_sets: dict[tuple[Hashable, ...], np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_key_sets"] = {}  # a cache; rebuilt on first use
        return state

    def _grow(self, n: int) -> None:
        cap = self.mean.shape[0]
        if n <= cap:
            return
        new = max(n, 2 * cap)
        for name in ("count", "mean", "m2"):
            old = getattr(self, name)
            grown = np.zeros(new)
            grown[:cap] = old
            setattr(self, name, grown)
        G = np.zeros((self.G.shape[0], new))
        G[:, :cap] = self.G
        self.G = G

    def cols(self, x: Mapping[Hashable, Any], add: bool) -> tuple[np.ndarray, np.ndarray]:
        """Column indices and float values of ``x`` (unknown features added, or dropped)."""
        keys = tuple(x)
        cols = self._key_sets.get(keys)
        if cols is None:
            if add:
                for k in keys:
                    if k not in self.columns:
                        j = self.columns[k] = len(self.columns)
                        self._grow(j + 1)
                        rng = np.random.default_rng(
                            [self.entropy, _crc(self.modality), 2, _crc(k)]
                        )
                        self.G[:, j] = rng.standard_normal(self.G.shape[0])
            elif any(k not in self.columns for k in keys):
                known = [k for k in keys if k in self.columns]
                cols = np.fromiter((self.columns[k] for k in known), np.int64, len(known))
                return cols, np.fromiter((float(x[k]) for k in known), np.float64, len(known))
            cols = np.fromiter((self.columns[k] for k in keys), np.int64, len(keys))
            if len(self._key_sets) >= _CACHED_KEY_SETS:
                self._key_sets.clear()
            self._key_sets[keys] = cols
        return cols, np.fromiter(x.values(), np.float64, len(keys))

    def features(self, cols: np.ndarray, vals: np.ndarray, scales: np.ndarray) -> np.ndarray:
        """``[K, D + 1]`` random features of one sample (last column 1, the intercept)."""
        Z = np.empty_like(self._Z)
        kern.rff_features(self.G, cols, vals, self.count, self.mean, self.m2,
                          len(self.columns), scales, self.offsets, self._u, Z)
        return Z

    def ensure_classes(self, n: int) -> None:
        rows = self.W.shape[1]
        if n <= rows:
            return
        W = np.zeros((self.W.shape[0], max(n, 2 * rows), self.W.shape[2]))
        W[:, :rows] = self.W
        self.W = W

    def proba(self, cols: np.ndarray, vals: np.ndarray, scales: np.ndarray,
              n_classes: int) -> np.ndarray:
        """``[K, C]`` class probabilities of each kernel's softmax regression."""
        kern.rff_features(self.G, cols, vals, self.count, self.mean, self.m2,
                          len(self.columns), scales, self.offsets, self._u, self._Z)
        P = np.empty((self._Z.shape[0], n_classes))
        kern.softmax_proba(self.W, self._Z, n_classes, P)
        return P

    def learn(self, cols: np.ndarray, vals: np.ndarray, scales: np.ndarray, n_classes: int,
              y: int, lr: float, l2: float) -> np.ndarray:
        """Moments, features, the experts' log-losses on ``y`` (returned), one SGD step."""
        self.ensure_classes(n_classes)
        P = np.empty((self._Z.shape[0], n_classes))
        losses = np.empty(self._Z.shape[0])
        kern.learn_step(self.G, cols, vals, self.count, self.mean, self.m2, len(self.columns),
                        scales, self.offsets, self.W, n_classes, y, lr, l2, _P_FLOOR, self._u,
                        self._Z, P, losses)
        return losses


class OnlineMKLClassifier(base.Classifier):
    """Hedge over (modality, Gaussian kernel) experts on random Fourier features.

    Parameters
    ----------
    gammas
        Kernel widths relative to the modality's dimension: ``k(x, x') =
        exp(-gamma ||x - x'||^2 / d)`` on z-scored features (small: smooth, near linear;
        large: local).
    n_components
        Random features per kernel (``D``).
    lr
        SGD learning rate of every expert's softmax regression.
    l2
        L2 penalty of the experts' weights.
    eta
        Hedge learning rate.
    discount
        Discount on each expert's past log-loss per update (1 keeps the whole history).
    separator
        Splits a flat feature key into ``<modality><separator><rest>``.
    seed
        Seed of the random features (None: drawn once, kept by pickling).

    Notes
    -----
    ``learn_one`` updates each present modality's z-scoring with the window, scores every
    expert on it (Hedge loss, before the expert's weights move), then takes one SGD step per
    expert. The engine calls :meth:`predict_views` / :meth:`learn_views` with each modality's
    features apart; :meth:`kernel_weights` and :meth:`modality_weights` are the explanation.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(3)
    >>> model = OnlineMKLClassifier(seed=1)
    >>> hits = 0
    >>> for i in range(600):  # a ring: class by distance from the origin, not linear
    ...     a, b = rng.gauss(0, 1), rng.gauss(0, 1)
    ...     x, y = {"ecg_a": a, "ecg_b": b, "eeg_c": rng.gauss(0, 1)}, a * a + b * b > 1.4
    ...     hits += i >= 300 and model.predict_one(x) == y
    ...     model.learn_one(x, y)
    >>> hits / 300 > 0.8, max(model.modality_weights(), key=model.modality_weights().get)
    (True, 'ecg')
    """

    def __init__(
        self,
        gammas: tuple[float, ...] = (0.1, 1.0, 10.0),
        n_components: int = 64,
        lr: float = 0.5,
        l2: float = 1e-4,
        eta: float = 1.0,
        discount: float = 0.98,
        separator: str = "_",
        seed: int | None = None,
    ) -> None:
        if not gammas or any(not g > 0 for g in gammas):
            raise ConfigError(f"OnlineMKLClassifier: gammas={gammas!r}; pass floats > 0")
        if not n_components >= 1:
            raise ConfigError(f"OnlineMKLClassifier: n_components={n_components!r}; pass >= 1")
        if not 0 < discount <= 1:
            raise ConfigError(f"OnlineMKLClassifier: discount={discount!r}; pass a float in (0, 1]")
        self.gammas = gammas
        self.n_components = n_components
        self.lr = lr
        self.l2 = l2
        self.eta = eta
        self.discount = discount
        self.separator = separator
        self.seed = seed
        self._entropy = int(seed) if seed is not None else int(
            np.random.SeedSequence().entropy % (2**63)  # type: ignore[operator]
        )
        self._scales = np.sqrt(2.0 * np.asarray(gammas, dtype=np.float64))
        self.classes: list[Hashable] = []
        self._class_index: dict[Hashable, int] = {}
        self.experts: dict[str, _ModalityExperts] = {}
        self.losses: dict[str, np.ndarray] = {}

    @property
    def _multiclass(self) -> bool:
        return True

    @classmethod
    def _unit_test_params(cls):  # type: ignore[no-untyped-def]
        yield {"seed": 1}
        yield {"gammas": (0.5,), "n_components": 16, "seed": 2}

    # ------------------------------------------------------------------ weights
    def _labels(self) -> list[str]:
        return [f"{g:g}" for g in self.gammas]

    def _hedge(self, modalities: list[str]) -> dict[str, np.ndarray]:
        mods = [m for m in sorted(modalities) if m in self.losses]
        if not mods:
            return {}
        best = min(float(self.losses[m].min()) for m in mods)
        raw = {m: np.exp(-self.eta * (self.losses[m] - best)) for m in mods}
        total = float(sum(r.sum() for r in raw.values()))
        return {m: r / total for m, r in raw.items()}

    def kernel_weights(self, modalities: list[str] | None = None) -> dict[str, float]:
        """Hedge weight of every ``"<modality>:<gamma>"`` expert over ``modalities`` (default:
        all known), summing to 1."""
        w = self._hedge(sorted(self.losses) if modalities is None else modalities)
        labels = self._labels()
        return {f"{m}:{labels[k]}": float(v[k]) for m, v in w.items() for k in range(len(v))}

    def modality_weights(self, modalities: list[str] | None = None) -> dict[str, float]:
        """Each modality's summed kernel weight (sum 1)."""
        w = self._hedge(sorted(self.losses) if modalities is None else modalities)
        return {m: float(v.sum()) for m, v in w.items()}

    # ------------------------------------------------------------------ predict
    def _expert_probas(
        self, views: Mapping[str, Mapping[Any, Any]]
    ) -> dict[str, np.ndarray]:
        n = len(self.classes)
        out: dict[str, np.ndarray] = {}
        for m in sorted(views):
            ex = self.experts.get(m)
            if ex is None or not views[m]:
                continue
            cols, vals = ex.cols(views[m], add=False)
            out[m] = ex.proba(cols, vals, self._scales, n)
        return out

    def predict_views(
        self, views: Mapping[str, Mapping[Any, Any]]
    ) -> tuple[dict[Hashable, float], dict[str, float]]:
        """``(proba, kernel weights over the present modalities)`` for one window."""
        if not self.classes:
            return {}, {}
        probas = self._expert_probas(views)
        w = self._hedge(list(probas))
        if not w:
            return {}, {}
        mix = sum((w[m] @ probas[m] for m in w), np.zeros(len(self.classes)))
        total = float(mix.sum())
        proba = {c: float(mix[i] / total) for i, c in enumerate(self.classes)}
        labels = self._labels()
        weights = {f"{m}:{labels[k]}": float(v[k]) for m, v in w.items() for k in range(len(v))}
        return proba, weights

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict[Hashable, float]:  # type: ignore[override]
        return self.predict_views(split_views(x, self.separator, None)[0])[0]

    # ------------------------------------------------------------------ learn
    def learn_views(self, views: Mapping[str, Mapping[Any, Any]], y: Hashable) -> None:
        """Hedge losses, then one SGD step, for every expert of every present modality."""
        k = self._class_index.get(y)
        if k is None:
            k = self._class_index[y] = len(self.classes)
            self.classes.append(y)
        n = len(self.classes)
        present = [m for m in sorted(views) if views[m]]
        known = [float(self.losses[m].mean()) for m in present if m in self.losses]
        start = sum(known) / len(known) if known else 0.0
        for m in present:
            ex = self.experts.get(m)
            if ex is None:
                ex = self.experts[m] = _ModalityExperts(
                    m, len(self.gammas), int(self.n_components), self._entropy
                )
                self.losses[m] = np.full(len(self.gammas), start)
                log.debug("mkl: new experts for modality %s", m)
            cols, vals = ex.cols(views[m], add=True)
            loss = ex.learn(cols, vals, self._scales, n, k, float(self.lr), float(self.l2))
            self.losses[m] = self.discount * self.losses[m] + loss

    def learn_one(self, x: dict, y: Hashable, **kwargs: Any) -> None:  # type: ignore[override]
        self.learn_views(split_views(x, self.separator, None)[0], y)
