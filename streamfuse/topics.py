"""MQTT topic layout: ``{prefix}/{device}/{modality}``, ``.../bundle``, ``.../label``,
``.../prediction``; with shards, ``{prefix}/{shard}/{device}/...``, ``shard = crc32(device) % S``
(a shard's gateway then simply runs under the prefix ``{prefix}/{shard}``)."""

from __future__ import annotations

import re
import zlib
from typing import NamedTuple

from .errors import TopicError

DEFAULT_PREFIX = "streamfuse"
LABEL = "label"
PREDICTION = "prediction"
#: one message carrying a device's chunks of several modalities (``codec.decode_bundle``)
BUNDLE = "bundle"
RESERVED = frozenset({LABEL, PREDICTION, BUNDLE, "status", "metrics"})

_DEVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MODALITY_RE = re.compile(r"^[a-z][a-z0-9_]{0,11}$")
_PREFIX_LEVEL_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class Topic(NamedTuple):
    device: str
    kind: str  # a modality name, "bundle", "label" or "prediction"


def check_device(device: str) -> str:
    """Return ``device`` if it is a valid id (1–64 of ``A-Za-z0-9_.-``, no leading symbol)."""
    if not isinstance(device, str) or not _DEVICE_RE.match(device):
        raise TopicError(
            "bad_device",
            f"invalid device id {device!r}: use 1-64 characters of A-Z a-z 0-9 _ . -, "
            "starting with a letter or digit",
        )
    return device


def check_modality(modality: str) -> str:
    """Return ``modality`` if it is a valid name (1–12 of ``a-z0-9_``, starting with a letter)."""
    if not isinstance(modality, str) or not _MODALITY_RE.match(modality) or modality in RESERVED:
        raise TopicError(
            "bad_modality",
            f"invalid modality name {modality!r}: use 1-12 characters of a-z 0-9 _, "
            f"starting with a letter, not one of {sorted(RESERVED)}",
        )
    return modality


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if every level is plain (no wildcards, no empty levels)."""
    levels = prefix.split("/") if isinstance(prefix, str) else [""]
    if not all(_PREFIX_LEVEL_RE.match(level) for level in levels):
        raise TopicError(
            "bad_prefix",
            f"invalid topic prefix {prefix!r}: levels of A-Z a-z 0-9 _ . - separated by '/', "
            "no wildcards",
        )
    return prefix


def data_topic(prefix: str, device: str, modality: str) -> str:
    return f"{prefix}/{check_device(device)}/{check_modality(modality)}"


def bundle_topic(prefix: str, device: str) -> str:
    return f"{prefix}/{check_device(device)}/{BUNDLE}"


def label_topic(prefix: str, device: str) -> str:
    return f"{prefix}/{check_device(device)}/{LABEL}"


def prediction_topic(prefix: str, device: str) -> str:
    return f"{prefix}/{check_device(device)}/{PREDICTION}"


def subscription(prefix: str) -> str:
    """The one filter that covers every device's data and labels under ``prefix``."""
    return f"{check_prefix(prefix)}/+/+"


def parse(topic: str, prefix: str) -> Topic:
    """Split ``topic`` into device and kind, or raise :class:`TopicError` saying why not."""
    head = prefix + "/"
    if not topic.startswith(head):
        raise TopicError("bad_topic", f"topic {topic!r} is not under prefix {prefix!r}")
    rest = topic[len(head) :].split("/")
    if len(rest) != 2:
        raise TopicError(
            "bad_topic", f"topic {topic!r} must be {prefix}/<device>/<modality|bundle|label>"
        )
    device, kind = rest
    check_device(device)
    if kind not in (LABEL, PREDICTION, BUNDLE):
        if not _MODALITY_RE.match(kind):
            raise TopicError(
                "bad_modality", f"invalid modality {kind!r} in topic {topic!r}", device=device
            )
    return Topic(device, kind)


#: parsed topics an engine remembers (a few per device); past this the memory starts afresh,
#: so junk topics cannot grow it
TOPICS_KEPT = 65536


class TopicMemory(dict[str, Topic]):
    """Topics that parsed under ``prefix``, remembered: a device sends on the same few, so a
    message's topic costs one dict lookup, not a split and two regex matches (1.3 % of the
    gateway at 1,000 devices). Bounded by :data:`TOPICS_KEPT`; pickles empty (a cache)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def parse(self, topic: str) -> Topic:
        """:func:`parse` of ``topic``, remembered; raises as it does for a bad topic."""
        parsed = self.get(topic)
        if parsed is None:
            parsed = parse(topic, self.prefix)
            if len(self) >= TOPICS_KEPT:
                self.clear()
            self[topic] = parsed
        return parsed

    def __reduce__(self) -> tuple[type[TopicMemory], tuple[str]]:
        return (TopicMemory, (self.prefix,))


# ---------------------------------------------------------------------------- shards
#: the most shards a deployment may have (a topic level of at most 5 digits)
MAX_SHARDS = 65536


def shard_of(device: str, shards: int) -> int:
    """The shard of ``device`` among ``shards``: ``zlib.crc32`` of its UTF-8 id modulo
    ``shards``, the rule a device maker implements (``docs/wire-format.md``).

    >>> shard_of("w0001", 8), shard_of("w0002", 8)
    (2, 0)
    """
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards must be 1..{MAX_SHARDS}, got {shards}")
    return zlib.crc32(check_device(device).encode("utf-8")) % shards


def shard_prefix(prefix: str, shard: int) -> str:
    """The prefix a shard's topics live under: ``{prefix}/{shard}`` (decimal, no padding)."""
    if not 0 <= shard < MAX_SHARDS:
        raise ValueError(f"shard must be 0..{MAX_SHARDS - 1}, got {shard}")
    return f"{prefix}/{shard}"


def device_prefix(prefix: str, device: str, shards: int) -> str:
    """The prefix ``device`` publishes under: ``prefix`` itself without shards (``shards`` 0),
    else ``{prefix}/{shard_of(device, shards)}``."""
    return prefix if shards == 0 else shard_prefix(prefix, shard_of(device, shards))


def parse_shard_set(text: str, shards: int) -> tuple[int, ...]:
    """Shards named by ``text`` (``"0-3,7"``; empty: all of them), sorted, each checked to be
    below ``shards``; raises :class:`ValueError` saying what is wrong."""
    if not 0 <= shards <= MAX_SHARDS:
        raise ValueError(f"the shard count must be 0..{MAX_SHARDS}, got {shards}")
    if not text.strip():
        return tuple(range(shards))
    out: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"{part!r} is not a shard number or a range like 0-7") from None
        if not 0 <= first <= last < shards:
            raise ValueError(f"shard {part!r} is outside 0..{shards - 1}")
        out.update(range(first, last + 1))
    return tuple(sorted(out))
