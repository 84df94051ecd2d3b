"""Late fusion: one online classifier per modality, decisions combined per window.

Each modality's model sees only that modality's features. Decisions combine by

- ``"weighted"``: a weighted average of the class probabilities, the weights from each model's
  online performance, Hedge-style (Freund & Schapire 1997): ``w_m ∝ exp(-eta * L_m)`` with
  ``L_m`` the discounted cumulative log-loss ``L_m <- discount * L_m + loss``, each loss scored
  on the prediction made *before* the model learns from that window (prequential);
- ``"vote"``: a majority vote of the models' decided classes (``proba`` holds vote shares).

A modality absent from a window is skipped: the weights of the present ones are renormalised
and the absent model neither predicts nor learns.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar, cast

from river import base
from river.base.typing import ClfTarget

from streamfuse.errors import ConfigError
from streamfuse.learn import vector

log = logging.getLogger("streamfuse.fusion.late")

FeaturesByModality = Mapping[str, Mapping[str, float]]

_P_FLOOR = 1e-6

_C = TypeVar("_C", bound=ClfTarget)


def _argmax(proba: Mapping[_C, float]) -> _C | None:
    """Most probable class; ties go to the smallest ``repr`` (deterministic)."""
    if not proba:
        return None
    return min(proba, key=lambda c: (-proba[c], repr(c)))


def best_class(proba: Mapping[str, float]) -> str | None:
    """Most probable of classes named by ``str``; ties go to the smallest name (deterministic).

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


