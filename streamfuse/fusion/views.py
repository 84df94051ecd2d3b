"""Modality views of a flat feature dict: ``{"ecg_hr": 70, "eeg_alpha": 1}`` ->
``{"ecg": {"ecg_hr": 70}, "eeg": {"eeg_alpha": 1}}``.

streamfuse names every feature ``<modality>_<feature>`` (:mod:`streamfuse.features`), so a flat
dict, as river hands it to a classifier, says which modality each value belongs to. The
fusion learners with a river API (:mod:`~streamfuse.fusion.attention`,
:mod:`~streamfuse.fusion.bayes`, :mod:`~streamfuse.fusion.mkl`) split their input with
:func:`split_views`; the engine, which keeps each modality's features apart already, calls
their ``*_views`` methods directly (so a modality name may then contain the separator).

A key ``<modality>_<tag>_<name>`` (``tag`` ``"q"`` by default) is a *signal-quality index* of
that modality (:mod:`streamfuse.features.quality`) rather than a feature.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from typing import Any

from river import base

log = logging.getLogger("streamfuse.fusion.views")

Views = dict[str, dict[Hashable, float]]
Quality = dict[str, dict[str, float]]


def split_views(
    x: Mapping[Hashable, Any], separator: str = "_", quality_tag: str | None = "q"
) -> tuple[Views, Quality]:
    """Features and quality indices of a flat dict, grouped by modality.

    Parameters
    ----------
    x
        ``{feature: value}``; a key's modality is its text up to the first ``separator``
        (the whole key when there is none).
    separator
        What joins the modality to the rest of a key.
    quality_tag
        ``<modality><sep><tag><sep><name>`` keys go to the quality part as ``name``; None: no
        quality keys.

    Returns
    -------
    (views, quality)
        ``{modality: {key: value}}`` (keys unchanged) and ``{modality: {name: value}}``.

    Examples
    --------
    >>> views, quality = split_views({"ecg_hr": 70.0, "ecg_q_flat": 0.5, "eeg_a": 1.0, "age": 3})
    >>> views
    {'ecg': {'ecg_hr': 70.0}, 'eeg': {'eeg_a': 1.0}, 'age': {'age': 3}}
    >>> quality
    {'ecg': {'flat': 0.5}}
    """
    views: Views = {}
    quality: Quality = {}
    marker = None if quality_tag is None else f"{quality_tag}{separator}"
    for key, value in x.items():
        text = str(key)
        modality, sep, rest = text.partition(separator)
        if sep and marker is not None and rest.startswith(marker):
            quality.setdefault(modality, {})[rest[len(marker):]] = float(value)
        else:
            views.setdefault(modality, {})[key] = value
    return views, quality


class ModalityMembers:
    """One classifier per modality, made on the modality's first labelled view (a clone of
    ``self.member``, or a :class:`~streamfuse.learn.linear.ScaledLogisticRegression`): what the
    attention and Bayes fusion classifiers share. The class using it sets ``self.member`` and
    ``self.members: dict[str, base.Classifier]`` in its constructor."""

    member: base.Classifier | None
    members: dict[str, base.Classifier]

    def _template(self) -> base.Classifier:
        if self.member is not None:
            return self.member.clone()
        from ..learn.linear import ScaledLogisticRegression

        return ScaledLogisticRegression()

    def member_probas(self, views: Mapping[str, Mapping[Hashable, Any]]) -> dict[str, dict]:
        """Each present modality's own probabilities (members that cannot predict left out)."""
        out: dict[str, dict] = {}
        for m in sorted(views):
            model = self.members.get(m)
            if model is None or not views[m]:
                continue
            p = model.predict_proba_one(dict(views[m]))
            if p:
                out[m] = p
        return out

    def learn_members(self, views: Mapping[str, Mapping[Hashable, Any]], y: Hashable) -> None:
        """Every present modality's member learns its view (made first if new)."""
        for m in sorted(views):
            if not views[m]:
                continue
            model = self.members.get(m)
            if model is None:
                model = self.members[m] = self._template()
                log.debug("%s: new member for modality %s", type(self).__name__, m)
            model.learn_one(dict(views[m]), y)  # type: ignore[arg-type]
