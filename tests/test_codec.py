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
from streamfuse.types import Chunk, Label, Prediction

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


# ------------------------------------------------------------------------------------- bundles


def bundle_of(*chunks: Chunk) -> bytes:
    return codec.encode_bundle(chunks)


def period(seq: int = 3) -> list[Chunk]:
    """One device's chunks of one 100 ms period, as a bundle carries them."""
    return [chunk("ecg", 25, seq), chunk("eeg", 26, seq), chunk("acc", 5, seq)]


def test_bundle_round_trip_keeps_order_and_every_field() -> None:
    parts = period()
    got = codec.decode_bundle("dev1", bundle_of(*parts), MODS)
    assert got.rejected == [] and got.lost_bytes == 0
    assert [c.modality for c in got.chunks] == ["ecg", "eeg", "acc"]
    for d, c in zip(got.chunks, parts, strict=True):
        fields = (d.device, d.modality, d.seq, d.t0, d.fs)
        assert fields == (c.device, c.modality, c.seq, c.t0, c.fs)
        assert d.data.dtype == np.float32 and d.data.flags.c_contiguous and d.data.flags.writeable
        np.testing.assert_array_equal(d.data, c.data)
    # each part is byte for byte the frame a modality topic would carry
    assert bundle_of(*parts) == b"".join(codec.encode_chunk(c) for c in parts)
    # a bundle of one part is a plain frame
    one = codec.decode_bundle("dev1", codec.encode_chunk(parts[1]), MODS)
    assert len(one.chunks) == 1 and one.chunks[0].seq == parts[1].seq


def test_encode_bundle_refuses_what_it_cannot_frame() -> None:
    with pytest.raises(ValueError, match="at least one"):
        codec.encode_bundle([])
    other = Chunk("dev2", "ecg", 1, 0.0, 250.0, np.zeros((3, 1), np.float32))
    with pytest.raises(ValueError, match="one device"):
        codec.encode_bundle([chunk(), other])
    with pytest.raises(ValueError, match="at most"):
        codec.encode_bundle([chunk("acc", 1, s) for s in range(codec.MAX_BUNDLE_PARTS + 1)])


def test_documented_bundle_example_bytes() -> None:
    hexdump = (  # docs/wire-format.md, "Bundle"
        "53 46 01 00 65 63 67 00 00 00 00 00 00 00 00 00 01 00 00 00 03 00 00 00 07 00 00 00"
        " 00 00 00 00 00 00 00 00 00 00 29 40 00 00 00 00 00 40 6f 40 cd cc cc 3d cd cc 4c 3e"
        " 9a 99 99 3e 53 46 01 00 61 63 63 00 00 00 00 00 00 00 00 00 03 00 00 00 01 00 00 00"
        " 07 00 00 00 00 00 00 00 00 00 00 00 00 00 29 40 00 00 00 00 00 00 49 40 00 00 00 00"
        " 00 00 00 bf 00 00 80 3f"
    )
    got = codec.decode_bundle("patch-0042", bytes.fromhex(hexdump), MODS)
    assert got.rejected == []
    ecg, acc = got.chunks
    assert (ecg.modality, ecg.seq, ecg.t0, ecg.fs) == ("ecg", 7, 12.5, 250.0)
    assert ecg.data.shape == (3, 1)
    np.testing.assert_allclose(ecg.data[:, 0], [0.1, 0.2, 0.3], rtol=1e-6)
    assert (acc.modality, acc.seq, acc.t0, acc.fs) == ("acc", 7, 12.5, 50.0)
    np.testing.assert_array_equal(acc.data, [[0.0, -0.5, 1.0]])


def test_a_bad_part_is_refused_alone_with_its_own_reason() -> None:
    ecg, eeg, acc = period(seq=9)
    nan = chunk("eeg", 26, 9)
    nan.data[2, 5] = np.nan
    unknown = Chunk("dev1", "ppg", 9, 1234.5, 64.0, np.zeros((6, 1), np.float32))
    wrong_ch = Chunk("dev1", "acc", 9, 1234.5, 50.0, np.zeros((5, 2), np.float32))
    bad_rate = Chunk("dev1", "ecg", 9, 1234.5, 0.0, np.zeros((5, 1), np.float32))
    flagged = bytearray(codec.encode_chunk(ecg))
    flagged[3] = 1
    empty = codec.HEADER.pack(codec.MAGIC, 1, 0, b"ecg", 1, 0, 0, 9, 1234.5, 250.0)
    cases = [
        (codec.encode_chunk(nan), "nonfinite", "eeg"),
        (codec.encode_chunk(unknown), "unknown_modality", "ppg"),
        (codec.encode_chunk(wrong_ch), "channel_mismatch", "acc"),
        (codec.encode_chunk(bad_rate), "bad_rate", "ecg"),
        (bytes(flagged), "bad_header", "ecg"),
        (empty, "empty", "ecg"),
    ]
    for bad, why, modality in cases:
        payload = codec.encode_chunk(ecg) + bad + codec.encode_chunk(acc)
        got = codec.decode_bundle("dev1", payload, MODS)
        assert [c.modality for c in got.chunks] == ["ecg", "acc"], why
        assert got.lost_bytes == 0
        (err,) = got.rejected
        assert (err.reason, err.device, err.modality, err.seq) == (why, "dev1", modality, 9)
        assert "device=dev1" in str(err) and "seq=9" in str(err)
    # a part with more samples than the limit, all of its bytes present, is skipped whole
    got = codec.decode_bundle("dev1", bundle_of(eeg, ecg), MODS, Limits(max_samples=25))
    assert [c.modality for c in got.chunks] == ["ecg"]
    assert [e.reason for e in got.rejected] == ["too_many_samples"] and got.lost_bytes == 0


