"""MQTT 3.1.1 packets as bytes on the wire, for tests and benchmarks of the packet reader."""

from __future__ import annotations


def remaining_length(n: int) -> bytes:
    """The variable-length "remaining length" field: seven bits a byte, low bits first."""
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (128 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(
    topic: bytes, payload: bytes, qos: int = 0, mid: int = 1, flags: int = 0
) -> bytes:
    """A whole PUBLISH packet (``flags``: the DUP and RETAIN bits, 0b1000 and 0b0001)."""
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"")
    return (
        bytes([0x30 | (qos << 1) | flags]) + remaining_length(len(body) + len(payload))
        + body + payload
    )
