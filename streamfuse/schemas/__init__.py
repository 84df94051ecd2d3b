"""JSON Schemas of what streamfuse publishes, shipped with the package (package data).

``prediction.schema.json`` describes the prediction topic's payload (docs/wire-format.md); any
JSON Schema 2020-12 validator can check a client's input against it::

    import json, jsonschema
    from streamfuse.schemas import prediction_schema
    jsonschema.validate(json.loads(payload), prediction_schema())
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any


def schema_text(name: str) -> str:
    """The text of the shipped schema ``name`` (e.g. ``"prediction"``)."""
    return resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")


def prediction_schema() -> dict[str, Any]:
    """The prediction payload's JSON Schema as a dict."""
    schema: dict[str, Any] = json.loads(schema_text("prediction"))
    return schema
