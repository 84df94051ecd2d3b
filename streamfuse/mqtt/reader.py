"""paho's packet reader, replaced: QoS 0 PUBLISH packets read in batches off a plain socket.

:class:`BatchedReader` takes one ``recv`` of everything the socket holds, where paho makes
one-byte reads of each packet's header and builds an ``MQTTMessage`` each; every QoS 0 PUBLISH
(MQTT 3.1.1) becomes a :class:`~streamfuse.types.RawMessage` directly, stamped with the clock
read once per socket read, and every other packet goes to paho's own handler.
:func:`streamfuse.mqtt.fastpath.install_ingest` installs it where it fits.

This reaches into paho's private parts (``_packet_read``, ``_in_packet``, ``_packet_handle``;
pyproject pins paho's minor version, ``tests/test_gateway_readpath.py`` fails if an upgrade
breaks them) and passes the call on to paho's own reader where its assumptions do not hold
(TLS, websockets, MQTT 5).
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable
from typing import Any

from paho.mqtt import client as _paho_client
from paho.mqtt.client import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

from ..types import RawMessage

#: most bytes one batched read takes off the socket
READ_BYTES = 1 << 18

_MQTTV5 = _paho_client.MQTTv5
#: paho's clock for "last bytes received" (its keepalive bookkeeping)
_time_func: Callable[[], float] = getattr(_paho_client, "time_func", time.monotonic)


def _fresh_in_packet() -> dict[str, Any]:
    """paho's state of "no packet begun" (as its ``_packet_read`` resets it)."""
    return {
        "command": 0,
        "have_remaining": 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": 0,
        "packet": bytearray(b""),
        "to_process": 0,
        "pos": 0,
    }


class BatchedReader:
    """paho's ``_packet_read`` for one client: whole packets, as many as the socket holds.

    paho reads a packet with a one-byte ``recv`` for its command, one per byte of its length
    and one or more for its body, then builds an ``MQTTMessage`` (with a lock and a condition
    variable) and logs it: about four system calls and a dozen objects per message. This reads
    up to :data:`READ_BYTES` at once and parses every complete packet in them: a QoS 0 PUBLISH
    (MQTT 3.1.1: topic length, topic, payload) goes to ``put`` as a
    :class:`~streamfuse.types.RawMessage` directly; any other packet (acknowledgements, pings,
    QoS 1/2 PUBLISH, anything malformed) is given to paho's own handler exactly as paho would
    have read it. A partial packet stays buffered until its remaining bytes arrive, which makes
    the socket readable again, so nothing complete is ever left waiting after a call.

    Falls back to paho's reader (the call is passed on) while its socket is not a plain TCP
    socket (TLS and websockets buffer on their own), for MQTT 5 (PUBLISH carries properties),
    or while paho itself is midway through a packet.

    ``clock`` (optional) is read once per ``recv`` that returned data: every message parsed
    from it carries that reading as its ``arrival``, and :attr:`read_at` holds it while the
    packets are handed on (NaN otherwise), for paho's handler to stamp what it builds.
    """

    def __init__(
        self,
        paho: Any,
        put: Callable[[RawMessage], object],
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._paho = paho
        self._put = put
        self._clock = clock
        #: the clock when the bytes being parsed came off the socket (NaN between reads)
        self.read_at = math.nan
        self._original = type(paho)._packet_read.__get__(paho)
        self._buf = bytearray()
        self._sock: Any = None
        self._mqtt5 = getattr(paho, "_protocol", None) == _MQTTV5
        #: socket reads that returned data, QoS 0 PUBLISH packets parsed here, and packets
        #: given to paho's handler
        self.reads = 0
        self.parsed = 0
        self.handed = 0

    @staticmethod
    def fits(paho: Any) -> bool:
        """paho has the private parts this reader drives."""
        names = (
            "_packet_read",
            "_packet_handle",
            "_in_packet",
            "_sock",
            "_protocol",
            "_msgtime_mutex",
            "_last_bytes_received",
        )
        return all(hasattr(paho, name) for name in names) and isinstance(
            getattr(paho, "_in_packet", None), dict
        )

    def __call__(self) -> MQTTErrorCode:
        paho = self._paho
        sock = paho._sock
        if sock is not self._sock:  # a new connection: bytes of the old one mean nothing
            self._buf.clear()
            self._sock = sock
        if not self._buf and (
            type(sock) is not socket.socket or self._mqtt5 or paho._in_packet["command"] != 0
        ):
            return self._original()  # type: ignore[no-any-return]
        try:
            data = sock.recv(READ_BYTES)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if not data:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        clock = self._clock
        at = clock() if clock is not None else math.nan
        self.reads += 1
        buf = self._buf
        if buf:  # a packet begun in an earlier read: parse it and what follows as one
            buf += data
            data = bytes(buf)
            buf.clear()
        # a packet split across reads arrived when its last bytes did: stamped with this read
        self.read_at = at
        try:
            rc, done = self._parse(data, at)
        finally:
            self.read_at = math.nan
        if done < len(data):  # the start of a packet whose rest is still to come
            buf += data[done:]
        with paho._msgtime_mutex:
            paho._last_bytes_received = _time_func()
        return rc

    def _parse(self, buf: bytes, at: float = math.nan) -> tuple[MQTTErrorCode, int]:
        """Hand on every whole packet in ``buf``; returns the code and how many bytes were
        used (the rest is a packet still incomplete; all of them after a broken stream)."""
        n = len(buf)
        pos = 0
        put = self._put
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        while n - pos >= 2:
            cmd = buf[pos]
            # the remaining length: up to four bytes of seven bits, least significant first
            length, mult, i = 0, 1, pos + 1
            while True:
                if i >= n:
                    return rc, pos  # the header is not all here yet
                b = buf[i]
                length += (b & 127) * mult
                mult *= 128
                i += 1
                if not b & 128:
                    break
                if i - pos > 4:
                    return MQTTErrorCode.MQTT_ERR_PROTOCOL, n  # as paho: a broken stream
            end = i + length
            if end > n:
                break
            if cmd & 0xF6 == 0x30 and length >= 2:  # PUBLISH at QoS 0 (any DUP/RETAIN)
                tl = (buf[i] << 8) | buf[i + 1]
                if 2 + tl <= length:
                    topic = buf[i + 2 : i + 2 + tl]
                    try:
                        text = topic.decode()
                    except UnicodeDecodeError:
                        text = topic.decode("utf-8", "backslashreplace")
                    self.parsed += 1
                    put(RawMessage(text, buf[i + 2 + tl : end], at))
                    pos = end
                    continue
            rc = self._hand(cmd, buf, pos, i, end, length, mult)
            pos = end
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        return rc, pos

    def _hand(
        self, cmd: int, buf: bytes, pos: int, i: int, end: int, length: int, mult: int
    ) -> MQTTErrorCode:
        """Give one whole packet to paho's handler, as if paho had read it."""
        paho = self._paho
        paho._in_packet = {
            "command": cmd,
            "have_remaining": 1,
            "remaining_count": list(buf[pos + 1 : i]),
            "remaining_mult": mult,
            "remaining_length": length,
            "packet": bytearray(buf[i:end]),
            "to_process": 0,
            "pos": 0,
        }
        self.handed += 1
        try:
            rc: MQTTErrorCode = paho._packet_handle()
        except MalformedPacket:
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        finally:
            paho._in_packet = _fresh_in_packet()
        return rc
