"""Wire format: a compact binary frame, bundles of frames, and a JSON form (see
``docs/wire-format.md``).

Decoding validates everything before it allocates and raises :class:`PayloadError` with a
``reason`` tag (a counter key) and a message naming the device, modality and seq. Nothing a
payload holds can make a decoder raise anything else (``tests/test_codec_hostile.py`` fuzzes
that): :mod:`.frame` reads binary frames, :mod:`.bundle` bundles of them, :mod:`.jsonform`
the JSON forms, and :mod:`.checks` holds the checks they share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .. import topics
from ..config import EngineConfig, Limits, ModalitySpec
from ..errors import PayloadError
from ..types import Chunk, Label
from .bundle import (
    MAX_BUNDLE_PARTS,
    BundleParts,
    BundleScan,
    _bundle_at_once,
    _bundle_part_by_part,
    decode_bundle,
    encode_bundle,
    scan_parts,
)
from .checks import DEFAULT_LIMITS, check_finite, check_times
from .frame import HEADER, HEADER_SIZE, MAGIC, VERSION, decode_binary, encode_chunk
from .jsonform import (
    MAX_LABEL_BYTES,
    decode_json,
    decode_label,
    encode_chunk_json,
    encode_label,
    encode_prediction,
)

__all__ = [
    "DEFAULT_LIMITS",
    "HEADER",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_BUNDLE_PARTS",
    "MAX_LABEL_BYTES",
    "VERSION",
    "BundleParts",
    "BundleScan",
    "_bundle_at_once",
    "_bundle_part_by_part",
    "decode_bundle",
    "decode_chunk",
    "decode_label",
    "decode_message",
    "encode_bundle",
    "encode_chunk",
    "encode_chunk_json",
    "encode_label",
    "encode_prediction",
    "scan_parts",
]


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
        seq, t0, fs, data = decode_binary(device, modality, payload, spec, limits)
        return Chunk(device, modality, seq, t0, fs, data, arrival)
    if payload.lstrip()[:1] == b"{":
        seq, t0, fs, data = decode_json(device, modality, payload, spec, limits)
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
    check_times(device, modality, seq, t0, fs, limits)
    check_finite(device, modality, seq, data, limits)
    return Chunk(device, modality, seq, t0, fs, data, arrival)


def decode_message(
    device: str, kind: str, payload: bytes, config: EngineConfig, arrival: float
) -> Chunk | Label | BundleParts | None:
    """A message on ``device``'s topic of ``kind`` (a modality, ``label``, ``bundle`` or
    ``prediction``) as an item, its chunks stamped with their ``arrival``; ``None`` for
    predictions (the gateway's own outputs share the prefix). Raises :class:`PayloadError`."""
    if kind == topics.LABEL:
        return decode_label(device, payload)
    if kind == topics.PREDICTION:
        return None
    if kind == topics.BUNDLE:
        return decode_bundle(device, payload, config.modalities, config.limits, arrival=arrival)
    return decode_chunk(device, kind, payload, config.modalities, config.limits, arrival)
