"""The fusion levels side by side: what each level sees of a window and how it decides.

``early`` sees summary statistics of the early-fusion matrix (every aligned channel),
``intermediate`` the concatenated per-modality features, ``late`` one model per modality whose
decisions are combined. The :class:`FusionHub` runs the configured levels on every window and
says which one to publish.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from river import base

from ..features import concat
from ..types import FusedWindow

FeatureSet = Mapping[str, Mapping[str, float]]


@dataclass(slots=True)
class Decision:
    """One level's answer for one window."""

    level: str
    proba: dict[str, float]
    label: str | None
    model: str
    rules: tuple[str, ...] = ()


@dataclass(slots=True)
class Evidence:
    """What a window gave the models, kept until its label arrives."""

    x_intermediate: dict[str, float]


class FusionHub:
    """Runs every fusion level on each window; learns when the window's label arrives."""

    def __init__(self, model_factory: Callable[[], base.Classifier], model_name: str) -> None:
        self.model_name = model_name
        self.models: dict[str, base.Classifier] = {"intermediate": model_factory()}
        self.level = "intermediate"

    def evidence(self, fused: FusedWindow, features: FeatureSet) -> Evidence:
        return Evidence(x_intermediate=concat({m: dict(f) for m, f in features.items()}))

    def decide(self, evidence: Evidence) -> dict[str, Decision]:
        model = self.models["intermediate"]
        proba = model.predict_proba_one(evidence.x_intermediate)
        label = max(sorted(proba), key=proba.__getitem__) if proba else None
        return {
            "intermediate": Decision(
                "intermediate", {k: float(v) for k, v in proba.items()}, label, self.model_name
            )
        }

    def published(self, decisions: Mapping[str, Decision]) -> Decision:
        return decisions[self.level]

    def learn(self, evidence: Evidence, y: str) -> None:
        self.models["intermediate"].learn_one(evidence.x_intermediate, y)
