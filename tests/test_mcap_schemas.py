"""Sessions open in MCAP viewers: predictions and labels are JSON channels with a jsonschema
schema (what Foxglove decodes and plots); data channels keep the wire bytes; replay reads all
of it back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
from mcap.reader import make_reader

from streamfuse import Chunk, Engine, EngineConfig, Label, ModalitySpec, codec, topics
from streamfuse.replay.mcap_io import SessionWriter, read_session


def test_prediction_and_label_channels_carry_their_json_schema(tmp_path: Path) -> None:
    acc = ModalitySpec("acc", ("x", "y", "z"), 50.0)
    engine = Engine(EngineConfig(modalities={"acc": acc}))
    rng = np.random.default_rng(1)
    path = tmp_path / "s.mcap"
    written = []
    with SessionWriter(path) as writer:
        for seq in range(60):
            t0 = seq * 0.1
            chunk = Chunk("d1", "acc", seq, t0, 50.0, rng.standard_normal((5, 3)).astype("f4"))
            msgs = [(topics.data_topic("sf", "d1", "acc"), codec.encode_chunk(chunk))]
            if seq == 40:
                msgs.append(("sf/d1/label", codec.encode_label(Label("d1", 0.0, 4.0, "rest"))))
            for out in engine.push(chunk, now=t0 + 0.1):
                msgs.append(("sf/d1/prediction", codec.encode_prediction(out)))
            for topic, payload in msgs:
                writer.write(topic, payload, 1000.0 + t0)
                written.append((topic, payload))
    with path.open("rb") as fh:
        reader = make_reader(fh)
        summary = reader.get_summary()
        assert summary is not None
        channels = {c.topic: c for c in summary.channels.values()}
        schemas = summary.schemas
        assert channels["sf/d1/acc"].message_encoding == "streamfuse"
        assert channels["sf/d1/acc"].schema_id == 0
        for topic, name in (("sf/d1/prediction", "streamfuse.prediction"),
                            ("sf/d1/label", "streamfuse.label")):  # fmt: skip
            channel = channels[topic]
            assert channel.message_encoding == "json"
            schema = schemas[channel.schema_id]
            assert (schema.name, schema.encoding) == (name, "jsonschema")
            validator = jsonschema.Draft202012Validator(json.loads(schema.data))
            fh.seek(0)
            for _, _, message in make_reader(fh).iter_messages(topics=[topic]):
                validator.validate(json.loads(message.data))
    # replay reads every message back byte for byte, in order
    assert [(m.message.topic, m.message.payload) for m in read_session(path)] == written
    assert any(t.endswith("/prediction") for t, _ in written)
