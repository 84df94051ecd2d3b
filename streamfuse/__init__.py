"""streamfuse: streaming wearable-sensor fusion.

The sans-IO core, :class:`Engine`, turns chunks of samples and labels into predictions;
thin shells (MQTT gateway, replay, benchmark) feed it and carry its outputs away. Everything
a program needs to use the core in-process is importable from here::

    from streamfuse import Engine, EngineConfig, ModalitySpec, Chunk, Label, Prediction

Importing this package loads no network, broker, plotting or terminal library.
"""

from .config import ACC, DEFAULT_MODALITIES, ECG, EEG, EngineConfig, Limits, ModalitySpec
from .engine import Engine
from .errors import ConfigError, PayloadError, StreamfuseError
from .offline import RunResult, run
from .types import Chunk, Label, Prediction, RawMessage, Rejection
from .warmup import warm_up

__version__ = "0.1.0"

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
