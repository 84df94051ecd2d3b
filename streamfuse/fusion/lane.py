"""The array lane of the fusion levels: one window's features z-scored in one array.

:func:`normalised` learns a window's features into the device's
:class:`~streamfuse.features.OnlineNormalizer` and gives back its z-scores per modality and
flat (the intermediate level's input, :func:`~streamfuse.features.concat` order) as
:class:`~streamfuse.learn.vector.FeatureVector` views of one array. A window's feature layout
(which modalities, which names) is split into names and slices once and remembered.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import chain
from typing import Any, cast

import numpy as np

from ..features import OnlineNormalizer, concat
from ..learn.vector import FeatureVector

FeatureSet = Mapping[str, Mapping[str, float]]

#: a window's feature layout -> the concatenated names, each present modality's names and
#: slice of them, and the modalities in concatenation order (None: a feature name in two
#: modalities, which concat merges: the dict path then)
Split = (
    tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...], slice], ...], tuple[str, ...]] | None
)

#: distinct feature layouts remembered before the cache of their splits starts afresh
MAX_LAYOUTS = 256


def split_layout(present: tuple[str, ...], keys: tuple[tuple[str, ...], ...]) -> Split:
    """The concatenated names (:func:`~streamfuse.features.concat` order: modalities sorted,
    each one's keys together and in order), each present modality's names and slice, and the
    concatenation order, for the modalities ``present`` with feature names ``keys``."""
    names: list[str] = []
    span: dict[str, tuple[str, tuple[str, ...], slice]] = {}
    of = dict(zip(present, keys, strict=True))
    mods = tuple(sorted(present))
    for m in mods:
        span[m] = (m, of[m], slice(len(names), len(names) + len(of[m])))
        names.extend(of[m])
    if len(set(names)) != len(names):
        return None
    return tuple(names), tuple(span[m] for m in present), mods


def normalised(
    features: FeatureSet,
    normalizer: OnlineNormalizer,
    layouts: dict[tuple[Any, ...], Split] | None = None,
) -> tuple[dict[str, FeatureVector] | dict[str, dict[str, float]], Mapping[str, float]]:
    """Learn one window's features into the device's normaliser, then its z-scores: per
    modality (in ``features``' order) and flat (:func:`~streamfuse.features.concat`), as
    :class:`~streamfuse.learn.vector.FeatureVector` sharing one array."""
    present = tuple(m for m, f in features.items() if f)
    keys = tuple([tuple(features[m]) for m in present])
    key = (present, keys)
    if layouts is None:
        layouts = {}
    try:
        split = layouts[key]
    except KeyError:
        split = split_layout(present, keys)
        if len(layouts) >= MAX_LAYOUTS:
            layouts.clear()
        layouts[key] = split
    if split is None:
        return normalised_dicts(features, normalizer)
    names, spans, mods = split
    values = np.fromiter(
        chain.from_iterable([features[m].values() for m in mods]), np.float64, len(names)
    )
    z = normalizer.learn_transform_array(names, values)
    return {m: FeatureVector(k, z[at]) for m, k, at in spans}, FeatureVector(names, z)


def normalised_dicts(
    features: FeatureSet, normalizer: OnlineNormalizer
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """:func:`normalised` as dicts, for a layout with a name in two modalities."""
    present = {m: cast(dict[str, float], f) for m, f in features.items() if f}
    names, z = normalizer.learn_transform(concat(present))
    flat = dict(zip(cast(tuple[str, ...], names), z, strict=True))
    return {m: {k: flat[k] for k in f} for m, f in present.items()}, flat
