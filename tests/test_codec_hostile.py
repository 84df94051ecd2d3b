"""Hostile payloads (issue 17, item 1): whatever arrives on a data, bundle or label topic, the
decoders return a Chunk, a Label or a bundle's parts, or raise PayloadError; the engine turns
it into a counted Rejection and carries on with every other device.

The two inputs that used to kill the gateway are pinned by hand (nesting beyond Python's
recursion limit, numbers beyond the float range in every numeric field); hypothesis then fuzzes
the decoders with seeded, bounded runs: arbitrary JSON trees, absurd numbers, wrong types,
headers claiming huge sizes, and random edits of valid frames and bundles.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from streamfuse import codec, topics
from streamfuse.config import DEFAULT_MODALITIES, EngineConfig, Limits
from streamfuse.engine import Engine
from streamfuse.errors import PayloadError
from streamfuse.types import Chunk, Label, Prediction, RawMessage, Rejection
from tests.streams import device_messages

MODS = DEFAULT_MODALITIES
HUGE_NUMBERS = ("1e400", "-1e400", "1" + "0" * 400, "-" + "9" * 330, "1e309", "2e308")


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def decode_any(kind: str, payload: bytes) -> object:
    """One payload through the decoder of one topic kind: a value or PayloadError, nothing
    else may escape."""
    try:
        if kind == "label":
            out: object = codec.decode_label("dev1", payload)
            assert isinstance(out, Label)
        elif kind == "bundle":
            out = codec.decode_bundle("dev1", payload, MODS)
            assert isinstance(out, codec.BundleParts)
            assert all(isinstance(e, PayloadError) for e in out.rejected)
        else:
            out = codec.decode_chunk("dev1", kind, payload, MODS)
            assert isinstance(out, Chunk) and np.isfinite(out.data).all()
        return out
    except PayloadError as exc:
        assert exc.reason and len(str(exc)) < 1000  # says why, briefly
        return exc


# ------------------------------------------------------------------ the two critical inputs


@pytest.mark.parametrize("depth", [1023, 1024, 1500, 100_000])
def test_deep_nesting_is_a_rejection(depth: int) -> None:
    deep = nested(depth)
    for kind, payload in [
        ("label", deep),
        ("label", '{"t_start": 0, "t_end": 1, "value": ' + deep + "}"),
        ("label", '{"t_start": ' + deep + ', "t_end": 1, "value": "x"}'),
        ("ecg", '{"seq": 1, "t0": 0, "fs": 250, "data": ' + deep + "}"),
        ("ecg", '{"seq": 1, "t0": 0, "fs": 250, "data": [' + deep + "]}"),
        ("ecg", '{"seq": 1, "t0": 0, "fs": 250, "data": [[' + deep + "]]}"),
        ("ecg", '{"seq": ' + deep + ', "t0": 0, "fs": 250, "data": [1]}'),
        ("ecg", '{"modality": ' + deep + ', "seq": 1, "t0": 0, "fs": 250, "data": [1]}'),
        ("ecg", '{"seq": 1, "t0": ' + deep + ', "fs": 250, "data": [1]}'),
        ("ecg", '{"a": ' * depth + "1" + "}" * depth),
    ]:
        if kind == "label" and len(payload) > codec.MAX_LABEL_BYTES:
            payload = payload[: codec.MAX_LABEL_BYTES]  # what fits under the label size limit
        got = decode_any(kind, payload.encode())
        assert isinstance(got, PayloadError), (kind, payload[:60])


@pytest.mark.parametrize("big", HUGE_NUMBERS)
def test_numbers_beyond_the_float_range_are_rejections(big: str) -> None:
    payloads = [
        ("ecg", '{"seq": 1, "t0": BIG, "fs": 250, "data": [1]}'.replace("BIG", big)),
        ("ecg", '{"seq": 1, "t0": 0, "fs": BIG, "data": [1]}'.replace("BIG", big)),
        ("ecg", '{"seq": 1, "t0": 0, "fs": 250, "data": [BIG]}'.replace("BIG", big)),
        ("acc", '{"seq": 1, "t0": 0, "fs": 50, "data": [[1, BIG, 2]]}'.replace("BIG", big)),
        ("ecg", '{"seq": BIG, "t0": 0, "fs": 250, "data": [1]}'.replace("BIG", big)),
        ("label", '{"t_start": BIG, "t_end": 1, "value": "x"}'.replace("BIG", big)),
        ("label", '{"t_start": 0, "t_end": BIG, "value": "x"}'.replace("BIG", big)),
    ]
    for kind, payload in payloads:
        assert isinstance(decode_any(kind, payload.encode()), PayloadError), payload


def test_a_sample_beyond_float32_is_refused_as_nonfinite() -> None:
    got = decode_any("ecg", b'{"seq": 1, "t0": 0, "fs": 250, "data": [1e300, 2]}')
    assert isinstance(got, PayloadError) and got.reason == "nonfinite"


def test_error_messages_quote_hostile_values_briefly() -> None:
    long = "x" * 100_000
    got = decode_any("label", b'{"t_start": 0, "t_end": 1, "value": [[[[1]]]]}')
    assert isinstance(got, PayloadError) and "list of 1 items" in str(got)
    got = decode_any("ecg", ('{"seq": "' + long + '", "t0": 0, "fs": 250, "data": [1]}').encode())
    assert isinstance(got, PayloadError) and got.reason == "bad_field" and len(str(got)) < 300


def test_the_engine_counts_them_and_other_devices_keep_predicting() -> None:
    """The crash reproducer of the issue, mixed into an honest device's stream."""
    cfg = EngineConfig(classes=("calm", "busy"))
    engine = Engine(cfg, prefix="sf")
    honest = device_messages("honest", 20.0, prefix="sf")
    hostile = [
        RawMessage(topics.label_topic("sf", "evil"), nested(1500).encode()),
        RawMessage(topics.label_topic("sf", "evil"), b'{"t_start": 1e400, "t_end": 1, "value": 1}'),
        RawMessage(
            topics.data_topic("sf", "evil", "ecg"),
            ('{"seq": 1, "t0": 0, "fs": 250, "data": ' + nested(5000) + "}").encode(),
        ),
        RawMessage(
            topics.data_topic("sf", "evil", "ecg"),
            b'{"seq": 1, "t0": ' + b"9" * 400 + b', "fs": 250, "data": [1]}',
        ),
    ]
    rejected = 0
    predicted_after = 0
    for i, (msg, now) in enumerate(honest):
        for out in engine.push(msg, now):
            if isinstance(out, Rejection):
                rejected += 1
                assert out.device == "evil" and out.reason == "bad_json"
            elif isinstance(out, Prediction) and i > len(honest) // 2:
                predicted_after += 1
        if i == len(honest) // 2:
            for h in hostile:
                for out in engine.push(h, now):
                    assert isinstance(out, Rejection)
                    rejected += 1
    assert rejected == len(hostile)
    assert engine.rejections["bad_json"] == len(hostile)
    assert predicted_after >= 5  # the honest device went on (10 s left, a window a second)


