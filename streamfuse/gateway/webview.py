"""The live web view: an aiohttp server inside the gateway's event loop, pushing server-sent
events to browsers.

Routes: ``/`` the page, ``/static/…`` its assets (all shipped in the package: no CDN, works
offline), ``/events?device=NAME`` one server-sent event stream per browser tab, carrying the
parts of :class:`~.viewmodel.ViewModel`'s view that changed, at most ``rate_hz`` times a second
(a slow browser gets fewer frames, never a backlog: each frame is built from the state at the
time it is sent). Choosing another device reopens the stream with the new name.

Why aiohttp: it is asyncio-native and runs on the gateway's own loop as one more task (an
:class:`aiohttp.web.AppRunner` and a site), with no second server lifecycle or signal handling
of its own to reconcile with the gateway's; it serves static files and streams responses
(server-sent events) out of the box; it is among the most used asyncio HTTP libraries.

Bound to 127.0.0.1 unless configured otherwise; there, requests whose ``Host`` header is not a
loopback name are refused (a page elsewhere that makes its own name resolve to 127.0.0.1 cannot
read the view). Every response carries a ``Content-Security-Policy`` allowing nothing but this
server, so an asset that tried to load from a CDN would fail in the browser test.

Wiring (what ``streamfuse gateway --ui`` and the demo do)::

    view = WebView.at("127.0.0.1:8765")
    server = Server(config, on_prediction=view.on_prediction)  # the one hook
    view.attach(lambda: server.gateway)  # read at every frame (None before start-up)
    async with view.running() as url:    # start, print the URL, stop at the end
        await server.serve()
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import ConfigError
from ..types import Prediction
from .viewmodel import ViewLimits, ViewModel, encode_event

log = logging.getLogger("streamfuse.gateway.webview")

STATIC = Path(__file__).with_name("static")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: a comment line sent when nothing changed for this long, so proxies and the browser keep
#: the stream open
KEEPALIVE_S = 15.0
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def parse_address(text: str, *, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``"HOST:PORT"``, ``"PORT"``, ``":PORT"`` or ``"HOST"`` -> ``(host, port)`` (IPv6 in
    brackets: ``"[::1]:8765"``); port 0 picks a free one."""
    text = text.strip()
    host, port_text = DEFAULT_HOST, ""
    if text.startswith("["):
        inner, _, rest = text[1:].partition("]")
        host, port_text = inner, rest.removeprefix(":")
    elif text.isdigit():
        port_text = text
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        host = host or DEFAULT_HOST
    else:
        host = text
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        port = -1
    if not host or not 0 <= port <= 65535:
        raise ConfigError(
            f"the web view's address {text!r} is not HOST:PORT; e.g. 127.0.0.1:8765, :8765 "
            "(localhost) or 0.0.0.0:8765 (every interface)"
        )
    return host, port


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebView:
    """Serves the live view of a gateway (see the module docstring for the wiring).

    Parameters
    ----------
    source
        What the view shows: a gateway, an engine, or a callable returning one (see
        :class:`~.viewmodel.ViewModel`); can be given later with :meth:`attach`.
    host, port
        Where to listen (port 0: a free one; :attr:`url` tells which).
    rate_hz
        Frames per second per browser, at most.
    max_clients
        Browser streams served at once; more get HTTP 503.
    limits
        What the view keeps and sends (:class:`~.viewmodel.ViewLimits`).
    """

    def __init__(
        self,
        source: Any = None,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        rate_hz: float = 4.0,
        max_clients: int = 16,
        limits: ViewLimits | None = None,
    ) -> None:
        if not rate_hz > 0:
            raise ConfigError(f"the web view's rate_hz must be positive, got {rate_hz}")
        self.model = ViewModel(source, limits=limits)
        self.host = host
        self.port = port
        self.rate_hz = rate_hz
        self.max_clients = max_clients
        self.refused = 0
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._streams: set[asyncio.Task[Any]] = set()

    @classmethod
    def at(cls, address: str | None, source: Any = None, **kwargs: Any) -> WebView:
        """A view to serve at ``address`` (``"HOST:PORT"``, see :func:`parse_address`;
        ``None``: 127.0.0.1:8765)."""
        host, port = parse_address(address) if address else (DEFAULT_HOST, DEFAULT_PORT)
        return cls(source, host=host, port=port, **kwargs)

    # ------------------------------------------------------------------ wiring
    def on_prediction(self, prediction: Prediction) -> None:
        """The gateway's ``on_prediction`` hook (returns at once while nobody is watching)."""
        self.model.on_prediction(prediction)

    def attach(self, source: Any) -> None:
        """Show ``source`` (a gateway, an engine or a callable returning one)."""
        self.model._host = source

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        """Listen; returns the URL to open. Raises :class:`ConfigError` if the address cannot
        be bound (in use, not an address of this machine)."""
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/events", self._events)
        app.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"the web view cannot listen on {self.host}:{self.port} ({exc.strerror or exc}); "
                "choose another port with --ui HOST:PORT (port 0 picks a free one)"
            ) from exc
        self._runner = runner
        bound = runner.addresses[0]
        port = int(bound[1])
        shown = f"[{self.host}]" if ":" in self.host else self.host
        if self.host in ("0.0.0.0", "::", ""):
            shown = "127.0.0.1"
        self.port = port
        self.url = f"http://{shown}:{port}/"
        log.info("live view on %s", self.url)
        return self.url

    @contextlib.asynccontextmanager
    async def running(self, *, any_port: bool = False) -> AsyncIterator[str]:
        """:meth:`start` (with ``any_port``: on a free port if the asked one is taken), yield
        the URL, :meth:`stop`."""
        try:
            url = await self.start()
        except ConfigError:
            if not any_port or self.port == 0:
                raise
            log.info("port %d is taken; the view takes a free one", self.port)
            self.port = 0
            url = await self.start()
        try:
            yield url
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Close every stream and stop listening."""
        self._closing = True
        if self._streams:  # each ends its response within one period; then they are cut
            _, late = await asyncio.wait(list(self._streams), timeout=2.0 / self.rate_hz + 0.5)
            for task in late:
                task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ handlers
    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if _is_loopback(self.host):
            name = (request.host or "").rpartition(":")[0] or request.host
            if request.host.startswith("["):
                name = request.host.partition("]")[0] + "]"
            if name not in _LOOPBACK_NAMES:
                raise web.HTTPForbidden(
                    text="this view is served to localhost only; open it as 127.0.0.1 or "
                    "localhost, or bind it to another address with --ui HOST:PORT\n"
                )
        response: web.StreamResponse = await handler(request)
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if self._closing:
            raise web.HTTPServiceUnavailable(text="the view is shutting down\n")
        if len(self.model.clients) >= self.max_clients:
            self.refused += 1
            raise web.HTTPServiceUnavailable(
                text=f"the view serves at most {self.max_clients} browser tabs at once\n"
            )
        device = request.query.get("device") or None
        if device is not None and len(device) > 256:
            raise web.HTTPBadRequest(text="device names are at most 256 characters\n")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        client = self.model.connect(device)
        period = 1.0 / self.rate_hz
        quiet = 0.0
        try:
            await response.write(b"retry: 2000\n\n")
            while not self._closing:
                transport = request.transport
                if transport is None or transport.is_closing():
                    break  # the browser went away (noticed without waiting for a write)
                frame = self.model.frame(client)
                if frame is not None:
                    await response.write(encode_event(frame))
                    quiet = 0.0
                else:
                    quiet += period
                    if quiet >= KEEPALIVE_S:
                        await response.write(b": keep-alive\n\n")
                        quiet = 0.0
                await asyncio.sleep(period)
        except ConnectionError:
            return response  # the browser went away
        finally:
            self.model.disconnect(client)
            if task is not None:
                self._streams.discard(task)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response
