"""When a site asks for a federated round: the one policy of the live federation and the
evaluation.

A site asks for a round when it holds windows learnt since the last round (*unmerged*) and

- **count**: it has learnt ``every`` of them, or
- **quiet**: its learning went quiet: no window learnt for ``quiet_s`` seconds (its label
  backlog is drained, since the engine learns every window a label covers as the label comes).

Why both. Labels come in bursts (a session's labels after the session) or as a trickle (one
per hop). A count alone leaves the tail of a burst, up to ``every - 1`` windows, at one site
until the next burst, a whole session later, while the other sites predict without it; a
timer alone either sends rounds when nothing was learnt or leaves fresh knowledge waiting for
the timer. The quiet trigger merges a burst's tail once the burst is over, and never fires
while labels keep coming (``quiet_s`` longer than the label cadence), so it costs at most one
extra round per burst. Nothing is asked for while nothing was learnt.

``quiet_s = None`` switches the quiet trigger off (the count alone, the old policy). The
server may add a timed round (its ``interval_s``) as a backstop for a site whose request was
lost. Pure logic on the caller's clock (seconds, monotonic or timeline): no IO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: the default count and quiet time (docs/federated.md, "Round policy")
EVERY = 20
QUIET_S = 10.0


@dataclass(frozen=True, slots=True)
class RoundPolicy:
    every: int = EVERY
    quiet_s: float | None = QUIET_S

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"round policy: every={self.every}; pass an integer >= 1")
        if self.quiet_s is not None and not self.quiet_s > 0:
            raise ValueError(f"round policy: quiet_s={self.quiet_s}; pass a number > 0 or None")


class SiteLearning:
    """One site's learning as the policy sees it: windows learnt (the engine's ``learned``
    counter), when that counter last moved, and its value at the site's last round."""

    def __init__(self, policy: RoundPolicy, learned: int = 0, now: float = 0.0) -> None:
        self.policy = policy
        self.learned = learned
        self.at_round = learned
        self.last_learn = now

    def observe(self, learned: int, now: float) -> None:
        if learned != self.learned:
            self.learned = learned
            self.last_learn = now

    @property
    def unmerged(self) -> int:
        return max(0, self.learned - self.at_round)

    def due(self, now: float) -> str | None:
        """``"count"``, ``"quiet"`` or None: whether (and why) this site asks for a round."""
        n = self.unmerged
        if n == 0:
            return None
        if n >= self.policy.every:
            return "count"
        q = self.policy.quiet_s
        if q is not None and now - self.last_learn >= q:
            return "quiet"
        return None

    def next_due(self) -> float:
        """The earliest time the quiet trigger can fire (inf when it cannot)."""
        if self.unmerged == 0 or self.policy.quiet_s is None:
            return math.inf
        return self.last_learn + self.policy.quiet_s

    def merged(self) -> int:
        """A round took this site's state: count from here. Returns the windows it held."""
        n = self.unmerged
        self.at_round = self.learned
        return n