def test_broken_framing_refuses_the_rest_and_says_how_many_bytes() -> None:
    ecg, eeg, acc = period()
    a, b, c = (codec.encode_chunk(x) for x in (ecg, eeg, acc))
    cut = a + b + c[:-5]  # the last part runs past the end
    got = codec.decode_bundle("dev1", cut, MODS)
    assert [x.modality for x in got.chunks] == ["ecg", "eeg"]
    (err,) = got.rejected
    lost = len(c) - 5
    assert err.reason == "truncated" and got.lost_bytes == lost
    assert f"the last {lost} of {len(cut)} bytes are lost" in str(err)
    assert err.modality == "acc" and err.seq == acc.seq
    # fewer bytes left than a header
    got = codec.decode_bundle("dev1", a + b"SF\x01\x00abc", MODS)
    assert [x.modality for x in got.chunks] == ["ecg"]
    assert [e.reason for e in got.rejected] == ["truncated"] and got.lost_bytes == 7
    # garbage where the second part should start: that part and everything after are lost
    got = codec.decode_bundle("dev1", a + b"\x00" * 10 + b + c, MODS)
    assert [x.modality for x in got.chunks] == ["ecg"]
    assert [e.reason for e in got.rejected] == ["bad_framing"]
    assert got.lost_bytes == 10 + len(b) + len(c)
    assert got.rejected[0].modality == "bundle"
    # an unknown version cannot be framed either
    v2 = bytearray(b)
    v2[2] = 2
    got = codec.decode_bundle("dev1", a + bytes(v2) + c, MODS)
    assert [e.reason for e in got.rejected] == ["bad_version"]
    assert got.lost_bytes == len(b) + len(c)
    # a header promising 2^32-1 samples frames past the end: refused, nothing allocated
    huge = codec.HEADER.pack(codec.MAGIC, 1, 0, b"eeg", 8, 0, 2**32 - 1, 4, 0.0, 256.0)
    got = codec.decode_bundle("dev1", a + huge + b, MODS)
    assert [x.modality for x in got.chunks] == ["ecg"]
    assert [e.reason for e in got.rejected] == ["too_many_samples"]
    assert got.lost_bytes == len(huge) + len(b)


def test_bundle_refused_whole_before_parsing() -> None:
    good = bundle_of(*period())
    for payload, why, limits in (
        (good, "oversize", Limits(max_payload_bytes=len(good) - 1)),
        (b"", "empty", Limits()),
        (codec.encode_chunk_json(chunk()), "unknown_format", Limits()),
        (b"\x00\x01garbage", "unknown_format", Limits()),
    ):
        with pytest.raises(PayloadError) as info:
            codec.decode_bundle("dev1", payload, MODS, limits)
        assert info.value.reason == why
        assert (info.value.device, info.value.modality) == ("dev1", "bundle")
    # the size limit applies to the whole bundle, not to each part
    assert codec.decode_bundle("dev1", good, MODS, Limits(max_payload_bytes=len(good))).chunks


def test_parts_beyond_the_cap_are_refused_unread() -> None:
    tiny = codec.encode_chunk(chunk("acc", 1))
    payload = tiny * 6
    got = codec.decode_bundle("dev1", payload, MODS, max_parts=4)
    assert len(got.chunks) == 4
    assert [e.reason for e in got.rejected] == ["too_many_parts"]
    assert got.lost_bytes == 2 * len(tiny)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_escape_a_bundle_as_other_errors(payload: bytes) -> None:
    try:
        got = codec.decode_bundle("dev1", b"SF" + payload, MODS)
    except PayloadError:
        return
    assert got.lost_bytes <= len(payload) + 2
    assert all(isinstance(e, PayloadError) for e in got.rejected)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2 * (48 + 4 * 3 * 5) - 1), st.integers(0, 255))
