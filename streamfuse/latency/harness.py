"""The end-to-end latency harness behind ``streamfuse bench``.

Four processes share one broker (and this machine's wall clock, :func:`time.time`):

- the **gateway under test** runs in the calling process: a :class:`~streamfuse.gateway.app.Gateway`
  hosting an :class:`~streamfuse.engine.Engine` (per-stage timer on), exactly as ``streamfuse
  gateway`` runs it;
- a **publisher** process (:func:`publisher_main`) plays a simulated fleet at real rates: every
  chunk is pre-generated and encoded before the start, then published when its span ends on
  the wall clock, and the wall time just before each ``publish`` call is logged per
  (device, modality, seq). Each device has its own chunk phase (seeded, uniform in one chunk
  period, :class:`simulators.device.SimulatedDevice`'s ``start_s``), so the fleet's messages
  spread over each 100 ms as a real fleet's would; ``lockstep`` puts every device on phase 0
  (all chunks of the fleet due at the same instants: the worst case). With ``bundle`` each
  device sends its three chunks of a period as one bundle (``{prefix}/{device}/bundle``) when
  the last of them is complete; the log then holds one row per part, all with the bundle's
  publish time;
- a **relay** process (:func:`relay_main`), a gateway that does nothing: an aiomqtt client
  with the gateway's client options (TCP_NODELAY, keepalive, subscription QoS) subscribed to
  the data topics of the first ``floor_devices`` devices, which republishes each message's
  payload unchanged at QoS 0 to its :func:`echo_topic` (``{topic}/echo``, a level below the
  gateway's ``{prefix}/+/+`` subscription, so the gateway never sees an echo);
- a **subscriber** process (:func:`subscriber_main`) receives every prediction, the data
  messages of the same ``floor_devices`` devices and the relay's echoes of them, and stamps
  each with its receipt time.

Definitions (see ``docs/performance.md``):

- The *completing chunk* of a window is the chunk whose arrival let the window close: the
  harness replays the publisher's log (chunk times and sizes, arrival = publish time) through a
  shadow :class:`~streamfuse.align.device.DeviceAligner` with the engine's configuration and
  notes which chunk's ``add`` returned the window (a bundle's parts are added in their order,
  as the engine does, so a window completed by a bundle is timed from the bundle's publish).
  Windows the shadow closes only because their lateness budget ran out are counted apart, not
  timed.
- **end-to-end** = receipt of the prediction by the subscriber - publish of the completing chunk.
- **receive** = the gateway's clock reading when the completing chunk reached the engine
  (``closed_at`` in the prediction) - its publish; **decode**, **align** (buffer, clock,
  window, resample + interleave), **features**, **predict** = the engine's own per-stage
  timings; **publish** = what is left (encode, publish, broker hop, subscriber read).
- **floor** = the broker's own pub->sub time for the same data messages in the same run
  (subscriber receipt - publish), i.e. what any client would pay for one hop.
- **round_trip** = publish of a data message -> the subscriber's receipt of the relay's echo
  of it: two broker hops and a client that only republishes, the path end-to-end takes
  (data in, prediction out) without the engine. The gateway-added figure is end-to-end p99
  minus this p99; minus the floor's p99 is reported beside it (``..._over_one_hop_ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing as mp
import socket
import struct
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .. import topics
from ..codec import HEADER_SIZE
from ..config import EngineConfig
from ..errors import BrokerError, ConfigError
from ..types import RawMessage
from .histograms import LatencyHistogram

log = logging.getLogger("streamfuse.latency.harness")

STAGES: tuple[str, ...] = ("receive", "decode", "align", "features", "predict", "publish")
MODALITIES: tuple[str, ...] = ("ecg", "eeg", "acc")
LABEL_CODE = len(MODALITIES)
BUNDLE_CODE = LABEL_CODE + 1
#: p99 end-to-end latency a device count must hold to count as sustained
P99_TARGET_MS = 50.0
_T0_OFFSET = 32  # byte offset of t0 (float64) in the binary frame header
_SEQ = struct.Struct("<Q")
_SEQ_OFFSET = 24
_NAME_OFFSET = 4  # the modality name (12 bytes) in the binary frame header
_CODES = {m: i for i, m in enumerate(MODALITIES)}
#: the topic level the relay appends to a data topic to republish it (see :func:`echo_topic`)
ECHO = "echo"
_ECHO_SUFFIX = "/" + ECHO
#: the publisher's log: one row per chunk (a bundle's parts share ``msg`` and ``published``)
#: or label; ``kind`` is the modality's index in MODALITIES, or LABEL_CODE
LOG_DTYPE = np.dtype(
    [
        ("device", "i4"), ("kind", "i1"), ("seq", "i8"), ("t0", "f8"), ("n", "i4"),
        ("fs", "f8"), ("scheduled", "f8"), ("published", "f8"), ("msg", "i4"),
    ]
)


@dataclass(frozen=True, slots=True)
class BenchSettings:
    """One benchmark run.

    Parameters
    ----------
    devices
        Simulated devices (ECG 250 Hz, EEG 8 x 256 Hz, ACC 3 x 50 Hz, 100 ms chunks, labels 1/s).
    duration
        Seconds of publishing (wall clock = simulated time).
    broker_url
        The broker every process connects to.
    prefix
        Topic prefix (a unique one keeps runs on a shared broker apart).
    seed
        Fleet seed.
    model
        The engine's online model.
    floor_devices
        How many devices' data messages the subscriber also receives (the one-hop floor) and
        the relay echoes (the round trip).
    settle_s
        Seconds to keep listening after the last publish (the lateness budget is added).
    start_delay_s
        Seconds between the go signal and the first sample (lets every client settle).
    bundle
        Each device publishes its chunks of one period as one bundle instead of one message
        per modality.
    lockstep
        Every device on chunk phase 0 (the whole fleet's chunks due at the same instants)
        instead of each on its own seeded phase.
    warmup_s
        Seconds at the start whose windows are timed apart, as ``startup``, and left out of
        every other figure: the whole fleet connects in the same instant, every device's
        session is made and its first (partial) window waits out its lateness budget, all in
        the first seconds. ``0``: everything is timed as one.
    """

    devices: int
    duration: float
    broker_url: str
    prefix: str = "sfbench"
    seed: int = 0
    model: str = "logreg"
    floor_devices: int = 20
    settle_s: float = 1.0
    start_delay_s: float = 0.5
    bundle: bool = False
    lockstep: bool = False
    warmup_s: float = 0.0

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ConfigError(f"devices must be at least 1, got {self.devices}")
        if not (math.isfinite(self.duration) and self.duration >= 2.0):
            raise ConfigError(
                f"duration must be at least 2 s (one 2 s window), got {self.duration}"
            )
        if not (math.isfinite(self.warmup_s) and 0.0 <= self.warmup_s <= self.duration - 2.0):
            raise ConfigError(
                f"warmup must be between 0 and the duration less one 2 s window "
                f"({self.duration - 2.0:g} s), got {self.warmup_s}"
            )
        topics.check_prefix(self.prefix)

    @property
    def mode(self) -> str:
        """What the publisher does, e.g. ``"bundle, staggered"``."""
        return (
            f"{'bundle' if self.bundle else 'per-modality'}, "
            f"{'lockstep' if self.lockstep else 'staggered'}"
        )


# --------------------------------------------------------------------------- publisher process


def _fleet_messages(
    devices: int, duration: float, seed: int, *, bundle: bool = False, lockstep: bool = False
) -> tuple[list[tuple[float, int, int, Any]], float]:
    """Pre-generate the fleet's messages: ``(due, device, kind, payload)`` sorted by ``due``.

    ``due`` is seconds after the start: a chunk is due when its span ends (``t0 + n / fs``, the
    first moment a real device could send it), a bundle when the span of its last part ends; a
    label one second after the second it covers. Device time is the publisher's clock: each
    device's chunks start at its own phase (seeded, uniform in ``[0, 0.1)`` s; 0 for every
    device with ``lockstep``) and ``t0`` carries that phase. ``kind`` is the modality's index
    in MODALITIES, LABEL_CODE or BUNDLE_CODE; a data payload is ``(chunks, frame)``, the frame
    a ``bytearray`` whose ``t0`` fields :func:`_stamp` sets at publish time.
    """
    from simulators import FaultProfile, Fleet
    from simulators.device import Bundle

    from ..codec import encode_bundle, encode_chunk
    from ..types import Label

    began = time.perf_counter()
    fleet = Fleet(
        devices, seed=seed, faults=FaultProfile(jitter_dist="none", jitter_mean_s=0.0),
        bundle=bundle, start_s=0.0 if lockstep else None,
    )
    codes = {m: i for i, m in enumerate(MODALITIES)}
    index = {d: i for i, d in enumerate(fleet.device_ids)}
    out: list[tuple[float, int, int, Any]] = []
    for ev in fleet.advance(duration):
        p = ev.payload
        dev = index[p.device]
        if isinstance(p, Label):
            out.append((ev.send_time, dev, LABEL_CODE, p))
        elif isinstance(p, Bundle):
            due = max(c.t0 + c.n / c.fs for c in p.chunks)
            if due <= duration:
                out.append((due, dev, BUNDLE_CODE, (p.chunks, bytearray(encode_bundle(p.chunks)))))
        else:
            due = p.t0 + p.n / p.fs
            if due <= duration:
                out.append((due, dev, codes[ev.kind], ((p,), bytearray(encode_chunk(p)))))
    out.sort(key=lambda m: m[0])
    return out, time.perf_counter() - began


def _stamp(chunks: tuple[Any, ...], frame: bytearray, t_base: float) -> list[float]:
    """Write each part's ``t0 + t_base`` into ``frame`` (device time = wall time); return them."""
    t0s = []
    offset = 0
    for c in chunks:
        t0 = c.t0 + t_base
        struct.pack_into("<d", frame, offset + _T0_OFFSET, t0)
        t0s.append(t0)
        offset += HEADER_SIZE + 4 * c.n * c.channels
    return t0s


