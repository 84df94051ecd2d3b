"""The one MQTT client factory: every client of the project is made by :func:`connect`.

The gateway, the recorder, the republisher, the simulators' publisher, the demo's monitor and
each benchmark role build their :class:`aiomqtt.Client` here, so they share one reading of the
broker address and one set of transport options:

- TLS is on when the URL says ``mqtts://`` (always: nothing can turn it off for such a URL),
  when ``tls=True`` is passed (the gateway's ``mqtt.tls = true``), or when a CA or client
  certificate is given; credentials come from the URL unless ``username``/``password`` are
  passed;
- TCP_NODELAY on every socket (small QoS 0 publishes otherwise wait ~20 ms for Nagle and
  delayed ACKs per hop on loopback); :func:`open_session` sets it again after each connect,
  since paho opens a new socket each time.

:func:`open_session` is ``async with connect(...)`` plus that, and turns a failed connect into a
:class:`~streamfuse.errors.BrokerError` that says what went wrong (a TLS handshake that failed,
a refused connection) instead of a traceback.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
from aiomqtt import MqttError

from ..errors import BrokerError
from .address import BrokerAddress, parse_broker_url
from .sockets import set_nodelay

__all__ = [
    "Client", "MqttError", "TlsFiles", "connect", "describe_failure", "is_tls_failure",
    "open_session", "uses_tls",
]

Client = aiomqtt.Client

_NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


class TlsFiles:
    """Certificates for a TLS connection: the CA bundle that verifies the broker, and the
    client's own certificate and key (mutual TLS). ``insecure`` skips the host name check."""

    __slots__ = ("ca_file", "cert_file", "insecure", "key_file")

    def __init__(
        self,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        *,
        insecure: bool = False,
    ) -> None:
        self.ca_file = ca_file or None
        self.cert_file = cert_file or None
        self.key_file = key_file or None
        self.insecure = insecure

    @property
    def given(self) -> bool:
        """A CA bundle or a client certificate was named (either implies TLS)."""
        return bool(self.ca_file or self.cert_file)


def uses_tls(address: BrokerAddress, *, tls: bool = False, files: TlsFiles | None = None) -> bool:
    """Whether a client for ``address`` speaks TLS: ``mqtts://``, ``tls`` or certificates."""
    return address.tls or tls or (files is not None and files.given)


def connect(
    url: str | BrokerAddress,
    *,
    client_id: str | None = None,
    clean_session: bool | None = None,
    username: str | None = None,
    password: str | None = None,
    tls: bool = False,
    tls_files: TlsFiles | None = None,
    keepalive: int = 60,
    logger: logging.Logger | None = None,
    queue_type: Callable[..., Any] | None = None,
    max_queued_outgoing_messages: int | None = None,
) -> aiomqtt.Client:
    """An :class:`aiomqtt.Client` for the broker at ``url`` (not yet connected).

    Parameters
    ----------
    url
        ``mqtt[s]://[user[:password]@]host[:port]`` or an already parsed
        :class:`~streamfuse.mqtt.address.BrokerAddress`.
    client_id
        Fixed client id (``None``: a random one).
    clean_session
        MQTT 3.1.1 clean-session flag; ``None`` lets aiomqtt choose (clean).
    username, password
        Override the URL's credentials when not ``None``.
    tls
        Force TLS on an ``mqtt://`` URL (``mqtts://`` is TLS whatever this says).
    tls_files
        CA bundle / client certificate; naming one turns TLS on.
    keepalive
        Seconds between keepalive pings.
    logger
        Where paho's client logs go.
    queue_type
        Incoming queue factory (called with ``maxsize``), e.g. a
        :class:`~streamfuse.mqtt.queue.SheddingQueue` shared across reconnects.
    max_queued_outgoing_messages
        paho's outgoing queue bound (``0``: none).
    """
    address = url if isinstance(url, BrokerAddress) else parse_broker_url(url)
    files = tls_files or TlsFiles()
    tls_params = None
    if uses_tls(address, tls=tls, files=files):
        tls_params = aiomqtt.TLSParameters(
            ca_certs=files.ca_file,
            certfile=files.cert_file,
            keyfile=files.key_file,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    options: dict[str, Any] = {}
    if clean_session is not None:
        options["clean_session"] = clean_session
    if queue_type is not None:
        options["queue_type"] = queue_type
    if max_queued_outgoing_messages is not None:
        options["max_queued_outgoing_messages"] = max_queued_outgoing_messages
    return aiomqtt.Client(
        address.host,
        address.port,
        username=username if username is not None else address.username,
        password=password if password is not None else address.password,
        identifier=client_id,
        keepalive=keepalive,
        logger=logger or logging.getLogger("streamfuse.mqtt.client"),
        tls_params=tls_params,
        tls_insecure=files.insecure if tls_params is not None else None,
        socket_options=_NODELAY,
        **options,
    )


def is_tls_failure(exc: BaseException) -> bool:
    """The connect failed in the TLS handshake (or the peer hung up during it)."""
    text = str(exc).lower()
    cause = exc.__cause__ or exc.__context__
    return (
        isinstance(exc, ssl.SSLError)
        or isinstance(cause, ssl.SSLError | ConnectionResetError | EOFError)
        or any(word in text for word in ("ssl", "tls", "certificate", "handshake"))
    )


def describe_failure(exc: BaseException, address: BrokerAddress, *, tls: bool) -> str:
    """A one-line reason a connection to ``address`` failed, saying how to fix it."""
    where = f"{address.host}:{address.port}"
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if tls and is_tls_failure(exc):
        return (
            f"TLS handshake with the broker at {where} failed ({text}); an mqtts:// URL (or "
            "mqtt.tls = true) always means TLS: check that this port is the broker's TLS "
            "listener and its certificate (mqtt.ca_file), or use mqtt:// for a plain TCP "
            "listener you trust"
        )
    if isinstance(cause, ConnectionRefusedError) or "refused" in text.lower():
        return f"the broker at {where} refused the connection ({text}); is it running there?"
    return f"could not talk to the broker at {where}: {text}"


@asynccontextmanager
async def open_session(
    url: str | BrokerAddress, **options: Any
) -> AsyncIterator[aiomqtt.Client]:
    """``async with connect(url, **options)``, TCP_NODELAY set, failures as :class:`BrokerError`.

    A connection that cannot be made or is lost (:class:`aiomqtt.MqttError`, from the connect
    or from the body) raises :class:`BrokerError` with the reason from
    :func:`describe_failure`; other errors of the body are passed on unchanged.
    """
    address = url if isinstance(url, BrokerAddress) else parse_broker_url(url)
    tls = uses_tls(address, tls=options.get("tls", False), files=options.get("tls_files"))
    try:
        async with connect(address, **options) as client:
            set_nodelay(client)
            yield client
    except MqttError as exc:
        _close_orphan_sockets(exc)
        raise BrokerError(describe_failure(exc, address, tls=tls)) from exc


def _close_orphan_sockets(exc: BaseException) -> None:
    """Close sockets a failed connect left open in the frames of its traceback.

    paho drops the half-open socket of a failed TLS handshake while raising (it is kept alive
    only by the traceback), so it would be closed by the garbage collector with a
    ``ResourceWarning``; closed here, nothing of the failed attempt outlives the error.
    """
    seen: set[int] = set()
    chain: BaseException | None = exc
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        tb = chain.__traceback__
        while tb is not None:
            for value in tb.tb_frame.f_locals.values():
                if isinstance(value, socket.socket) and value.fileno() != -1:
                    value.close()
            tb = tb.tb_next
        chain = chain.__cause__ or chain.__context__