def test_a_mutated_part_never_costs_its_neighbour(pos: int, byte: int) -> None:
    first = chunk("acc", 5, 1)
    parts = [first, Chunk("dev1", "acc", 2, 1234.6, 50.0, -3 * first.data - 1)]
    raw = bytearray(bundle_of(*parts))
    size = len(raw) // 2
    raw[pos] = byte
    try:
        got = codec.decode_bundle("dev1", bytes(raw), MODS)
    except PayloadError:
        assert pos < 2  # only a broken first magic refuses the whole bundle
        return
    intact = parts[1] if pos < size else parts[0]
    framing = pos % size in (0, 1, 2) or 16 <= pos % size < 24  # magic, version, channels, n
    # a damaged length field can split the rest into a bad part plus unframed bytes: one more
    assert len(got.chunks) + len(got.rejected) <= (3 if framing else 2)
    for c in got.chunks:
        assert np.isfinite(c.data).all()
    if not framing:  # the other part is decoded exactly, whatever the damage to this one
        survivors = [c for c in got.chunks if np.array_equal(c.data, intact.data)]
        assert len(survivors) == 1 and got.lost_bytes == 0
        assert (survivors[0].seq, survivors[0].t0) == (intact.seq, intact.t0)
        np.testing.assert_array_equal(survivors[0].data, intact.data)
    if pos >= size:  # damage in the second part never touches the first
        assert got.chunks[0].seq == 1
        np.testing.assert_array_equal(got.chunks[0].data, parts[0].data)


# ---------------------------------------------------------------- predictions
def _strict(text: bytes) -> object:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_encode_prediction_is_compact_strict_json_of_to_json_dict() -> None:
    metrics = {"early.auc": 0.71, "late.n": 12.0, "selector.late": 0.52}
    base = {"device": "d1", "t_start": 3.0, "t_end": 5.0, "level": "late", "label": "rest",
            "proba": {"rest": 0.6, "stress": 3.5988572725623706e-06}, "model": "logreg",
            "levels": {"late": {"rest": 0.6, "stress": 0.4}, "early": {}},
            "modality_proba": {"eeg": {"rest": 0.5, "stress": 0.5}}}
    cases = [
        Prediction(**base, metrics=metrics, arrival=5.01, rules=("IF a THEN b",)),
        Prediction(**base, metrics={}, arrival=7.0, latency={"align": 1e-4}),
    ]
    for p in cases:
        text = codec.encode_prediction(p)
        # the values json.dumps would write, key order included, without a space
        assert _strict(text) == json.loads(json.dumps(p.to_json_dict()))
        assert list(_strict(text)) == list(p.to_json_dict())  # type: ignore[call-overload]
        assert b" " not in text.replace(b"IF a THEN b", b"")
    # a non-finite figure is null, not the NaN that json.dumps writes and strict parsers refuse
    odd = Prediction(**base, metrics={**metrics, "late.f1": float("nan")}, arrival=float("nan"))
    doc = _strict(codec.encode_prediction(odd))
    assert doc["metrics"]["late.f1"] is None and doc["closed_at"] is None  # type: ignore[index]
    assert doc["metrics"]["early.auc"] == 0.71  # type: ignore[index]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    bad=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from([np.nan, np.inf, -np.inf])),
                 max_size=5),
    bundled=st.booleans(),
)
def test_samples_are_copied_exactly_and_nonfinite_ones_counted(
    n: int, bad: list[tuple[int, float]], bundled: bool
) -> None:
    """The one-pass copy-and-count kernel against NumPy: same float32 values (an owned,
    writable copy), and a NaN or infinity refused with how many there are."""
    ch = MODS["eeg"].channels
    rng = np.random.default_rng(n)
    data = (rng.standard_normal((n, ch)) * 1e3).astype(np.float32)
    for pos, v in bad:
        data.flat[pos % data.size] = v
    c = Chunk("dev1", "eeg", 9, 50.0, MODS["eeg"].fs, data)
    expected_bad = int(np.count_nonzero(~np.isfinite(data)))
    if bundled:
        parts = codec.decode_bundle("dev1", codec.encode_bundle([c]), MODS, arrival=7.5)
        if expected_bad:
            assert [e.reason for e in parts.rejected] == ["nonfinite"]
            assert f"{expected_bad} of {data.size} samples" in str(parts.rejected[0])
            return
        (got,) = parts.chunks
    else:
        payload = codec.encode_chunk(c)
        if expected_bad:
            with pytest.raises(PayloadError, match=f"{expected_bad} of {data.size} samples"):
                codec.decode_chunk("dev1", "eeg", payload, MODS)
            return
        got = codec.decode_chunk("dev1", "eeg", payload, MODS, arrival=7.5)
    # a copy: a view of the payload bytes would be read-only
    assert got.data.dtype == np.float32 and got.data.flags.writeable
    np.testing.assert_array_equal(got.data, data)
    assert got.arrival == 7.5