# -------------------------------------------------------------------------------- fuzzing

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_trees = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=5),
    max_leaves=40,
)
absurd_number_text = st.one_of(
    st.sampled_from(HUGE_NUMBERS + ("NaN", "Infinity", "-0", "1e-400", "0x10", "1_000")),
    st.integers(min_value=300, max_value=5000).map(lambda d: "9" * d),
    st.integers(min_value=-400, max_value=400).map(lambda e: f"1e{e}"),
)


@st.composite
def chunk_objects(draw: st.DrawFn) -> str:
    """A JSON chunk with each field a plausible value, a wrong type or an absurd number."""

    def field(plausible: st.SearchStrategy[str]) -> str:
        return draw(
            st.one_of(
                plausible,
                json_trees.map(json.dumps),
                absurd_number_text,
                st.integers(1, 3000).map(nested),
            )
        )

    parts = {
        "seq": field(st.integers(0, 2**64 + 5).map(str)),
        "t0": field(st.floats(-1e12, 1e12).map(repr)),
        "fs": field(st.sampled_from(["250", "0", "-1", "1e9", "250.0"])),
        "data": field(
            st.lists(st.floats(-1e6, 1e6).map(repr), min_size=0, max_size=8).map(
                lambda v: "[" + ",".join(v) + "]"
            )
        ),
    }
    keys = draw(st.lists(st.sampled_from(sorted(parts)), unique=True, max_size=4))
    extra = draw(st.sampled_from(["", '"modality": "ecg", ', '"modality": [[1]], ']))
    return "{" + extra + ", ".join(f'"{k}": {parts[k]}' for k in keys) + "}"


