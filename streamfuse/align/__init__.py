"""Time alignment: stream buffers, clock models, event-time windows, per-device aligner."""

from .buffer import StreamBuffer
from .clock import ClockModel
from .device import DeviceAligner
from .windower import Windower

__all__ = ["ClockModel", "DeviceAligner", "StreamBuffer", "Windower"]
