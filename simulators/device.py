"""Simulated wearables: what each device sends, and when, as a deterministic event list.

A :class:`SimulatedDevice` turns its wearer's physiology (:mod:`simulators.physiology`) into
:class:`~streamfuse.types.Chunk` messages (``t0`` on the device clock, ``arrival`` NaN) and one
:class:`~streamfuse.types.Label` per second (the true state over the previous second, device
clock), each scheduled at a *send time* on the gateway clock: the moment its last sample was
taken plus the network delay of :mod:`simulators.faults`. :class:`Fleet` merges many devices.

A device built with ``bundle=True`` sends its modalities' chunks of one period together, as one
``"bundle"`` event (payload :class:`Bundle`) when the last of them is complete; the chunks are
the same as those it would send one by one, and the network faults apply to the bundle.

Both are stateful iterators over simulated time: ``advance(until)`` returns, in send-time order,
every event with ``send_time <= until`` not returned before, so ``advance(10); advance(20)``
gives the same events as ``advance(20)``.
"""

from __future__ import annotations

import heapq
import logging
import math
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from streamfuse.config import DEFAULT_MODALITIES, ModalitySpec
from streamfuse.errors import ConfigError
from streamfuse.types import Chunk, Label

from .faults import DeviceClock, FaultProfile, StreamFaults
from .physiology import STATES, Body, StreamGenerator, child_seed, make_body

log = logging.getLogger("streamfuse.simulators.device")

LABEL = "label"
BUNDLE = "bundle"


class Bundle(NamedTuple):
    """One device's chunks of period ``seq``, one per modality, sent in one message."""

    device: str
    seq: int
    chunks: tuple[Chunk, ...]


class Event(NamedTuple):
    """One message a device publishes: when (gateway clock), what kind, and the object."""

    send_time: float
    kind: str  # a modality name, "label" or "bundle"
    payload: Chunk | Label | Bundle


def device_seed(seed: int | Sequence[int], device_id: str) -> np.random.SeedSequence:
    """The seed of device ``device_id`` in a fleet seeded ``seed`` (same either way it is built)."""
    entropy = list(seed) if isinstance(seed, Sequence) else seed
    return np.random.SeedSequence(entropy, spawn_key=(zlib.crc32(device_id.encode()),))


class _Stream:
    __slots__ = ("kind", "spec", "clock", "faults", "k", "i0", "dev_start", "idx", "gen")

    def __init__(
        self,
        kind: str,
        spec: ModalitySpec | None,
        clock: DeviceClock,
        faults: StreamFaults,
        idx: int,
    ) -> None:
        self.kind = kind
        self.spec = spec
        self.clock = clock
        self.faults = faults
        self.k = 0  # next chunk (or label) index
        self.i0 = 0  # first sample index of chunk k
        self.dev_start = 0.0
        self.idx = idx
        self.gen: StreamGenerator | None = None


