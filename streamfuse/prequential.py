"""Test-then-train: each closed window is predicted, and learnt from once a label covers it.

:class:`Prequential` is a base class of :class:`~streamfuse.engine.Engine` holding this half
of it (moved here from ``engine.py`` to keep that module small): a device's closed windows go
through its features and the fusion levels to a :class:`~streamfuse.types.Prediction`, and are
kept pending; a label (mapped onto the gateway clock by the device's aligner) resolves the
pending windows it covers, which every level then learns from (prequential metrics: scored
before learnt). The engine's state is set up by ``Engine.__init__`` (declared below for the
type checker); methods are inherited, not delegated, so a window costs the same calls as
before, and a pickled engine is still a ``streamfuse.engine.Engine`` with the same attributes.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable

from .config import EngineConfig
from .fusion.levels import FusionHub
from .labelling import window_truth
from .session import DeviceSession, Pending
from .types import FusedWindow, Label, Prediction


class Prequential:
    """Windows to predictions, labels to learning: a base class of
    :class:`~streamfuse.engine.Engine` (never made on its own)."""

    # set by Engine.__init__
    config: EngineConfig
    hub: FusionHub
    outcomes: deque[tuple[str, int, str]]
    sessions: dict[str, DeviceSession]
    counters: Counter[str]
    _timer: Callable[[], float] | None
    on_window: Callable[[FusedWindow], None] | None

    def _clock(self) -> float:
        return self._timer() if self._timer is not None else 0.0

    def _on_windows(
        self,
        session: DeviceSession,
        windows: list[FusedWindow],
        now: float,
        latency: dict[str, float],
    ) -> list[Prediction]:
        """Features, fusion and a prediction for each closed window."""
        out: list[Prediction] = []
        observe = self.on_window
        for fused in windows:
            if observe is not None:
                observe(fused)
            t0 = self._clock()
            feats = session.features.update(fused.window)
            t1 = self._clock()
            evidence = self.hub.evidence(fused, feats, session.fusion)
            verdict = self.hub.decide(evidence)
            chosen = self.hub.published(verdict)
            t2 = self._clock()
            window = fused.window
            session.windows += 1
            session.last_start = window.t_start
            self.counters["windows"] += 1
            session.pending.append(
                Pending(window.t_start, window.t_end, window.index, evidence, verdict)
            )
            while len(session.pending) > self.config.max_pending:
                session.pending.popleft()
                self.counters["unlabelled_dropped"] += 1
            lat = dict(latency)
            if self._timer is not None:
                lat["features"] = t1 - t0
                lat["predict"] = t2 - t1
            out.append(
                Prediction(
                    device=session.device,
                    t_start=window.t_start,
                    t_end=window.t_end,
                    level=chosen.level,
                    label=chosen.label,
                    proba=chosen.proba,
                    model=chosen.model,
                    rules=chosen.rules,
                    latency=lat if self._timer is not None else {},
                    metrics=self.hub.metrics_snapshot(),
                    modalities=window.modalities,
                    index=window.index,
                    arrival=now,
                    levels=verdict.levels,
                    modality_proba=verdict.members,
                    prediction_set=chosen.prediction_set,
                    explanation=chosen.explanation,
                    interval=chosen.interval,
                    device_t_start=session.aligner.to_device(window.t_start),
                    device_t_end=session.aligner.to_device(window.t_end),
                )
            )
            self.counters["predictions"] += 1
        return out

    def _on_label(self, label: Label, now: float) -> None:
        session = self.sessions.get(label.device)
        if session is None:
            self.counters["labels_unknown_device"] += 1
            return
        g_start = session.aligner.to_gateway(label.t_start)
        g_end = session.aligner.to_gateway(label.t_end)
        if not (math.isfinite(g_start) and math.isfinite(g_end)):
            self.counters["labels_unmapped"] += 1
            return
        self.counters["labels"] += 1
        session.labels.append((g_start, g_end, label.value))
        self._resolve(session, now)

    def _resolve(self, session: DeviceSession, now: float) -> None:
        """Learn from every pending window that the labels now cover."""
        horizon = max(end for _, end, _ in session.labels)
        tolerance = 0.5 / self.config.grid_fs
        while session.pending and session.pending[0].t_end <= horizon + tolerance:
            p = session.pending.popleft()
            y = window_truth(session.labels, p.t_start, p.t_end)
            if y is None:
                self.counters["unlabelled"] += 1
                continue
            self.hub.learn(p.evidence, p.verdict, y, now)
            self.outcomes.append((session.device, p.index, y))
            self.counters["learned"] += 1
        # the published figures are taken now, when a label makes them due, not by whichever
        # device's window closes next: what a prediction carries never depends on other devices
        self.hub.metrics_snapshot()
        self._forget_spent_labels(session)

    def _forget_spent_labels(self, session: DeviceSession) -> None:
        """Drop labels that end before any window still to be resolved can start (pending
        ones, or those yet to close, which start after the last one made): they can never
        overlap one again, and every label costs a look on each resolution."""
        bound = session.pending[0].t_start if session.pending else session.last_start
        labels = session.labels
        while labels and labels[0][1] <= bound:
            labels.popleft()