class LateFusion:
    """One model per modality; combined by Hedge-weighted averaging or majority vote.

    Parameters
    ----------
    factory
        ``factory(modality)`` returns a fresh river classifier for that modality; called the
        first time a modality appears in :meth:`learn`.
    combine
        ``"weighted"`` (default) or ``"vote"``.
    eta
        Hedge learning rate (larger trusts the best model sooner).
    discount
        Discount on past losses per update (1 keeps the whole history).

    Examples
    --------
    >>> from river import dummy
    >>> late = LateFusion(lambda m: dummy.PriorClassifier())
    >>> late.learn({"ecg": {"hr": 70.0}, "eeg": {"alpha": 0.2}}, "rest")
    >>> proba, weights = late.predict_proba({"ecg": {"hr": 71.0}})
    >>> proba, weights
    ({'rest': 1.0}, {'ecg': 1.0})

    """

    def __init__(
        self,
        factory: Callable[[str], base.Classifier],
        *,
        combine: str = "weighted",
        eta: float = 1.0,
        discount: float = 0.98,
    ) -> None:
        if combine not in ("weighted", "vote"):
            raise ConfigError(f"LateFusion: combine={combine!r}; pass 'weighted' or 'vote'")
        if not eta > 0:
            raise ConfigError(f"LateFusion: eta={eta!r}; pass a float > 0, e.g. 1.0")
        if not 0 < discount <= 1:
            raise ConfigError(f"LateFusion: discount={discount!r}; pass a float in (0, 1]")
        self.factory = factory
        self.combine = combine
        self.eta = eta
        self.discount = discount
        self.models: dict[str, base.Classifier] = {}
        self.losses: dict[str, float] = {}

    @staticmethod
    def _present(features: FeaturesByModality) -> list[str]:
        return sorted([m for m, f in features.items() if f])

    def weights(self, modalities: list[str] | None = None) -> dict[str, float]:
        """Hedge weights over ``modalities`` (default: every modality with a model), sum 1."""
        mods = sorted(self.models) if modalities is None else sorted(modalities)
        losses = self.losses
        mods = [m for m in mods if m in losses]
        if not mods:
            return {}
        if self.combine == "vote":
            return {m: 1.0 / len(mods) for m in mods}
        seen = [losses[m] for m in mods]
        best = min(seen)
        eta = self.eta
        raw = [math.exp(-eta * (v - best)) for v in seen]
        total = sum(raw)
        return {m: v / total for m, v in zip(mods, raw, strict=True)}

    def _member_probas(self, features: FeaturesByModality) -> dict[str, dict[ClfTarget, float]]:
        out: dict[str, dict[ClfTarget, float]] = {}
        for m in self._present(features):
            model = self.models.get(m)
            if model is None:
                continue
            p = vector.predict_proba(model, features[m])
            if p:
                out[m] = cast(dict[ClfTarget, float], p)
        return out

    def member_probas(self, features: FeaturesByModality) -> dict[str, dict[str, float]]:
        """Each present member's own probabilities, classes named by ``str`` (members that
        cannot predict yet left out), in modality order."""
        out: dict[str, dict[str, float]] = {}
        models = self.models
        for m in self._present(features):
            model = models.get(m)
            if model is not None:
                p = vector.predict_named(model, features[m])
                if p:
                    out[m] = p
        return out

    def member_probas_many(
        self, batch: Sequence[FeaturesByModality]
    ) -> list[dict[str, dict[str, float]]]:
        """:meth:`member_probas` of each window of ``batch``, the same probabilities, with each
        member predicting all the windows it hears in one call."""
        asked: dict[str, list[int]] = {}
        for i, views in enumerate(batch):
            for m in self._present(views):
                if m in self.models:
                    asked.setdefault(m, []).append(i)
        said: dict[str, dict[int, dict[str, float]]] = {}
        for m, at in asked.items():
            xs = [batch[i][m] for i in at]
            said[m] = dict(zip(at, vector.predict_named_many(self.models[m], xs), strict=True))
        out: list[dict[str, dict[str, float]]] = [{} for _ in batch]
        for m in sorted(said):  # members in modality order, as member_probas makes them
            for i, p in said[m].items():
                if p:
                    out[i][m] = p
        return out

    def combine_named(
        self, members: Mapping[str, Mapping[str, float]]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """The weights over the members that spoke and their combined probabilities, from
        the members' own (:meth:`member_probas`: each member predicted once).

        Combines exactly as :meth:`predict_proba`: weights over the members that spoke, then
        a weighted average of probabilities (or of votes for their decisions).
        """
        weights = self.weights(list(members))
        if not weights:
            return {}, {}
        proba: dict[str, float] = {}
        if self.combine == "vote":
            for m, p in members.items():
                c = best_class(p)
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

    def predict_proba(
        self, features_by_modality: FeaturesByModality
    ) -> tuple[dict[ClfTarget, float], dict[str, float]]:
        """Combined class probabilities and the weights used (over the modalities that spoke).

        Parameters
        ----------
        features_by_modality
            ``{modality: {feature: value}}``; a modality missing (or empty) is skipped.

        Returns
        -------
        (dict, dict)
            Probabilities over the union of the members' classes, and each contributing
            modality's weight (summing to 1); both empty when no member can predict yet.
        """
        members = self._member_probas(features_by_modality)
        weights = self.weights(list(members))
        if not weights:
            return {}, {}
        proba: dict[ClfTarget, float] = {}
        if self.combine == "vote":
            for m, p in members.items():
                c = _argmax(p)
                if c is not None:  # always: members holds non-empty probabilities only
                    proba[c] = proba.get(c, 0.0) + weights[m]
        else:
            for m, p in members.items():
                for c, v in p.items():
                    proba[c] = proba.get(c, 0.0) + weights[m] * float(v)
        total = sum(proba.values())
        if total > 0:
            proba = {c: v / total for c, v in proba.items()}
        return proba, weights

    def predict_one(self, features_by_modality: FeaturesByModality) -> ClfTarget | None:
        """The combined decision (ties: smallest ``repr``), or None before any learning."""
        return _argmax(self.predict_proba(features_by_modality)[0])

    def learn(self, features_by_modality: FeaturesByModality, y: ClfTarget) -> None:
        """Score, then train, the model of every modality present in this window.

        Parameters
        ----------
        features_by_modality
            As in :meth:`predict_proba`.
        y
            The window's label.
        """
        present = self._present(features_by_modality)
        known = [self.losses[m] for m in present if m in self.losses]
        start = sum(known) / len(known) if known else 0.0
        for m in present:
            model = self.models.get(m)
            if model is None:
                model = self.models[m] = self.factory(m)
                self.losses[m] = start
                log.debug("late fusion: new model for modality %s", m)
            p_y = vector.predict_then_learn(model, features_by_modality[m], y)
            loss = math.log(2.0) if p_y is None else -math.log(max(p_y, _P_FLOOR))
            self.losses[m] = self.discount * self.losses[m] + loss
