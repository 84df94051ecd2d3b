"""Checks published predictions against the JSON Schema the package ships."""

from __future__ import annotations

from typing import Any

import jsonschema

from streamfuse.gateway.monitor import Scoreboard
from streamfuse.schemas import prediction_schema

VALIDATOR = jsonschema.Draft202012Validator(prediction_schema())


def problems(doc: Any) -> list[str]:
    """Every way ``doc`` breaks the prediction schema (empty: valid)."""
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in VALIDATOR.iter_errors(doc)]


class ValidatingBoard(Scoreboard):
    """A scoreboard that also validates every prediction it is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.validated = 0
        self.invalid: list[tuple[str, list[str]]] = []

    def on_prediction(self, device: str, msg: dict[str, Any], received: float) -> None:
        self.validated += 1
        found = problems(msg)
        if found and len(self.invalid) < 20:
            self.invalid.append((device, found))
        super().on_prediction(device, msg, received)
