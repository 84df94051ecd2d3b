"""Bundles: one device's binary frames of several modalities, back to back, in one message.

A bundle whose every part is good is decoded in one kernel pass (:func:`scan_bundle`); any
other is decoded part by part, each refused part with its own reason, device, modality and seq.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from ..config import Limits, ModalitySpec
from ..errors import PayloadError
from ..kernels.frames import scan_bundle
from ..types import Chunk
from .checks import DEFAULT_LIMITS, check_shape, check_times
from .frame import HEADER, HEADER_SIZE, MAGIC, NATIVE_F32, VERSION, encode_chunk, samples

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
            check_shape(device, modality, seq, n, ch, spec, limits)
            check_times(device, modality, seq, t0, fs, limits)
            data = samples(device, modality, seq, payload, off + HEADER_SIZE, n, ch, limits)
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


class _PlanCache(threading.local):
    """The last plan made, per thread: its scratch is written by a kernel that releases the
    GIL, so two threads decoding at once (engines on their own threads) must not share it."""

    def __init__(self) -> None:
        self.entry: list[Any] = [None, None, None]  # [mapping seen, a copy of it, its plan]


_plan_cache = _PlanCache()


def _bundle_plan(modalities: Mapping[str, ModalitySpec], max_parts: int) -> _BundlePlan:
    seen, copy, plan = _plan_cache.entry
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
    _plan_cache.entry = [modalities, dict(modalities), plan]
    return plan


class BundleScan(NamedTuple):
    """A bundle whose every part is good, as :func:`scan_parts` read it: part ``i`` is
    modality ``names[ints[i][0]]`` with ``(j, n, ch, seq, pos) = ints[i]`` and
    ``(t0, fs) = floats[i]``, its samples ``samples[pos : pos + n * ch]`` (row-major
    ``[n, ch]``). No :class:`~streamfuse.types.Chunk` is made (the engine's bundle path
    hands the fields to the aligner as they are)."""

    names: list[str]
    ints: list[list[int]]
    floats: list[list[float]]
    samples: np.ndarray


def scan_parts(
    payload: bytes,
    modalities: Mapping[str, ModalitySpec],
    limits: Limits = DEFAULT_LIMITS,
    max_parts: int = MAX_BUNDLE_PARTS,
    scratch: np.ndarray | None = None,
) -> BundleScan | None:
    """Every part of a bundle in one kernel pass (:func:`scan_bundle`), when every part is
    good; ``None`` otherwise (an empty or oversize payload, a bad part, or a platform whose
    floats are not little-endian), for :func:`decode_bundle` to say what is wrong.

    ``scratch`` (float32, 1-D): the samples are copied there if it is large enough, else
    into a new array (``samples`` says which); a caller that passes one reuses it for the
    next bundle, so it must copy whatever it keeps of the samples first.
    """
    if not (0 < len(payload) <= limits.max_payload_bytes and NATIVE_F32):
        return None
    plan = _bundle_plan(modalities, max_parts)
    size = len(payload) // 4
    if scratch is not None and scratch.shape[0] >= size:
        out = scratch
    else:
        out = np.empty(size, np.float32)
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
    return BundleScan(plan.names, plan.meta_i[:parts].tolist(), plan.meta_f[:parts].tolist(), out)


def _bundle_at_once(
    device: str,
    payload: bytes,
    modalities: Mapping[str, ModalitySpec],
    limits: Limits,
    max_parts: int,
    arrival: float,
) -> BundleParts | None:
    """A bundle whose every part is good, decoded in one kernel pass (:func:`scan_parts`);
    ``None`` if any part is not, for the part-by-part path to say which and why. Each
    chunk's samples are a view of one array that the bundle's chunks share."""
    scan = scan_parts(payload, modalities, limits, max_parts)
    if scan is None:
        return None
    names, out = scan.names, scan.samples
    chunks = [
        Chunk(device, names[j], seq, t0, fs, out[pos : pos + n * ch].reshape(n, ch), arrival)
        for (j, n, ch, seq, pos), (t0, fs) in zip(scan.ints, scan.floats, strict=True)
    ]
    return BundleParts(chunks, [])


def _bundle_place(part: int, off: int, left: int, size: int) -> tuple[str, str]:
    """Where a bundle part sits and what is lost with it, for error messages."""
    return f"bundle part {part} at byte {off}", f"the last {left} of {size} bytes are lost"
