"""A private MQTT broker for the demo and the tests, plus broker-URL and socket helpers.

:class:`EmbeddedBroker` runs a broker as a child process on a free loopback port:
Mosquitto when its binary is installed (fast, the production choice), otherwise amqtt (pure
Python, already a dependency, slow but enough for a demo) in a child Python interpreter started
as ``python -m streamfuse.gateway.broker --amqtt --port N``.

The child never outlives us:

- it runs in its own process group (so a terminal's Ctrl-C reaches only us, and :meth:`stop`
  can signal the whole group);
- :meth:`EmbeddedBroker.stop` sends SIGTERM, then SIGKILL after a timeout;
- every running broker is stopped by an :mod:`atexit` hook;
- on Linux the child asks the kernel (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) to be killed when
  its parent dies, which covers a parent killed by SIGKILL. The kernel ties this to the *thread*
  that spawned the child, so start brokers from a long-lived thread (the main thread or the
  event loop's thread; :meth:`EmbeddedBroker.__aenter__` spawns on the loop thread).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import unquote, urlsplit

from streamfuse.errors import BrokerError

log = logging.getLogger("streamfuse.gateway.broker")

BrokerKind = Literal["auto", "mosquitto", "amqtt"]
KINDS: tuple[str, ...] = ("auto", "mosquitto", "amqtt")

#: Where Mosquitto is looked for when it is not on PATH (Debian/Ubuntu install it in sbin).
MOSQUITTO_FALLBACKS: tuple[str, ...] = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
LOOPBACK = "127.0.0.1"

_PR_SET_PDEATHSIG = 1
_LIVE: weakref.WeakSet[EmbeddedBroker] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


# --------------------------------------------------------------------------- broker URLs


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
        query or fragment (MQTT has no use for them).

    Examples
    --------
    >>> parse_broker_url("mqtts://ann:s%40cret@broker.example:8884")
    BrokerAddress(host='broker.example', port=8884, username='ann', password='s@cret', tls=True)
    >>> tuple(parse_broker_url("mqtt://127.0.0.1"))
    ('127.0.0.1', 1883, None, None, False)
    """
    if not isinstance(url, str):
        raise BrokerError(f"broker URL must be a string like 'mqtt://127.0.0.1:1883', got {url!r}")
    text = url.strip()
    if not text:
        raise BrokerError("broker URL is empty; pass e.g. 'mqtt://127.0.0.1:1883'")
    if "://" not in text:
        raise BrokerError(
            f"broker URL {url!r} has no scheme; write it as 'mqtt://{text}' (or 'mqtts://' for TLS)"
        )
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # e.g. an unbalanced '[' in an IPv6 host
        raise BrokerError(f"broker URL {url!r} is malformed: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise BrokerError(
            f"broker URL {url!r} has scheme {parts.scheme!r}; use 'mqtt://' (plain TCP) or "
            "'mqtts://' (TLS)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerError(
            f"broker URL {url!r} has a path, query or fragment; an MQTT broker URL is only "
            "scheme://[user[:password]@]host[:port]"
        )
    host = parts.hostname
    if not host:
        raise BrokerError(f"broker URL {url!r} names no host; e.g. 'mqtt://127.0.0.1:1883'")
    try:
        port = parts.port
    except ValueError as exc:
        raise BrokerError(
            f"broker URL {url!r} has an invalid port; use a number from 1 to 65535"
        ) from exc
    if port is None:
        if parts.netloc.endswith(":"):
            raise BrokerError(f"broker URL {url!r} has an empty port after ':'")
        port = DEFAULT_PORTS[scheme]
    elif port == 0:
        raise BrokerError(f"broker URL {url!r} has port 0; use a number from 1 to 65535")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username == "":
        if password:
            raise BrokerError(f"broker URL {url!r} has a password but an empty user name")
        username = None
        password = None
    return BrokerAddress(host, port, username, password, scheme == "mqtts")


# --------------------------------------------------------------------------- socket helpers