class SimulatedDevice:
    """One simulated wearable.

    Parameters
    ----------
    device_id
        e.g. ``"dev000"`` (must be a valid topic device id).
    seed
        The fleet seed; the device's own streams derive from ``(seed, device_id)``.
    faults
        What goes wrong on its way to the gateway (default: small jitter only).
    chunk_s
        Chunk length in seconds of device time (each chunk holds the samples whose time
        falls in ``[k * chunk_s, (k + 1) * chunk_s)``; at 256 Hz and 0.1 s that is 25 or 26).
    modalities
        Which streams to simulate (names ``ecg``, ``eeg``, ``acc``), with rates and channels.
    start_s
        Gateway time of the first sample; None draws it uniformly in ``[0, chunk_s)`` from the
        seed (so a fleet's devices do not all send at the same instant).
    bundle
        Send each period's chunks of every modality as one ``"bundle"`` event (ready when its
        last chunk is; faults drawn once per bundle) instead of one event per modality.
    dwell_s, schedule
        Latent state timing (see :class:`simulators.physiology.LatentState`).
    record
        Keep R-peak times, jitter draws etc. for tests.
    """

    def __init__(
        self,
        device_id: str,
        seed: int | Sequence[int] = 0,
        faults: FaultProfile | None = None,
        chunk_s: float = 0.1,
        modalities: Mapping[str, ModalitySpec] | None = None,
        *,
        start_s: float | None = None,
        dwell_s: tuple[float, float] = (15.0, 40.0),
        schedule: Sequence[tuple[str, float]] | None = None,
        labels: bool = True,
        record: bool = False,
        bundle: bool = False,
    ) -> None:
        modalities = dict(DEFAULT_MODALITIES if modalities is None else modalities)
        self.faults_profile = faults if faults is not None else FaultProfile()
        if not (math.isfinite(chunk_s) and chunk_s > 0):
            raise ConfigError(f"chunk_s must be a positive number of seconds, got {chunk_s}")
        for spec in modalities.values():
            if chunk_s * spec.fs < 1.0:
                raise ConfigError(
                    f"chunk_s={chunk_s} holds less than one {spec.name} sample at {spec.fs} Hz"
                )
        self.device_id = device_id
        self.chunk_s = float(chunk_s)
        self.modalities = modalities
        ss = device_seed(seed, device_id)
        self.seed_sequence = ss
        self.body: Body = make_body(
            child_seed(ss, "body"), modalities, dwell_s=dwell_s, schedule=schedule, record=record
        )
        if start_s is None:
            start_s = float(np.random.default_rng(child_seed(ss, "start")).uniform(0, chunk_s))
        self.start_s = float(start_s)
        prof = self.faults_profile
        self.clock = DeviceClock.draw(prof, np.random.default_rng(child_seed(ss, "clock")))
        self._streams: list[_Stream] = []
        kinds = [*modalities, *([LABEL] if labels else [])]
        for idx, kind in enumerate(kinds):
            if prof.shared_clock:
                clock = self.clock
            else:
                clock = DeviceClock.draw(
                    prof, np.random.default_rng(child_seed(ss, "clock:" + kind))
                )
            sf = StreamFaults(
                prof,
                np.random.default_rng(child_seed(ss, "faults:" + kind)),
                data=kind != LABEL,
                record=record,
            )
            st = _Stream(kind, modalities.get(kind), clock, sf, idx)
            st.dev_start = clock.to_device(self.start_s)
            if kind != LABEL:
                st.gen = self.body.streams[kind]
            self._streams.append(st)
        self._heap: list[tuple[float, int, int, int, Event]] = []
        self._until = -math.inf
        self.bundle = bundle
        self._bundle_faults: StreamFaults | None = None
        # period -> (stream index, chunk, ready) of the chunks waiting for their bundle
        self._parts: dict[int, list[tuple[int, Chunk, float]]] = {}
        if bundle:
            self._bundle_faults = StreamFaults(
                prof, np.random.default_rng(child_seed(ss, "faults:" + BUNDLE)), record=record
            )

    # -- introspection ---------------------------------------------------------------------

    @property
    def clocks(self) -> dict[str, DeviceClock]:
        """The clock of each stream (``"label"`` included)."""
        return {s.kind: s.clock for s in self._streams}

    @property
    def stream_faults(self) -> dict[str, StreamFaults]:
        """Each stream's fault state (counters, recorded delays); with ``bundle``, the data
        streams' faults are those of ``"bundle"`` (theirs stay unused)."""
        out = {s.kind: s.faults for s in self._streams}
        if self._bundle_faults is not None:
            out[BUNDLE] = self._bundle_faults
        return out

    def state_at(self, t_gateway: float) -> str:
        """The true latent state at gateway time ``t_gateway``."""
        u = (t_gateway - self.start_s) * self.clock.rate
        if u < 0:
            raise ValueError(f"{self.device_id} starts at {self.start_s}, asked for {t_gateway}")
        return STATES[self.body.latent.state(int(math.floor(u)))]

    # -- generation ------------------------------------------------------------------------

    def _sample_index(self, k: int, fs: float) -> int:
        return int(math.ceil(k * self.chunk_s * fs - 1e-9))

    def _ready(self, st: _Stream) -> float:
        """Gateway time at which the stream's next message is complete."""
        if st.spec is None:  # label k covers device seconds [k, k + 1)
            return st.clock.to_gateway(st.dev_start + st.k + 1)
        i1 = self._sample_index(st.k + 1, st.spec.fs)
        return st.clock.to_gateway(st.dev_start + (i1 - 1) / st.spec.fs)

    def _emit(self, st: _Stream, ready: float) -> None:
        k = st.k
        prof = self.faults_profile
        # the stamps of a device clock that jumped (FaultProfile.clock_jump_s)
        jump = prof.clock_jump_s if ready >= prof.clock_jump_at_s else 0.0
        if st.spec is None:
            value = STATES[self.body.latent.state(k)]
            payload: Chunk | Label = Label(
                self.device_id, st.dev_start + k + jump, st.dev_start + k + 1 + jump, value
            )
        else:
            i1 = self._sample_index(k + 1, st.spec.fs)
            assert st.gen is not None  # every data stream has its generator
            data = st.gen.take(i1 - st.i0)
            payload = Chunk(
                self.device_id, st.kind, k, st.dev_start + st.i0 / st.spec.fs + jump, st.spec.fs,
                data,
            )
            st.i0 = i1
            if self.bundle:
                st.k = k + 1
                self._parts.setdefault(k, []).append((st.idx, payload, ready))
                return
        st.k = k + 1
        for copy, t in enumerate(st.faults.send_times(ready)):
            heapq.heappush(self._heap, (t, st.idx, k, copy, Event(t, st.kind, payload)))

    def advance(self, until: float) -> list[Event]:
        """Every not-yet-returned event with ``send_time <= until``, in send-time order.

        Ties break by stream (modalities in order, then label), sequence number, copy.
        """
        if until < self._until:
            raise ValueError(f"time runs forward: advance({until}) after advance({self._until})")
        self._until = until
        for st in self._streams:
            ready = self._ready(st)
            while ready <= until:
                self._emit(st, ready)
                ready = self._ready(st)
        if self._parts:
            self._bundle_complete()
        out: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= until:
            out.append(heapq.heappop(heap)[4])
        return out

    def _bundle_complete(self) -> None:
        """Schedule a bundle for every period whose chunks have all been made."""
        assert self._bundle_faults is not None  # parts are kept only when bundling
        need = len(self.modalities)
        idx = len(self._streams)  # ties: after every single-stream event of the same instant
        for k in sorted(p for p, parts in self._parts.items() if len(parts) == need):
            parts = sorted(self._parts.pop(k), key=lambda part: part[0])
            ready = max(part[2] for part in parts)
            bundle = Bundle(self.device_id, k, tuple(part[1] for part in parts))
            for copy, t in enumerate(self._bundle_faults.send_times(ready)):
                heapq.heappush(self._heap, (t, idx, k, copy, Event(t, BUNDLE, bundle)))

    def events(self, duration: float, step: float = 1.0) -> Iterator[Event]:
        """Iterate over the events up to ``duration`` s of gateway time, ``step`` at a time."""
        t = max(self._until, 0.0)
        while t < duration:
            t = min(t + step, duration)
            yield from self.advance(t)


