"""When the engine visits a device without new data: a heap of the devices' deadlines.

:class:`DeadlineSchedule` is a base class of :class:`~streamfuse.engine.Engine` holding its
timer side (moved here from ``engine.py`` to keep that module small):
:meth:`~DeadlineSchedule.tick` closes the windows whose lateness budget ran out, visiting only
the devices whose :meth:`~streamfuse.align.device.DeviceAligner.next_deadline` has come, and a
device skipped by ticks is brought up to the last one when next visited. It sits on
:class:`~streamfuse.prequential.Prequential`, which turns the windows a tick closes into
predictions. The engine's state is set up by ``Engine.__init__`` (declared below for the type
checker); methods are inherited, not delegated, so a chunk or a tick costs the same calls as
before, and a pickled engine is still a ``streamfuse.engine.Engine`` with the same attributes.
"""

from __future__ import annotations

import heapq
import math

from .prequential import Prequential
from .session import DeviceSession
from .types import Prediction


class DeadlineSchedule(Prequential):
    """Ticks and the deadline heap: a base class of :class:`~streamfuse.engine.Engine` (never
    made on its own)."""

    # set by Engine.__init__
    _deadlines: list[tuple[float, int, str]]
    _last_tick: float
    _ticks: int

    def tick(self, now: float) -> list[Prediction]:
        """Close windows whose lateness budget ran out by ``now`` on every device.

        Only devices whose :meth:`~streamfuse.align.device.DeviceAligner.next_deadline` has
        come are visited (a heap of deadlines), in the order the devices were first seen;
        the others would close nothing and learn of ``now`` when next visited
        (:meth:`_sync`), so the outputs are those of advancing every device.
        """
        self._last_tick = now
        self._ticks += 1
        out: list[Prediction] = []
        heap = self._deadlines
        due: list[DeviceSession] = []
        while heap and heap[0][0] <= now:
            deadline, order, device = heapq.heappop(heap)
            session = self.sessions.get(device)
            if session is None or session.order != order or session.scheduled != deadline:
                continue  # evicted, or superseded by an earlier deadline already served
            session.scheduled = math.inf
            real = session.aligner.next_deadline()
            if real > now:  # windows closed on data since: nothing to do before ``real``
                self._schedule(session, real)
                continue
            due.append(session)
        if len(due) > 1:
            due.sort(key=lambda s: s.order)
        for session in due:
            windows = session.aligner.advance(now)
            if windows:
                out.extend(self._on_windows(session, windows, now, {}))
            self._schedule(session)
        return out

    def _schedule(self, session: DeviceSession, deadline: float | None = None) -> None:
        """Put ``session``'s next deadline in the heap unless an earlier one is already there."""
        if deadline is None:
            deadline = session.aligner.next_deadline()
        if deadline < session.scheduled:
            session.scheduled = deadline
            heapq.heappush(self._deadlines, (deadline, session.order, session.device))

    def _sync(self, session: DeviceSession) -> None:
        """Bring ``session``'s aligner up to the last tick it was skipped by."""
        if self._ticks > session.born_tick:
            session.aligner.sync(self._last_tick)
