"""What the live web view shows, kept bounded and built only while someone is looking.

:class:`ViewModel` sits beside a running gateway (or any host of an
:class:`~streamfuse.engine.Engine`) and turns what the engine produces into small JSON frames
for the browser (:mod:`.webview` serves them):

- **predictions** (the gateway's ``on_prediction`` hook): each level's probabilities, the
  published choice, the late-fusion members' own probabilities, rules fired, stage latencies,
  the prequential metrics they carry;
- **fused windows** (:attr:`Engine.on_window <streamfuse.engine.Engine.on_window>`): the
  aligned signals of each modality, stitched window after window, and the last early-fusion
  matrix for the heatmap;
- **ground truth**: the engine's own matching of labels to windows (:attr:`Engine.outcomes`);
- **gateway figures**: the incoming queue, what was shed, messages processed, predictions
  published, rejections by reason.

Costs, by design:

- With no browser connected, :meth:`on_prediction` returns at its first test and the engine has
  no window observer (:meth:`connect` installs it, the last :meth:`disconnect` removes it and
  frees what was kept): nothing is done per message or per window.
- With browsers connected, a prediction costs an append to bounded deques; a window costs a
  set lookup, and a reference kept only for the devices some browser is watching. Decimation,
  truth matching and serialisation happen in :meth:`frame`, which each client calls at most a
  few times a second; a part is rebuilt only when its data changed, once for every client
  watching the same device.

Everything is bounded: the devices watched (``max_watched``), the predictions and windows kept
per watched device (``predictions_kept``, ``signal_s``), the latencies sampled
(``latencies_kept``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from time import perf_counter as _perf
from typing import Any

import numpy as np
import orjson

from ..engine import Engine
from ..types import FusedWindow, Prediction

#: stages of a prediction's latency, in the order they happen
STAGES = ("decode", "align", "features", "predict")
#: the versions a client has of the parts that belong to its device
_DEVICE_PARTS = ("device_name", "windows", "predictions", "latest")
#: the metric names shown per level, in this order
METRICS = ("accuracy", "auc", "f1", "precision", "recall", "specificity")


@dataclass(frozen=True, slots=True)
class ViewLimits:
    """How much the view keeps and sends.

    ``signal_s`` seconds of aligned signal per watched device, drawn with at most
    ``buckets_per_s`` min/max pairs per second per channel; the heatmap at most
    ``heat_columns`` columns wide; ``predictions_kept`` predictions per watched device (the
    timeline); ``latencies_kept`` recent stage latencies (all devices) for the percentiles;
    ``max_watched`` devices watched at once (further requests fall back to an already
    watched one).
    """

    signal_s: float = 8.0
    buckets_per_s: float = 25.0
    heat_columns: int = 128
    predictions_kept: int = 240
    latencies_kept: int = 4096
    max_watched: int = 16

    def __post_init__(self) -> None:
        if not (self.signal_s > 0 and self.buckets_per_s > 0):
            raise ValueError("signal_s and buckets_per_s must be positive")
        if min(self.heat_columns, self.predictions_kept, self.latencies_kept) < 1:
            raise ValueError("heat_columns, predictions_kept and latencies_kept must be >= 1")
        if self.max_watched < 1:
            raise ValueError("max_watched must be >= 1")


@dataclass(slots=True)
class _Watched:
    """What is kept about one watched device, and the parts built from it (cached)."""

    viewers: int = 0
    predictions: deque[Prediction] = field(default_factory=deque)
    windows: deque[FusedWindow] = field(default_factory=deque)
    pred_version: int = 0
    window_version: int = 0
    cache: dict[str, tuple[int, Any]] = field(default_factory=dict)


@dataclass(slots=True, eq=False)  # hashed by identity: one per connection
class Client:
    """One connected browser: the device it watches and the versions of the parts it has."""

    device: str | None
    sent: dict[str, int] = field(default_factory=dict)
    frames: int = 0


def _host_engine(host: Any) -> Engine | None:
    engine = host if isinstance(host, Engine) else getattr(host, "engine", None)
    return engine if isinstance(engine, Engine) else None


class ViewModel:
    """The web view's state: fed by a gateway's hooks, read by the browsers' frames.

    Parameters
    ----------
    host
        The gateway (anything with an ``engine`` attribute; its ``inbox``, ``processed`` and
        ``published`` are shown when present), an :class:`Engine`, or a no-argument callable
        returning one of those or ``None`` (e.g. ``lambda: server.gateway`` before start-up).
        Read at every frame, so an engine replaced by a restored checkpoint is followed.
    limits
        What is kept and sent (:class:`ViewLimits`).
    clock
        Monotonic seconds, for the gateway figures' refresh interval only.
    """

    def __init__(
        self,
        host: Any = None,
        *,
        limits: ViewLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._host = host
        self.limits = limits or ViewLimits()
        self._clock = clock
        self.clients: set[Client] = set()
        self._watched: dict[str, _Watched] = {}
        self._latencies = LatencyRing(self.limits.latencies_kept)
        #: seconds spent in this view's hooks and in building frames (not in socket writes: an
        #: awaited write's span would include whatever else the loop ran meanwhile)
        self.spent_s = 0.0
        self._engine: Engine | None = None
        self._devices: tuple[int, list[str]] = (0, [])
        self._devices_at = -math.inf
        self._figures: tuple[int, dict[str, Any]] = (0, {})
        self._figures_at = -math.inf
        self._truth_seen = -1
        self._truth: dict[str, dict[int, str]] = {}
        self._load_mark = (math.nan, 0.0)  # (clock, spent_s) at the last figures

    # ------------------------------------------------------------------ hooks (gateway side)
    def on_prediction(self, prediction: Prediction) -> None:
        """Every prediction the gateway makes (its ``on_prediction`` hook)."""
        if not self.clients:
            return
        t0 = _perf()
        if prediction.latency:
            self._latencies.add(prediction.latency)
        watched = self._watched.get(prediction.device)
        if watched is not None:
            watched.predictions.append(prediction)
            if len(watched.predictions) > self.limits.predictions_kept:
                watched.predictions.popleft()
            watched.pred_version += 1
        self.spent_s += _perf() - t0

    def on_window(self, fused: FusedWindow) -> None:
        """Every fused window (installed as the engine's ``on_window`` while clients exist)."""
        watched = self._watched.get(fused.window.device)
        if watched is None:
            return
        t0 = _perf()
        windows = watched.windows
        windows.append(fused)
        horizon = fused.window.t_end - self.limits.signal_s
        while len(windows) > 1 and windows[0].window.t_end <= horizon:
            windows.popleft()
        watched.window_version += 1
        self.spent_s += _perf() - t0

    # ------------------------------------------------------------------ clients
    def host(self) -> Any:
        """The gateway (or engine) now hosting the view, ``None`` before it starts."""
        host = self._host
        return host() if callable(host) and not isinstance(host, Engine) else host

    def engine(self) -> Engine | None:
        """The engine now running; keeps the window observer installed on it while clients
        are connected (a restored checkpoint replaces the engine object)."""
        engine = _host_engine(self.host())
        if engine is not self._engine:
            if self._engine is not None and self._engine.on_window == self.on_window:
                self._engine.on_window = None
            self._engine = engine
        if engine is not None and self.clients and engine.on_window != self.on_window:
            engine.on_window = self.on_window
        return engine

    def connect(self, device: str | None = None) -> Client:
        """A browser arrived, asking for ``device`` (``None``: the first one there is)."""
        client = Client(None)
        self.clients.add(client)
        self.select(client, device)
        self.engine()
        return client

    def disconnect(self, client: Client) -> None:
        """A browser left; the last one leaving removes the observer and frees what was kept."""
        self._unwatch(client)
        self.clients.discard(client)
        if not self.clients:
            engine = self._engine
            if engine is not None and engine.on_window == self.on_window:
                engine.on_window = None
            self._watched.clear()
            self._latencies.clear()
            self._truth.clear()
            self._truth_seen = -1

    def select(self, client: Client, device: str | None) -> None:
        """Point ``client`` at ``device`` (kept to ``max_watched`` devices at once)."""
        if device == client.device and device is not None:
            return
        self._unwatch(client)
        if device is not None and device not in self._watched:
            if len(self._watched) >= self.limits.max_watched:
                device = next(iter(self._watched))  # full: share one already watched
            else:
                self._watched[device] = _Watched()
        client.device = device
        for part in _DEVICE_PARTS:  # the new device's parts are all sent afresh
            client.sent.pop(part, None)
        if device is not None:
            self._watched[device].viewers += 1

    def _unwatch(self, client: Client) -> None:
        device = client.device
        watched = self._watched.get(device) if device is not None else None
        if watched is not None:
            watched.viewers -= 1
            if watched.viewers <= 0:
                del self._watched[device]  # type: ignore[arg-type]
                self._truth.pop(device, None)  # type: ignore[arg-type]
        client.device = None

    # ------------------------------------------------------------------ frames (view side)
    def frame(self, client: Client) -> bytes | None:
        """The parts of ``client``'s view that changed since its last frame, as JSON bytes
        (``None``: nothing changed)."""
        t0 = _perf()
        try:
            return self._frame(client)
        finally:
            self.spent_s += _perf() - t0

    def _frame(self, client: Client) -> bytes | None:
        engine = self.engine()
        out: dict[str, Any] = {}
        sent = client.sent
        version, devices = self._device_list(engine)
        if sent.get("devices") != version:
            sent["devices"] = version
            out["devices"] = devices
        if client.device is None and devices:
            self.select(client, devices[0])
        device = client.device
        if device is not None and sent.get("device_name") != 1:
            sent["device_name"] = 1
            out["device"] = device
        watched = self._watched.get(device) if device is not None else None
        if watched is not None:
            if sent.get("windows") != watched.window_version and watched.windows:
                sent["windows"] = watched.window_version
                limits = self.limits
                version = watched.window_version
                out["signals"] = self._part(
                    watched, "signals", version, lambda w: _signals(w, limits)
                )
                out["heatmap"] = self._part(
                    watched, "heatmap", version, lambda w: _heatmap(w, limits)
                )
            truth_version = self._truth_version(engine)
            key = watched.pred_version * 1_000_003 + truth_version
            if sent.get("predictions") != key and watched.predictions:
                sent["predictions"] = key
                truth = self._device_truth(engine, device)  # type: ignore[arg-type]
                out["timeline"] = self._part(
                    watched, "timeline", key, lambda w: _timeline(w.predictions, truth)
                )
                if sent.get("latest") != watched.pred_version:
                    sent["latest"] = watched.pred_version
                    out["latest"] = self._part(
                        watched, "latest", watched.pred_version, lambda w: _latest(w.predictions)
                    )
        version, figures = self._gateway_figures()
        if figures and sent.get("gateway") != version:
            sent["gateway"] = version
            out["gateway"] = figures
        if not out:
            return None
        client.frames += 1
        return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)

    def _part(self, watched: _Watched, name: str, version: int, build: Callable[..., Any]) -> Any:
        """A part of a watched device's view, built once per data version for every client."""
        cached = watched.cache.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]
        value = build(watched)
        watched.cache[name] = (version, value)
        return value

    def _device_list(self, engine: Engine | None) -> tuple[int, list[str]]:
        """The engine's devices, sorted; re-read at most once a second."""
        now = self._clock()
        if engine is not None and now - self._devices_at >= 1.0:
            self._devices_at = now
            names = sorted(engine.sessions)
            if names != self._devices[1]:
                self._devices = (self._devices[0] + 1, names)
        return self._devices

    def _truth_version(self, engine: Engine | None) -> int:
        return int(engine.counters.get("learned", 0)) if engine is not None else 0

    def _device_truth(self, engine: Engine | None, device: str) -> dict[int, str]:
        """Window index -> ground truth for ``device``, from the engine's scored windows.

        :attr:`Engine.outcomes` is bounded and shared by every device: what it forgets is kept
        here (per watched device, as far back as that device's timeline goes)."""
        if engine is None:
            return {}
        learned = self._truth_version(engine)
        if learned != self._truth_seen:
            self._truth_seen = learned
            for dev, index, value in engine.outcomes:
                if dev in self._watched:
                    self._truth.setdefault(dev, {})[index] = value
            watched = self._watched
            for dev, known in self._truth.items():
                preds = watched[dev].predictions if dev in watched else ()
                if preds and len(known) > 2 * self.limits.predictions_kept:
                    oldest = preds[0].index
                    for index in [i for i in known if i < oldest]:
                        del known[index]
        return self._truth.get(device, {})

    def _gateway_figures(self) -> tuple[int, dict[str, Any]]:
        """Queue, throughput, rejection and latency figures; refreshed at most once a second."""
        now = self._clock()
        if now - self._figures_at < 1.0:
            return self._figures
        self._figures_at = now
        host = self.host()
        engine = self._engine
        if engine is None:
            return self._figures
        figures: dict[str, Any] = {
            "devices": len(engine.sessions),
            "windows": int(engine.counters.get("windows", 0)),
            "predictions": int(engine.counters.get("predictions", 0)),
            "learned": int(engine.counters.get("learned", 0)),
            "rejected": int(engine.counters.get("rejected", 0)),
            "rejections": dict(engine.rejections.most_common(8)),
        }
        inbox = getattr(host, "inbox", None)
        if inbox is not None:
            figures["queued"] = int(inbox.qsize())
            figures["queue_limit"] = int(getattr(inbox, "maxsize", 0))
            figures["queue_high_water"] = int(getattr(inbox, "high_water", 0))
            figures["shed"] = dict(getattr(inbox, "shed", {}))
        for name in ("processed", "published"):
            value = getattr(host, name, None)
            if isinstance(value, int):
                figures[name] = value
        figures["latency_ms"] = self._latencies.percentiles()
        figures["view_ms_per_s"] = self._view_load(now)
        if figures != self._figures[1]:
            self._figures = (self._figures[0] + 1, figures)
        return self._figures

    def _view_load(self, now: float) -> float:
        """Milliseconds per second spent in the view's hooks and frames since last asked."""
        then, spent = self._load_mark
        self._load_mark = (now, self.spent_s)
        if not math.isfinite(then) or now <= then:
            return 0.0
        return round((self.spent_s - spent) / (now - then) * 1e3, 3)


