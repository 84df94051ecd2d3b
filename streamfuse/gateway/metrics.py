"""Prometheus metrics of the gateway (prometheus-client, one registry per gateway).

Two kinds of figures:

- live instruments the shell updates as things happen (messages, bytes, shed messages,
  per-stage latency histograms, reconnects, checkpoints) and a queue-depth gauge read at scrape
  time;
- engine counters (decode errors by reason, alignment counters such as gaps, duplicates and late
  chunks, windows, predictions, evictions), copied on the event-loop thread into a snapshot every
  ``refresh_s`` so the HTTP thread never iterates the engine's dictionaries while they change.

Exposed names (all prefixed ``streamfuse_``): ``messages_total{kind}``, ``bytes_total``,
``shed_total{kind}``, ``queue_depth``, ``queue_capacity``, ``decode_errors_total{reason}``,
``align_total{counter}``, ``engine_total{counter}``, ``devices``,
``stage_latency_seconds{stage}``, ``predictions_published_total``, ``publish_dropped_total``,
``reconnects_total``, ``connected``, ``checkpoints_total``, ``checkpoints_corrupt_total``, and
the prequential figures of each fusion level, each modality's model and the published choice
(``level="selected"``): ``level_accuracy{level}``, ``level_auc{level}``,
``level_scored{level}`` (labelled windows scored).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..errors import StreamfuseError

log = logging.getLogger("streamfuse.gateway.metrics")

#: seconds; per-stage work is usually tens of microseconds to a few milliseconds
LATENCY_BUCKETS = (
    1e-5,
    3e-5,
    1e-4,
    3e-4,
    1e-3,
    3e-3,
    1e-2,
    3e-2,
    0.1,
    0.3,
    1.0,
)


#: (engine metric, gauge name, help) of the prequential gauges, one series per level
PREQUENTIAL = (
    ("accuracy", "accuracy", "Prequential accuracy per fusion level, modality and 'selected'"),
    ("auc", "auc", "Prequential ROC AUC per fusion level, modality and 'selected'"),
    ("n", "scored", "Labelled windows scored per fusion level, modality and 'selected'"),
)


class _Snapshot(Collector):
    """Yields the engine counters copied by :meth:`GatewayMetrics.refresh`."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {
            "rejections": {},
            "align": {},
            "engine": {},
            "devices": 0,
            "quality": {},
        }

    def collect(self) -> Iterator[Any]:
        data = self.data  # one reference read: the loop thread swaps whole dicts
        for name, label, doc in (
            ("rejections", "reason", "Messages rejected by the decoder, by reason"),
            ("align", "counter", "Alignment counters (gaps, duplicates, late chunks, ...)"),
            ("engine", "counter", "Engine counters (chunks, windows, predictions, evicted, ...)"),
        ):
            metric = "decode_errors" if name == "rejections" else name
            fam = CounterMetricFamily(f"streamfuse_{metric}", doc, labels=[label])
            for key, value in sorted(data[name].items()):
                fam.add_metric([key], float(value))
            yield fam
        gauge = GaugeMetricFamily("streamfuse_devices", "Devices with live state in the engine")
        gauge.add_metric([], float(data["devices"]))
        yield gauge
        for what, name, doc in PREQUENTIAL:
            level_fam = GaugeMetricFamily(f"streamfuse_level_{name}", doc, labels=["level"])
            for key, value in sorted(data["quality"].items()):
                who, _, figure = key.rpartition(".")
                if figure == what and value == value:  # NaN: not defined yet, left out
                    level_fam.add_metric([who], float(value))
            yield level_fam


#: (key, metric, help, counter?) of the journal's figures (:class:`.journal.Journal`)
JOURNAL = (
    ("records", "journal_records", "Journal records appended (this process)", True),
    ("messages", "journal_messages", "Received messages journalled (this process)", True),
    ("bytes", "journal_bytes", "Journal bytes written to the OS (this process)", True),
    ("segments", "journal_segments", "Journal segment files on disk", False),
    ("pruned", "journal_pruned_segments", "Journal segments removed after checkpoints", True),
    ("fsyncs", "journal_fsyncs", "Journal fsyncs", True),
    ("fsync_s", "journal_fsync_seconds", "Time spent in journal fsyncs", True),
    ("fsync_max_s", "journal_fsync_max_seconds", "Longest journal fsync", False),
)


