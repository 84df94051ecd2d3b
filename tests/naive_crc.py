"""An independent CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), bit by bit: the rule a
device maker implements to pick its shard, written from the definition, not from zlib."""

from __future__ import annotations


def crc32(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def shard(device: str, shards: int) -> int:
    return crc32(device.encode("utf-8")) % shards
