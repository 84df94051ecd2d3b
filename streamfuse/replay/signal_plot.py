"""Decoded signal channels for MCAP viewers: one JSON message per (decimated) sample.

A session keeps each data message exactly as received (that is what replay reads). Viewers
such as Foxglove cannot plot those bytes: they plot numeric fields of messages whose schema
they know, one point per message. So, beside the raw channels, the recorder writes for every
stream ``{prefix}/{device}/{modality}`` a derived channel ``{prefix}/{device}/{modality}/signal``
(message encoding ``json``, schema ``streamfuse.signal.<modality>`` in ``jsonschema``
encoding) holding one message per sample, or per ``k``-th sample when the stream is faster
than ``max_hz`` (decimation by picking, so the values plotted are real samples)::

    {"timestamp": {"sec": 1764333018, "nsec": 412000000}, "device_t": 5012.312,
     "Fp1": 12.5, "Fp2": -3.25, ...}

one number per channel, named as in the ``[modalities]`` configuration.

Times: ``device_t`` is the sample's time on the device clock (``t0 + i / fs``). The message's
log time (and ``timestamp``, the same instant as ``{sec, nsec}``) puts it on the recorder's
clock, the timeline of every other channel of the session, by a per-device offset: the
smallest ``arrival - (device time of the chunk's last sample)`` seen so far (a minimum-delay
estimate, as the gateway's clock model makes; all modalities of a device share it). A sample is
therefore never placed after the message that carried it arrived. When a chunk implies an
offset more than ``reset_s`` larger (the device clock stepped back: a reboot), the offset is
re-estimated from that chunk. Within a stream log times never go backwards (a sample that would
is placed 1 ns after the previous one).

Nothing here does IO; :mod:`.recorder` writes what :meth:`SignalPlotter.messages` returns.
Messages that do not decode (or name an unconfigured modality) produce no plot messages and are
counted in :attr:`SignalPlotter.skipped`; the raw channel still holds them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .. import topics
from ..codec import decode_bundle, decode_chunk, encode_bundle, encode_chunk
from ..config import DEFAULT_MODALITIES, ModalitySpec
from ..errors import PayloadError, TopicError
from ..types import Chunk

#: last topic level of a derived signal channel
SIGNAL = "signal"
#: MCAP channel metadata key marking a channel derived by the recorder (replay skips them)
DERIVED_KEY = "streamfuse.derived"
#: a stream faster than this is decimated (every k-th sample) in its signal channel
DEFAULT_MAX_HZ = 128.0
_NS = 1_000_000_000


def signal_topic(prefix: str, device: str, modality: str) -> str:
    """The derived channel of a stream: ``{prefix}/{device}/{modality}/signal``."""
    return f"{topics.data_topic(prefix, device, modality)}/{SIGNAL}"


def schema_name(modality: str) -> str:
    """The MCAP schema name of ``modality``'s signal channel."""
    return f"streamfuse.signal.{modality}"


def signal_schema(spec: ModalitySpec) -> dict[str, Any]:
    """The JSON Schema of ``spec``'s per-sample messages (one number per channel)."""
    unit = f" ({spec.unit})" if spec.unit else ""
    channels = {
        name: {"type": "number", "description": f"{spec.name} channel {name}{unit}"}
        for name in spec.channel_names
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": schema_name(spec.name),
        "description": f"One {spec.name} sample (decoded from the recorded chunks)",
        "type": "object",
        "properties": {
            "timestamp": {
                "type": "object",
                "title": "Time",
                "description": "the sample on the recording's (gateway) clock",
                "properties": {
                    "sec": {"type": "integer", "minimum": 0},
                    "nsec": {"type": "integer", "minimum": 0, "maximum": 999_999_999},
                },
                "required": ["sec", "nsec"],
                "additionalProperties": False,
            },
            "device_t": {"type": "number", "description": "the sample's device-clock time, s"},
            **channels,
        },
        "required": ["timestamp", "device_t", *spec.channel_names],
        "additionalProperties": False,
    }


@dataclass(frozen=True, slots=True)
class PlotMessage:
    """One message of a derived signal channel: where, which schema, when (ns), what."""

    topic: str
    modality: str
    log_time: int
    data: bytes