def free_port(host: str = LOOPBACK) -> int:
    """Ask the kernel for a currently unused TCP port on ``host``.

    The port is released before returning, so another process may take it in between;
    :class:`EmbeddedBroker` retries with a new port when its broker fails to start.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def set_nodelay(client: Any) -> bool:
    """Turn on TCP_NODELAY on a connected :class:`aiomqtt.Client`'s socket.

    Without it, small QoS 0 publishes wait for Nagle's algorithm and delayed ACKs (about
    20 ms per hop on loopback instead of about 0.2 ms). Call it after every (re)connect: paho
    opens a new socket each time.

    Parameters
    ----------
    client
        A connected ``aiomqtt.Client`` (its paho client is ``client._client``); ``None`` or a
        client without a socket yet is tolerated.

    Returns
    -------
    bool
        True when the option was set, False when there was no TCP socket to set it on.
    """
    paho = getattr(client, "_client", None)
    get_socket = getattr(paho, "socket", None)
    sock = get_socket() if callable(get_socket) else None
    # paho's websocket transport wraps the real socket
    for candidate in (sock, getattr(sock, "_socket", None)):
        setsockopt = getattr(candidate, "setsockopt", None)
        if setsockopt is None:
            continue
        try:
            setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # closed meanwhile, or not a TCP socket
            log.debug("could not set TCP_NODELAY: %s", exc)
            return False
        return True
    return False


def _mqtt_connect_ok(host: str, port: int, timeout: float) -> bool:
    """Open a TCP connection, send an MQTT 3.1.1 CONNECT and check for an accepting CONNACK."""
    client_id = f"streamfuse-probe-{os.getpid()}".encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x0a"  # protocol name, level 4, clean session, 10 s
    payload = len(client_id).to_bytes(2, "big") + client_id
    body = variable + payload
    packet = bytes([0x10, len(body)]) + body  # remaining length < 128: one byte
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(packet)
            reply = b""
            while len(reply) < 4:
                chunk = sock.recv(4 - len(reply))
                if not chunk:
                    return False
                reply += chunk
            ok = reply[0] == 0x20 and reply[1] == 0x02 and reply[3] == 0x00
            if ok:
                with contextlib.suppress(OSError):
                    sock.sendall(b"\xe0\x00")  # DISCONNECT
            return ok
    except OSError:
        return False


# --------------------------------------------------------------------------- child process


def find_mosquitto() -> str | None:
    """Path of the ``mosquitto`` binary: on PATH, else a usual sbin location, else None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in MOSQUITTO_FALLBACKS:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _die_with_parent(parent_pid: int) -> Any:
    """A ``preexec_fn`` that makes the kernel SIGKILL the child when its parent goes away."""

    def preexec() -> None:
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            except (OSError, AttributeError):  # pragma: no cover - exotic libc
                pass
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _unprivileged_user() -> tuple[int, int] | None:
    """(uid, gid) to run Mosquitto as when we are root, or None to keep our own identity.

    Mosquitto started as root switches itself to the ``mosquitto`` user (or ``nobody``), and
    that credential change makes the kernel forget PR_SET_PDEATHSIG. So when we are root we
    switch first, in the child before ``exec``; the death signal is armed after the switch.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    import pwd

    for name in ("mosquitto", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    return None


def _mosquitto_config(port: int, *, as_root: bool = False) -> str:
    return "\n".join(
        [
            "# written by streamfuse.gateway.broker.EmbeddedBroker",
            f"listener {port} {LOOPBACK}",
            "allow_anonymous true",
            "persistence false",
            "sys_interval 0",
            "set_tcp_nodelay true",
            "max_queued_messages 100000",
            "max_inflight_messages 0",
            "log_dest stderr",  # our stderr is the log file (also catches config errors)
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_timestamp true",
            # only when no unprivileged user exists: stop mosquitto dropping to one itself
            *(["user root"] if as_root else []),
            "",
        ]
    )


class EmbeddedBroker:
    """A private MQTT broker on a loopback port, run as a child process we own.

    Parameters
    ----------
    kind
        ``"mosquitto"``, ``"amqtt"``, or ``"auto"`` (Mosquitto when its binary is found by
        :func:`find_mosquitto`, else amqtt).
    port
        TCP port on 127.0.0.1; None picks a free one (and retries with another when the
        broker fails to start, e.g. because the port was taken meanwhile).
    start_timeout
        Seconds :meth:`start` waits for the broker to accept an MQTT CONNECT.
    stop_timeout
        Seconds :meth:`stop` waits after SIGTERM before it sends SIGKILL.
    logger
        Logger to use; defaults to ``streamfuse.gateway.broker``.

    Examples
    --------
    >>> with EmbeddedBroker() as broker:  # doctest: +SKIP
    ...     run_gateway(broker.url)

    Notes
    -----
    The broker's own log goes to ``log_path`` in a temporary folder that :meth:`stop` removes.
    Mosquitto is configured without ``$SYS`` topics, persistence or authentication, with
    TCP_NODELAY and a queue of 100 000 messages per client; amqtt with only the anonymous
    authentication plugin (no ``$SYS`` broadcast, no packet/event logging plugins).
    """

    def __init__(
        self,
        kind: BrokerKind = "auto",
        port: int | None = None,
        *,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        logger: logging.Logger | None = None,
    ) -> None:
        if kind not in KINDS:
            raise BrokerError(f"unknown broker kind {kind!r}; choose one of {', '.join(KINDS)}")
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
        ):
            raise BrokerError(f"broker port must be an int from 1 to 65535 or None, got {port!r}")
        self.requested_kind = kind
        self.requested_port = port
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.logger = logger or log
        self._kind: str | None = None
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmpdir: str | None = None
        self._log_file: Any = None
        self.startup_seconds: float | None = None

    # ----------------------------------------------------------------- properties

    @property
    def kind(self) -> str:
        """The implementation in use (``"mosquitto"`` or ``"amqtt"``), resolved from ``auto``."""
        if self._kind is None:
            self._kind = self._resolve_kind()
        return self._kind

    @property
    def port(self) -> int:
        """The loopback port the broker listens on (valid once started)."""
        if self._port is None:
            raise BrokerError("the embedded broker has no port yet; call start() first")
        return self._port

    @property
    def host(self) -> str:
        """Always ``127.0.0.1``."""
        return LOOPBACK

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``, for :func:`parse_broker_url` and the CLI."""
        return f"mqtt://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the broker child, None when not running."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        """The broker's log file while it runs."""
        return Path(self._tmpdir, "broker.log") if self._tmpdir else None

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        state = f"pid={self.pid} url={self.url}" if self.running else "stopped"
        return f"EmbeddedBroker(kind={self.requested_kind!r}, {state})"

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it accepts an MQTT CONNECT; returns ``self``.

        Raises
        ------
        BrokerError
            When the implementation is unavailable, or the broker does not come up within
            ``start_timeout`` (the message ends with the tail of its log).
        """
        attempts = 1 if self.requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            began = time.perf_counter()
            self._spawn()
            try:
                self._wait_ready(time.sleep, self._probe)
            except BaseException as exc:  # Ctrl-C while waiting must not leave the child
                if isinstance(exc, BrokerError) and attempt < attempts and not self.running:
                    self.logger.warning("broker failed on port %s; retrying", self._port)
                    self._cleanup()
                    continue
                self._cleanup()
                raise
            self.startup_seconds = time.perf_counter() - began
            self.logger.info(
                "%s broker ready at %s (pid %s) in %.3f s",
                self.kind, self.url, self.pid, self.startup_seconds,
            )
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    async def astart(self) -> EmbeddedBroker:
        """Like :meth:`start` without blocking the event loop (spawns on the loop's thread)."""
        attempts = 1 if self.requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            began = time.perf_counter()
            self._spawn()
            try:
                await self._await_ready()
            except BaseException as exc:
                if isinstance(exc, BrokerError) and attempt < attempts and not self.running:
                    self.logger.warning("broker failed on port %s; retrying", self._port)
                    self._cleanup()
                    continue
                self._cleanup()
                raise
            self.startup_seconds = time.perf_counter() - began
            self.logger.info(
                "%s broker ready at %s (pid %s) in %.3f s",
                self.kind, self.url, self.pid, self.startup_seconds,
            )
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> int | None:
        """Stop the broker: SIGTERM to its process group, SIGKILL after ``stop_timeout``.

        Safe to call twice. Returns the child's exit code (None if it was not running).
        """
        proc = self._proc
        code = None
        if proc is not None:
            code = self._terminate(proc)
            self.logger.info("%s broker (pid %s) stopped, exit code %s", self.kind, proc.pid, code)
        self._cleanup()
        return code

    async def astop(self) -> int | None:
        """Like :meth:`stop` without blocking the event loop."""
        return await asyncio.to_thread(self.stop)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedBroker:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    # ----------------------------------------------------------------- internals

    def _resolve_kind(self) -> str:
        if self.requested_kind == "amqtt":
            return "amqtt"
        binary = find_mosquitto()
        if self.requested_kind == "mosquitto" and binary is None:
            raise BrokerError(
                "mosquitto was requested but no 'mosquitto' binary is on PATH or in "
                f"{', '.join(MOSQUITTO_FALLBACKS)}; install it (e.g. 'apt-get install mosquitto') "
                "or use kind='amqtt'"
            )
        return "mosquitto" if binary is not None else "amqtt"

    def _command(self, port: int, tmpdir: str) -> list[str]:
        if self.kind == "mosquitto":
            binary = find_mosquitto()
            assert binary is not None  # _resolve_kind checked
            conf = Path(tmpdir, "mosquitto.conf")
            as_root = os.geteuid() == 0 and _unprivileged_user() is None
            conf.write_text(_mosquitto_config(port, as_root=as_root), encoding="utf-8")
            conf.chmod(0o644)  # mosquitto started as root drops privileges, then reads it
            return [binary, "-c", str(conf)]
        return [sys.executable, "-m", "streamfuse.gateway.broker", "--amqtt", "--port", str(port)]

    def _spawn(self) -> None:
        if self.running:
            raise BrokerError(f"the embedded broker is already running at {self.url}")
        kind = self.kind
        port = self.requested_port if self.requested_port is not None else free_port()
        tmpdir = tempfile.mkdtemp(prefix=f"streamfuse-{kind}-")
        os.chmod(tmpdir, 0o755)
        self._tmpdir = tmpdir
        self._port = port
        cmd = self._command(port, tmpdir)
        env = dict(os.environ)
        # the amqtt child must import this very package, even when it is not installed
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH", "")) if p
        )
        identity: dict[str, Any] = {}
        account = _unprivileged_user() if kind == "mosquitto" else None
        if account is not None:
            identity = {"user": account[0], "group": account[1], "extra_groups": []}
        self._log_file = open(Path(tmpdir, "broker.log"), "ab")  # noqa: SIM115 - closed in _cleanup
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                cwd=tmpdir,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
                close_fds=True,
                **identity,
            )
        except OSError as exc:
            self._cleanup()
            raise BrokerError(f"could not start the {kind} broker ({cmd[0]}): {exc}") from exc
        with _LIVE_LOCK:
            _LIVE.add(self)
        self.logger.debug("spawned %s broker pid %s on port %s", kind, self._proc.pid, port)

    def _probe(self) -> bool:
        return _mqtt_connect_ok(LOOPBACK, self.port, timeout=0.5)

    def _wait_ready(self, sleep: Any, probe: Any) -> None:
        deadline = time.monotonic() + self.start_timeout
        delay = 0.01
        while True:
            if not self.running:
                raise self._failure("exited during start-up")
            if probe():
                return
            if time.monotonic() > deadline:
                raise self._failure(f"did not accept an MQTT connection in {self.start_timeout} s")
            sleep(delay)
            delay = min(delay * 1.5, 0.1)

    async def _await_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        delay = 0.01
        while True:
            if not self.running:
                raise self._failure("exited during start-up")
            if await asyncio.to_thread(self._probe):
                return
            if time.monotonic() > deadline:
                raise self._failure(f"did not accept an MQTT connection in {self.start_timeout} s")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.1)

    def _failure(self, what: str) -> BrokerError:
        code = self._proc.poll() if self._proc is not None else None
        status = f" (exit code {code})" if code is not None else ""
        return BrokerError(
            f"{self.kind} broker on {LOOPBACK}:{self._port} {what}{status}; "
            f"log {self.log_path}:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        path = self.log_path
        if path is None:
            return "(no log)"
        try:
            if self._log_file is not None:
                self._log_file.flush()
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(log unreadable)"
        tail = text.strip().splitlines()[-lines:]
        return "\n".join(tail) if tail else "(log empty)"

    def _terminate(self, proc: subprocess.Popen[bytes]) -> int | None:
        for sig, wait in ((signal.SIGTERM, self.stop_timeout), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)  # the child leads its own group: pgid == pid
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                self.logger.warning("broker pid %s ignored %s", proc.pid, sig.name)
        # anything else left in the group (nothing expected) goes too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.poll()

    def _cleanup(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            self._terminate(proc)
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        brokers = list(_LIVE)
    for broker in brokers:
        with contextlib.suppress(Exception):
            broker.stop()


# --------------------------------------------------------------------------- amqtt child


def amqtt_config(port: int, host: str = LOOPBACK) -> dict[str, Any]:
    """The amqtt broker configuration the child uses: one TCP listener, anonymous auth only.

    Naming the plugins explicitly keeps amqtt from loading its defaults (``$SYS`` broadcast
    every 20 s, packet and event loggers).
    """
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 0}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


async def _serve_amqtt(port: int, host: str) -> int:
    from amqtt.broker import Broker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    broker = Broker(amqtt_config(port, host))
    try:
        await broker.start()
    except Exception as exc:
        log.error("amqtt broker could not start on %s:%s: %s", host, port, exc)
        return 1
    log.info("amqtt broker listening on %s:%s", host, port)
    await stop.wait()
    await broker.shutdown()
    return 0


def _amqtt_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamfuse.gateway.broker",
        description="Run the embedded amqtt broker (used by EmbeddedBroker; not a public CLI).",
    )
    parser.add_argument("--amqtt", action="store_true", required=True, help="run amqtt")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log.setLevel(logging.INFO)
    return asyncio.run(_serve_amqtt(args.port, args.host))


if __name__ == "__main__":
    sys.exit(_amqtt_main())
