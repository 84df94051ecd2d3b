"""Online models by name: the river pipelines (and our own models) a level can use."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from river import base, compose, linear_model, multiclass, optim, preprocessing, tree

from ..errors import ConfigError


def _logreg() -> base.Classifier:
    return preprocessing.StandardScaler() | multiclass.OneVsRestClassifier(
        linear_model.LogisticRegression(optimizer=optim.SGD(0.05), l2=1e-4)
    )


def _softmax() -> base.Classifier:
    return preprocessing.StandardScaler() | linear_model.SoftmaxRegression(
        optimizer=optim.SGD(0.05), l2=1e-4
    )


def _hoeffding() -> base.Classifier:
    return tree.HoeffdingAdaptiveTreeClassifier(grace_period=50, seed=0)


def _neurofuzzy() -> base.Classifier:
    from .neurofuzzy import EvolvingFuzzyClassifier

    return preprocessing.StandardScaler() | EvolvingFuzzyClassifier()


MODELS: dict[str, Callable[[], base.Classifier]] = {
    "logreg": _logreg,
    "softmax": _softmax,
    "hoeffding": _hoeffding,
    "neurofuzzy": _neurofuzzy,
}


def make_model(name: str) -> base.Classifier:
    """A fresh, untrained classifier for ``name`` (one of :data:`MODELS`)."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
    return factory()


def final_step(model: base.Estimator) -> base.Estimator:
    """The estimator at the end of a river pipeline (the model itself otherwise)."""
    if isinstance(model, compose.Pipeline):
        return list(model.steps.values())[-1]
    return model


def model_name(model: base.Estimator) -> str:
    """A short name for a (possibly pipelined) river model, e.g. ``"LogisticRegression"``."""
    last = final_step(model)
    inner = getattr(last, "classifier", None)  # e.g. OneVsRestClassifier(LogisticRegression)
    return type(inner if isinstance(inner, base.Estimator) else last).__name__


def explain(model: base.Estimator, x: Mapping[Hashable, Any], top: int) -> list[tuple[str, float]]:
    """The ``top`` rules that fired most for ``x`` when the model is neuro-fuzzy, else ``[]``.

    A pipeline's transformers are applied first (without learning), so the rules see what
    the neuro-fuzzy step sees.
    """
    if top <= 0:
        return []
    last = final_step(model)
    if not hasattr(last, "explain_one"):
        return []
    z = dict(x)
    if isinstance(model, compose.Pipeline):
        for step in list(model.steps.values())[:-1]:
            z = step.transform_one(z)
    return list(last.explain_one(z, top=top, max_terms=4))
