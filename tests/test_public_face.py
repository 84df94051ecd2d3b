"""The package's public face: what ``import streamfuse`` offers and what it must not load,
and in-process input checked like wire input (issue 14)."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

import streamfuse
from streamfuse import (
    Chunk,
    Engine,
    EngineConfig,
    Label,
    ModalitySpec,
    Prediction,
    RawMessage,
    Rejection,
    intake,
)

HEAVY = ("aiomqtt", "paho", "amqtt", "matplotlib", "rich", "prometheus_client")


def test_import_and_an_engine_load_no_network_plotting_or_terminal_library() -> None:
    """Done-when 5 of issue 14, in a fresh interpreter, with chunks, a label and a flush."""
    code = (
        "import sys, numpy as np, streamfuse\n"
        "e = streamfuse.Engine()\n"
        "for i in range(30):\n"
        "    x = np.zeros((25, 1), np.float32)\n"
        "    e.push(streamfuse.Chunk('d', 'ecg', i, i * 0.1, 250.0, x), i * 0.1 + 0.1)\n"
        "e.push(streamfuse.Label('d', 0.0, 3.0, 'a'), 3.1)\n"
        "e.flush()\n"
        f"heavy = {set(HEAVY)!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_public_names_are_the_core_classes() -> None:
    from streamfuse import config, engine, types

    assert streamfuse.Engine is engine.Engine
    assert streamfuse.EngineConfig is config.EngineConfig
    assert streamfuse.ModalitySpec is config.ModalitySpec
    for name in ("Chunk", "Label", "Prediction", "RawMessage", "Rejection"):
        assert getattr(streamfuse, name) is getattr(types, name)
    assert set(streamfuse.__all__) <= set(dir(streamfuse))
    assert set(streamfuse.__all__) == {*streamfuse._HOME, "__version__"}
    with pytest.raises(AttributeError, match="no attribute 'Engin'"):
        streamfuse.Engin  # noqa: B018 - the lookup is the test


def test_import_streamfuse_alone_loads_neither_numpy_nor_the_engine() -> None:
    """The shells' subprocesses (the embedded broker, the bench's roles) import the package.
    Eagerly loaded names made the amqtt broker child take ~9 s to start on a busy machine, and
    its port outlive its pid in tests/test_broker.py's SIGKILL test."""
    code = (
        "import sys, streamfuse\n"
        "print(sorted({'numpy', 'streamfuse.engine'} & sys.modules.keys()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


def _acc_engine() -> Engine:
    return Engine(EngineConfig(modalities={"acc": ModalitySpec("acc", ("x", "y", "z"), 50.0)}))


def _chunk(data: object, *, fs: float = 50.0, t0: float = 0.0, modality: str = "acc") -> Chunk:
    return Chunk("wrist", modality, 7, t0, fs, data)  # type: ignore[arg-type]


GOOD = np.zeros((5, 3), np.float32)


@pytest.mark.parametrize(
    ("chunk", "reason", "hint"),
    [
        (_chunk(np.zeros(15, np.float32)), "bad_shape", "reshape(-1, 3)"),
        (_chunk(np.zeros((5, 3, 1), np.float32)), "bad_shape", "[n, channels]"),
        (_chunk([[0.0, 0.0, 0.0]]), "bad_shape", "not an array"),
        (_chunk(np.zeros((5, 3))), "bad_dtype", "astype(np.float32)"),
        (_chunk(np.zeros((5, 2), np.float32)), "channel_mismatch", "has 3 (x, y, z)"),
        (_chunk(np.zeros((0, 3), np.float32)), "empty", "at least one row"),
        (_chunk(np.zeros((70_000, 3), np.float32)), "too_many_samples", "smaller chunks"),
        (_chunk(GOOD, fs=0.0), "bad_rate", "outside"),
        (_chunk(GOOD, fs=-50.0), "bad_rate", "outside"),
        (_chunk(GOOD, fs=float("nan")), "bad_rate", "outside"),
        (_chunk(GOOD, fs=1e9), "bad_rate", "outside"),
        (_chunk(GOOD, fs=100.0), "rate_mismatch", "configured at 50 Hz"),
        (_chunk(GOOD, t0=float("inf")), "bad_t0", "finite time"),
        (_chunk(np.full((5, 3), np.nan, np.float32)), "nonfinite", "15 of 15"),
        (_chunk(np.array([[0, 0, np.inf]] * 5, np.float32)), "nonfinite", "5 of 15"),
        (_chunk(GOOD, modality="ecg"), "unknown_modality", "'ecg' is not configured"),
        (Chunk("wrist", "acc", 7.5, 0.0, 50.0, GOOD), "bad_field", "an int"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_in_process_chunk_is_a_rejection_that_says_how_to_fix_it(
    chunk: Chunk, reason: str, hint: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = _acc_engine()
    with caplog.at_level(logging.WARNING, "streamfuse.engine"):
        out = engine.push(chunk, now=1.0)
    assert [type(o) for o in out] == [Rejection]
    rejection = out[0]
    assert isinstance(rejection, Rejection)
    assert (rejection.reason, rejection.device, rejection.modality, rejection.seq) == (
        reason, "wrist", chunk.modality, chunk.seq,
    )
    assert hint in rejection.message
    assert engine.rejections == {reason: 1}
    assert engine.sessions == {}  # refused input makes no device state
    assert reason in caplog.text


@pytest.mark.parametrize("device", ["", "a/b", "+", "#", "-x", "x" * 65, None, 3])
def test_an_in_process_item_of_an_invalid_device_id_is_refused(device: object) -> None:
    engine = _acc_engine()
    for item in (
        Chunk(device, "acc", 1, 0.0, 50.0, GOOD),  # type: ignore[arg-type]
        Label(device, 0.0, 1.0, "a"),  # type: ignore[arg-type]
    ):
        out = engine.push(item, now=1.0)
        assert [o.reason for o in out if isinstance(o, Rejection)] == ["bad_device"]
    assert engine.sessions == {}


def test_rates_within_the_tolerance_pass_and_beyond_it_are_refused() -> None:
    engine = _acc_engine()
    edge = 50.0 * (1 + intake.RATE_TOLERANCE)
    assert engine.push(_chunk(GOOD, fs=edge * 0.999), now=1.0) == []
    out = engine.push(_chunk(GOOD, fs=edge * 1.001), now=1.1)
    assert [o.reason for o in out if isinstance(o, Rejection)] == ["rate_mismatch"]


def test_a_wire_chunk_at_another_rate_is_refused_and_counted() -> None:
    """Issue 17 item 12 / issue 20: the decoder accepted any rate within the limits."""
    from streamfuse import codec

    engine = Engine()
    x = np.zeros((32, 8), np.float32)
    wrong = codec.encode_chunk(Chunk("d1", "eeg", 1, 0.0, 250.0, x))  # at ECG's rate
    right = codec.encode_chunk(Chunk("d1", "eeg", 2, 0.0, 256.0, x))
    out = engine.push(RawMessage("streamfuse/d1/eeg", wrong), now=1.0)
    assert [(o.reason, o.seq) for o in out if isinstance(o, Rejection)] == [
        ("rate_mismatch", 1)
    ]
    assert engine.push(RawMessage("streamfuse/d1/eeg", right), now=1.1) == []
    assert engine.rejections == {"rate_mismatch": 1}
    assert engine.counters["chunks"] == 1


def test_a_bundle_part_at_another_rate_is_refused_and_the_others_go_through() -> None:
    from streamfuse import codec

    engine = Engine()
    bundle = codec.encode_bundle([
        Chunk("d1", "ecg", 1, 0.0, 250.0, np.zeros((25, 1), np.float32)),
        Chunk("d1", "acc", 1, 0.0, 100.0, np.zeros((5, 3), np.float32)),
    ])
    out = engine.push(RawMessage("streamfuse/d1/bundle", bundle), now=1.0)
    assert [(o.reason, o.modality) for o in out if isinstance(o, Rejection)] == [
        ("rate_mismatch", "acc")
    ]
    assert engine.counters["chunks"] == 1


@pytest.mark.parametrize(
    ("label", "hint"),
    [
        (Label("wrist", 2.0, 1.0, "a"), "t_start < t_end"),
        (Label("wrist", float("nan"), 1.0, "a"), "t_start < t_end"),
        (Label("wrist", 0.0, 1.0, ""), "short string"),
        (Label("wrist", 0.0, 1.0, 3), "short string"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_in_process_label_is_a_rejection(label: Label, hint: str) -> None:
    out = _acc_engine().push(label, now=1.0)
    assert len(out) == 1 and isinstance(out[0], Rejection)
    assert out[0].reason == "bad_field" and hint in out[0].message


def test_push_refuses_what_is_not_an_item_with_how_to_call_it() -> None:
    with pytest.raises(TypeError, match=r"push\(item, now\)"):
        _acc_engine().push((_chunk(GOOD), 1.0), now=1.0)  # type: ignore[arg-type]


def test_good_chunks_give_the_same_predictions_as_before_the_checks() -> None:
    """The checks only refuse: a clean stream's outputs equal those of the wire path."""
    from streamfuse import codec

    rng = np.random.default_rng(4)
    items, wire = [], []
    for seq in range(80):
        x = rng.standard_normal((5, 3)).astype(np.float32)
        t0 = seq * 0.1
        items.append((Chunk("wrist", "acc", seq, t0, 50.0, x), t0 + 0.1))
        frame = codec.encode_chunk(Chunk("wrist", "acc", seq, t0, 50.0, x))
        wire.append((RawMessage("streamfuse/wrist/acc", frame), t0 + 0.1))
    a = streamfuse.run(items, _acc_engine().config)
    b = streamfuse.run(wire, _acc_engine().config)
    assert a.rejections == [] and b.rejections == []
    assert len(a.predictions) == len(b.predictions) > 0
    assert [p.proba for p in a.predictions] == [p.proba for p in b.predictions]
    assert all(isinstance(p, Prediction) for p in a.predictions)


def test_run_continues_an_engine_or_makes_one_but_not_both() -> None:
    engine = _acc_engine()
    first = streamfuse.run([(_chunk(GOOD), 0.1)], engine=engine)
    assert first.engine is engine and engine.counters["chunks"] == 1
    with pytest.raises(ValueError, match="not both"):
        streamfuse.run([], engine.config, engine=engine)
