"""Sessions on disk: raw MQTT messages (topic, payload, arrival) in an MCAP file.

One MCAP channel per MQTT topic, the payload stored as received (the wire format of
``docs/wire-format.md``), ``log_time`` the gateway-clock arrival in integer nanoseconds. Data
topics carry message encoding ``streamfuse`` (binary frames, or JSON chunks); the prediction
and label topics, always JSON, carry encoding ``json`` with the package's JSON Schema
(``jsonschema`` schema encoding), so Foxglove and other MCAP viewers decode them and plot their
fields (``proba``, ``levels``, ``metrics``, window times) without knowing streamfuse.

Given a :class:`~.signal_plot.SignalPlotter`, the writer also adds a derived channel per stream,
``{prefix}/{device}/{modality}/signal``: one JSON message per (decimated) sample with a number
per channel, which viewers plot as signals. Those channels carry the metadata
``streamfuse.derived = signal``; :func:`read_session` skips them, so replay sees exactly the
messages that were received.

The writer closes a chunk at least every ``flush_s`` seconds of arrival time
and flushes it to the OS, so a recorder that is killed leaves a file readable up to its last
completed chunk; :func:`read_session` reads such a file to that point and says so in the log.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO

import orjson
from mcap.exceptions import McapError
from mcap.records import Channel, Header, Message
from mcap.stream_reader import StreamReader
from mcap.writer import CompressionType, Writer

from ..errors import DataSourceError
from ..types import RawMessage
from .signal_plot import DERIVED_KEY, SIGNAL, SignalPlotter, schema_name

log = logging.getLogger("streamfuse.replay.mcap_io")

ENCODING = "streamfuse"
PROFILE = "streamfuse"
#: topic kind (last level) -> the shipped JSON Schema its JSON payloads follow
JSON_KINDS = {"prediction": "prediction", "label": "label"}


def to_ns(t: float) -> int:
    """Seconds (float) to integer nanoseconds, exactly rounded.

    With :func:`from_ns` this round-trips every epoch time (any float above ~1e7 s) bit
    for bit (a float's step there is >= 2 ns, above the 0.5 ns rounding), so a replay pushes
    exactly the ``now`` the live engine saw.
    """
    return round(Fraction(t) * 1_000_000_000)


def from_ns(ns: int) -> float:
    """Integer nanoseconds to float seconds (correctly rounded integer division)."""
    return ns / 1_000_000_000


@dataclass(frozen=True, slots=True)
class SessionMessage:
    """One recorded message: the raw MQTT message and its gateway-clock arrival (s)."""

    message: RawMessage
    arrival: float


class SessionWriter:
    """Append raw messages to an MCAP file, flushing a completed chunk every ``flush_s``.

    Parameters
    ----------
    path
        Output file (created or truncated).
    flush_s
        Close and flush the open chunk once it spans this much arrival time (seconds).
    metadata
        Written once as the ``streamfuse.session`` metadata record (e.g. broker, prefix).
    plotter
        Also write each data message's samples to derived signal channels (none if None).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        flush_s: float = 1.0,
        metadata: dict[str, str] | None = None,
        plotter: SignalPlotter | None = None,
    ) -> None:
        if not (math.isfinite(flush_s) and flush_s > 0):
            raise ValueError(f"flush_s must be a positive number of seconds, got {flush_s}")
        self.path = Path(path)
        self.flush_s = flush_s
        self._fh: IO[bytes] = self.path.open("wb")
        self._writer = Writer(self._fh, compression=CompressionType.ZSTD)
        self._writer.start(profile=PROFILE, library="streamfuse")
        if metadata:
            self._writer.add_metadata("streamfuse.session", dict(metadata))
        self._writer.flush()  # magic + header on disk: an empty session is already readable
        self._channels: dict[str, int] = {}
        # kept apart: a device may publish junk on a raw topic spelt like a derived one
        self._signals: dict[str, int] = {}
        self._schemas: dict[str, int] = {}
        self._chunk_start: float | None = None
        self.plotter = plotter
        self.count = 0  # messages received (the raw channels)
        self.plot_count = 0  # messages written to derived signal channels
        self._closed = False

    def write(self, topic: str, payload: bytes, arrival: float) -> None:
        """Record one message that arrived at gateway time ``arrival`` (seconds)."""
        cid = self._channels.get(topic)
        if cid is None:
            cid = self._register(topic)
        ns = to_ns(arrival)
        self._writer.add_message(
            cid, log_time=ns, data=payload, publish_time=ns, sequence=self.count
        )
        self.count += 1
        if self.plotter is not None:
            for plot in self.plotter.messages(topic, payload, arrival):
                pid = self._signals.get(plot.topic)
                if pid is None:
                    pid = self._register_signal(plot.topic, plot.modality)
                self._writer.add_message(
                    pid, log_time=plot.log_time, data=plot.data, publish_time=plot.log_time,
                    sequence=self.plot_count,
                )  # fmt: skip
                self.plot_count += 1
        if self._chunk_start is None:
            self._chunk_start = arrival
        elif arrival - self._chunk_start >= self.flush_s:
            self.flush()

    def _register(self, topic: str) -> int:
        """A channel for ``topic``: JSON with its schema for predictions and labels, the
        ``streamfuse`` wire encoding (no schema) for everything else."""
        kind = JSON_KINDS.get(topic.rpartition("/")[2])
        if kind is None:
            cid = self._writer.register_channel(topic, ENCODING, schema_id=0)
        else:
            sid = self._schemas.get(kind)
            if sid is None:
                from ..schemas import schema_text

                sid = self._writer.register_schema(
                    f"streamfuse.{kind}", "jsonschema", schema_text(kind).encode()
                )
                self._schemas[kind] = sid
            cid = self._writer.register_channel(topic, "json", schema_id=sid)
        self._channels[topic] = cid
        return cid

    def _register_signal(self, topic: str, modality: str) -> int:
        """A derived signal channel (JSON, its modality's schema), marked for replay to skip."""
        assert self.plotter is not None
        name = schema_name(modality)
        sid = self._schemas.get(name)
        if sid is None:
            schema = self.plotter.schemas()[name]
            sid = self._writer.register_schema(name, "jsonschema", orjson.dumps(schema))
            self._schemas[name] = sid
        source = topic.removesuffix("/" + SIGNAL)
        cid = self._writer.register_channel(
            topic, "json", schema_id=sid, metadata={DERIVED_KEY: SIGNAL, "source": source}
        )
        self._signals[topic] = cid
        return cid

    def flush(self) -> None:
        """Close the open chunk and hand it to the OS (survives the process, not a power cut)."""
        self._writer.flush()
        self._chunk_start = None

    def close(self) -> None:
        """Write the summary and footer (the file is then indexed and complete)."""
        if self._closed:
            return
        self._closed = True
        self._writer.finish()
        self._fh.close()

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_session(path: str | Path) -> Iterator[SessionMessage]:
    """Every message of a session file in file order (which is arrival order).

    A file cut short (a killed recorder) yields everything up to its last complete chunk and logs
    a warning; a file that is not MCAP at all raises :class:`DataSourceError` naming it. Derived
    channels (the recorder's signal channels) are skipped: only received messages come out.
    """
    p = Path(path)
    if not p.is_file():
        raise DataSourceError(f"{p}: no such session file")
    channels: dict[int, str] = {}
    derived: set[int] = set()
    with p.open("rb") as fh:
        reader = StreamReader(fh, validate_crcs=True)
        n = 0
        header = False
        try:
            for record in reader.records:
                if isinstance(record, Header):
                    header = True
                elif isinstance(record, Channel):
                    channels[record.id] = record.topic
                    if DERIVED_KEY in record.metadata:
                        derived.add(record.id)
                elif isinstance(record, Message):
                    if record.channel_id in derived:
                        continue
                    topic = channels.get(record.channel_id)
                    if topic is None:
                        raise DataSourceError(
                            f"{p}: message refers to unknown channel {record.channel_id}"
                        )
                    n += 1
                    yield SessionMessage(
                        RawMessage(topic, bytes(record.data)), from_ns(record.log_time)
                    )
        except (McapError, struct.error, ValueError, EOFError) as exc:
            # a torn last record shows up as EndOfFile or as a short struct read
            if not header:
                raise DataSourceError(f"{p}: not a readable MCAP session ({exc!r})") from exc
            log.warning("%s: file ends early (%r); read %d messages up to the cut", p, exc, n)