async def _publish_all(
    settings: BenchSettings, messages: list[tuple[float, int, int, Any]], t_base: float
) -> np.ndarray:
    import aiomqtt

    from ..codec import encode_label
    from ..gateway.broker import parse_broker_url, set_nodelay
    from ..gateway.mqtt_io import publish_now
    from ..types import Label

    host, port, user, password, tls = parse_broker_url(settings.broker_url)
    ids = [f"dev{i:03d}" for i in range(settings.devices)]
    names = (*MODALITIES, topics.LABEL, topics.BUNDLE)
    topic = {
        (d, k): f"{settings.prefix}/{ids[d]}/{names[k]}"
        for d in range(settings.devices)
        for k in range(len(names))
    }
    rows = sum(1 if kind == LABEL_CODE else len(payload[0]) for _, _, kind, payload in messages)
    rec = np.zeros(rows, dtype=LOG_DTYPE)
    async with aiomqtt.Client(
        host, port, username=user, password=password,
        tls_params=aiomqtt.TLSParameters() if tls else None,
        identifier=f"{settings.prefix}-publisher", max_queued_outgoing_messages=0,
    ) as client:
        set_nodelay(client)
        paho = client._client

        def send(name: str, payload: bytes) -> None:
            # written to the socket now, as the gateway publishes (no loop turn per message)
            if not publish_now(paho, [(name, payload)]):
                raise BrokerError(f"the bench publisher lost its broker connection ({name})")

        now = time.time
        r = 0
        for i, (due, dev, kind, payload) in enumerate(messages):
            target = t_base + due
            delay = target - now()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            if kind == LABEL_CODE:
                label = Label(
                    payload.device, payload.t_start + t_base, payload.t_end + t_base, payload.value
                )
                sent = now()
                send(topic[dev, kind], encode_label(label))
                rec[r] = (dev, kind, -1, label.t_start, 0, 0.0, target, sent, i)
                r += 1
            else:
                chunks, frame = payload
                t0s = _stamp(chunks, frame, t_base)
                sent = now()
                send(topic[dev, kind], bytes(frame))
                for c, t0 in zip(chunks, t0s, strict=True):
                    rec[r] = (dev, _CODES[c.modality], c.seq, t0, c.n, c.fs, target, sent, i)
                    r += 1
            if i % 64 == 63:
                await asyncio.sleep(0)  # let paho's writer (for what the socket refused) run
    return rec