class Fleet:
    """Several simulated devices, their events merged in send-time order.

    Parameters
    ----------
    n_devices
        How many; ids are ``dev000``, ``dev001``, ... (``id_format`` changes that).
    seed
        Fleet seed; ``Fleet(n, s).devices[i]`` equals ``SimulatedDevice(id_i, s)``.
    **kwargs
        Passed to every :class:`SimulatedDevice` (faults, chunk_s, modalities, ...).
    """

    def __init__(
        self, n_devices: int, seed: int = 0, *, id_format: str = "dev{:03d}", **kwargs: object
    ) -> None:
        if n_devices < 1:
            raise ConfigError(f"a fleet needs at least one device, got {n_devices}")
        self.seed = seed
        self.devices = [
            SimulatedDevice(id_format.format(i), seed, **kwargs)  # type: ignore[arg-type]
            for i in range(n_devices)
        ]
        self._until = -math.inf

    @property
    def device_ids(self) -> list[str]:
        return [d.device_id for d in self.devices]

    @property
    def now(self) -> float:
        """Simulated gateway time the fleet has been advanced to (0 before the first call)."""
        return max(self._until, 0.0)

    def advance(self, until: float) -> list[Event]:
        """Every device's events with ``send_time <= until``, merged (ties: device order)."""
        if until < self._until:
            raise ValueError(f"time runs forward: advance({until}) after advance({self._until})")
        self._until = until
        parts = [d.advance(until) for d in self.devices]
        return list(heapq.merge(*parts, key=lambda e: e.send_time))

    def events(self, duration: float, step: float = 0.5) -> Iterator[Event]:
        """Iterate over the merged events up to ``duration`` seconds, ``step`` at a time."""
        t = max(self._until, 0.0)
        while t < duration:
            t = min(t + step, duration)
            yield from self.advance(t)
