"""Wire format: round trips, the documented example, and every rejection reason."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamfuse import codec
from streamfuse.config import DEFAULT_MODALITIES, Limits
from streamfuse.errors import PayloadError
from streamfuse.types import Chunk, Label

MODS = DEFAULT_MODALITIES


def chunk(modality: str = "eeg", n: int = 26, seq: int = 3) -> Chunk:
    ch = MODS[modality].channels
    data = np.arange(n * ch, dtype=np.float32).reshape(n, ch) / 7
    return Chunk("dev1", modality, seq, 1234.5, MODS[modality].fs, data)


def reason(payload: bytes, modality: str = "eeg", limits: Limits | None = None) -> str:
    with pytest.raises(PayloadError) as info:
        codec.decode_chunk("dev1", modality, payload, MODS, limits or Limits())
    assert str(info.value)  # says something
    return info.value.reason


@pytest.mark.parametrize("modality", sorted(MODS))
def test_binary_round_trip(modality: str) -> None:
    c = chunk(modality)
    d = codec.decode_chunk("dev1", modality, codec.encode_chunk(c), MODS)
    assert (d.seq, d.t0, d.fs, d.modality, d.device) == (c.seq, c.t0, c.fs, modality, "dev1")
    assert d.data.dtype == np.float32 and d.data.flags.c_contiguous
    np.testing.assert_array_equal(d.data, c.data)


def test_json_round_trip_and_flat_list() -> None:
    c = chunk("acc")
    d = codec.decode_chunk("dev1", "acc", codec.encode_chunk_json(c), MODS)
    np.testing.assert_array_equal(d.data, c.data)
    flat = json.dumps({"seq": 7, "t0": 12.5, "fs": 250, "data": [0.1, 0.2, 0.3]}).encode()
    e = codec.decode_chunk("dev1", "ecg", flat, MODS)
    assert e.data.shape == (3, 1) and e.seq == 7 and e.fs == 250.0


def test_documented_example_bytes() -> None:
    hexdump = (
        "53 46 01 00 65 63 67 00 00 00 00 00 00 00 00 00 01 00 00 00 03 00 00 00 07 00 00 00"
        " 00 00 00 00 00 00 00 00 00 00 29 40 00 00 00 00 00 40 6f 40 cd cc cc 3d cd cc 4c 3e"
        " 9a 99 99 3e"
    )
    d = codec.decode_chunk("dev1", "ecg", bytes.fromhex(hexdump), MODS)
    assert (d.seq, d.t0, d.fs) == (7, 12.5, 250.0)
    np.testing.assert_allclose(d.data[:, 0], [0.1, 0.2, 0.3], rtol=1e-6)


def test_rejections_name_their_reason() -> None:
    good = codec.encode_chunk(chunk())
    assert reason(b"") == "empty"
    assert reason(b"\x00\x01garbage") == "unknown_format"
    assert reason(good[:30]) == "truncated"
    assert reason(good[:-4]) == "truncated"
    assert reason(good + b"\0\0\0\0") == "trailing_bytes"
    assert reason(good[:2] + b"\x02" + good[3:]) == "bad_version"
    assert reason(good, modality="acc") == "modality_mismatch"
    assert reason(good, modality="xyz") == "unknown_modality"
    nan = chunk()
    nan.data[3, 2] = np.nan
    assert reason(codec.encode_chunk(nan)) == "nonfinite"
    wrong_ch = Chunk("dev1", "eeg", 1, 0.0, 256.0, np.zeros((4, 3), np.float32))
    assert reason(codec.encode_chunk(wrong_ch)) == "channel_mismatch"
    for fs in (float("nan"), float("inf"), 0.0, -5.0, 1e9):
        absurd = Chunk("dev1", "eeg", 1, 0.0, fs, np.zeros((4, 8), np.float32))
        assert reason(codec.encode_chunk(absurd)) == "bad_rate"
    bad_t0 = Chunk("dev1", "eeg", 1, float("nan"), 256.0, np.zeros((4, 8), np.float32))
    assert reason(codec.encode_chunk(bad_t0)) == "bad_t0"
    assert reason(good, limits=Limits(max_payload_bytes=100)) == "oversize"
    assert reason(good, limits=Limits(max_samples=10)) == "too_many_samples"
    assert reason(b"{not json") == "bad_json"
    assert reason(b'{"seq": 1, "t0": 0, "fs": 256}') == "bad_field"
    assert reason(b'{"seq": -1, "t0": 0, "fs": 256, "data": [[1,2,3,4,5,6,7,8]]}') == "bad_field"
    assert reason(b'{"seq": 1, "t0": "x", "fs": 256, "data": [[1,2,3,4,5,6,7,8]]}') == "bad_field"
    assert reason(b'{"seq": 1, "t0": 0, "fs": 256, "data": [[1,2,3,4,5,6,7,"a"]]}') == "bad_field"
    assert reason(b'{"seq": 1, "t0": 0, "fs": 256, "data": [[1,2,3,4,5,6,7,8], [1]]}') == (
        "bad_field"
    )


def test_oversize_is_refused_before_parsing() -> None:
    # a header that promises 2^32-1 samples must not make the decoder allocate them
    head = struct.pack("<2sBB12sHHIQdd", b"SF", 1, 0, b"eeg", 8, 0, 2**32 - 1, 1, 0.0, 256.0)
    assert reason(head) == "too_many_samples"


def test_error_message_names_device_modality_seq() -> None:
    nan = chunk(seq=41)
    nan.data[0, 0] = np.inf
    with pytest.raises(PayloadError, match=r"device=dev1, modality=eeg, seq=41"):
        codec.decode_chunk("dev1", "eeg", codec.encode_chunk(nan), MODS)


def test_labels() -> None:
    lab = Label("dev1", 10.0, 11.0, "rest")
    assert codec.decode_label("dev1", codec.encode_label(lab)) == lab
    for bad in (b"[]", b'{"t_start": 2, "t_end": 1, "value": "x"}', b'{"t_start": 1}', b"\xff"):
        with pytest.raises(PayloadError):
            codec.decode_label("dev1", bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_escape_as_other_errors(payload: bytes) -> None:
    try:
        codec.decode_chunk("dev1", "acc", payload, MODS)
    except PayloadError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 47 + 4 * 3 * 5), st.integers(0, 255))
def test_mutated_frames_decode_or_raise_payload_error(pos: int, byte: int) -> None:
    good = bytearray(codec.encode_chunk(chunk("acc", n=5)))
    good[pos] = byte
    try:
        d = codec.decode_chunk("dev1", "acc", bytes(good), MODS)
    except PayloadError:
        return
    assert d.data.shape == (5, 3) and np.isfinite(d.data).all()
