"""The engine's account of refused input: counted per reason, logged a bounded number of times.

Every refusal is counted (:attr:`RejectionLog.counts`, reason -> how many). Logging is bounded
twice over, so junk cannot grow memory or flood the log: the first :data:`LOG_FIRST` refusals of
each (device, reason) are logged, the tally of those pairs keeps the :data:`LOGGED_KEYS` most
recent (200k junk device ids grew an unbounded tally by ~100 MB), and each reason logs at most
:data:`LOG_PER_REASON` lines over the engine's life.
"""

from __future__ import annotations

import logging
from collections import Counter

from .errors import PayloadError
from .types import Rejection

log = logging.getLogger("streamfuse.engine")

#: how many rejections of one (device, reason) are logged before the rest are only counted
LOG_FIRST = 5
#: (device, reason) pairs whose rejections are tallied for logging, least recent forgotten first
LOGGED_KEYS = 1024
#: rejection lines logged per reason over the engine's life; past it a reason is only counted
LOG_PER_REASON = 200


class RejectionLog:
    """Counts every refusal by reason and logs the first few of each kind (bounded)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.logged: dict[tuple[str | None, str], int] = {}  # insertion order = recency
        self.lines: Counter[str] = Counter()  # lines logged per reason

    def record(self, exc: PayloadError) -> Rejection:
        """Count ``exc``, log it if its (device, reason) and its reason are still under their
        budgets, and return the :class:`Rejection` that answers the message."""
        self.counts[exc.reason] += 1
        key = (exc.device, exc.reason)
        logged = self.logged
        seen = logged.pop(key, 0) + 1  # re-inserted: the most recent last
        logged[key] = seen
        if len(logged) > LOGGED_KEYS:
            del logged[next(iter(logged))]
        lines = self.lines[exc.reason]
        if seen <= LOG_FIRST and lines < LOG_PER_REASON:
            self.lines[exc.reason] = lines + 1
            if lines + 1 == LOG_PER_REASON:
                more = f" - further {exc.reason} rejections of any device are only counted"
            elif seen == LOG_FIRST:
                more = " - further ones like it are only counted"
            else:
                more = ""
            log.warning("rejected message (%s): %s%s", exc.reason, exc, more)
        return Rejection(exc.reason, str(exc), exc.device, exc.modality, exc.seq)
