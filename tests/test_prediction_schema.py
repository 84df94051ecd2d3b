"""The shipped prediction schema matches what the engine publishes, and is strict enough to
catch a payload that drifts from it."""

from __future__ import annotations

import copy

import jsonschema
import numpy as np
import orjson
import pytest

from streamfuse import Chunk, Engine, EngineConfig, Label, ModalitySpec, codec
from streamfuse.schemas import prediction_schema
from tests.prediction_schema import problems


def _run() -> list[dict]:
    """Two devices, the second with a clock 1000 s ahead of the gateway; labels for both."""
    acc = ModalitySpec("acc", ("x", "y", "z"), 50.0, "g")
    engine = Engine(EngineConfig(modalities={"acc": acc}))
    rng = np.random.default_rng(3)
    docs = []
    for seq in range(400):
        now = seq * 0.1 + 0.1
        walking = (seq // 100) % 2 == 1
        for device, skew in (("a", 0.0), ("b-2", 1000.0)):
            t0 = seq * 0.1 + skew
            x = rng.normal(0.0, 1.0 if walking else 0.1, (5, 3)).astype(np.float32)
            outs = engine.push(Chunk(device, "acc", seq, t0, 50.0, x), now=now)
            if seq % 100 == 99:
                value = "walk" if walking else "still"
                outs += engine.push(Label(device, t0 - 9.9, t0 + 0.1, value), now=now)
            docs += [orjson.loads(codec.encode_prediction(p)) for p in outs if hasattr(p, "proba")]
    docs += [orjson.loads(codec.encode_prediction(p)) for p in engine.flush()]
    return docs


DOCS = _run()


def test_the_schema_is_a_valid_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(prediction_schema())


def test_every_prediction_of_an_engine_run_validates() -> None:
    assert len(DOCS) > 50
    bad = [(d["device"], d["index"], problems(d)) for d in DOCS if problems(d)]
    assert bad == []
    # the run covers both the null predictions before the first label and real ones
    assert any(d["label"] is None for d in DOCS) and any(d["label"] for d in DOCS)
    assert any(d["closed_at"] is None for d in DOCS)  # the flushed tail


def test_device_times_map_windows_back_to_each_device_clock() -> None:
    for d in DOCS:
        skew = 1000.0 if d["device"] == "b-2" else 0.0
        # every chunk arrives exactly as its last sample is taken: the clock model's offset
        # is the skew, so device time = gateway time + skew
        assert d["device_t_start"] - d["t_start"] == pytest.approx(skew, abs=1e-3)
        assert d["device_t_end"] - d["device_t_start"] == pytest.approx(
            d["t_end"] - d["t_start"], abs=1e-6
        )


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("levels"),
        lambda d: d.pop("device_t_start"),
        lambda d: d.__setitem__("index", 1.5),
        lambda d: d.__setitem__("label", 3),
        lambda d: d.__setitem__("proba", {"rest": 1.5}),
        lambda d: d.__setitem__("metrics", {"accuracy": 0.5}),
        lambda d: d.__setitem__("unexpected", 1),
        lambda d: d.__setitem__("device", "bad device"),
    ],
)
def test_a_drifted_payload_is_caught(mutate) -> None:
    doc = copy.deepcopy(next(d for d in DOCS if d["label"] is not None))
    mutate(doc)
    assert problems(doc)


def test_the_optional_fields_of_other_levels_validate() -> None:
    doc = copy.deepcopy(DOCS[-1])
    doc["prediction_set"] = ["still", "walk"]
    doc["explanation"] = {"acc": 1.0}
    assert problems(doc) == []