@st.composite
def label_objects(draw: st.DrawFn) -> str:
    def field(plausible: st.SearchStrategy[str]) -> str:
        return draw(st.one_of(plausible, json_trees.map(json.dumps), absurd_number_text))

    return (
        '{"t_start": ' + field(st.floats(-1e9, 1e9).map(repr))
        + ', "t_end": ' + field(st.floats(-1e9, 1e9).map(repr))
        + ', "value": ' + field(st.text(max_size=80).map(json.dumps)) + "}"
    )


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@seed(17)
@FUZZ
@given(chunk_objects(), st.sampled_from(["ecg", "acc", "eeg"]))
def test_fuzzed_json_chunks_decode_or_are_rejected(text: str, kind: str) -> None:
    decode_any(kind, text.encode())


@seed(17)
@FUZZ
@given(label_objects() | json_trees.map(json.dumps) | st.binary(max_size=200).map(
    lambda b: b.decode("latin-1")))
def test_fuzzed_labels_decode_or_are_rejected(text: str) -> None:
    decode_any("label", text.encode("utf-8", "surrogatepass"))


HEADER = struct.Struct("<2sBB12sHHIQdd")
absurd_floats = st.one_of(
    st.floats(),
    st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 1e11, 1e12, 2e4, 2.00001e4]),
)


@st.composite
def claimed_frames(draw: st.DrawFn) -> bytes:
    """A header claiming any size, rate and time, followed by up to 64 bytes of samples."""
    head = HEADER.pack(
        b"SF",
        draw(st.sampled_from([1, 1, 1, 0, 2, 255])),
        draw(st.sampled_from([0, 0, 1])),
        draw(st.sampled_from([b"ecg", b"acc", b"eeg", b"", b"\xff" * 12])),
        draw(st.sampled_from([1, 3, 8, 0, 65535])),
        draw(st.sampled_from([0, 0, 7])),
        draw(st.one_of(st.integers(0, 64), st.just(2**32 - 1), st.integers(0, 2**32 - 1))),
        draw(st.integers(0, 2**64 - 1)),
        draw(absurd_floats),
        draw(absurd_floats),
    )
    return head + draw(st.binary(max_size=64))


@seed(17)
@FUZZ
@given(st.lists(claimed_frames(), min_size=1, max_size=40), st.sampled_from(
    ["ecg", "acc", "eeg", "bundle"]))
def test_headers_claiming_anything_decode_or_are_rejected(frames: list[bytes], kind: str) -> None:
    payload = b"".join(frames) if kind == "bundle" else frames[0]
    decode_any(kind, payload)


def _valid_bundle() -> bytes:
    parts = [
        Chunk("dev1", m, 3, 100.0, MODS[m].fs, np.ones((n, MODS[m].channels), np.float32))
        for m, n in (("ecg", 25), ("eeg", 26), ("acc", 5))
    ]
    return codec.encode_bundle(parts)


@seed(17)
@FUZZ
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=8),
       st.integers(0, 2000))
def test_edited_bundles_decode_or_are_rejected(edits: list[tuple[int, int]], cut: int) -> None:
    raw = bytearray(_valid_bundle())
    for pos, byte in edits:
        raw[pos % len(raw)] = byte
    decode_any("bundle", bytes(raw[: max(1, len(raw) - cut % 200)]))


def test_decoders_reject_under_tight_limits_too() -> None:
    """The same hostile inputs under the smallest limits: still only PayloadError."""
    tiny = Limits(max_payload_bytes=64, max_samples=1, max_fs=1.0, min_fs=0.5, max_abs_t0=1.0)
    for payload in (nested(50).encode(), b'{"seq": 1, "t0": 1e400, "fs": 1, "data": [1]}'):
        with pytest.raises(PayloadError):
            codec.decode_chunk("dev1", "ecg", payload, MODS, tiny)
