"""Who owns which shard: the fleet's one ledger (plain Python; the controller actor holds it).

Rules that keep a shard from being served by two processes at once:

- a shard is **assigned** to exactly one owner (an actor name) at any time, and only the ledger
  changes an assignment;
- an owner serves a shard only while the ledger records it as the shard's **holder**; a shard
  is handed to another owner only after its holder released it (drained, checkpointed,
  disconnected: :meth:`Ledger.released`), never while it is held;
- an owner that (re)starts **claims** the shards assigned to it. A holder that is the same
  owner under another process id is an earlier incarnation that Ray has already replaced, which
  it does only once that process is gone: its tenure is closed as ``"restarted"``.

Every tenure (shard, owner, process id, from, to, how it ended) is kept, so the history can be
checked for overlaps (:func:`overlaps`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any


@dataclasses.dataclass(slots=True)
class Holding:
    """One shard held by one owner process, from ``start`` to ``end`` (wall-clock seconds)."""

    shard: int
    owner: str
    pid: int
    start: float
    end: float | None = None
    ended: str = ""  # "released", "restarted", "stopped"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def spread(shards: int, owners: Sequence[str]) -> dict[int, str]:
    """Contiguous, balanced blocks: owner ``i`` of ``N`` gets about ``shards / N`` shards."""
    if not owners:
        raise ValueError("a fleet needs at least one owner")
    n = len(owners)
    return {s: owners[s * n // shards] for s in range(shards)}


def plan(assigned: dict[int, str], owners: Sequence[str]) -> dict[int, str]:
    """The balanced assignment to ``owners`` that moves the fewest shards from ``assigned``:
    each owner keeps what it has up to its quota (``S // N``, one more for the first
    ``S % N``), the rest goes to owners below theirs."""
    if not owners:
        raise ValueError("a fleet needs at least one owner")
    count = len(assigned)
    quota = {o: count // len(owners) + (i < count % len(owners)) for i, o in enumerate(owners)}
    out: dict[int, str] = {}
    homeless: list[int] = []
    for shard in sorted(assigned):
        owner = assigned[shard]
        if quota.get(owner, 0) > 0:
            out[shard] = owner
            quota[owner] -= 1
        else:
            homeless.append(shard)
    for shard in homeless:
        owner = max(owners, key=lambda o: (quota[o], -owners.index(o)))
        out[shard] = owner
        quota[owner] -= 1
    return out


class Ledger:
    """Assignments, holders and the history of holdings of ``shards`` shards."""

    def __init__(self, shards: int, owners: Sequence[str]) -> None:
        self.count = shards
        self.assigned: dict[int, str] = spread(shards, owners)
        self.holders: dict[int, Holding] = {}
        self.history: list[Holding] = []

    def claim(self, owner: str, pid: int, now: float) -> list[int]:
        """``owner`` (process ``pid``) starts: close the holdings of its earlier incarnation,
        hold and return every shard assigned to it that no other owner holds."""
        out = []
        for shard, assigned in sorted(self.assigned.items()):
            if assigned != owner:
                continue
            held = self.holders.get(shard)
            if held is not None and held.owner == owner and held.pid != pid:
                self._close(shard, now, "restarted")
                held = None
            if held is None:
                self.hold(shard, owner, pid, now)
                out.append(shard)
            elif held.pid == pid:
                out.append(shard)
        return out

    def hold(self, shard: int, owner: str, pid: int, now: float) -> None:
        """Record ``owner`` (process ``pid``) as the holder of ``shard`` (assigned to it and
        not held by another)."""
        if self.assigned.get(shard) != owner:
            raise RuntimeError(f"shard {shard} is assigned to {self.assigned.get(shard)}, "
                               f"not {owner}")
        held = self.holders.get(shard)
        if held is not None and (held.owner, held.pid) != (owner, pid):
            raise RuntimeError(f"shard {shard} is still held by {held.owner} (pid {held.pid})")
        if held is None:
            holding = Holding(shard, owner, pid, now)
            self.holders[shard] = holding
            self.history.append(holding)

    def released(self, shard: int, owner: str, now: float, how: str = "released") -> None:
        """``owner`` has stopped serving ``shard`` (drained, checkpointed, disconnected)."""
        held = self.holders.get(shard)
        if held is not None and held.owner == owner:
            self._close(shard, now, how)

    def assign(self, shard: int, owner: str) -> None:
        """Give ``shard`` to ``owner``; refused while another owner holds it."""
        held = self.holders.get(shard)
        if held is not None and held.owner != owner:
            raise RuntimeError(f"shard {shard} is held by {held.owner}: release it first")
        self.assigned[shard] = owner

    def _close(self, shard: int, now: float, how: str) -> None:
        held = self.holders.pop(shard)
        held.end, held.ended = now, how

    def owned_by(self, owner: str) -> list[int]:
        return sorted(s for s, o in self.assigned.items() if o == owner)


def overlaps(spans: Iterable[tuple[int, Any, float, float | None]]) -> list[tuple[Any, Any]]:
    """Pairs of spans ``(shard, who, start, end)`` of one shard by different ``who`` that
    overlap in time (``end`` None: still open). Empty when no shard was ever served twice."""
    by_shard: dict[int, list[tuple[float, float, Any]]] = {}
    for shard, who, start, end in spans:
        by_shard.setdefault(shard, []).append((start, float("inf") if end is None else end, who))
    out = []
    for items in by_shard.values():
        items.sort(key=lambda x: x[0])
        for (_s1, e1, w1), (s2, _e2, w2) in zip(items, items[1:], strict=False):
            if s2 < e1 and w1 != w2:
                out.append((w1, w2))
    return out
