"""Per-modality streaming features (ECG, EEG, accelerometer) and intermediate fusion.

:class:`DeviceFeatures` turns each window of one device into ``{modality: {key: value}}``;
:func:`concat` flattens that for feature-level (intermediate) fusion; :class:`OnlineNormalizer`
z-scores features per device. :class:`StreamingQRSDetector` also works on its own, on native
rate chunks.
"""

import numpy as np

from .acc import AccFeatures
from .device import DeviceFeatures, concat, modality_kind
from .normalize import OnlineNormalizer
from .qrs import StreamingQRSDetector


def warmup() -> None:
    """Compile (or load from the cache) every Numba kernel here, before data arrives."""
    t = np.arange(1500) / 250.0
    StreamingQRSDetector(250.0).update(np.sin(2 * np.pi * t) ** 15)
    acc = np.stack([0 * t, 0 * t, 1 + 0.3 * np.sin(2 * np.pi * 2 * t)], axis=1)
    AccFeatures("acc", 250.0).update(0.0, acc.astype(np.float32), np.ones(t.size, dtype=bool))


__all__ = [
    "DeviceFeatures",
    "OnlineNormalizer",
    "StreamingQRSDetector",
    "concat",
    "modality_kind",
    "warmup",
]
