"""Broker addresses: an ``mqtt://`` or ``mqtts://`` URL read once into what a client needs.

The scheme decides the transport and nothing later can undo it: ``mqtts://`` always means TLS
(:func:`streamfuse.mqtt.client.connect` refuses to open it as plain TCP), so credentials in an
``mqtts://`` URL never cross the network in clear. Standard library only: the gateway's
configuration checks a URL without loading an MQTT client.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from ..errors import BrokerError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
LOOPBACK = "127.0.0.1"
#: what stands for a password in any broker URL an error message or a log line shows
REDACTED = "***"


def redact(url: object) -> str:
    """``url`` as text with the password of its user information replaced by ``***``.

    Works on malformed URLs too (no scheme, a bad port, an unbalanced bracket), since those are
    the ones an error message shows: everything between the first ``:`` of the user
    information and its last ``@`` is hidden. A URL without a password comes back unchanged.

    >>> redact("mqtt://ann:s3cret@broker:x")
    'mqtt://ann:***@broker:x'
    >>> redact("ann:s3cret@broker")
    'ann:***@broker'
    """
    text = url if isinstance(url, str) else repr(url)
    start = text.find("://")
    start = 0 if start < 0 else start + 3
    end = len(text)
    for stop in "/?#":
        i = text.find(stop, start)
        if i >= 0:
            end = min(end, i)
    netloc = text[start:end]
    at = netloc.rfind("@")
    if at < 0:
        return text
    colon = netloc.find(":", 0, at)
    if colon < 0:
        return text
    return text[: start + colon + 1] + REDACTED + text[start + at :]


class BrokerAddress(NamedTuple):
    """Where a broker is and how to log in; unpacks as ``host, port, username, password, tls``."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """Split an ``mqtt://`` or ``mqtts://`` URL into what an MQTT client needs.

    Parameters
    ----------
    url
        ``mqtt[s]://[user[:password]@]host[:port][/]``. The port defaults to 1883 for
        ``mqtt`` and 8883 for ``mqtts``; user and password are percent-decoded; IPv6 hosts go
        in brackets (``mqtt://[::1]:1883``).

    Returns
    -------
    BrokerAddress
        A named tuple ``(host, port, username, password, tls)``.

    Raises
    ------
    BrokerError
        When the URL is not a string, has another scheme, no host, a bad port, or a path,
        query or fragment (MQTT has no use for them). The message shows the URL with its
        password replaced by ``***`` (:func:`redact`).

    Examples
    --------
    >>> parse_broker_url("mqtts://ann:s%40cret@broker.example:8884")
    BrokerAddress(host='broker.example', port=8884, username='ann', password='s@cret', tls=True)
    >>> tuple(parse_broker_url("mqtt://127.0.0.1"))
    ('127.0.0.1', 1883, None, None, False)
    """
    shown = redact(url)
    if not isinstance(url, str):
        raise BrokerError(
            f"broker URL must be a string like 'mqtt://127.0.0.1:1883', got {shown}"
        )
    text = url.strip()
    if not text:
        raise BrokerError("broker URL is empty; pass e.g. 'mqtt://127.0.0.1:1883'")
    if "://" not in text:
        raise BrokerError(
            f"broker URL {shown!r} has no scheme; write it as 'mqtt://{shown.strip()}' (or "
            "'mqtts://' for TLS)"
        )
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # e.g. an unbalanced '[' in an IPv6 host
        raise BrokerError(f"broker URL {shown!r} is malformed: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise BrokerError(
            f"broker URL {shown!r} has scheme {parts.scheme!r}; use 'mqtt://' (plain TCP) or "
            "'mqtts://' (TLS)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerError(
            f"broker URL {shown!r} has a path, query or fragment; an MQTT broker URL is only "
            "scheme://[user[:password]@]host[:port]"
        )
    host = parts.hostname
    if not host:
        raise BrokerError(f"broker URL {shown!r} names no host; e.g. 'mqtt://127.0.0.1:1883'")
    try:
        port = parts.port
    except ValueError as exc:
        raise BrokerError(
            f"broker URL {shown!r} has an invalid port; use a number from 1 to 65535"
        ) from exc
    if port is None:
        if parts.netloc.endswith(":"):
            raise BrokerError(f"broker URL {shown!r} has an empty port after ':'")
        port = DEFAULT_PORTS[scheme]
    elif port == 0:
        raise BrokerError(f"broker URL {shown!r} has port 0; use a number from 1 to 65535")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username == "":
        if password:
            raise BrokerError(f"broker URL {shown!r} has a password but an empty user name")
        username = None
        password = None
    return BrokerAddress(host, port, username, password, scheme == "mqtts")