def publisher_main(settings: BenchSettings, conn: Any) -> None:
    """Child process: pre-generate, report ready, wait for ``("go", t_base)``, publish, send log."""
    logging.basicConfig(level=logging.WARNING)
    try:
        messages, gen_s = _fleet_messages(
            settings.devices, settings.duration, settings.seed,
            bundle=settings.bundle, lockstep=settings.lockstep,
        )
        conn.send(("ready", {"messages": len(messages), "generate_s": gen_s}))
        command, t_base = conn.recv()
        if command != "go":
            return
        rec = asyncio.run(_publish_all(settings, messages, t_base))
        conn.send(("done", rec))
    except Exception as exc:  # reported to the parent, which raises
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


# --------------------------------------------------------------------------- relay process


def echo_topic(topic: str) -> str:
    """The topic the relay republishes a message received on ``topic`` to.

    One level below the data topic (``{prefix}/{device}/{kind}/echo``): the gateway subscribes
    to ``{prefix}/+/+`` (:func:`streamfuse.topics.subscription`), exactly two levels below the
    prefix, so an echo never reaches it as data.
    """
    return topic + _ECHO_SUFFIX


def floor_topics(settings: BenchSettings) -> list[str]:
    """The data topics of the first ``floor_devices`` devices (per modality, or bundles)."""
    kinds = (topics.BUNDLE,) if settings.bundle else MODALITIES
    return [
        f"{settings.prefix}/dev{d:03d}/{k}"
        for d in range(min(settings.floor_devices, settings.devices))
        for k in kinds
    ]


