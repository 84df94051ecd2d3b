"""Decode one EEG chunk (26 samples x 8 channels, 100 ms at 256 Hz): our binary frame vs the JSON
form of the same chunk, in the same run; and one engine push per chunk (decode + buffer + clock +
window, a window closing every 10th EEG chunk) beside a decode-only baseline.

Run: ``/work/venv/bin/pytest bench/test_bench_codec.py -p no:cacheprovider``
"""

from __future__ import annotations

import numpy as np
import pytest

from streamfuse import codec
from streamfuse.config import DEFAULT_MODALITIES, EngineConfig
from streamfuse.engine import Engine
from streamfuse.kernels import warmup
from streamfuse.types import Chunk, RawMessage

RNG = np.random.default_rng(0)
CHUNK = Chunk("dev000", "eeg", 7, 1000.0, 256.0, RNG.standard_normal((26, 8)).astype(np.float32))
BINARY = codec.encode_chunk(CHUNK)
JSON = codec.encode_chunk_json(CHUNK)


def test_both_forms_decode_to_the_same_chunk() -> None:
    a = codec.decode_chunk("dev000", "eeg", BINARY, DEFAULT_MODALITIES)
    b = codec.decode_chunk("dev000", "eeg", JSON, DEFAULT_MODALITIES)
    assert (a.seq, a.t0, a.fs) == (b.seq, b.t0, b.fs) == (7, 1000.0, 256.0)
    np.testing.assert_array_equal(a.data, CHUNK.data)
    np.testing.assert_allclose(b.data, CHUNK.data, rtol=1e-6)


@pytest.mark.benchmark(group="codec decode, one 26x8 EEG chunk")
def test_bench_decode_binary(benchmark) -> None:
    benchmark.extra_info["bytes"] = len(BINARY)
    benchmark(codec.decode_chunk, "dev000", "eeg", BINARY, DEFAULT_MODALITIES)


@pytest.mark.benchmark(group="codec decode, one 26x8 EEG chunk")
def test_bench_decode_json_baseline(benchmark) -> None:
    benchmark.extra_info["bytes"] = len(JSON)
    benchmark(codec.decode_chunk, "dev000", "eeg", JSON, DEFAULT_MODALITIES)


def _stream(n_chunks: int) -> list[tuple[RawMessage, float]]:
    """EEG-only device, 100 ms chunks on a wall-like clock, as the gateway would see them."""
    out = []
    for k in range(n_chunks):
        t0 = 1000.0 + k * 0.1
        data = RNG.standard_normal((26 if k % 2 == 0 else 25, 8)).astype(np.float32)
        chunk = Chunk("dev000", "eeg", k, t0, 256.0, data)
        out.append((RawMessage("sfb/dev000/eeg", codec.encode_chunk(chunk)), t0 + 0.101))
    return out


STREAM = _stream(400)
CONFIG = EngineConfig(modalities={"eeg": DEFAULT_MODALITIES["eeg"]})


@pytest.mark.benchmark(group="engine push, 400 EEG chunks (40 s, ~38 windows)")
def test_bench_engine_push_per_chunk(benchmark) -> None:
    warmup()

    def run() -> int:
        engine = Engine(CONFIG, prefix="sfb")
        n = 0
        for msg, now in STREAM:
            n += len(engine.push(msg, now))
        return n

    predictions = benchmark(run)
    assert predictions >= 35
    benchmark.extra_info["chunks"] = len(STREAM)


@pytest.mark.benchmark(group="engine push, 400 EEG chunks (40 s, ~38 windows)")
def test_bench_decode_only_baseline(benchmark) -> None:
    def run() -> int:
        for msg, _ in STREAM:
            codec.decode_chunk("dev000", "eeg", msg.payload, CONFIG.modalities)
        return len(STREAM)

    benchmark(run)
    benchmark.extra_info["chunks"] = len(STREAM)


PERIOD = [
    Chunk("dev000", m, 7, 1000.0, spec.fs,
          RNG.standard_normal((n, spec.channels)).astype(np.float32))
    for (m, spec), n in zip(DEFAULT_MODALITIES.items(), (25, 26, 5), strict=True)
]
BUNDLE = codec.encode_bundle(PERIOD)


def test_a_bundle_decodes_the_same_both_ways() -> None:
    whole = codec.decode_bundle("dev000", BUNDLE, DEFAULT_MODALITIES)
    parts = codec._bundle_part_by_part(
        "dev000", BUNDLE, DEFAULT_MODALITIES, codec.DEFAULT_LIMITS, codec.MAX_BUNDLE_PARTS,
        float("nan"),
    )
    assert [c.modality for c in whole.chunks] == [c.modality for c in parts.chunks]
    for a, b in zip(whole.chunks, parts.chunks, strict=True):
        np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.benchmark(group="codec decode, one bundle (ECG 25 + EEG 26x8 + ACC 5x3)")
def test_bench_decode_bundle_at_once(benchmark) -> None:
    warmup()
    benchmark.extra_info["bytes"] = len(BUNDLE)
    benchmark(codec.decode_bundle, "dev000", BUNDLE, DEFAULT_MODALITIES)


@pytest.mark.benchmark(group="codec decode, one bundle (ECG 25 + EEG 26x8 + ACC 5x3)")
def test_bench_decode_bundle_part_by_part_baseline(benchmark) -> None:
    benchmark(
        codec._bundle_part_by_part, "dev000", BUNDLE, DEFAULT_MODALITIES, codec.DEFAULT_LIMITS,
        codec.MAX_BUNDLE_PARTS, float("nan"),
    )
