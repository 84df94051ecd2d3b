"""How the embedded broker's child process is started: found, configured, tied to its parent.

- :func:`find_mosquitto`: the binary, on PATH or in the usual sbin folders;
- :func:`die_with_parent`: a ``preexec_fn`` asking Linux to SIGKILL the child when its parent
  dies (``prctl(PR_SET_PDEATHSIG)``), which covers a parent killed by SIGKILL;
- :func:`unprivileged_user`: the account to drop to first when we are root (Mosquitto's own
  switch would make the kernel forget the death signal);
- :func:`mosquitto_config`: the private broker's configuration file.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sys
from typing import Any

from .address import LOOPBACK

#: Where Mosquitto is looked for when it is not on PATH (Debian/Ubuntu install it in sbin).
MOSQUITTO_FALLBACKS: tuple[str, ...] = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")

_PR_SET_PDEATHSIG = 1


def find_mosquitto() -> str | None:
    """Path of the ``mosquitto`` binary: on PATH, else a usual sbin location, else None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for path in MOSQUITTO_FALLBACKS:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def die_with_parent(parent_pid: int) -> Any:
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


def unprivileged_user() -> tuple[int, int] | None:
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


def mosquitto_config(port: int, *, as_root: bool = False) -> str:
    return "\n".join(
        [
            "# written by streamfuse.mqtt.broker.EmbeddedBroker",
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