async def _relay(settings: BenchSettings, conn: Any) -> dict[str, float]:
    import aiomqtt

    from ..gateway.app import GatewaySettings
    from ..gateway.broker import parse_broker_url, set_nodelay
    from ..gateway.mqtt_io import install_ingest, publish_now

    gw = GatewaySettings()  # the bench's gateway runs with these client defaults
    host, port, user, password, tls = parse_broker_url(settings.broker_url)
    relayed = 0
    async with aiomqtt.Client(
        host, port, username=user, password=password,
        tls_params=aiomqtt.TLSParameters() if tls else None,
        identifier=f"{settings.prefix}-relay", keepalive=gw.keepalive_s,
        socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
    ) as client:
        set_nodelay(client)
        paho = client._client

        def relay(raw: RawMessage) -> None:
            # echoed from inside paho's read, as the gateway ingests and publishes
            nonlocal relayed
            relayed += publish_now(paho, [(echo_topic(raw.topic), raw.payload)])

        install_ingest(client, relay)
        for name in floor_topics(settings):
            await client.subscribe(name, qos=gw.qos)
        conn.send(("ready", None))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while not conn.poll():
            await asyncio.sleep(0.05)
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"messages": relayed, "cpu_s": cpu_s, "wall_s": wall_s}


def relay_main(settings: BenchSettings, conn: Any) -> None:
    """Child process: subscribe, report ready, echo until told to stop, send how many it echoed
    and the CPU time it took (from ready to stop)."""
    logging.basicConfig(level=logging.WARNING)
    try:
        stats = asyncio.run(_relay(settings, conn))
        conn.recv()
        conn.send(("done", stats))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


# --------------------------------------------------------------------------- subscriber process


async def _subscribe(settings: BenchSettings, conn: Any) -> tuple[list, list, list]:
    import aiomqtt

    from ..gateway.broker import parse_broker_url, set_nodelay
    from ..gateway.mqtt_io import install_ingest

    host, port, user, password, tls = parse_broker_url(settings.broker_url)
    prefix = settings.prefix
    predictions: list[tuple[str, bytes, float]] = []
    floor: list[tuple[str, bytes, float]] = []
    echoes: list[tuple[str, bytes, float]] = []
    pred_filter = f"{prefix}/+/{topics.PREDICTION}"
    async with aiomqtt.Client(
        host, port, username=user, password=password,
        tls_params=aiomqtt.TLSParameters() if tls else None,
        identifier=f"{prefix}-subscriber",
    ) as client:
        set_nodelay(client)
        now = time.time
        suffix = "/" + topics.PREDICTION

        def receive(raw: RawMessage) -> None:
            # stamped inside paho's read of the packet (the gateway's ingest path), so the
            # subscriber's own queueing is not in the figures
            t = now()
            name, payload = raw.topic, raw.payload
            if name.endswith(suffix):
                predictions.append((name, payload, t))
            elif name.endswith(_ECHO_SUFFIX):  # the (first) frame's modality .. seq
                echoes.append((name, payload[_NAME_OFFSET : _SEQ_OFFSET + 8], t))
            else:
                floor.append((name, payload[_NAME_OFFSET : _SEQ_OFFSET + 8], t))

        install_ingest(client, receive)
        await client.subscribe(pred_filter)
        for name in floor_topics(settings):
            await client.subscribe(name)
        await client.subscribe(echo_topic(f"{prefix}/+/+"))
        conn.send(("ready", None))
        while not conn.poll():
            await asyncio.sleep(0.05)
    return predictions, floor, echoes


