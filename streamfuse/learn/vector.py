"""A feature dict laid out as arrays: names once per layout, values as one float64 vector.

The fusion levels hand every window's inputs to their models as :class:`FeatureVector`; a
model that reads the layout (:class:`~streamfuse.learn.linear.ScaledLogisticRegression`'s
``*_vector`` methods) takes the values array as it is, without a dict being built and walked
per model and per window. Anything else sees a read-only mapping, or the plain dict of
:meth:`FeatureVector.as_dict` (river's API at the edge).
"""

from __future__ import annotations

from collections.abc import Hashable, ItemsView, Iterator, Mapping, Sequence, ValuesView
from typing import Any, cast

import numpy as np


class FeatureVector(Mapping[str, float]):
    """Read-only ``{name: value}`` backed by ``names`` (a tuple) and ``array`` (float64[n]).

    Iterates in ``names`` order, as the dict it stands for would; values (``x[name]``,
    ``x.values()``) read back as Python floats equal to the array's entries.

    Examples
    --------
    >>> import numpy as np
    >>> x = FeatureVector(("hr", "rmssd"), np.array([0.5, -1.0]))
    >>> dict(x), len(x), x["rmssd"]
    ({'hr': 0.5, 'rmssd': -1.0}, 2, -1.0)
    """

    __slots__ = ("_dict", "array", "names")

    def __init__(self, names: tuple[str, ...], values: np.ndarray) -> None:
        self.names = names
        self.array = values
        self._dict: dict[str, float] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (FeatureVector, (self.names, self.array))

    def as_dict(self) -> dict[str, float]:
        """The plain dict (built once, then shared: do not change it)."""
        d = self._dict
        if d is None:
            d = self._dict = dict(zip(self.names, self.array.tolist(), strict=True))
        return d

    def values(self) -> ValuesView[float]:  # the dict's: its views are the fast ones
        return self.as_dict().values()

    def items(self) -> ItemsView[str, float]:
        return self.as_dict().items()

    def __getitem__(self, key: str) -> float:
        return self.as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, key: object) -> bool:
        return key in self.as_dict()

    def __repr__(self) -> str:
        return f"FeatureVector({self.as_dict()!r})"


def as_river(x: Mapping[Any, Any]) -> dict[Any, Any]:
    """``x`` as the plain dict river's ``learn_one``/``predict_proba_one`` take (no copy when
    it is one already)."""
    if type(x) is dict:
        return x
    if type(x) is FeatureVector:
        return dict(x.as_dict())
    return dict(x.items())


def predict_proba(model: Any, x: Mapping[Any, Any]) -> dict[Hashable, float]:
    """``model.predict_proba_one(x)``, through the array lane when both take it."""
    if type(x) is FeatureVector:
        lane = getattr(model, "predict_proba_vector", None)
        if lane is not None:
            return lane(x)  # type: ignore[no-any-return]
    return model.predict_proba_one(as_river(x))  # type: ignore[no-any-return]


def predict_named(model: Any, x: Mapping[Any, Any]) -> dict[str, float]:
    """:func:`predict_proba` with each class as ``str(class)`` and each probability a float."""
    if type(x) is FeatureVector:
        lane = getattr(model, "predict_proba_named", None)
        if lane is not None:
            return lane(x)  # type: ignore[no-any-return]
    return {str(c): float(v) for c, v in predict_proba(model, x).items()}


def predict_named_many(model: Any, xs: Sequence[Mapping[Any, Any]]) -> list[dict[str, float]]:
    """:func:`predict_named` of each of ``xs`` (``{}`` for an empty one); the vectors that
    share a layout go to the model together when it takes rows
    (``predict_proba_named_rows``)."""
    out: list[dict[str, float]] = [{} for _ in xs]
    rows = getattr(model, "predict_proba_named_rows", None)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, x in enumerate(xs):
        if not x:
            continue
        if rows is not None and type(x) is FeatureVector:
            groups.setdefault(x.names, []).append(i)
        else:
            out[i] = predict_named(model, x)
    for names, at in groups.items():
        assert rows is not None  # groups are only made for a model that takes rows
        X = np.stack([cast(FeatureVector, xs[i]).array for i in at])
        for i, p in zip(at, rows(names, X), strict=True):
            out[i] = p
    return out


def learn(model: Any, x: Mapping[Any, Any], y: Hashable) -> None:
    """``model.learn_one(x, y)``, through the array lane when both take it."""
    if type(x) is FeatureVector:
        lane = getattr(model, "learn_vector", None)
        if lane is not None:
            lane(x, y)
            return
    model.learn_one(as_river(x), y)


def predict_then_learn(model: Any, x: Mapping[Any, Any], y: Hashable) -> float | None:
    """The probability ``model`` gives ``y`` for ``x`` (0.0 if it does not name ``y``; None
    when it predicts nothing yet), then ``model.learn_one(x, y)``."""
    if type(x) is FeatureVector:
        lane = getattr(model, "predict_learn_vector", None)
        if lane is not None:
            return lane(x, y)  # type: ignore[no-any-return]
    xd = as_river(x)
    p = model.predict_proba_one(xd)
    model.learn_one(xd, y)
    return float(p.get(y, 0.0)) if p else None
