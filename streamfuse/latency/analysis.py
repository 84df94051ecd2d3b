"""The join behind the bench's figures: publisher log + predictions + floor + echoes ->
histograms and counts (:func:`analyse`), and what one run measured (:class:`BenchResult`)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from ..config import EngineConfig
from .histograms import LatencyHistogram
from .settings import _CODES, LABEL_CODE, MODALITIES, P99_TARGET_MS, STAGES, BenchSettings


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
            chunk = Chunk(
                device, m, int(row["seq"]), float(row["t0"]), float(row["fs"]), block, arrival=pub
            )
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
    #: CPU seconds of the broker over the same span as ``gateway_cpu_s`` (NaN: an external
    #: broker, not ours to measure)
    broker_cpu_s: float = math.nan
    machine: dict[str, object] = field(default_factory=dict)
    #: the relay's messages echoed, CPU and wall seconds (from its ready to its stop)
    relay: dict[str, float] = field(default_factory=dict)
    #: with ``run_bench(keep_samples=True)``: ``{"end_to_end", "round_trip"}`` -> rows of
    #: ``(receipt, seconds)`` (:func:`timed_samples`); not part of :meth:`to_json`
    samples: dict[str, np.ndarray] | None = None
    #: seconds of publishing after which the run was stopped (Ctrl-C); None: it ran its course
    interrupted_after_s: float | None = None

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
    def gateway_to_broker_cpu(self) -> float:
        """Gateway CPU over broker CPU for the same traffic and span (NaN: broker not ours)."""
        b = self.broker_cpu_s
        return self.gateway_cpu_s / b if b > 0 else math.nan

    def cpu_ms_per_device_second(self, cpu_s: float) -> float:
        """``cpu_s`` as milliseconds of CPU per device-second of the measured span."""
        span = self.settings.devices * self.wall_s
        return cpu_s / span * 1e3 if span > 0 else math.nan

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
            "interrupted_after_s": self.interrupted_after_s,
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
            "broker_cpu_s": self.broker_cpu_s,
            "cpu_ms_per_device_second": {
                "gateway": self.cpu_ms_per_device_second(self.gateway_cpu_s),
                "broker": self.cpu_ms_per_device_second(self.broker_cpu_s),
            },
            "gateway_to_broker_cpu": self.gateway_to_broker_cpu,
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
    pub_of = _publishes(log_rec)
    # the broker's own figures over the same span as the timed windows
    counts["unmatched_floor"] = _time_hops(hists["floor"], floor, pub_of, warm_end)
    counts["unmatched_echoes"] = _time_hops(hists["round_trip"], echoes, pub_of, warm_end)
    counts["floor_messages"] = hists["floor"].count
    counts["round_trip_messages"] = hists["round_trip"].count
    counts["published"] = len(np.unique(log_rec["msg"]))
    counts["published_chunks"] = len(data)
    return hists, dict(counts)


def timed_samples(
    settings: BenchSettings,
    log_rec: np.ndarray,
    predictions: Sequence[tuple[str, int, float | None, dict[str, float], float]],
    config: EngineConfig,
    echoes: Sequence[tuple[str, str, int, float]] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Every timed latency with its receipt time, for figures over parts of a run (an A/B
    bench that switches something on and off within one run): ``float64[n, 2]`` rows
    ``(receipt, seconds)`` of the end-to-end latencies (timed as :func:`analyse` times them,
    warm-up included) and of the broker round trips."""
    completed, _ = completing_chunks(log_rec, config, settings.devices)
    e2e = [
        (receipt, receipt - completed[(device, index)])
        for device, index, closed_at, lat_ms, receipt in predictions
        if (device, index) in completed and "decode" in lat_ms and closed_at is not None
    ]
    hops = [
        (receipt, receipt - pub)
        for receipt, pub in _hop_publishes(echoes, _publishes(log_rec))
        if pub is not None
    ]
    return np.asarray(e2e, np.float64).reshape(-1, 2), np.asarray(hops, np.float64).reshape(-1, 2)


def _publishes(log_rec: np.ndarray) -> dict[tuple[int, int, int], float]:
    """(device number, modality code, seq) -> publish time of every logged data chunk."""
    data = log_rec[log_rec["kind"] != LABEL_CODE]
    return {(int(r["device"]), int(r["kind"]), int(r["seq"])): float(r["published"]) for r in data}


def _hop_publishes(
    received: Sequence[tuple[str, str, int, float]],
    pub_of: Mapping[tuple[int, int, int], float],
) -> list[tuple[float, float | None]]:
    """``(receipt, publish time or None)`` of each received data message, its publish found in
    ``pub_of`` (keyed by device number, modality code, seq)."""
    out: list[tuple[float, float | None]] = []
    for device, modality, seq, receipt in received:
        code = _CODES.get(modality)
        number = device[3:]
        pub = (
            pub_of.get((int(number), code, seq))
            if code is not None and device.startswith("dev") and number.isdigit()
            else None
        )
        out.append((receipt, pub))
    return out


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
    for receipt, pub in _hop_publishes(received, pub_of):
        if pub is None:
            unmatched += 1
        elif pub >= since:
            hist.record(receipt - pub)
    return unmatched
