"""The sans-IO heart: :class:`Engine` turns messages, chunks and labels into predictions.

The engine never reads a clock, a socket or a file. Shells pass the gateway clock reading
``now`` with every item, so the same input log gives the same outputs, live or replayed. An
optional ``timer`` (e.g. :func:`time.perf_counter`) only fills the per-stage latency of each
prediction; it never changes what is predicted.

This module takes items in (messages decoded, chunks and bundle parts to each device's
aligner, labels handed on), makes and evicts device sessions, and keeps the counters. Two base
classes of :class:`Engine` hold the rest: :class:`~streamfuse.deadlines.DeadlineSchedule`
(``deadlines.py``: :meth:`Engine.tick` and the heap of devices' deadlines) on
:class:`~streamfuse.prequential.Prequential` (``prequential.py``: a closed window's features,
fusion and prediction; labels resolved and learnt from). Inherited, not delegated: the calls
per chunk are those of one class, and ``streamfuse.engine.Engine`` is still what a checkpoint
pickles.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable
from functools import partial

import numpy as np
from river import base

from . import codec, intake, topics
from .align.device import DeviceAligner
from .config import EngineConfig
from .deadlines import DeadlineSchedule
from .errors import PayloadError
from .features import DeviceFeatures
from .fusion.levels import FusionHub
from .intake import RATE_TOLERANCE
from .learn.models import make_model
from .rejections import RejectionLog
from .session import DeviceSession
from .types import Chunk, FusedWindow, Label, Prediction, RawMessage, Rejection

log = logging.getLogger("streamfuse.engine")

Item = Chunk | Label | RawMessage
Output = Prediction | Rejection

#: how many scored windows :attr:`Engine.outcomes` keeps
OUTCOMES_KEPT = 4096


def _one_part_of(scan: codec.BundleScan, modality: str) -> bool:
    """``scan`` is one frame of ``modality`` (what a modality topic may carry)."""
    return len(scan.ints) == 1 and scan.names[scan.ints[0][0]] == modality


class Engine(DeadlineSchedule):
    """Streams in, predictions out, one deterministic step at a time.

    Parameters
    ----------
    config
        Modalities, windows, limits and the model to use.
    prefix
        The MQTT topic prefix that :class:`RawMessage` topics are parsed under.
    timer
        A monotonic clock for per-stage latency figures only (``None``: no timing).
    model_factory
        Makes the classifier each level learns, any river classifier (default:
        ``config.model`` by name); called once per level and per modality for late fusion.

    Attributes
    ----------
    hub
        The :class:`~streamfuse.fusion.levels.FusionHub`: models, selector, metrics.
    outcomes
        The last labelled windows as ``(device, window index, label)`` in the order they were
        scored and learnt (bounded; for audits and tests).
    on_window
        An observer of every fused window before its prediction is made (``None``: none), e.g.
        the web view's; it must not change the window. Never checkpointed.

    Examples
    --------
    A wrist accelerometer, still for 10 s then walking for 10 s, three times over; each
    stretch's label arrives as it ends, and every level learns from the windows it covers.

    >>> import numpy as np
    >>> from streamfuse import Chunk, Engine, EngineConfig, Label, ModalitySpec
    >>> acc = ModalitySpec("acc", ("x", "y", "z"), 50.0, "g")
    >>> engine = Engine(EngineConfig(modalities={"acc": acc}))
    >>> rng = np.random.default_rng(0)
    >>> for seq in range(600):  # 60 s of 0.1 s chunks, pushed as they would arrive
    ...     t0, walking = seq * 0.1, (seq // 100) % 2 == 1
    ...     x = rng.normal(0.0, 1.0 if walking else 0.1, (5, 3)).astype(np.float32)
    ...     _ = engine.push(Chunk("wrist-1", "acc", seq, t0, 50.0, x), now=t0 + 0.1)
    ...     if seq % 100 == 99:
    ...         label = Label("wrist-1", t0 - 9.9, t0 + 0.1, "walk" if walking else "still")
    ...         _ = engine.push(label, now=t0 + 0.1)
    >>> engine.stats()["engine"]["learned"]
    59
    >>> round(engine.metrics()["selected.accuracy"], 2)
    0.8

    Input that cannot be used is answered, not raised:

    >>> engine.push(Chunk("wrist-1", "acc", 600, 60.0, 50.0, np.zeros(5)), now=60.1)[0].reason
    'bad_shape'
    """

    #: a class attribute too, so an engine unpickled from an older checkpoint has it
    on_window: Callable[[FusedWindow], None] | None = None
    #: where bundles' samples are decoded to (:func:`codec.scan_parts`), reused: the aligner
    #: copies them into its rings (None until the first bundle; never checkpointed)
    _scratch: np.ndarray | None = None

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        prefix: str = topics.DEFAULT_PREFIX,
        timer: Callable[[], float] | None = None,
        model_factory: Callable[[], base.Classifier] | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.prefix = topics.check_prefix(prefix)
        self._timer = timer
        factory = model_factory or partial(make_model, self.config.model)
        self.hub = FusionHub(
            self.config, factory, None if model_factory is not None else self.config.model
        )
        self.outcomes: deque[tuple[str, int, str]] = deque(maxlen=OUTCOMES_KEPT)
        self.sessions: dict[str, DeviceSession] = {}
        self.counters: Counter[str] = Counter()
        self._rejection_log = RejectionLog()
        self.rejections = self._rejection_log.counts  # reason -> how many (the same Counter)
        self._tick_every = self.config.hop_s / 4
        self._last_tick = -math.inf
        self._ticks = 0
        # (deadline, session order, device): when each device's aligner may next close a
        # window without new data (DeviceAligner.next_deadline); stale entries are skipped
        self._deadlines: list[tuple[float, int, str]] = []
        self._made = 0
        self._topics = topics.TopicMemory(self.prefix)  # not checkpointed: a cache

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state.pop("on_window", None)  # an observer belongs to the process, not the state
        state.pop("_scratch", None)  # a buffer, not state
        return state

    # ------------------------------------------------------------------ intake
    def push(self, item: Item, now: float) -> list[Output]:
        """Feed one item that arrived at gateway time ``now``; return what it caused: the
        predictions of the windows it closed, and a :class:`Rejection` for an item that cannot
        be used (a bad wire message, or a chunk or label made in-process that fails the
        decoder's rules: :mod:`streamfuse.intake`)."""
        out: list[Output] = []
        t0 = self._clock()
        decoded: Chunk | Label | codec.BundleParts | None
        if isinstance(item, RawMessage):
            try:
                device, kind = self._topics.parse(item.topic)  # raises for a bad topic
                bundle = kind == topics.BUNDLE
                if bundle or (
                    kind != topics.LABEL
                    and kind != topics.PREDICTION
                    and item.payload[:2] == codec.MAGIC
                ):
                    # a bundle, or one binary frame on its modality's topic: a bundle of one
                    # part (scan_parts' checks are decode_binary's, the header naming the
                    # topic's modality and nothing after the frame); else the decoder says why
                    cfg = self.config
                    scan = codec.scan_parts(
                        item.payload,
                        cfg.modalities,
                        cfg.limits,
                        codec.MAX_BUNDLE_PARTS,
                        self._scratch,
                    )
                    if (
                        scan is not None
                        and math.isfinite(now)
                        and (bundle or _one_part_of(scan, kind))
                    ):
                        self._scratch = scan.samples  # the larger, if a new one was made
                        self._on_scan(device, scan, now, out, self._clock() - t0, bundle)
                        if now - self._last_tick >= self._tick_every:
                            out.extend(self.tick(now))
                        return out
                decoded = codec.decode_message(device, kind, item.payload, self.config, now)
                if decoded is None:
                    self.counters["own_output_ignored"] += 1
                    return out
            except PayloadError as exc:
                out.append(self._reject(exc))
                decoded = None
        else:
            problem = intake.item_problem(item, self.config)
            decoded = item if problem is None else None
            if problem is not None:
                out.append(self._reject(problem))
        t_decode = self._clock() - t0
        if isinstance(decoded, Chunk):
            self._on_chunk(decoded, now, out, t_decode)
        elif isinstance(decoded, Label):
            self._on_label(decoded, now)
        elif isinstance(decoded, codec.BundleParts):
            # a bundle's parts go the chunk path in order, each with an equal share of the
            # decode time; its refused parts are rejections like any message's
            self.counters["bundles"] += 1
            for refused in decoded.rejected:
                out.append(self._reject(refused))
            if decoded.lost_bytes:
                self.counters["bundle_bytes_lost"] += decoded.lost_bytes
            chunks = decoded.chunks
            if chunks:
                self._on_parts(chunks, now, out, t_decode / len(chunks))
        if now - self._last_tick >= self._tick_every:
            out.extend(self.tick(now))
        return out

    def push_many(self, items: Iterable[tuple[Item, float]]) -> list[Output]:
        out: list[Output] = []
        for item, now in items:
            out.extend(self.push(item, now))
        return out

    def flush(self) -> list[Prediction]:
        """End of stream: close every open window of every device."""
        out: list[Prediction] = []
        for session in self.sessions.values():
            self._sync(session)
            windows = session.aligner.flush()
            if windows:
                out.extend(self._on_windows(session, windows, math.nan, {}))
        return out

    # ----------------------------------------------------------------- stages
    def _session(self, device: str) -> DeviceSession | None:
        """``device``'s session, made on its first chunk; None if the live-device cap
        (``config.max_devices``) refuses it."""
        session = self.sessions.get(device)
        if session is None:
            if len(self.sessions) >= self.config.max_devices and not self._make_room():
                return None
            session = DeviceSession(
                device,
                DeviceAligner(device, self.config),
                DeviceFeatures(self.config),
                self.hub.new_device(),
                order=self._made,
                born_tick=self._ticks,
            )
            self._made += 1
            self.sessions[device] = session
            self.counters["devices"] += 1
        return session

    def _on_chunk(self, chunk: Chunk, now: float, out: list[Output], t_decode: float) -> None:
        """Align one chunk (its device's session looked up and brought up to the last tick);
        refuse it if it does not match the configured modalities."""
        spec = self.config.modalities.get(chunk.modality)
        if spec is None or chunk.channels != spec.channels:
            out.append(
                self._reject(
                    PayloadError(
                        "unknown_modality" if spec is None else "channel_mismatch",
                        "chunk does not match the configured modalities",
                        device=chunk.device,
                        modality=chunk.modality,
                        seq=chunk.seq,
                    )
                )
            )
            return
        problem = intake.rate_problem(chunk, spec)
        if problem is not None:
            out.append(self._reject(problem))
            return
        if math.isnan(chunk.arrival):
            # a new object, as the caller may push this one again (a replay run twice); the
            # constructor, not dataclasses.replace, which costs ~6 us more per chunk
            c = chunk
            chunk = Chunk(c.device, c.modality, c.seq, c.t0, c.fs, c.data, now)
        session = self._session(chunk.device)
        if session is None:
            live = len(self.sessions)
            out.append(self._reject(intake.device_cap_problem(chunk, live, self.config)))
            return
        session.last_seen = now
        self.counters["chunks"] += 1
        t0 = self._clock()
        self._sync(session)
        windows = session.aligner.add(chunk)
        if windows:
            latency = {"decode": t_decode, "align": self._clock() - t0}
            out.extend(self._on_windows(session, windows, now, latency))
        self._schedule(session)  # after the windows: they do not move the next deadline

    def _on_parts(self, chunks: list[Chunk], now: float, out: list[Output], share: float) -> None:
        """A decoded bundle's parts: :meth:`_on_chunk` for each, with what they share done
        once: the device's session looked up and synced, and its next deadline scheduled after
        the last part (only the latest state matters). The decoder has checked each part's
        modality and channels against this configuration and stamped its arrival; parts at a
        rate their modality is not configured for are refused here."""
        specs = self.config.modalities
        refused = [p for c in chunks if (p := intake.rate_problem(c, specs[c.modality]))]
        if refused:
            out.extend(self._reject(p) for p in refused)
            chunks = [c for c in chunks if intake.rate_problem(c, specs[c.modality]) is None]
            if not chunks:
                return
        session = self._session(chunks[0].device)
        if session is None:
            out.extend(
                self._reject(intake.device_cap_problem(c, len(self.sessions), self.config))
                for c in chunks
            )
            return
        session.last_seen = now
        self._sync(session)
        add = session.aligner.add
        counters = self.counters
        clock = self._clock
        for chunk in chunks:
            counters["chunks"] += 1
            t0 = clock()
            windows = add(chunk)
            if windows:
                latency = {"decode": share, "align": clock() - t0}
                out.extend(self._on_windows(session, windows, now, latency))
        self._schedule(session)

    def _on_scan(
        self,
        device: str,
        scan: codec.BundleScan,
        now: float,
        out: list[Output],
        t_decode: float,
        bundle: bool,
    ) -> None:
        """A bundle whose every part decoded (:func:`~streamfuse.codec.scan_parts`), arrived at
        ``now`` (finite): what :meth:`_on_parts` does with its chunks (and :meth:`_on_chunk`
        with a frame on a modality topic, ``bundle`` False: the same for one chunk), the parts
        handed to :meth:`~streamfuse.align.device.DeviceAligner.add_parts` as fields. A part
        at a rate its modality is not configured for, or a device the live-device cap
        refuses, sends the whole message the chunk path (its chunks made after all)."""
        if bundle:
            self.counters["bundles"] += 1
        specs = self.config.modalities
        names = scan.names
        ints = scan.ints
        floats = scan.floats
        session = self.sessions.get(device)
        usual = session is not None
        for row, (_, fs) in zip(ints, floats, strict=True):
            spec = specs[names[row[0]]]
            if not abs(fs - spec.fs) <= RATE_TOLERANCE * spec.fs:  # intake.rate_problem's test
                usual = False
        if not usual:
            samples = scan.samples.copy()  # the chunks own their samples (one may be held)
            chunks = [
                Chunk(device, names[j], seq, t0, fs, samples[p : p + n * ch].reshape(n, ch), now)
                for (j, n, ch, seq, p), (t0, fs) in zip(ints, floats, strict=True)
            ]
            self._on_parts(chunks, now, out, t_decode / len(chunks))
            return
        assert session is not None
        session.last_seen = now
        if self._ticks > session.born_tick:  # _sync
            session.aligner.sync(self._last_tick)
        counters = self.counters
        add = session.aligner.add_parts
        samples = scan.samples
        share = t_decode / len(ints)
        i = 0
        while i < len(ints):  # once, unless a part closes windows
            start = i
            t0 = self._clock()
            windows, i = add(names, ints, floats, samples, now, i)
            counters["chunks"] += i - start
            if windows:  # made before the next part's clock observation, as _on_parts does
                latency = {"decode": share, "align": self._clock() - t0}
                out.extend(self._on_windows(session, windows, now, latency))
        self._schedule(session)

    # ------------------------------------------------------------- plumbing
    def _reject(self, exc: PayloadError) -> Rejection:
        self.counters["rejected"] += 1
        return self._rejection_log.record(exc)

    def _make_room(self) -> bool:
        """At the live-device cap: under ``device_policy = "evict"`` forget the least recently
        seen hundredth of the devices (at least one; a batch, so a flood of new ids costs one
        sort per hundred of them, not a scan each) and return True; under ``"refuse"`` False.
        Their open windows are closed but not predicted (``windows_unpredicted_at_cap``), their
        pending ones counted in ``unlabelled_dropped``."""
        if self.config.device_policy != "evict":
            self.counters["devices_refused"] += 1
            return False
        n = max(1, len(self.sessions) // 100)
        for session in sorted(self.sessions.values(), key=lambda s: (s.last_seen, s.order))[:n]:
            del self.sessions[session.device]
            self.counters["devices_evicted_at_cap"] += 1
            self.counters["unlabelled_dropped"] += len(session.pending)
            self._sync(session)
            self.counters["windows_unpredicted_at_cap"] += len(session.aligner.flush())
        cap = self.config.max_devices
        log.info("live-device cap (%d) reached: evicted the %d least recently seen", cap, n)
        return True

    def evict_idle(self, now: float, idle_s: float) -> list[Prediction]:
        """Forget devices silent for ``idle_s`` seconds, after closing their open windows.

        Their pending (unlabelled) windows are dropped and counted; the shared models keep what
        they learned. Returns the predictions of the windows closed on the way out.
        """
        out: list[Prediction] = []
        for device in [d for d, s in self.sessions.items() if now - s.last_seen >= idle_s]:
            session = self.sessions.pop(device)
            self._sync(session)
            windows = session.aligner.flush()
            if windows:
                out.extend(self._on_windows(session, windows, now, {}))
            self.counters["evicted"] += 1
            self.counters["unlabelled_dropped"] += len(session.pending)
            log.info("evicted idle device %s (silent for %.1f s)", device, now - session.last_seen)
        return out

    def metrics(self) -> dict[str, float]:
        """Prequential figures per level, per modality and for the published choice, flat
        (``"intermediate.auc"``, ``"ecg.f1"``, ``"selected.accuracy"``, ``"selector.late"``)."""
        return self.hub.metrics_now()

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters of the whole engine and of each device's alignment."""
        align: Counter[str] = Counter()
        for s in self.sessions.values():
            align.update(s.aligner.counters)
        return {
            "engine": dict(self.counters),
            "rejections": dict(self.rejections),
            "align": dict(align),
        }
