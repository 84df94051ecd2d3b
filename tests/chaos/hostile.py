"""A seeded generator of hostile messages, by the categories of issue 17.

Each message is ``(category, RawMessage)``; devices are junk ids that honest devices never
use (``x-<n>``), so what the honest devices get is unaffected by design and anything that
reaches them is a leak. Categories:

- ``nested``: JSON nested 1,500 deep on data and label topics (RecursionError before);
- ``huge``: numbers beyond the float range in ``t0``, ``fs``, ``data`` and label times
  (OverflowError before);
- ``types``: wrong types in every field (strings for numbers, objects for arrays, ...);
- ``oversize``: a payload just over ``max_payload_bytes``;
- ``junk_ids``: valid chunks from ever new device ids (the device cap), some claiming
  ``fs = 20000`` (memory amplification before);
- ``labels``: bogus labels (reversed or absurd ranges, non-text values, unknown keys);
- ``bytes``: random bytes and truncated binary frames.
"""

from __future__ import annotations

import json

import numpy as np

from streamfuse import codec, topics
from streamfuse.types import Chunk, RawMessage

CATEGORIES = ("nested", "huge", "types", "oversize", "junk_ids", "labels", "bytes")
MODALITIES = ("ecg", "eeg", "acc")


def hostile(n: int, seed: int, prefix: str, max_payload_bytes: int) -> list[tuple[str, RawMessage]]:
    """``n`` hostile messages under ``prefix``, the same for the same ``seed``."""
    rng = np.random.default_rng(seed)
    frame = codec.encode_chunk(Chunk("x", "acc", 0, 0.0, 50.0, np.zeros((5, 3), np.float32)))
    out: list[tuple[str, RawMessage]] = []
    for _ in range(n):
        category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        device = f"x-{int(rng.integers(1_000_000))}"
        modality = MODALITIES[int(rng.integers(3))]
        data_topic = topics.data_topic(prefix, device, modality)
        label_topic = topics.label_topic(prefix, device)
        topic = data_topic
        if category == "nested":
            depth = int(rng.integers(1_000, 3_000))
            payload = ("[" * depth + "]" * depth).encode()
            if rng.random() < 0.5:
                topic = label_topic
                payload = ('{"t_start": ' + "[" * depth + "]" * depth + "}").encode()
        elif category == "huge":
            big = str(rng.choice(["1e400", "-1e400", "1" + "0" * 400, "2e308"]))
            field = str(rng.choice(["t0", "fs", "data", "label"]))
            t0, fs, x = ("0.0", "50.0", "0.0")
            if field == "label":
                topic = label_topic
                payload = f'{{"t_start": 0, "t_end": {big}, "value": "calm"}}'.encode()
            else:
                t0, fs, x = (big if field == f else v for f, v in
                             (("t0", t0), ("fs", fs), ("data", x)))
                payload = (f'{{"seq": 1, "t0": {t0}, "fs": {fs}, '
                           f'"data": [[{x}, 0.0, 0.0]]}}').encode()
        elif category == "types":
            payload = _pick_types(rng).encode()
        elif category == "oversize":
            payload = b"{" + b" " * max_payload_bytes + b"}"
        elif category == "junk_ids":
            fs = 20000.0 if rng.random() < 0.3 else 50.0
            samples = 4
            payload = codec.encode_chunk(Chunk(
                device, "acc", int(rng.integers(100)), float(rng.uniform(0, 100)), fs,
                rng.standard_normal((samples, 3)).astype(np.float32)))
            topic = topics.data_topic(prefix, device, "acc")
        elif category == "labels":
            topic = label_topic
            payload = _pick_label(rng).encode()
        else:
            if rng.random() < 0.5:
                payload = rng.bytes(int(rng.integers(0, 300)))
            else:
                payload = frame[: int(rng.integers(1, len(frame)))]
        out.append((category, RawMessage(topic, bytes(payload))))
    return out


def _pick_types(rng: np.random.Generator) -> str:
    choices = [
        {"seq": "one", "t0": 0, "fs": 50, "data": [[0, 0, 0]]},
        {"seq": 1, "t0": [0], "fs": 50, "data": [[0, 0, 0]]},
        {"seq": 1, "t0": 0, "fs": {"a": 1}, "data": [[0, 0, 0]]},
        {"seq": 1, "t0": 0, "fs": 50, "data": "abc"},
        {"seq": 1, "t0": 0, "fs": 50, "data": [[None, True, "x"]]},
        [1, 2, 3], "text", None, 42,
    ]
    return json.dumps(choices[int(rng.integers(len(choices)))])


def _pick_label(rng: np.random.Generator) -> str:
    choices = [
        {"t_start": 10, "t_end": 5, "value": "calm"},
        {"t_start": -1e300, "t_end": 1e300, "value": "calm"},
        {"t_start": 0, "t_end": 1, "value": {"nested": ["x"]}},
        {"t_start": 0, "t_end": 1, "value": None},
        {"t_start": "0", "t_end": "1", "value": "busy"},
        {"t_start": 0, "t_end": 1, "value": "calm", "extra": [1] * 50},
        {"value": "calm"},
        {"t_start": float("nan"), "t_end": 1, "value": "calm"},
    ]
    return json.dumps(choices[int(rng.integers(len(choices)))], allow_nan=True)
