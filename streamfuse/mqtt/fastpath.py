"""The paths around aiomqtt's paho client that run once per message, made cheap.

aiomqtt keeps paho for the protocol (connect, subscribe, keepalive, acknowledgements,
disconnect detection) and turns every received PUBLISH into its own message objects; the
gateway and the benchmark's clients move thousands of messages a second, where that per-message
Python dominates. Here:

- :func:`install_ingest`: every PUBLISH reaches a callable as a
  :class:`~streamfuse.types.RawMessage`, without aiomqtt's message objects or paho's topic
  matching; on a plain TCP socket, QoS 0 PUBLISH packets (MQTT 3.1.1) are also read in batches
  (:class:`~streamfuse.mqtt.reader.BatchedReader`): one ``recv`` for everything the socket
  holds, instead of paho's one-byte reads of each packet's header and a ``MQTTMessage`` each.
  Given a clock, each message carries its ``arrival``: the clock read once per socket read,
  when the bytes came off the socket, so that time spent queued in the gateway is never taken
  for network delay.
- :func:`publish_now`: QoS 0 messages written to the socket at once, without an event-loop
  turn each.

These reach into paho's private parts (``_handle_on_message``, ``_packet_read``,
``_registered_write``, ``_out_packet``; :mod:`.reader` those of its packet reader; pyproject
pins paho's minor version, ``tests/test_gateway_readpath.py`` fails if an upgrade breaks them);
each falls back to paho's own code where its assumptions do not hold (TLS, websockets, MQTT 5,
QoS 1/2).
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable
from typing import Any

import aiomqtt
from paho.mqtt import client as _paho_client

from ..types import RawMessage
from .reader import BatchedReader

_MQTTV5 = _paho_client.MQTTv5
#: paho's clock for "last message sent" (its keepalive bookkeeping)
_time_func: Callable[[], float] = getattr(_paho_client, "time_func", time.monotonic)


def raw_from_paho(message: Any, arrival: float = math.nan) -> RawMessage:
    """A paho ``MQTTMessage`` as a :class:`RawMessage` that arrived at ``arrival``: the topic
    decoded once, no payload copy (paho's are ``bytes``; anything else is copied). A topic that
    is not UTF-8 is kept readable with backslash escapes for the engine to reject, where paho's
    ``topic`` would raise."""
    topic = message._topic
    try:
        text = topic.decode()
    except UnicodeDecodeError:
        text = topic.decode("utf-8", "backslashreplace")
    payload = message.payload
    if type(payload) is not bytes:
        payload = bytes(payload)
    return RawMessage(text, payload, arrival)


def install_ingest(
    client: aiomqtt.Client,
    put: Callable[[RawMessage], bool | None],
    commit: Callable[[], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> bool:
    """Make ``client``'s paho hand every received message to ``put`` as a :class:`RawMessage`,
    and acknowledge QoS 1/2 messages only after ``commit`` has run.

    aiomqtt's ``on_message`` builds an ``aiomqtt.Message`` (and a validated ``Topic``) per
    message, and paho looks every topic up in its (empty) table of per-topic callbacks first.
    paho calls ``_handle_on_message`` for each PUBLISH it has read (QoS 0 and 1 at once, QoS 2
    on PUBREL); replacing it on this one client skips all that and leaves keepalive and
    disconnect detection alone. Where it fits, paho's packet reader is replaced too
    (:class:`BatchedReader`).

    **Acknowledgements follow** ``commit`` (the gateway's journal write): manual
    acknowledgement is on; the ids of the QoS 1/2 messages ``put`` took (anything but False;
    False: refused, left for the broker to deliver on the next session) are kept, and after
    each read of the socket ``commit`` runs, then they are acknowledged.

    **Arrival**: with a ``clock``, every message's ``arrival`` is the clock read when the socket
    read that yielded it returned: once per ``recv`` of the :class:`BatchedReader` (for the QoS
    0 packets it parses and the others it hands to paho alike), and once per message read by
    paho's own reader (which reads one packet per call). Without one, ``arrival`` stays NaN.

    Returns False if this paho has no ``_handle_on_message``: then ``on_message`` is replaced
    instead (paho's matching stays), each message committed and acknowledged on its own.
    """
    paho = client._client
    acks: list[tuple[int, int]] = []
    reader = getattr(paho, "_packet_read", None)
    batched = callable(reader) and commit is not None
    batch_reader: BatchedReader | None = None

    def arrival() -> float:
        """When the bytes of the message paho is handing over came off the socket."""
        if batch_reader is not None:
            at = batch_reader.read_at
            if at == at:  # within a batched read: its time (NaN: paho's own reader)
                return at
        return clock() if clock is not None else math.nan

    def on_message(message: Any) -> None:
        kept = put(raw_from_paho(message, arrival()))
        if message.qos and kept is not False:
            acks.append((message.mid, message.qos))
            if not batched:
                settle()

    def settle() -> None:
        if commit is not None:
            commit()
        for mid, qos in acks:
            paho.ack(mid, qos)
        acks.clear()

    paho.manual_ack_set(True)
    # aiomqtt's callback is detached either way: nothing builds its messages any more
    paho.on_message = lambda _client, _userdata, message: on_message(message)
    if not callable(getattr(type(paho), "_handle_on_message", None)):
        batched = False
        return False
    paho._handle_on_message = on_message  # type: ignore[method-assign]
    if BatchedReader.fits(paho):
        batch_reader = BatchedReader(paho, put, clock)
        reader = paho._packet_read = batch_reader  # type: ignore[method-assign]
    if batched:
        read = reader

        def packet_read() -> Any:
            try:
                return read()  # type: ignore[misc]
            finally:
                settle()

        paho._packet_read = packet_read  # type: ignore[method-assign]
    return True


def publish_now(paho: Any, messages: list[tuple[str, bytes]]) -> int:
    """Publish ``(topic, payload)`` pairs at QoS 0 through aiomqtt's paho client, written to
    the socket at once; returns how many paho took, in order (it refuses when not connected).

    aiomqtt's ``publish`` awaits paho's "written" callback (an event-loop turn per message),
    and paho asks aiomqtt for a write watch on every publish, which aiomqtt schedules with
    ``call_soon_threadsafe`` (a self-pipe write each). Marking the watch as already requested
    suppresses that while we write ourselves; what the socket does not take now, paho keeps
    queued and asks for the watch (through aiomqtt), which sends it when the socket is ready.
    Not when a watch was already requested: aiomqtt may not have installed it yet, and one
    installed after paho's queue emptied would never be removed (a spinning loop).

    On a plain TCP socket (MQTT 3.1.1, connected, nothing of paho's waiting to be written) the
    PUBLISH packets are built here and sent in one ``send``: paho's ``publish`` costs ~50 us
    per message (a message-info object with its condition variable, locks, its queue). What
    the socket does not take is handed to paho's queue, which finishes it in order.
    """
    if _direct_fits(paho):
        sent = _write_direct(paho, messages)
        if sent >= 0:
            return sent
    quiet = hasattr(paho, "_registered_write") and not paho.want_write()
    if quiet:
        paho._registered_write = True
    sent = 0
    try:
        for topic, payload in messages:
            if paho.publish(topic, payload, 0).rc != 0:
                break
            sent += 1
    finally:
        if quiet:
            paho._registered_write = False
    if sent and quiet:
        paho.loop_write()
    return sent


def publish_acked(paho: Any, messages: list[tuple[str, bytes]], qos: int) -> list[int]:
    """Hand ``(topic, payload)`` pairs to paho at QoS 1 or 2 without awaiting anything;
    returns the message ids paho took, in order (it refuses when not connected).

    aiomqtt's ``publish`` awaits each acknowledgement before returning, so publishing one
    prediction after another costs a broker round trip each, and a busy loop makes the round
    trips long. paho itself keeps up to its in-flight limit unacknowledged and sends the rest as
    acknowledgements come in; its ``on_publish`` callback reports each acknowledged id. As in
    :func:`publish_now`, the write watch is not requested per message: the packets are written
    once, after the batch.
    """
    quiet = hasattr(paho, "_registered_write") and not paho.want_write()
    if quiet:
        paho._registered_write = True
    mids: list[int] = []
    try:
        for topic, payload in messages:
            info = paho.publish(topic, payload, qos)
            if info.rc != 0:
                break
            mids.append(info.mid)
    finally:
        if quiet:
            paho._registered_write = False
    if mids and quiet:
        paho.loop_write()
    return mids


def _direct_fits(paho: Any) -> bool:
    """paho is connected over plain TCP with MQTT 3.1.1 and has nothing queued to write."""
    try:
        return (
            type(paho._sock) is socket.socket
            and not paho._out_packet
            and paho._protocol != _MQTTV5
            and paho.is_connected()
        )
    except AttributeError:  # a paho without these parts
        return False


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (128 if n else 0))
        if not n:
            return bytes(out)


def _write_direct(paho: Any, messages: list[tuple[str, bytes]]) -> int:
    """QoS 0 PUBLISH packets of ``messages`` (MQTT 3.1.1: no packet id) in one ``send``;
    how many were taken, or -1 (nothing sent) if one does not fit a packet: paho decides."""
    parts: list[bytes] = []
    for topic, payload in messages:
        name = topic.encode()
        size = 2 + len(name) + len(payload)
        if len(name) > 0xFFFF or size >= 1 << 28 or "+" in topic or "#" in topic:
            return -1  # not a topic or packet paho would send (it raises): let it say so
        parts += (b"\x30", _remaining_length(size), len(name).to_bytes(2, "big"), name, payload)
    data = b"".join(parts)
    sock = paho._sock
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        return 0  # a broken connection: paho's reader reports it; the caller keeps them
    if sent < len(data):
        # the rest goes first in paho's (empty) queue, written when the socket is ready
        rest = data[sent:]
        paho._out_packet.append(
            {
                "command": 0x30,
                "mid": 0,
                "qos": 0,
                "pos": 0,
                "to_process": len(rest),
                "packet": rest,
                "info": _paho_client.MQTTMessageInfo(0),
            }
        )
        paho._call_socket_register_write()
    with paho._msgtime_mutex:
        paho._last_msg_out = _time_func()
    return len(messages)


def protocol_of(client: Any) -> Any:
    """The paho client inside an :class:`aiomqtt.Client` (None if it has none)."""
    return getattr(client, "_client", None)