def _frame_ids(
    received: list[tuple[str, bytes, float]], device_level: int
) -> list[tuple[str, str, int, float]]:
    """``(device, modality, seq, receipt)`` of each data message (or echo) the subscriber got:
    the device is the topic's ``device_level``-th level from the end, modality and seq come
    from the (first) frame's header."""
    out = []
    for name, head, t in received:
        device = name.rsplit("/", device_level)[1]
        modality = head[:12].rstrip(b"\0").decode("ascii", "replace")
        seq = _SEQ.unpack_from(head, _SEQ_OFFSET - _NAME_OFFSET)[0]
        out.append((device, modality, seq, t))
    return out


def subscriber_main(settings: BenchSettings, conn: Any) -> None:
    """Child process: subscribe, report ready, record until told to stop, send what it saw."""
    import json

    logging.basicConfig(level=logging.WARNING)
    try:
        raw_pred, raw_floor, raw_echoes = asyncio.run(_subscribe(settings, conn))
        conn.recv()
        preds = []
        for _name, payload, t in raw_pred:
            obj = json.loads(payload)
            preds.append(
                (obj["device"], int(obj["index"]), obj.get("closed_at"), obj["latency_ms"], t)
            )
        floor = _frame_ids(raw_floor, 2)  # {prefix}/{device}/{kind}
        echoes = _frame_ids(raw_echoes, 3)  # {prefix}/{device}/{kind}/echo
        conn.send(("done", (preds, floor, echoes)))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


# --------------------------------------------------------------------------- the join


def completing_chunks(
    log_rec: np.ndarray, config: EngineConfig, devices: int
) -> tuple[dict[tuple[str, int], float], set[tuple[str, int]]]:
    """Which chunk let each window close, from the publisher's log alone.

    Replays every device's chunks (times and sizes only; arrival = publish time) through a
    shadow :class:`~streamfuse.align.device.DeviceAligner` configured like the engine.

    Returns
    -------
    completed
        ``(device, window index) -> publish time`` of the chunk whose ``add`` closed it.
    timed_out
        Windows the shadow closed only because their lateness budget had run out.
    """
    from ..align.device import DeviceAligner
    from ..types import Chunk

    chans = {m: config.modalities[m].channels for m in MODALITIES}
    completed: dict[tuple[str, int], float] = {}
    timed_out: set[tuple[str, int]] = set()
    data = log_rec[log_rec["kind"] != LABEL_CODE]
    order = np.argsort(data["published"], kind="stable")
    data = data[order]
    zeros: dict[tuple[str, int], np.ndarray] = {}
    for d in range(devices):
        device = f"dev{d:03d}"
        aligner = DeviceAligner(device, config)
        for row in data[data["device"] == d]:
            m = MODALITIES[int(row["kind"])]
            n = int(row["n"])
            block = zeros.get((m, n))
            if block is None:
                block = zeros[(m, n)] = np.zeros((n, chans[m]), np.float32)
            pub = float(row["published"])
            chunk = Chunk(device, m, int(row["seq"]), float(row["t0"]), float(row["fs"]), block,
                          arrival=pub)
            for fw in aligner.add(chunk):
                w = fw.window
                key = (device, int(w.index))
                if pub >= w.t_end + config.lateness_s:
                    timed_out.add(key)
                else:
                    completed[key] = pub
    return completed, timed_out