class _Journal(Collector):
    """The journal's figures, copied by :meth:`GatewayMetrics.refresh` (nothing without one)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def collect(self) -> Iterator[Any]:
        data = self.data
        if not data:
            return
        for key, name, doc, counter in JOURNAL:
            family = CounterMetricFamily if counter else GaugeMetricFamily
            fam = family(f"streamfuse_{name}", doc)
            fam.add_metric([], float(data.get(key, 0)))
            yield fam
        fam = CounterMetricFamily(
            "streamfuse_journal_replayed",
            "Journal records applied at the last start (after the restored checkpoint)",
            labels=["kind"],
        )
        for kind, value in sorted(data.get("replayed", {}).items()):
            fam.add_metric([kind], float(value))
        yield fam


class GatewayMetrics:
    """The gateway's instruments on a private :class:`CollectorRegistry`."""

    def __init__(self, queue_depth: Callable[[], int], queue_capacity: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter(
            "streamfuse_messages", "MQTT messages received", ["kind"], registry=r
        )
        self.bytes = Counter("streamfuse_bytes", "Payload bytes received", registry=r)
        self.shed = Counter(
            "streamfuse_shed",
            "Messages dropped because the incoming queue was full (load shedding)",
            ["kind"],
            registry=r,
        )
        self.latency = Histogram(
            "streamfuse_stage_latency_seconds",
            "Per-stage processing time of each prediction",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._stages: dict[str, Any] = {}  # stage -> its child of ``latency``
        self.published = Counter(
            "streamfuse_predictions_published", "Predictions published", registry=r
        )
        self.publish_dropped = Counter(
            "streamfuse_publish_dropped",
            "Predictions not published (broker away and outbox full, or publish failed)",
            registry=r,
        )
        self.reconnects = Counter("streamfuse_reconnects", "Broker reconnections", registry=r)
        self.connected = Gauge("streamfuse_connected", "1 while connected", registry=r)
        self.checkpoints = Counter("streamfuse_checkpoints", "Checkpoints written", registry=r)
        self.checkpoints_corrupt = Counter(
            "streamfuse_checkpoints_corrupt", "Unusable checkpoints skipped at start", registry=r
        )
        depth = Gauge(
            "streamfuse_queue_depth", "Messages waiting in the incoming queue", registry=r
        )
        depth.set_function(lambda: float(queue_depth()))
        cap = Gauge("streamfuse_queue_capacity", "Size of the incoming queue", registry=r)
        cap.set(queue_capacity)
        self._snapshot = _Snapshot()
        r.register(self._snapshot)
        self._journal = _Journal()
        r.register(self._journal)
        self.endpoint = MetricsEndpoint(r)

    def refresh(
        self,
        stats: Mapping[str, Any],
        devices: int,
        quality: Mapping[str, float] | None = None,
        journal: Mapping[str, Any] | None = None,
    ) -> None:
        """Copy engine counters and, given, its prequential ``metrics()`` and the journal's
        figures (call on the event-loop thread)."""
        if journal is not None:
            self._journal.data = dict(journal)
        self._snapshot.data = {
            "rejections": dict(stats.get("rejections", {})),
            "align": dict(stats.get("align", {})),
            "engine": dict(stats.get("engine", {})),
            "devices": devices,
            "quality": dict(quality or {}),
        }

    def observe_latency(self, latency: Mapping[str, float]) -> None:
        stages = self._stages
        for stage, seconds in latency.items():
            child = stages.get(stage)
            if child is None:  # the histogram's child of a stage, looked up once
                child = stages[stage] = self.latency.labels(stage)
            child.observe(seconds)

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Start the ``/metrics`` endpoint (:class:`MetricsEndpoint`); return its port."""
        return self.endpoint.serve(port, host)

    @property
    def port(self) -> int | None:
        """The port ``/metrics`` is served on (None: not served)."""
        return self.endpoint.port

    def close(self) -> None:
        self.endpoint.close()


class MetricsEndpoint:
    """``/metrics`` of one registry over HTTP, in a daemon thread (prometheus-client's server).

    ``port_setting`` and ``host_setting`` name what sets the port and the host, and
    ``port_hint`` what to do when the port cannot be had, in the errors :meth:`serve` raises;
    ``what`` names the figures in the log line.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        what: str = "metrics",
        port_setting: str = "metrics.port",
        host_setting: str = "metrics.host",
        port_hint: str = "choose a free port, or metrics.port = 0 to disable /metrics",
    ) -> None:
        self.registry = registry
        self.what = what
        self.port_setting = port_setting
        self.host_setting = host_setting
        self.port_hint = port_hint
        self.port: int | None = None
        self._server: Any = None

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Start serving on ``port`` (0: a free one) of ``host``; return the port.

        Raises
        ------
        StreamfuseError
            When the port is taken or the host is not an address of this machine, naming the
            setting to change (a runtime failure: exit code 1).
        """
        try:
            self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        except socket.gaierror as exc:
            raise StreamfuseError(
                f"{self.host_setting} {host!r} is not a host name or address this machine can "
                f"serve on ({exc.strerror or exc}); use e.g. 127.0.0.1, or "
                f"{self.port_setting} = 0 to disable"
            ) from None
        except OSError as exc:
            raise StreamfuseError(
                f"{self.port_setting} {port} on {host} cannot be served "
                f"({exc.strerror or exc}); {self.port_hint}"
            ) from None
        self.port = int(self._server.server_port)
        log.info("%s on http://%s:%d/metrics", self.what, host, self.port)
        return self.port

    def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def parse_exposition(text: str) -> dict[str, float]:
    """``{"name{labels}": value}`` from Prometheus text (for tests and quick checks)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        out[key] = float(value)
    return out
