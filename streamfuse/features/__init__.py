"""Per-modality streaming features (ECG, EEG, accelerometer) and intermediate fusion.

:class:`DeviceFeatures` turns each window of one device into ``{modality: {key: value}}``;
:func:`concat` flattens that for feature-level (intermediate) fusion; :class:`OnlineNormalizer`
z-scores features per device. :class:`StreamingQRSDetector` also works on its own, on native
rate chunks. Kernels are compiled ahead of live data by :func:`streamfuse.warmup.warm_up`.
"""

from .device import DeviceFeatures, concat, modality_kind
from .normalize import OnlineNormalizer
from .qrs import StreamingQRSDetector

__all__ = [
    "DeviceFeatures",
    "OnlineNormalizer",
    "StreamingQRSDetector",
    "concat",
    "modality_kind",
]
