"""Online models by name: the river pipelines (and our own models) a level can use."""

from __future__ import annotations

from collections.abc import Callable

from river import base, linear_model, multiclass, optim, preprocessing, tree

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
