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
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from time import perf_counter as _perf
from typing import Any

import orjson

from ..engine import Engine
from ..types import FusedWindow, Prediction
from .viewparts import LatencyRing, ViewLimits, heatmap, latest, signals, timeline

__all__ = ["Client", "ViewLimits", "ViewModel", "as_text", "encode_event"]

#: the versions a client has of the parts that belong to its device
_DEVICE_PARTS = ("device_name", "windows", "predictions", "latest")


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
        self._truth_engine: Engine | None = None
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
                    watched, "signals", version, lambda w: signals(w.windows, limits)
                )
                out["heatmap"] = self._part(
                    watched, "heatmap", version, lambda w: heatmap(w.windows, limits)
                )
            truth_version = self._truth_version(engine)
            key = watched.pred_version * 1_000_003 + truth_version
            if sent.get("predictions") != key and watched.predictions:
                sent["predictions"] = key
                truth = self._device_truth(engine, device)  # type: ignore[arg-type]
                out["timeline"] = self._part(
                    watched, "timeline", key, lambda w: timeline(w.predictions, truth)
                )
                if sent.get("latest") != watched.pred_version:
                    sent["latest"] = watched.pred_version
                    out["latest"] = self._part(
                        watched, "latest", watched.pred_version, lambda w: latest(w.predictions)
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
        """A part of a watched device's view, built and serialised once per data version for
        every client (a JSON fragment: a frame only concatenates the parts it carries)."""
        cached = watched.cache.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]
        value = orjson.Fragment(orjson.dumps(build(watched), option=orjson.OPT_SERIALIZE_NUMPY))
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
            # each label learnt appends one outcome: read only the ones added since last time
            # (0.45 -> 0.01 ms a frame at 100 devices), all of them after a restore or restart
            new = learned - self._truth_seen
            outcomes = engine.outcomes
            fresh = self._truth_seen >= 0 and engine is self._truth_engine
            recent = islice(reversed(outcomes), new) if fresh and 0 < new else iter(outcomes)
            self._truth_seen, self._truth_engine = learned, engine
            for dev, index, value in recent:
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


def encode_event(frame: bytes) -> bytes:
    """One server-sent event carrying ``frame``."""
    return b"data: " + frame + b"\n\n"


def as_text(frame: bytes | None) -> dict[str, Any] | None:
    """A frame decoded back (tests, debugging)."""
    return None if frame is None else orjson.loads(frame)
