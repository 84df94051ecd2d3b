"""The JSON forms: chunks from hand-made clients, labels, and the predictions we publish.

Parsing is :func:`orjson.loads`, which refuses what would make a recursive or arbitrary-
precision parser fail outside its error type: nesting deeper than 1,024 levels (Python's
``json`` raised ``RecursionError`` near 1,000) and a number beyond the float range such as
``1e400`` (``json`` made ``inf`` of it, or an integer that ``float()`` could not convert,
raising ``OverflowError``). Both are plain :class:`orjson.JSONDecodeError` and become a
``bad_json`` rejection here. Strict JSON (RFC 8259): ``NaN`` and ``Infinity`` are not JSON
and are refused as ``bad_json`` too.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson

from ..config import Limits, ModalitySpec
from ..errors import PayloadError
from ..types import Chunk, Label, Prediction
from .checks import brief, check_shape, number

#: the largest label payload read (a label is three short fields)
MAX_LABEL_BYTES = 4096
#: float32's largest finite value: a JSON sample beyond it is not a float32 sample
_F32_MAX = float(np.finfo(np.float32).max)


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


def _loads(payload: bytes, what: str, device: str, modality: str) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(
            "bad_json",
            f"invalid {what}: {exc} (send strict UTF-8 JSON: numbers within the float range, "
            "no NaN or Infinity, nested at most 1,024 levels)",
            device=device,
            modality=modality,
        ) from exc


def decode_json(
    device: str, modality: str, payload: bytes, spec: ModalitySpec, limits: Limits
) -> tuple[int, float, float, np.ndarray]:
    """``(seq, t0, fs, samples as float32)`` of a JSON chunk; times and finiteness are the
    caller's to check."""
    obj = _loads(payload, "JSON", device, modality)
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
            f"seq must be a non-negative integer, got {brief(seq)}",
            device=device,
            modality=modality,
        )
    if "modality" in obj and obj["modality"] != modality:
        raise PayloadError(
            "modality_mismatch",
            f"payload says modality {brief(obj['modality'])} but arrived on the {modality!r} "
            "topic",
            device=device,
            modality=modality,
            seq=seq,
        )
    t0, fs = (
        number(obj["t0"], "t0", device, modality, seq),
        number(obj["fs"], "fs", device, modality, seq),
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
    check_shape(device, modality, seq, n, ch, spec, limits)
    try:
        data = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(
            "bad_field",
            f"data holds non-numbers: {str(exc)[:120]}",
            device=device,
            modality=modality,
            seq=seq,
        ) from exc
    if data.shape != (n, ch):
        raise PayloadError(
            "bad_field", f"data has shape {data.shape}", device=device, modality=modality, seq=seq
        )
    # beyond float32's range a sample would become infinite (and the cast warn): say so here
    too_big = np.abs(data) > _F32_MAX
    if too_big.any():
        data[too_big] = np.inf * np.sign(data[too_big])
    return seq, t0, fs, data.astype(np.float32)


def decode_label(device: str, payload: bytes) -> Label:
    """Decode a label message: ``{"t_start": s, "t_end": s, "value": "class"}`` (device clock)."""
    if len(payload) > MAX_LABEL_BYTES:
        raise PayloadError(
            "oversize",
            f"label payload of {len(payload)} bytes is too large",
            device=device,
            modality="label",
        )
    obj = _loads(payload, "label JSON", device, "label")
    if not isinstance(obj, dict) or not {"t_start", "t_end", "value"} <= obj.keys():
        raise PayloadError(
            "bad_field",
            "label must be an object with t_start, t_end, value",
            device=device,
            modality="label",
        )
    t_start = number(obj["t_start"], "t_start", device, "label", -1)
    t_end = number(obj["t_end"], "t_end", device, "label", -1)
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
            f"label value must be a short string, got {brief(value)}",
            device=device,
            modality="label",
        )
    return Label(device, t_start, t_end, value)
