"""The embedded broker supervisor: a private MQTT broker for the demo, the bench and the tests.

:class:`EmbeddedBroker` runs a broker as a child process on a free loopback port:
Mosquitto when its binary is installed (fast, the production choice), otherwise amqtt (pure
Python, already a dependency, slow but enough for a demo) in a child Python interpreter started
as ``python -m streamfuse.mqtt.amqtt_main --port N``.

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

import asyncio
import atexit
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Generator
from pathlib import Path
from typing import Any, Literal

from ..errors import BrokerError
from .address import LOOPBACK
from .child import (
    MOSQUITTO_FALLBACKS,
    die_with_parent,
    find_mosquitto,
    mosquitto_config,
    unprivileged_user,
)
from .sockets import free_port, mqtt_connect_ok

log = logging.getLogger("streamfuse.mqtt.broker")

BrokerKind = Literal["auto", "mosquitto", "amqtt"]
KINDS: tuple[str, ...] = ("auto", "mosquitto", "amqtt")

_LIVE: weakref.WeakSet[EmbeddedBroker] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


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
        Logger to use; defaults to ``streamfuse.mqtt.broker``.

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
        plan = self._start_plan()
        step: float | None = next(plan)
        while True:
            reply: bool | None = None
            try:
                if step is None:
                    reply = self._probe()
                else:
                    time.sleep(step)
            except BaseException as exc:  # Ctrl-C while waiting: the plan stops the child
                step = plan.throw(exc)
                continue
            try:
                step = plan.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def astart(self) -> EmbeddedBroker:
        """Like :meth:`start` without blocking the event loop (spawns on the loop's thread)."""
        plan = self._start_plan()
        step: float | None = next(plan)
        while True:
            reply: bool | None = None
            try:
                if step is None:
                    reply = await asyncio.to_thread(self._probe)
                else:
                    await asyncio.sleep(step)
            except BaseException as exc:  # cancelled while waiting: the child goes too
                step = plan.throw(exc)
                continue
            try:
                step = plan.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def _start_plan(self) -> Generator[float | None, bool | None, EmbeddedBroker]:
        """Start-up, driven by :meth:`start` and :meth:`astart`: yields ``None`` to have the
        broker probed (sent back: did it answer) or seconds to sleep; an exception thrown in
        stops the child and is raised again. With no port requested, 3 tries on free ports."""
        attempts = 1 if self.requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            began = time.perf_counter()
            self._spawn()
            try:
                deadline, delay = time.monotonic() + self.start_timeout, 0.01
                while True:
                    if not self.running:
                        raise self._failure("exited during start-up")
                    if (yield None):
                        break
                    if time.monotonic() > deadline:
                        raise self._failure(f"took no MQTT connection in {self.start_timeout} s")
                    yield delay
                    delay = min(delay * 1.5, 0.1)
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
            as_root = os.geteuid() == 0 and unprivileged_user() is None
            conf.write_text(mosquitto_config(port, as_root=as_root), encoding="utf-8")
            conf.chmod(0o644)  # mosquitto started as root drops privileges, then reads it
            return [binary, "-c", str(conf)]
        return [sys.executable, "-m", "streamfuse.mqtt.amqtt_main", "--port", str(port)]

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
        account = unprivileged_user() if kind == "mosquitto" else None
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
                preexec_fn=die_with_parent(os.getpid()),
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
        return mqtt_connect_ok(LOOPBACK, self.port, timeout=0.5)

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


