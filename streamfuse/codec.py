"""Wire format: a compact binary frame and a JSON form (see ``docs/wire-format.md``).

Decoding validates everything before it allocates and raises :class:`PayloadError` with a
``reason`` tag (a counter key) and a message naming the device, modality and seq.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import orjson

from .config import Limits, ModalitySpec
from .errors import PayloadError
from .kernels.frames import copy_count_nonfinite, scan_bundle
from .types import Chunk, Label, Prediction

MAGIC = b"SF"
VERSION = 1
HEADER = struct.Struct("<2sBB12sHHIQdd")
HEADER_SIZE = HEADER.size  # 48 bytes
assert HEADER_SIZE == 48

_F32LE = np.dtype("<f4")
_NATIVE_F32 = _F32LE.isnative  # the payload's samples can be copied as they are
DEFAULT_LIMITS = Limits()
#: most parts one bundle may hold (a device sends one per modality per period); the parts
#: beyond it are refused unread, so a bundle of tiny frames cannot buy unbounded work
MAX_BUNDLE_PARTS = 32
_BUNDLE = "bundle"  # the modality named in errors about a bundle as a whole


class BundleParts(NamedTuple):
    """What :func:`decode_bundle` made of a bundle: the good parts and why the others failed.

    ``lost_bytes`` counts the bytes that were never read as parts because the framing broke
    (or the part cap was reached); a part refused for its own content is not lost bytes.
    """

    chunks: list[Chunk]
    rejected: list[PayloadError]
    lost_bytes: int = 0


def encode_chunk(chunk: Chunk) -> bytes:
    """The binary frame for ``chunk`` (header + little-endian float32, sample-major)."""
    data = np.ascontiguousarray(chunk.data, dtype=_F32LE)
    if data.ndim != 2:
        raise ValueError(f"chunk data must be 2-D [samples, channels], got shape {data.shape}")
    name = chunk.modality.encode("ascii")
    if len(name) > 12:
        raise ValueError(f"modality name {chunk.modality!r} is longer than 12 bytes")
    n, ch = data.shape
    head = HEADER.pack(MAGIC, VERSION, 0, name, ch, 0, n, chunk.seq, chunk.t0, chunk.fs)
    return head + data.tobytes()


def encode_bundle(chunks: Iterable[Chunk]) -> bytes:
    """One bundle: the binary frames of ``chunks`` (one device's), back to back, in order."""
    frames = []
    devices = set()
    for c in chunks:
        frames.append(encode_chunk(c))
        devices.add(c.device)
    if not frames:
        raise ValueError("a bundle needs at least one chunk")
    if len(devices) > 1:
        raise ValueError(f"a bundle carries one device's chunks, got {sorted(devices)}")
    if len(frames) > MAX_BUNDLE_PARTS:
        raise ValueError(f"a bundle holds at most {MAX_BUNDLE_PARTS} parts, got {len(frames)}")
    return b"".join(frames)


def encode_chunk_json(chunk: Chunk) -> bytes:
    """The JSON form of ``chunk`` (for hand-made clients and debugging)."""
    return json.dumps(
        {
            "modality": chunk.modality,
            "seq": chunk.seq,
            "t0": chunk.t0,
            "fs": chunk.fs,
            "data": chunk.data.astype(float).tolist(),
        },
        separators=(",", ":"),
    ).encode()


def encode_label(label: Label) -> bytes:
    return json.dumps(
        {"t_start": label.t_start, "t_end": label.t_end, "value": label.value},
        separators=(",", ":"),
    ).encode()


def encode_prediction(prediction: Prediction) -> bytes:
    """The prediction topic's payload: ``prediction.to_json_dict()`` as compact, strict JSON
    (orjson: ~4 us where ``json.dumps`` took ~20 us per prediction; the same values, a
    non-finite number written ``null``, which strict JSON parsers accept and ``NaN`` is
    not)."""
    return orjson.dumps(prediction.to_json_dict(), option=orjson.OPT_NON_STR_KEYS)


def decode_chunk(
    device: str,
    modality: str,
    payload: bytes,
    modalities: Mapping[str, ModalitySpec],
    limits: Limits = DEFAULT_LIMITS,
    arrival: float = math.nan,
) -> Chunk:
    """Decode a data message published on ``{prefix}/{device}/{modality}`` (``arrival``: the
    gateway's receipt time, stamped on the chunk)."""
    if len(payload) > limits.max_payload_bytes:
        raise PayloadError(
            "oversize",
            f"payload of {len(payload)} bytes exceeds the limit of {limits.max_payload_bytes}",
            device=device,
            modality=modality,
        )
    spec = modalities.get(modality)
    if spec is None:
        raise PayloadError(
            "unknown_modality",
            f"unknown modality {modality!r}; configured: {sorted(modalities)}",
            device=device,
            modality=modality,
        )
    if payload[:2] == MAGIC:  # times and samples checked inside
        seq, t0, fs, data = _decode_binary(device, modality, payload, spec, limits)
        return Chunk(device, modality, seq, t0, fs, data, arrival)
    if payload.lstrip()[:1] == b"{":
        seq, t0, fs, data = _decode_json(device, modality, payload, spec, limits)
    elif not payload:
        raise PayloadError("empty", "empty payload", device=device, modality=modality)
    else:
        raise PayloadError(
            "unknown_format",
            f"payload is neither a binary frame (starts with {MAGIC!r}) nor a JSON object "
            f"(first bytes {payload[:8]!r})",
            device=device,
            modality=modality,
        )
    _check_times(device, modality, seq, t0, fs, limits)
    _check_finite(device, modality, seq, data, limits)
    return Chunk(device, modality, seq, t0, fs, data, arrival)


def decode_bundle(
    device: str,
    payload: bytes,
    modalities: Mapping[str, ModalitySpec],
    limits: Limits = DEFAULT_LIMITS,
    *,
    max_parts: int = MAX_BUNDLE_PARTS,
    arrival: float = math.nan,
) -> BundleParts:
    """Decode a bundle published on ``{prefix}/{device}/bundle``: version-1 binary frames of
    any configured modalities, back to back (see ``docs/wire-format.md``).

    Raises :class:`PayloadError` only when the payload as a whole is refused (over the size
    limit, empty, or not starting with a binary frame). Otherwise each part stands alone: a
    part whose header or samples are bad is refused with its own reason, device, modality and
    seq while the others are kept; if the framing itself breaks (a part runs past the end, or
    the bytes where a part should start are no version-1 frame) the rest of the bundle is
    refused as one rejection that says how many bytes were lost.
    """
    if 0 < len(payload) <= limits.max_payload_bytes and _NATIVE_F32:
        whole = _bundle_at_once(device, payload, modalities, limits, max_parts, arrival)
        if whole is not None:
            return whole
    return _bundle_part_by_part(device, payload, modalities, limits, max_parts, arrival)


def _bundle_part_by_part(
    device: str,
    payload: bytes,
    modalities: Mapping[str, ModalitySpec],
    limits: Limits,
    max_parts: int,
    arrival: float,
) -> BundleParts:
    """:func:`decode_bundle` one part at a time, each refused part with its own reason."""
    size = len(payload)
    if size > limits.max_payload_bytes:
        raise PayloadError(
            "oversize",
            f"bundle of {size} bytes exceeds the limit of {limits.max_payload_bytes}",
            device=device,
            modality=_BUNDLE,
        )
    if not size:
        raise PayloadError("empty", "empty payload", device=device, modality=_BUNDLE)
    if payload[:2] != MAGIC:
        raise PayloadError(
            "unknown_format",
            f"a bundle is binary frames back to back, starting with {MAGIC!r} (first bytes "
            f"{payload[:8]!r}); JSON is accepted on modality topics only",
            device=device,
            modality=_BUNDLE,
        )
    chunks: list[Chunk] = []
    rejected: list[PayloadError] = []
    off = part = 0
    while off < size:
        left = size - off
        if part == max_parts:
            where, lost = _bundle_place(part, off, left, size)
            rejected.append(
                PayloadError(
                    "too_many_parts",
                    f"{where}: a bundle holds at most {max_parts} parts; {lost}",
                    device=device,
                    modality=_BUNDLE,
                )
            )
            return BundleParts(chunks, rejected, left)
        if left < HEADER_SIZE:
            where, lost = _bundle_place(part, off, left, size)
            rejected.append(
                PayloadError(
                    "truncated",
                    f"{where}: {left} bytes left, fewer than a {HEADER_SIZE}-byte header; {lost}",
                    device=device,
                    modality=_BUNDLE,
                )
            )
            return BundleParts(chunks, rejected, left)
        magic, version, flags, name, ch, reserved, n, seq, t0, fs = HEADER.unpack_from(
            payload, off
        )
        if magic != MAGIC or version != VERSION:
            where, lost = _bundle_place(part, off, left, size)
            rejected.append(
                PayloadError(
                    "bad_framing" if magic != MAGIC else "bad_version",
                    f"{where} is not a version-{VERSION} frame (magic {magic!r}, version "
                    f"{version}), so where the parts end is unknown; {lost}",
                    device=device,
                    modality=_BUNDLE,
                )
            )
            return BundleParts(chunks, rejected, left)
        modality = name.rstrip(b"\0").decode("ascii", "replace")
        end = off + HEADER_SIZE + 4 * n * ch
        if end > size:
            where, lost = _bundle_place(part, off, left, size)
            rejected.append(
                PayloadError(
                    "too_many_samples" if n > limits.max_samples else "truncated",
                    f"{where} promises {n} samples x {ch} channels ({end - off} bytes) but only "
                    f"{left} bytes are left; {lost}",
                    device=device,
                    modality=modality,
                    seq=seq,
                )
            )
            return BundleParts(chunks, rejected, left)
        spec = modalities.get(modality)
        try:
            if flags != 0 or reserved != 0:
                raise PayloadError(
                    "bad_header",
                    f"{_bundle_place(part, off, left, size)[0]}: flags ({flags}) and reserved "
                    f"({reserved}) must be 0 in version 1",
                    device=device,
                    modality=modality,
                    seq=seq,
                )
            if spec is None:
                raise PayloadError(
                    "unknown_modality",
                    f"{_bundle_place(part, off, left, size)[0]}: unknown modality "
                    f"{modality!r}; configured: {sorted(modalities)}",
                    device=device,
                    modality=modality,
                    seq=seq,
                )
            _check_shape(device, modality, seq, n, ch, spec, limits)
            _check_times(device, modality, seq, t0, fs, limits)
            data = _samples(device, modality, seq, payload, off + HEADER_SIZE, n, ch, limits)
            chunks.append(Chunk(device, modality, seq, t0, fs, data, arrival))
        except PayloadError as exc:
            rejected.append(exc)
        off = end
        part += 1
    return BundleParts(chunks, rejected)


class _BundlePlan(NamedTuple):
    """What :func:`scan_bundle` needs of the configured modalities, and scratch for its
    per-part figures (read back at once, so one pair serves every call)."""

    names: list[str]
    header_names: np.ndarray  # uint8[M, 12]: each name as a header holds it
    channels: np.ndarray  # int64[M]; -1 where no header can hold the name
    meta_i: np.ndarray
    meta_f: np.ndarray


_plan_cache: list[Any] = [None, None, None]  # [mapping seen, a copy of it, its plan]


def _bundle_plan(modalities: Mapping[str, ModalitySpec], max_parts: int) -> _BundlePlan:
    seen, copy, plan = _plan_cache
    if modalities is seen and modalities == copy and plan.meta_i.shape[0] >= max_parts:
        return plan  # type: ignore[no-any-return]
    names = list(modalities)
    header_names = np.zeros((len(names), 12), np.uint8)
    channels = np.full(len(names), -1, np.int64)
    for j, name in enumerate(names):
        raw = name.encode("ascii", "replace")
        if name.isascii() and 0 < len(raw) <= 12 and not raw.endswith(b"\0"):
            header_names[j, : len(raw)] = np.frombuffer(raw, np.uint8)
            channels[j] = modalities[name].channels
    rows = max(max_parts, MAX_BUNDLE_PARTS)
    plan = _BundlePlan(
        names, header_names, channels, np.zeros((rows, 5), np.int64), np.zeros((rows, 2))
    )
    _plan_cache[:] = [modalities, dict(modalities), plan]
    return plan


def _bundle_at_once(
    device: str,
    payload: bytes,
    modalities: Mapping[str, ModalitySpec],
    limits: Limits,
    max_parts: int,
    arrival: float,
) -> BundleParts | None:
    """A bundle whose every part is good, decoded in one kernel pass (:func:`scan_bundle`);
    ``None`` if any part is not, for the part-by-part path to say which and why. Each
    chunk's samples are a view of one array that the bundle's chunks share."""
    plan = _bundle_plan(modalities, max_parts)
    out = np.empty(len(payload) // 4, np.float32)
    parts = scan_bundle(
        np.frombuffer(payload, np.uint8),
        plan.header_names,
        plan.channels,
        max_parts,
        limits.max_samples,
        limits.min_fs,
        limits.max_fs,
        limits.max_abs_t0,
        limits.nan_policy == "reject",
        out,
        plan.meta_i,
        plan.meta_f,
    )
    if parts <= 0:
        return None
    names = plan.names
    chunks = [
        Chunk(device, names[j], seq, t0, fs, out[pos : pos + n * ch].reshape(n, ch), arrival)
        for (j, n, ch, seq, pos), (t0, fs) in zip(
            plan.meta_i[:parts].tolist(), plan.meta_f[:parts].tolist(), strict=True
        )
    ]
    return BundleParts(chunks, [])


def _bundle_place(part: int, off: int, left: int, size: int) -> tuple[str, str]:
    """Where a bundle part sits and what is lost with it, for error messages."""
    return f"bundle part {part} at byte {off}", f"the last {left} of {size} bytes are lost"


def _samples(
    device: str, modality: str, seq: int, payload: bytes, offset: int, n: int, ch: int,
    limits: Limits,
) -> np.ndarray:
    """The ``[n, ch]`` float32 samples at ``offset`` of ``payload``, copied (the chunk owns
    them), refused if any is NaN or infinite under the ``reject`` policy."""
    src = np.frombuffer(payload, dtype=_F32LE, count=n * ch, offset=offset)
    if not _NATIVE_F32:
        data = src.astype(np.float32)
        _check_finite(device, modality, seq, data, limits)
        return data.reshape(n, ch)
    flat = np.empty(n * ch, dtype=np.float32)
    bad = copy_count_nonfinite(src, flat)
    if bad and limits.nan_policy == "reject":
        raise PayloadError(
            "nonfinite",
            f"{bad} of {n * ch} samples are NaN or infinite",
            device=device,
            modality=modality,
            seq=seq,
        )
    return flat.reshape(n, ch)


def _check_finite(
    device: str, modality: str, seq: int, data: np.ndarray, limits: Limits
) -> None:
    if limits.nan_policy == "reject" and not np.isfinite(data).all():
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise PayloadError(
            "nonfinite",
            f"{bad} of {data.size} samples are NaN or infinite",
            device=device,
            modality=modality,
            seq=seq,
        )


def _decode_binary(
    device: str, modality: str, payload: bytes, spec: ModalitySpec, limits: Limits
) -> tuple[int, float, float, np.ndarray]:
    if len(payload) < HEADER_SIZE:
        raise PayloadError(
            "truncated",
            f"binary frame of {len(payload)} bytes is shorter than its {HEADER_SIZE}-byte header",
            device=device,
            modality=modality,
        )
    magic, version, flags, name, ch, reserved, n, seq, t0, fs = HEADER.unpack_from(payload)
    if version != VERSION:
        raise PayloadError(
            "bad_version",
            f"frame version {version} is not supported (this gateway reads version {VERSION})",
            device=device,
            modality=modality,
            seq=seq,
        )
    if flags != 0 or reserved != 0:
        raise PayloadError(
            "bad_header",
            f"flags ({flags}) and reserved ({reserved}) must be 0 in version 1",
            device=device,
            modality=modality,
            seq=seq,
        )
    header_modality = name.rstrip(b"\0").decode("ascii", "replace")
    if header_modality != modality:
        raise PayloadError(
            "modality_mismatch",
            f"frame says modality {header_modality!r} but arrived on the {modality!r} topic",
            device=device,
            modality=modality,
            seq=seq,
        )
    _check_shape(device, modality, seq, n, ch, spec, limits)
    expected = HEADER_SIZE + 4 * n * ch
    if len(payload) != expected:
        raise PayloadError(
            "truncated" if len(payload) < expected else "trailing_bytes",
            f"frame of {n} samples x {ch} channels needs {expected} bytes, got {len(payload)}",
            device=device,
            modality=modality,
            seq=seq,
        )
    _check_times(device, modality, seq, t0, fs, limits)
    return seq, t0, fs, _samples(device, modality, seq, payload, HEADER_SIZE, n, ch, limits)


def _decode_json(
    device: str, modality: str, payload: bytes, spec: ModalitySpec, limits: Limits
) -> tuple[int, float, float, np.ndarray]:
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(
            "bad_json", f"invalid JSON: {exc}", device=device, modality=modality
        ) from exc
    if not isinstance(obj, dict):
        raise PayloadError(
            "bad_json", "JSON payload must be an object", device=device, modality=modality
        )
    missing = [k for k in ("seq", "t0", "fs", "data") if k not in obj]
    if missing:
        raise PayloadError(
            "bad_field", f"JSON payload lacks {missing}", device=device, modality=modality
        )
    seq = obj["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**64:
        raise PayloadError(
            "bad_field",
            f"seq must be a non-negative integer, got {seq!r}",
            device=device,
            modality=modality,
        )
    if "modality" in obj and obj["modality"] != modality:
        raise PayloadError(
            "modality_mismatch",
            f"payload says modality {obj['modality']!r} but arrived on the {modality!r} topic",
            device=device,
            modality=modality,
            seq=seq,
        )
    t0, fs = (
        _number(obj["t0"], "t0", device, modality, seq),
        _number(obj["fs"], "fs", device, modality, seq),
    )
    rows = obj["data"]
    if not isinstance(rows, list) or not rows:
        raise PayloadError(
            "bad_field", "data must be a non-empty list", device=device, modality=modality, seq=seq
        )
    if all(isinstance(r, list) for r in rows):
        n, ch = len(rows), len(rows[0])
        if any(len(r) != ch for r in rows):
            raise PayloadError(
                "bad_field",
                "data rows have different lengths",
                device=device,
                modality=modality,
                seq=seq,
            )
    elif spec.channels == 1:
        n, ch, rows = len(rows), 1, [[v] for v in rows]
    else:
        raise PayloadError(
            "bad_field",
            f"data must be a list of rows of {spec.channels} values",
            device=device,
            modality=modality,
            seq=seq,
        )
    _check_shape(device, modality, seq, n, ch, spec, limits)
    try:
        data = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise PayloadError(
            "bad_field", f"data holds non-numbers: {exc}", device=device, modality=modality, seq=seq
        ) from exc
    if data.shape != (n, ch):
        raise PayloadError(
            "bad_field", f"data has shape {data.shape}", device=device, modality=modality, seq=seq
        )
    return seq, t0, fs, data.astype(np.float32)


def _number(v: Any, name: str, device: str, modality: str, seq: int) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise PayloadError(
            "bad_field",
            f"{name} must be a number, got {v!r}",
            device=device,
            modality=modality,
            seq=seq,
        )
    return float(v)


def _check_shape(
    device: str, modality: str, seq: int, n: int, ch: int, spec: ModalitySpec, limits: Limits
) -> None:
    if ch != spec.channels:
        raise PayloadError(
            "channel_mismatch",
            f"{ch} channels, but modality {modality!r} has {spec.channels} "
            f"({', '.join(spec.channel_names)})",
            device=device,
            modality=modality,
            seq=seq,
        )
    if n == 0:
        raise PayloadError(
            "empty", "chunk holds no samples", device=device, modality=modality, seq=seq
        )
    if n > limits.max_samples:
        raise PayloadError(
            "too_many_samples",
            f"{n} samples exceed the limit of {limits.max_samples} per chunk",
            device=device,
            modality=modality,
            seq=seq,
        )


def _check_times(
    device: str, modality: str, seq: int, t0: float, fs: float, limits: Limits
) -> None:
    if not (math.isfinite(fs) and limits.min_fs <= fs <= limits.max_fs):
        raise PayloadError(
            "bad_rate",
            f"sampling rate {fs!r} Hz is outside [{limits.min_fs}, {limits.max_fs}]",
            device=device,
            modality=modality,
            seq=seq,
        )
    if not (math.isfinite(t0) and abs(t0) <= limits.max_abs_t0):
        raise PayloadError(
            "bad_t0",
            f"device timestamp t0={t0!r} is not a finite time in seconds",
            device=device,
            modality=modality,
            seq=seq,
        )


def decode_label(device: str, payload: bytes) -> Label:
    """Decode a label message: ``{"t_start": s, "t_end": s, "value": "class"}`` (device clock)."""
    if len(payload) > 4096:
        raise PayloadError(
            "oversize",
            f"label payload of {len(payload)} bytes is too large",
            device=device,
            modality="label",
        )
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(
            "bad_json", f"invalid label JSON: {exc}", device=device, modality="label"
        ) from exc
    if not isinstance(obj, dict) or not {"t_start", "t_end", "value"} <= obj.keys():
        raise PayloadError(
            "bad_field",
            "label must be an object with t_start, t_end, value",
            device=device,
            modality="label",
        )
    t_start = _number(obj["t_start"], "t_start", device, "label", -1)
    t_end = _number(obj["t_end"], "t_end", device, "label", -1)
    value = obj["value"]
    if not (math.isfinite(t_start) and math.isfinite(t_end) and t_end > t_start):
        raise PayloadError(
            "bad_field",
            f"label needs finite t_start < t_end, got [{t_start}, {t_end})",
            device=device,
            modality="label",
        )
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise PayloadError(
            "bad_field",
            f"label value must be a short string, got {value!r}",
            device=device,
            modality="label",
        )
    return Label(device, t_start, t_end, value)