@dataclass(slots=True)
class BenchResult:
    """Everything one run measured (``to_json`` gives the JSON the CLI writes)."""

    settings: BenchSettings
    histograms: dict[str, LatencyHistogram]
    counts: dict[str, int]
    gateway_cpu_s: float
    wall_s: float
    publisher: dict[str, float]
    engine: Mapping[str, object]
    broker_kind: str = "external"
    machine: dict[str, object] = field(default_factory=dict)
    #: the relay's messages echoed, CPU and wall seconds (from its ready to its stop)
    relay: dict[str, float] = field(default_factory=dict)

    @property
    def end_to_end(self) -> LatencyHistogram:
        return self.histograms["end_to_end"]

    @property
    def floor(self) -> LatencyHistogram:
        return self.histograms["floor"]

    @property
    def round_trip(self) -> LatencyHistogram:
        return self.histograms["round_trip"]

    @property
    def cpu_fraction(self) -> float:
        """Share of one core the gateway process used while the fleet was publishing."""
        return self.gateway_cpu_s / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def gateway_added_p99_ms(self) -> float:
        """End-to-end p99 minus the broker round trip's p99 (both paths cross the broker twice)."""
        return self.end_to_end.percentile_ms(99) - self.round_trip.percentile_ms(99)

    @property
    def gateway_added_p99_over_one_hop_ms(self) -> float:
        """End-to-end p99 minus the one-hop floor's p99 (the figure reported before the round
        trip was measured: it also counts the second broker hop as the gateway's)."""
        return self.end_to_end.percentile_ms(99) - self.floor.percentile_ms(99)

    def sustained(self, target_ms: float = P99_TARGET_MS) -> bool:
        """p99 end to end under ``target_ms``, no prediction lost, publisher on schedule."""
        c = self.counts
        return (
            self.end_to_end.count > 0
            and self.end_to_end.percentile_ms(99) < target_ms
            and c["missing"] <= 0.001 * max(1, c["expected"])
            and self.publisher.get("lag_p99_ms", 0.0) < target_ms
        )

    def to_json(self) -> dict[str, object]:
        return {
            "settings": asdict(self.settings),
            "mode": self.settings.mode,
            "broker": self.broker_kind,
            "machine": self.machine,
            "latency_ms": {k: h.summary() for k, h in self.histograms.items()},
            "gateway_added_p99_ms": self.gateway_added_p99_ms,
            "gateway_added_p99_over_one_hop_ms": self.gateway_added_p99_over_one_hop_ms,
            "counts": self.counts,
            "gateway_cpu_s": self.gateway_cpu_s,
            "wall_s": self.wall_s,
            "gateway_cpu_fraction": self.cpu_fraction,
            "devices_per_core_estimate": (
                self.settings.devices / self.cpu_fraction if self.cpu_fraction > 0 else None
            ),
            "sustained_p99_under_ms": {str(P99_TARGET_MS): self.sustained()},
            "publisher": self.publisher,
            "relay": self.relay,
            "engine": self.engine,
            "hdr": {k: h.encode() for k, h in self.histograms.items() if h.count},
        }


def analyse(
    settings: BenchSettings,
    log_rec: np.ndarray,
    predictions: list[tuple[str, int, float | None, dict[str, float], float]],
    floor: list[tuple[str, str, int, float]],
    config: EngineConfig,
    echoes: Sequence[tuple[str, str, int, float]] = (),
) -> tuple[dict[str, LatencyHistogram], dict[str, int]]:
    """Join the publisher's log, the predictions, the floor messages and the relay's echoes
    into histograms.

    ``floor`` and ``echoes`` hold ``(device, modality, seq, receipt)``; each is timed from the
    publish of the logged chunk with that device, modality and seq (a bundle's first part: its
    bundle's publish). One that matches no logged chunk is not timed (counted as
    ``unmatched_floor`` / ``unmatched_echoes``).
    """
    names = ("end_to_end", *STAGES, "floor", "round_trip", "startup")
    hists = {name: LatencyHistogram(name) for name in names}
    completed, timed_out = completing_chunks(log_rec, config, settings.devices)
    counts: Counter[str] = Counter()
    # the warm-up ends warmup_s after the first message was due (the fleet's start)
    warm_end = (
        float(log_rec["scheduled"].min()) + settings.warmup_s
        if settings.warmup_s > 0 and len(log_rec)
        else -math.inf
    )
    seen: set[tuple[str, int]] = set()
    for device, index, closed_at, lat_ms, receipt in predictions:
        key = (device, index)
        if key in seen:
            counts["duplicate_predictions"] += 1
            continue
        seen.add(key)
        counts["received"] += 1
        pub = completed.get(key)
        if pub is None or "decode" not in lat_ms or closed_at is None:
            # closed by the lateness budget (a tick), not by a chunk: not a processing latency
            counts["closed_by_timeout"] += 1
            continue
        if pub < warm_end:
            counts["startup"] += 1
            hists["startup"].record(receipt - pub)
            continue
        counts["timed"] += 1
        hists["end_to_end"].record(receipt - pub)
        hists["receive"].record(closed_at - pub)
        inside = 0.0
        for stage in ("decode", "align", "features", "predict"):
            v = lat_ms.get(stage, math.nan) / 1e3
            hists[stage].record(v)
            inside += 0.0 if math.isnan(v) else v
        hists["publish"].record(receipt - closed_at - inside)
    counts["expected"] = len(completed)
    counts["missing"] = len(set(completed) - seen)
    counts["shadow_timed_out"] = len(timed_out)
    data = log_rec[log_rec["kind"] != LABEL_CODE]
    pub_of = {
        (int(r["device"]), int(r["kind"]), int(r["seq"])): float(r["published"]) for r in data
    }
    # the broker's own figures over the same span as the timed windows
    counts["unmatched_floor"] = _time_hops(hists["floor"], floor, pub_of, warm_end)
    counts["unmatched_echoes"] = _time_hops(hists["round_trip"], echoes, pub_of, warm_end)
    counts["floor_messages"] = hists["floor"].count
    counts["round_trip_messages"] = hists["round_trip"].count
    counts["published"] = len(np.unique(log_rec["msg"]))
    counts["published_chunks"] = len(data)
    return hists, dict(counts)