class SignalPlotter:
    """Turn recorded data messages into per-sample plot messages (see the module docstring).

    Parameters
    ----------
    prefix
        The topic prefix being recorded; other topics produce nothing.
    modalities
        Channel names and rates (the gateway's ``[modalities]``; default ECG, EEG, ACC).
    max_hz
        Decimate a stream faster than this to every ``ceil(fs / max_hz)``-th sample
        (``inf``: keep every sample).
    reset_s
        Re-estimate a device's clock offset when a chunk implies one this much larger.
    """

    def __init__(
        self,
        prefix: str,
        modalities: Mapping[str, ModalitySpec] = DEFAULT_MODALITIES,
        *,
        max_hz: float = DEFAULT_MAX_HZ,
        reset_s: float = 5.0,
    ) -> None:
        if not max_hz > 0:  # inf: every sample
            raise ValueError(f"max_hz must be a positive rate, got {max_hz}")
        self.prefix = topics.check_prefix(prefix)
        self.modalities = dict(modalities)
        self.max_hz = max_hz
        self.reset_s = reset_s
        self.skipped: Counter[str] = Counter()
        self._offset: dict[str, float] = {}  # device -> gateway minus device clock (s)
        self._phase: dict[tuple[str, str], int] = {}  # stream -> samples to skip next
        self._last_ns: dict[tuple[str, str], int] = {}  # stream -> last log time written

    def warm_up(self) -> None:
        """Before the first real message: decode one frame and one bundle of every configured
        modality and forget them (all state is reset). The decoders' compiled kernels load
        now (1.2 s here), not at the first recorded message, whose arrival stamp and every
        one queued behind it would be that much late (and replay would then place the
        device's windows elsewhere: ``tests/test_gateway_replay.py`` caught it)."""
        device = "warm-up"
        for spec in self.modalities.values():
            chunk = Chunk(device, spec.name, 0, 0.0, spec.fs, np.zeros((2, spec.channels), "f4"))
            self.messages(topics.data_topic(self.prefix, device, spec.name),
                          encode_chunk(chunk), 1.0)  # fmt: skip
            self.messages(topics.bundle_topic(self.prefix, device), encode_bundle([chunk]), 1.0)
        self.skipped.clear()
        self._offset.clear()
        self._phase.clear()
        self._last_ns.clear()

    def schemas(self) -> dict[str, dict[str, Any]]:
        """Each configured modality's schema by schema name."""
        return {schema_name(m): signal_schema(s) for m, s in self.modalities.items()}

    def messages(self, topic: str, payload: bytes, arrival: float) -> list[PlotMessage]:
        """The plot messages of one recorded message (none for labels, predictions, others)."""
        try:
            parsed = topics.parse(topic, self.prefix)
        except TopicError:
            return []
        if parsed.kind in (topics.LABEL, topics.PREDICTION):
            return []
        try:
            if parsed.kind == topics.BUNDLE:
                chunks = decode_bundle(parsed.device, payload, self.modalities).chunks
            else:
                chunks = [decode_chunk(parsed.device, parsed.kind, payload, self.modalities)]
        except PayloadError as exc:
            self.skipped[exc.reason] += 1
            return []
        out: list[PlotMessage] = []
        for chunk in chunks:
            out.extend(self._chunk(chunk, arrival))
        return out

    def _chunk(self, chunk: Chunk, arrival: float) -> list[PlotMessage]:
        device, modality = chunk.device, chunk.modality
        spec = self.modalities[modality]
        t_last = chunk.t0 + (chunk.n - 1) / chunk.fs
        offset = self._offset.get(device)
        candidate = arrival - t_last
        if offset is None or candidate < offset or candidate - offset > self.reset_s:
            offset = self._offset[device] = candidate
        key = (device, modality)
        step = max(1, math.ceil(chunk.fs / self.max_hz - 1e-9))
        first = self._phase.get(key, 0)
        picks = np.arange(first, chunk.n, step)
        # where the next chunk's first pick falls, so decimation runs on across chunks
        self._phase[key] = int(picks[-1]) + step - chunk.n if picks.size else first - chunk.n
        if picks.size == 0:
            return []
        topic = signal_topic(self.prefix, device, modality)
        names = spec.channel_names
        device_t = chunk.t0 + picks / chunk.fs
        log_ns = np.round((device_t + offset) * _NS).astype(np.int64).tolist()
        last = self._last_ns.get(key, -1)
        out = []
        for t_dev, ns, row in zip(device_t.tolist(), log_ns, chunk.data[picks], strict=True):
            if ns <= last:  # never back in time within a stream (nor before 0: uint64)
                ns = last + 1
            last = ns
            body: dict[str, Any] = {"timestamp": {"sec": ns // _NS, "nsec": ns % _NS}}
            body["device_t"] = t_dev
            body.update(zip(names, row, strict=True))
            out.append(PlotMessage(topic, modality, ns, orjson.dumps(body, option=_NUMPY)))
        self._last_ns[key] = last
        return out


_NUMPY = orjson.OPT_SERIALIZE_NUMPY
