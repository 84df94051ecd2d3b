"""Per-device temporal integration of the per-modality decisions (late fusion's members).

A person's state (rest, mental arithmetic, stress) lasts many windows, while one window's
decision of a member trained on other people flickers. :class:`DecisionSmoother` replaces
each member's probabilities with an exponential moving average of its log-probabilities over
that device's previous windows, renormalised (for two classes: an average of the log-odds),

    s_t = (1 - a) s_{t-1} + a log p_t,   a = 1 - 2^(-1 / half_life),

counted in decided windows of the device (a modality absent from a window keeps its state;
one whose signal is unusable in the window, :mod:`streamfuse.fusion.trust`, stays out of the
average and says the average so far: a half-empty or flat window must not colour the next
ones).
It is causal and label-free: only the device's own past decisions enter, never a label or a
later window. It blurs a change of state over about ``half_life`` windows, so it suits states
that last much longer than that. ``docs/evaluation.md`` has what it does on eegmat.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Collection, Mapping

from streamfuse.errors import ConfigError

Proba = dict[str, float]

#: floor on a probability before its logarithm (a member's certainty saturates at it)
P_FLOOR = 1e-12


class DecisionSmoother:
    """Exponential averages of each (device, modality)'s log-probabilities.

    Parameters
    ----------
    half_life
        In windows of the device; > 0.
    max_devices
        Devices kept; beyond it the least recently decided device is forgotten (it starts
        again from its next window).

    Examples
    --------
    >>> s = DecisionSmoother(half_life=1.0)
    >>> round(s.smooth("d1", {"eeg": {"a": 0.9, "b": 0.1}})["eeg"]["a"], 6)  # the first as is
    0.9
    >>> p = s.smooth("d1", {"eeg": {"a": 0.1, "b": 0.9}})["eeg"]
    >>> round(p["a"], 3)  # half of the way back in log-odds: even
    0.5

    """

    def __init__(self, half_life: float, max_devices: int = 10_000) -> None:
        if not (isinstance(half_life, int | float) and math.isfinite(half_life) and half_life > 0):
            raise ConfigError(f"DecisionSmoother: half_life={half_life!r}; pass windows > 0")
        self.half_life = float(half_life)
        self.alpha = 1.0 - 0.5 ** (1.0 / self.half_life)
        self.max_devices = max_devices
        self._state: OrderedDict[str, dict[str, dict[str, float]]] = OrderedDict()

    def smooth(
        self,
        device: str,
        members: Mapping[str, Mapping[str, float]],
        skip: Collection[str] = (),
    ) -> dict[str, Proba]:
        """Update ``device``'s averages with this window's ``members`` and return the
        smoothed probabilities of each member that spoke (classes as given). A modality in
        ``skip`` (its signal unusable in this window) does not enter the average: it says
        its average so far (its own decision when it has none)."""
        return self.smooth_held(device, members, skip)[0]

    def smooth_held(
        self,
        device: str,
        members: Mapping[str, Mapping[str, float]],
        skip: Collection[str] = (),
    ) -> tuple[dict[str, Proba], frozenset[str]]:
        """:meth:`smooth`, and the modalities of ``skip`` whose answer is their average over
        the device's earlier usable windows (held), not this window's decision."""
        state = self._state.get(device)
        if state is None:
            state = self._state[device] = {}
            if len(self._state) > self.max_devices:
                self._state.popitem(last=False)
        else:
            self._state.move_to_end(device)
        a = self.alpha
        out: dict[str, Proba] = {}
        held: set[str] = set()
        for m, p in members.items():
            if not p:
                continue
            logs = {c: math.log(max(float(v), P_FLOOR)) for c, v in p.items()}
            old = state.get(m)
            same = old is not None and old.keys() == logs.keys()
            if m in skip:
                if same:
                    logs = old  # type: ignore[assignment]
                    held.add(m)
            else:
                if same:
                    logs = {c: (1.0 - a) * old[c] + a * v for c, v in logs.items()}  # type: ignore[index]
                state[m] = logs
            top = max(logs.values())
            e = {c: math.exp(v - top) for c, v in logs.items()}
            total = sum(e.values())
            out[m] = {c: v / total for c, v in e.items()}
        return out, frozenset(held)
