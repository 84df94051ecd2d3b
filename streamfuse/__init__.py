"""streamfuse: streaming wearable-sensor fusion.

The sans-IO core, :class:`Engine`, turns chunks of samples and labels into predictions;
thin shells (MQTT gateway, replay, benchmark) feed it and carry its outputs away. Everything
a program needs to use the core in-process is importable from here::

    from streamfuse import Engine, EngineConfig, ModalitySpec, Chunk, Label, Prediction

The names load on first use (PEP 562): ``import streamfuse`` alone, as every subprocess of the
shells does (the embedded broker, the bench's roles), imports neither NumPy nor the engine, and
nothing here ever loads a network, broker, plotting or terminal library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ACC, DEFAULT_MODALITIES, ECG, EEG, EngineConfig, Limits, ModalitySpec
    from .engine import Engine
    from .errors import ConfigError, PayloadError, StreamfuseError
    from .offline import RunResult, run
    from .types import Chunk, Label, Prediction, RawMessage, Rejection
    from .warmup import warm_up

__version__ = "0.1.0"

#: public name -> the module that defines it
_HOME = {
    **dict.fromkeys(
        ("ACC", "DEFAULT_MODALITIES", "ECG", "EEG", "EngineConfig", "Limits", "ModalitySpec"),
        "streamfuse.config",
    ),
    "Engine": "streamfuse.engine",
    **dict.fromkeys(("ConfigError", "PayloadError", "StreamfuseError"), "streamfuse.errors"),
    **dict.fromkeys(("RunResult", "run"), "streamfuse.offline"),
    **dict.fromkeys(
        ("Chunk", "Label", "Prediction", "RawMessage", "Rejection"), "streamfuse.types"
    ),
    "warm_up": "streamfuse.warmup",
}

__all__ = [
    "ACC",
    "DEFAULT_MODALITIES",
    "ECG",
    "EEG",
    "Chunk",
    "ConfigError",
    "Engine",
    "EngineConfig",
    "Label",
    "Limits",
    "ModalitySpec",
    "PayloadError",
    "Prediction",
    "RawMessage",
    "Rejection",
    "RunResult",
    "StreamfuseError",
    "__version__",
    "run",
    "warm_up",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'streamfuse' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
