"""The binary frame: a versioned 48-byte header and little-endian float32 samples."""

from __future__ import annotations

import struct

import numpy as np

from ..config import Limits, ModalitySpec
from ..errors import PayloadError
from ..kernels.frames import copy_count_nonfinite
from ..types import Chunk
from .checks import check_finite, check_shape, check_times

MAGIC = b"SF"
VERSION = 1
HEADER = struct.Struct("<2sBB12sHHIQdd")
HEADER_SIZE = HEADER.size  # 48 bytes
assert HEADER_SIZE == 48

F32LE = np.dtype("<f4")
NATIVE_F32 = F32LE.isnative  # the payload's samples can be copied as they are


def encode_chunk(chunk: Chunk) -> bytes:
    """The binary frame for ``chunk`` (header + little-endian float32, sample-major)."""
    data = np.ascontiguousarray(chunk.data, dtype=F32LE)
    if data.ndim != 2:
        raise ValueError(f"chunk data must be 2-D [samples, channels], got shape {data.shape}")
    name = chunk.modality.encode("ascii")
    if len(name) > 12:
        raise ValueError(f"modality name {chunk.modality!r} is longer than 12 bytes")
    n, ch = data.shape
    head = HEADER.pack(MAGIC, VERSION, 0, name, ch, 0, n, chunk.seq, chunk.t0, chunk.fs)
    return head + data.tobytes()


def samples(
    device: str, modality: str, seq: int, payload: bytes, offset: int, n: int, ch: int,
    limits: Limits,
) -> np.ndarray:
    """The ``[n, ch]`` float32 samples at ``offset`` of ``payload``, copied (the chunk owns
    them), refused if any is NaN or infinite under the ``reject`` policy."""
    src = np.frombuffer(payload, dtype=F32LE, count=n * ch, offset=offset)
    if not NATIVE_F32:
        data = src.astype(np.float32)
        check_finite(device, modality, seq, data, limits)
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


def decode_binary(
    device: str, modality: str, payload: bytes, spec: ModalitySpec, limits: Limits
) -> tuple[int, float, float, np.ndarray]:
    """``(seq, t0, fs, samples)`` of one frame arrived on ``modality``'s topic, checked."""
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
    check_shape(device, modality, seq, n, ch, spec, limits)
    expected = HEADER_SIZE + 4 * n * ch
    if len(payload) != expected:
        raise PayloadError(
            "truncated" if len(payload) < expected else "trailing_bytes",
            f"frame of {n} samples x {ch} channels needs {expected} bytes, got {len(payload)}",
            device=device,
            modality=modality,
            seq=seq,
        )
    check_times(device, modality, seq, t0, fs, limits)
    return seq, t0, fs, samples(device, modality, seq, payload, HEADER_SIZE, n, ch, limits)
