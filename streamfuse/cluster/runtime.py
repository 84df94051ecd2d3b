"""Finding Ray (an optional extra) and joining or starting a Ray cluster."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ..errors import StreamfuseError

log = logging.getLogger("streamfuse.cluster.runtime")

#: the Ray namespace the fleet's named actors live in
NAMESPACE = "streamfuse"
#: the controller's default actor name (``--name`` picks another, for a second fleet)
CONTROLLER = "streamfuse-fleet"


class RayMissing(StreamfuseError):
    """Ray is not installed."""


def import_ray() -> Any:
    """``import ray``, or a :class:`RayMissing` that names the extra to install."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise RayMissing(
            f"streamfuse cluster needs Ray, which is not installed ({exc}); install the "
            "'cluster' extra: pip install 'streamfuse[cluster]'"
        ) from None


def join(address: str | None, *, num_cpus: int | None = None) -> Any:
    """Connect to the Ray cluster at ``address`` (``"auto"``: the one running on this machine),
    or start a local one when ``address`` is None; returns the ``ray`` module."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"namespace": NAMESPACE, "include_dashboard": False,
                              "log_to_driver": False, "configure_logging": False}
    if address is None:
        kwargs["num_cpus"] = num_cpus
        # Ray runs its workers at nice 15 by default, below the broker and the devices'
        # publishers on the same cores: a gateway must not be (set RAY_worker_niceness=0 for
        # `ray start` on the nodes of a cluster of your own)
        kwargs["_system_config"] = {"worker_niceness": 0}
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as exc:
        raise StreamfuseError(
            f"no Ray cluster at {address!r} ({exc}); start the fleet first (streamfuse cluster "
            "run) or give --address of a running one"
        ) from None
    return ray


def controller(ray: Any, name: str = CONTROLLER) -> Any:
    """The running fleet's controller actor, or an error saying none runs under ``name``."""
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        raise StreamfuseError(
            f"no streamfuse fleet named {name!r} in this Ray cluster; start one with "
            "'streamfuse cluster run'"
        ) from None
