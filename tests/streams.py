"""Small, seeded, hand-made streams for engine tests (the simulators are tested on their own)."""

from __future__ import annotations

import numpy as np

from streamfuse import codec, topics
from streamfuse.config import DEFAULT_MODALITIES
from streamfuse.types import Chunk, Label, RawMessage

STATES = ("calm", "busy")


def state_at(t: float, period: float = 10.0) -> str:
    return STATES[int(t // period) % 2]


def device_messages(
    device: str,
    seconds: float,
    *,
    seed: int = 0,
    chunk_s: float = 0.1,
    offset: float = 1000.0,
    delay: float = 0.003,
    prefix: str = topics.DEFAULT_PREFIX,
) -> list[tuple[RawMessage, float]]:
    """Encoded messages of one device with their gateway arrival times.

    Each modality carries a sine whose frequency and amplitude depend on a two-state label
    that flips every 10 s; one label per second is published after the second ends.
    """
    rng = np.random.default_rng(seed)
    out: list[tuple[RawMessage, float]] = []
    for spec in DEFAULT_MODALITIES.values():
        n = int(round(chunk_s * spec.fs))
        for seq in range(int(seconds / chunk_s)):
            t0 = seq * n / spec.fs
            t = t0 + np.arange(n) / spec.fs
            busy = np.array([state_at(x) == "busy" for x in t])
            f = np.where(busy, 7.0, 3.0)
            amp = np.where(busy, 2.0, 1.0)
            base = amp * np.sin(2 * np.pi * f * t)
            data = base[:, None] + 0.3 * rng.standard_normal((n, spec.channels))
            chunk = Chunk(device, spec.name, seq, t0, spec.fs, data.astype(np.float32))
            arrival = offset + t0 + n / spec.fs + delay + 0.002 * rng.random()
            out.append(
                (
                    RawMessage(
                        topics.data_topic(prefix, device, spec.name), codec.encode_chunk(chunk)
                    ),
                    arrival,
                )
            )
    for s in range(int(seconds)):
        label = Label(device, float(s), float(s + 1), state_at(s + 0.5))
        out.append(
            (
                RawMessage(topics.label_topic(prefix, device), codec.encode_label(label)),
                offset + s + 1 + delay,
            )
        )
    out.sort(key=lambda m: m[1])
    return out


def merge(*streams: list[tuple[RawMessage, float]]) -> list[tuple[RawMessage, float]]:
    return sorted((m for s in streams for m in s), key=lambda m: m[1])