def _time_hops(
    hist: LatencyHistogram,
    received: Sequence[tuple[str, str, int, float]],
    pub_of: Mapping[tuple[int, int, int], float],
    since: float = -math.inf,
) -> int:
    """Record receipt - publish of every received data message found in ``pub_of`` (keyed by
    device number, modality code, seq) and published at or after ``since``; return how many
    were not found."""
    unmatched = 0
    for device, modality, seq, receipt in received:
        code = _CODES.get(modality)
        number = device[3:]
        pub = (
            pub_of.get((int(number), code, seq))
            if code is not None and device.startswith("dev") and number.isdigit()
            else None
        )
        if pub is None:
            unmatched += 1
        elif pub >= since:
            hist.record(receipt - pub)
    return unmatched


# --------------------------------------------------------------------------- the run


def _machine() -> dict[str, object]:
    import os
    import platform

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
    }


async def _recv(conn: Any, what: str, timeout: float) -> Any:
    if not await asyncio.to_thread(conn.poll, timeout):
        raise BrokerError(f"the benchmark {what} did not answer within {timeout:.0f} s")
    kind, payload = conn.recv()
    if kind == "error":
        raise BrokerError(f"the benchmark {what} failed: {payload}")
    return payload


async def run_bench(settings: BenchSettings, *, profiler: Any = None) -> BenchResult:
    """Run one benchmark against ``settings.broker_url`` (the broker must be running).

    ``profiler`` (e.g. a :class:`cProfile.Profile`) is enabled in this process, the gateway's,
    only while the fleet publishes.
    """
    from .. import Engine, warm_up
    from ..gateway.app import Gateway, GatewaySettings

    config = EngineConfig(model=settings.model)
    warm_up(config)
    engine = Engine(config, prefix=settings.prefix, timer=time.perf_counter)
    gateway = Gateway(
        engine,
        GatewaySettings(broker_url=settings.broker_url, prefix=settings.prefix,
                        client_id=f"{settings.prefix}-gateway"),
        clock=time.time,
    )
    ctx = mp.get_context("spawn")
    pub_parent, pub_child = ctx.Pipe()
    sub_parent, sub_child = ctx.Pipe()
    relay_parent, relay_child = ctx.Pipe()
    publisher = ctx.Process(target=publisher_main, args=(settings, pub_child),
                            name="streamfuse-bench-publisher", daemon=True)
    subscriber = ctx.Process(target=subscriber_main, args=(settings, sub_child),
                             name="streamfuse-bench-subscriber", daemon=True)
    relay = ctx.Process(target=relay_main, args=(settings, relay_child),
                        name="streamfuse-bench-relay", daemon=True)
    stop = asyncio.Event()
    gw_task = asyncio.create_task(gateway.run(stop), name="streamfuse[bench].gateway")
    try:
        await asyncio.wait_for(gateway.connected.wait(), 10)
        publisher.start()
        subscriber.start()
        relay.start()
        await _recv(sub_parent, "subscriber", 60)
        await _recv(relay_parent, "relay", 60)
        gen_budget = 120 + settings.devices * settings.duration / 50
        ready = await _recv(pub_parent, "publisher", gen_budget)
        log.info("publisher ready: %s", ready)
        t_base = time.time() + settings.start_delay_s
        cpu0, wall0 = time.process_time(), time.perf_counter()
        mark = [cpu0, wall0]

        def _warm() -> None:  # CPU is measured over the same span as the timed windows
            mark[:] = [time.process_time(), time.perf_counter()]

        if settings.warmup_s > 0:
            asyncio.get_running_loop().call_later(
                settings.start_delay_s + settings.warmup_s, _warm
            )
        if profiler is not None:
            profiler.enable()
        pub_parent.send(("go", t_base))
        log_rec = await _recv(pub_parent, "publisher", settings.duration + 120)
        if profiler is not None:
            profiler.disable()
        cpu_s, wall_s = time.process_time() - mark[0], time.perf_counter() - mark[1]
        # the last window holding data (its start is on the device's own phase) ends less than
        # window_s after the data does, then waits out its lateness budget
        await asyncio.sleep(settings.settle_s + config.window_s + config.lateness_s)
        # the relay first, so that every echo it sent is in the subscriber's record
        with contextlib.suppress(OSError):  # a relay that failed has said why on its pipe
            relay_parent.send("stop")
        relay_stats = await _recv(relay_parent, "relay", 60)
        sub_parent.send("stop")
        preds, floor, echoes = await _recv(sub_parent, "subscriber", 120)
    finally:
        stop.set()
        await asyncio.gather(gw_task, return_exceptions=True)
        for proc in (publisher, subscriber, relay):
            if proc.pid is None:
                continue
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
    _, first = np.unique(log_rec["msg"], return_index=True)  # one row per message
    sent = log_rec[first]
    lag = (sent["published"] - sent["scheduled"]) * 1e3
    publisher_stats = {
        "messages": int(len(sent)),
        "generate_s": float(ready["generate_s"]),
        "lag_p50_ms": float(np.percentile(lag, 50)) if len(lag) else math.nan,
        "lag_p99_ms": float(np.percentile(lag, 99)) if len(lag) else math.nan,
        "lag_max_ms": float(lag.max()) if len(lag) else math.nan,
        "messages_per_s": float(len(sent) / settings.duration),
    }
    hists, counts = analyse(settings, log_rec, preds, floor, config, echoes)
    counts["published_by_gateway"] = gateway.published
    counts["relayed"] = int(relay_stats["messages"])
    return BenchResult(
        settings=settings,
        histograms=hists,
        counts=counts,
        gateway_cpu_s=cpu_s,
        wall_s=wall_s,
        publisher=publisher_stats,
        engine=engine.stats(),
        relay=relay_stats,
        machine=_machine(),
    )


