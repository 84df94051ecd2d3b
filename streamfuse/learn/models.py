"""Online models by name: the river pipelines (and our own models) a level can use."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar, cast

from river import base, compose, linear_model, multiclass, optim, preprocessing, tree
from river.base.typing import FeatureName

from ..errors import ConfigError

_F = TypeVar("_F", bound=Hashable)


def _as_classifier(pipeline: compose.Pipeline) -> base.Classifier:
    """A pipeline that ends in a classifier, typed as the classifier it behaves as.

    river routes ``learn_one``/``predict_proba_one`` through the transformers to the final
    classifier (``river.utils.inspect.isclassifier`` says True), but ``compose.Pipeline``
    only subclasses ``base.Estimator``, so its type hints cannot say so.
    """
    return cast(base.Classifier, pipeline)


def _logreg() -> base.Classifier:
    from .linear import ScaledLogisticRegression

    return ScaledLogisticRegression(lr=0.05, l2=1e-4)


def _river_logreg() -> base.Classifier:
    return _as_classifier(
        preprocessing.StandardScaler()
        | multiclass.OneVsRestClassifier(
            linear_model.LogisticRegression(optimizer=optim.SGD(0.05), l2=1e-4)
        )
    )


def _softmax() -> base.Classifier:
    return _as_classifier(
        preprocessing.StandardScaler()
        | linear_model.SoftmaxRegression(optimizer=optim.SGD(0.05), l2=1e-4)
    )


def _lda() -> base.Classifier:
    from .lda import DiagonalLDA

    return DiagonalLDA()


def _hoeffding() -> base.Classifier:
    return tree.HoeffdingAdaptiveTreeClassifier(grace_period=50, seed=0)


def _neurofuzzy() -> base.Classifier:
    from .neurofuzzy import EvolvingFuzzyClassifier

    return _as_classifier(preprocessing.StandardScaler() | EvolvingFuzzyClassifier())


MODELS: dict[str, Callable[[], base.Classifier]] = {
    "logreg": _logreg,
    "river-logreg": _river_logreg,
    "softmax": _softmax,
    "lda": _lda,
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


def explain(model: base.Estimator, x: Mapping[_F, Any], top: int) -> list[tuple[str, float]]:
    """The ``top`` rules that fired most for ``x`` when the model is neuro-fuzzy, else ``[]``.

    A pipeline's transformers are applied first (without learning), so the rules see what
    the neuro-fuzzy step sees.
    """
    if top <= 0:
        return []
    last = final_step(model)
    if not hasattr(last, "explain_one"):
        return []
    z: dict[FeatureName, Any] = dict(x.items())
    if isinstance(model, compose.Pipeline):
        for step in list(model.steps.values())[:-1]:
            z = step.transform_one(z)
    return list(last.explain_one(z, top=top, max_terms=4))


def fired_rules(
    model: base.Estimator, x: Mapping[_F, Any], top: int, prefix: str = ""
) -> tuple[str, ...]:
    """:func:`explain` as text: ``"<prefix><rule> (firing <w>)"`` per rule, most fired first."""
    return tuple(f"{prefix}{text} (firing {w:.2f})" for text, w in explain(model, x, top))