# ---------------------------------------------------------------------- parts (pure)
class LatencyRing:
    """The stage latencies of the last ``size`` predictions, for percentiles.

    :meth:`add` (per prediction) only keeps a reference (bounded); :meth:`percentiles` moves
    what was added since into a NumPy table first, so the per-stage figures cost one pass of
    NumPy over at most ``size`` rows however often they are asked for.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.table = np.full((size, len(STAGES)), np.nan)
        self.written = 0
        self.pending: deque[Mapping[str, float]] = deque(maxlen=size)

    def add(self, latency: Mapping[str, float]) -> None:
        self.pending.append(latency)

    def __len__(self) -> int:
        return min(self.written + len(self.pending), self.size)

    def clear(self) -> None:
        self.table.fill(np.nan)
        self.written = 0
        self.pending.clear()

    def percentiles(self) -> dict[str, dict[str, float]]:
        """p50/p99 (ms) of each stage and of their sum."""
        nan = math.nan
        table, size = self.table, self.size
        for latency in self.pending:
            table[self.written % size] = [latency.get(stage, nan) for stage in STAGES]
            self.written += 1
        self.pending.clear()
        rows = table[: min(self.written, size)]
        if not len(rows):
            return {}
        out: dict[str, dict[str, float]] = {}
        for j, stage in enumerate(STAGES):
            col = rows[:, j]
            col = col[np.isfinite(col)]
            if col.size:
                p50, p99 = np.percentile(col, (50, 99)) * 1e3
                out[stage] = {"p50": round(float(p50), 4), "p99": round(float(p99), 4)}
        total = np.where(np.isfinite(rows), rows, 0.0).sum(axis=1) * 1e3
        p50, p99 = np.percentile(total, (50, 99))
        out["total"] = {"p50": round(float(p50), 4), "p99": round(float(p99), 4), "n": len(rows)}
        return out


def _min_max(values: np.ndarray, bucket: int) -> np.ndarray:
    """``float32[n, ch]`` (NaN: no data) -> ``float32[2 * (n // bucket), ch]``: each bucket's
    minimum then maximum, NaN where the bucket has no data (what a plot needs to keep every
    peak at any zoom; the tail shorter than a bucket is left out)."""
    nb = values.shape[0] // bucket
    if nb == 0:
        return np.empty((0, values.shape[1]), np.float32)
    cut = values[values.shape[0] - nb * bucket :].reshape(nb, bucket, values.shape[1])
    out = np.empty((2 * nb, values.shape[1]), np.float32)
    out[0::2] = np.fmin.reduce(cut, axis=1)  # fmin/fmax skip NaN, and warn of nothing
    out[1::2] = np.fmax.reduce(cut, axis=1)
    return out


def _stitched(windows: deque[FusedWindow]) -> tuple[float, float, np.ndarray, tuple[str, ...]]:
    """The windows' matrices on one uniform grid (``t0``, ``fs``, ``float32[n, C]`` with NaN
    where no data, column names); a later window overwrites the samples it shares."""
    last = windows[-1]
    fs = last.window.fs
    t0 = windows[0].window.t_start
    n = int(round((last.window.t_end - t0) * fs))
    grid = np.full((n, last.matrix.shape[1]), np.nan, np.float32)
    for fused in windows:
        w = fused.window
        if fused.matrix.shape[1] != grid.shape[1] or w.fs != fs:
            continue  # a different layout (another configuration): not drawn
        start = int(round((w.t_start - t0) * fs))
        k = fused.matrix.shape[0]
        if start < 0 or start + k > n:
            continue
        grid[start : start + k] = np.where(fused.mask, fused.matrix, np.nan)
    return t0, fs, grid, last.channels


def _columns_by_modality(channels: tuple[str, ...]) -> dict[str, list[int]]:
    by: dict[str, list[int]] = {}
    for i, name in enumerate(channels):
        by.setdefault(name.partition(":")[0], []).append(i)
    return by


def _signals(watched: _Watched, limits: ViewLimits | None = None) -> dict[str, Any]:
    """Each modality's aligned signal over the kept windows, min/max decimated."""
    limits = limits or ViewLimits()
    t0, fs, grid, channels = _stitched(watched.windows)
    keep = int(round(limits.signal_s * fs))
    if grid.shape[0] > keep:
        t0 += (grid.shape[0] - keep) / fs
        grid = grid[-keep:]
    bucket = max(1, int(fs // limits.buckets_per_s))
    trimmed = grid.shape[0] % bucket
    t0 += trimmed / fs
    dec = np.ascontiguousarray(_min_max(grid, bucket).T)  # a row per channel
    modalities = []
    for modality, cols in _columns_by_modality(channels).items():
        modalities.append(
            {
                "name": modality,
                "channels": [channels[c].partition(":")[2] for c in cols],
                "y": [dec[c] for c in cols],
            }
        )
    return {
        "t0": t0,
        "dt": bucket / fs / 2,
        "t_end": t0 + grid.shape[0] / fs,
        "modalities": modalities,
    }


def _heatmap(watched: _Watched, limits: ViewLimits | None = None) -> dict[str, Any]:
    """The last early-fusion matrix, channels x time, each channel z-scored over the window and
    mapped to 0..255 (-3..+3 sd), ``null`` where masked."""
    limits = limits or ViewLimits()
    fused = watched.windows[-1]
    x = np.where(fused.mask, fused.matrix, np.nan).astype(np.float64)
    k = x.shape[0]
    bucket = max(1, math.ceil(k / limits.heat_columns))
    nb = k // bucket
    x = x[: nb * bucket].reshape(nb, bucket, x.shape[1])
    valid = np.isfinite(x)
    count = valid.sum(axis=1)
    mean = np.where(count > 0, np.where(valid, x, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan)
    ok = np.isfinite(mean)
    n_ok = ok.sum(axis=0)
    filled = np.where(ok, mean, 0.0)
    mu = filled.sum(axis=0) / np.maximum(n_ok, 1)
    sd = np.sqrt(np.where(ok, (mean - mu) ** 2, 0.0).sum(axis=0) / np.maximum(n_ok, 1))
    z = np.divide(filled - mu, sd, out=np.zeros_like(mean), where=ok & (sd > 0))
    q = np.clip(np.round((z + 3.0) / 6.0 * 255.0), 0, 255).astype(np.int64).T.tolist()
    present = ok.T.tolist()
    rows = [
        [v if has else None for v, has in zip(qs, oks, strict=True)]
        for qs, oks in zip(q, present, strict=True)
    ]
    w = fused.window
    return {
        "t_start": w.t_start,
        "t_end": w.t_end,
        "index": w.index,
        "channels": list(fused.channels),
        "z": rows,
        "quality": {m: dict(q) for m, q in w.quality.items()},
    }


def _timeline(predictions: deque[Prediction], truth: Mapping[int, str]) -> dict[str, Any]:
    """Per kept prediction: window end, each level's probability of each class, the published
    level and class, and the ground truth once the engine has matched a label to it."""
    classes: list[str] = []
    levels: list[str] = []
    seen_c: set[str] = set()
    seen_l: set[str] = set()
    for p in predictions:
        for level, pr in p.levels.items():
            if level not in seen_l:
                seen_l.add(level)
                levels.append(level)
            for c in pr:
                if c not in seen_c:
                    seen_c.add(c)
                    classes.append(c)
    classes.sort()
    n = len(predictions)
    proba: dict[str, dict[str, list[float | None]]] = {
        lv: {c: [None] * n for c in classes} for lv in levels
    }
    for i, p in enumerate(predictions):
        for level, pr in p.levels.items():
            row = proba[level]
            for c, v in pr.items():
                row[c][i] = round(float(v), 4)
    return {
        "t": [p.t_end for p in predictions],
        "index": [p.index for p in predictions],
        "classes": classes,
        "levels": levels,
        "proba": proba,
        "published": [p.level for p in predictions],
        "label": [p.label for p in predictions],
        "truth": [truth.get(p.index) for p in predictions],
    }


def _latest(predictions: deque[Prediction]) -> dict[str, Any]:
    """The last prediction in full, with its metrics regrouped per level."""
    p = predictions[-1]
    metrics: dict[str, dict[str, float]] = {}
    for key, value in p.metrics.items():
        group, _, name = key.rpartition(".")
        if group and math.isfinite(value):
            metrics.setdefault(group, {})[name] = round(float(value), 4)
    d = p.to_json_dict()
    d["metrics"] = metrics
    return d


def encode_event(frame: bytes) -> bytes:
    """One server-sent event carrying ``frame``."""
    return b"data: " + frame + b"\n\n"


def as_text(frame: bytes | None) -> dict[str, Any] | None:
    """A frame decoded back (tests, debugging)."""
    return None if frame is None else orjson.loads(frame)