def _same_parts(a: codec.BundleParts, b: codec.BundleParts) -> None:
    assert [(c.device, c.modality, c.seq, c.t0, c.fs, repr(c.arrival)) for c in a.chunks] == [
        (c.device, c.modality, c.seq, c.t0, c.fs, repr(c.arrival)) for c in b.chunks
    ]
    for x, y in zip(a.chunks, b.chunks, strict=True):
        assert x.data.dtype == y.data.dtype == np.float32 and x.data.shape == y.data.shape
        assert x.data.flags.c_contiguous and x.data.flags.writeable
        np.testing.assert_array_equal(x.data, y.data)  # NaN where NaN
    assert [(e.reason, str(e), e.device, e.modality, e.seq) for e in a.rejected] == [
        (e.reason, str(e), e.device, e.modality, e.seq) for e in b.rejected
    ]
    assert a.lost_bytes == b.lost_bytes


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3 * 48 + 4 * (25 + 26 * 8 + 5 * 3) - 1),
                       st.integers(0, 255)), max_size=3),
    st.sampled_from(["reject", "keep"]),
    st.integers(0, 3),
)
def test_a_bundle_decoded_at_once_is_what_part_by_part_decoding_gives(
    edits: list[tuple[int, int]], nan_policy: str, cut: int
) -> None:
    """The one-pass kernel (every part good) and the part-by-part path agree on any bundle:
    the kernel either declines (then the part-by-part path answers) or gives the same chunks;
    so every refusal still comes with the part-by-part path's reason and text."""
    payload = bytearray(bundle_of(*period()))
    for pos, byte in edits:
        payload[pos] = byte
    payload = payload[: len(payload) - cut * 7]
    limits = Limits(nan_policy=nan_policy)
    args = ("dev1", bytes(payload), MODS, limits)
    fast = codec._bundle_at_once(*args, codec.MAX_BUNDLE_PARTS, 5.0)
    try:
        slow = codec._bundle_part_by_part(*args, codec.MAX_BUNDLE_PARTS, 5.0)
    except PayloadError as exc:  # refused as a whole
        assert fast is None
        with pytest.raises(PayloadError) as info:
            codec.decode_bundle("dev1", bytes(payload), MODS, limits, arrival=5.0)
        assert (info.value.reason, str(info.value)) == (exc.reason, str(exc))
        return
    if fast is not None:
        assert not slow.rejected and slow.chunks
        _same_parts(fast, slow)
    got = codec.decode_bundle("dev1", bytes(payload), MODS, limits, arrival=5.0)
    _same_parts(got, slow)


def test_the_one_pass_decoder_takes_good_bundles_and_declines_the_edge_cases() -> None:
    good = bundle_of(*period())
    assert codec._bundle_at_once("d", good, MODS, Limits(), 32, 1.0) is not None
    big_seq = bundle_of(chunk("ecg", 25, 2**63), chunk("acc", 5, 2**64 - 1))
    nan = chunk("acc", 5)
    nan.data[2, 1] = np.nan
    declined = [
        (big_seq, Limits()),  # seq beyond int64: Python ints on the part-by-part path
        (bundle_of(nan), Limits()),  # refused for its NaN, with the reason
        (good, Limits(max_samples=25)),  # the EEG part is too long
        (good * 12, Limits()),  # 36 parts, the cap is 32
    ]
    for payload, limits in declined:
        assert codec._bundle_at_once("d", payload, MODS, limits, 32, 1.0) is None
        _same_parts(codec.decode_bundle("d", payload, MODS, limits),
                    codec._bundle_part_by_part("d", payload, MODS, limits, 32, float("nan")))
    kept = codec._bundle_at_once("d", bundle_of(nan), MODS, Limits(nan_policy="keep"), 32, 1.0)
    assert kept is not None and np.isnan(kept.chunks[0].data[2, 1])
    assert [c.seq for c in codec.decode_bundle("d", big_seq, MODS).chunks] == [2**63, 2**64 - 1]
    # a modality whose name no header can hold is never matched, by either path
    odd = {"ecg": MODS["ecg"], "x" * 13: MODS["acc"]}
    assert [c.modality for c in codec.decode_bundle("d", good, odd).chunks] == ["ecg"]
    assert codec._bundle_at_once("d", good, odd, Limits(), 32, 1.0) is None
