"""Synthetic wearables: physiology, device behaviour (clocks, network faults), MQTT publisher.

Typical use::

    from simulators import Fleet, FaultProfile
    fleet = Fleet(8, seed=1, faults=FaultProfile())
    for ev in fleet.events(30.0):   # (send_time, kind, Chunk | Label), send-time order
        ...

or ``await simulators.publisher.run_fleet("mqtt://127.0.0.1:1883", fleet)``.
"""

from .device import LABEL, Event, Fleet, SimulatedDevice
from .faults import DeviceClock, FaultProfile
from .physiology import STATES

__all__ = ["LABEL", "STATES", "DeviceClock", "Event", "FaultProfile", "Fleet", "SimulatedDevice"]