async def run_ramp(
    base: BenchSettings,
    *,
    start: int = 50,
    limit: int = 4000,
    target_ms: float = P99_TARGET_MS,
    refine: int = 2,
) -> tuple[list[BenchResult], int]:
    """Double the device count from ``start`` until a run fails, then bisect ``refine`` times.

    Returns every run and the largest device count that held (0 if none did).
    """
    from dataclasses import replace

    runs: list[BenchResult] = []
    best, worst = 0, None
    n = start
    while n <= limit:
        result = await run_bench(replace(base, devices=n, prefix=f"{base.prefix}{n}"))
        runs.append(result)
        log.warning("ramp: %d devices -> p99 %.2f ms, %s", n, result.end_to_end.percentile_ms(99),
                    "held" if result.sustained(target_ms) else "failed")
        if result.sustained(target_ms):
            best = n
            n *= 2
        else:
            worst = n
            break
    if worst is not None:  # a run failed: bisect between the last held and the failed count
        for _ in range(refine):
            n = (best + worst) // 2 if best else worst // 2
            if n in (best, worst) or n < 1:
                break
            result = await run_bench(replace(base, devices=n, prefix=f"{base.prefix}{n}"))
            runs.append(result)
            if result.sustained(target_ms):
                best = n
            else:
                worst = n
    return runs, best


@contextlib.contextmanager
def broker_for(url: str | None, kind: str = "auto") -> Any:
    """Yield ``(url, kind)``: the given broker, or a private one started for the run."""
    if url:
        yield url, "external"
        return
    from ..gateway.broker import EmbeddedBroker

    with EmbeddedBroker(kind=kind) as broker:  # type: ignore[arg-type]
        yield broker.url, broker.kind
