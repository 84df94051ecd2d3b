"""Clock jumps and silences cost bounded work (issue 17, item 2).

A device clock that restarts at 0, or is set forward or back by any amount, starts a new clock
epoch; the windows of the old epoch's data close under the old epoch's mapping and the new
epoch's data goes on near the same gateway time. Nothing walks the empty windows between: the
work is counted here as windows made or examined (:meth:`WindowFuser.fuse` calls), never as
wall time. Each case is also checked call for call against the independent reference
(``tests/naive.py``), which walks every window one by one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamfuse.align import DeviceAligner
from streamfuse.align.fuse import WindowFuser
from streamfuse.config import EngineConfig, ModalitySpec
from streamfuse.engine import Engine
from streamfuse.types import Chunk, Prediction
from tests.test_align_equivalence import Scenario, check

SPECS = {"ecg": ModalitySpec("ecg", ("ecg",), 250.0), "acc": ModalitySpec("acc", ("x", "y"), 50.0)}
CFG = EngineConfig(modalities=SPECS, classes=("a", "b"))


def chunks(device: str, t_dev: float, arrival: float, seconds: float, seq0: int = 0):
    """``seconds`` of 0.1 s chunks of every modality from device time ``t_dev``, each arriving
    2 ms after its last sample (gateway = device + arrival - t_dev)."""
    out = []
    rng = np.random.default_rng(seq0)
    for i in range(int(round(seconds / 0.1))):
        for m, spec in SPECS.items():
            n = int(round(0.1 * spec.fs))
            data = rng.standard_normal((n, spec.channels)).astype(np.float32)
            t0 = t_dev + i * 0.1
            out.append(Chunk(device, m, seq0 + i, t0, spec.fs, data, arrival + i * 0.1 + 0.102))
    return out


class Counting:
    """Counts the windows made or examined (each one fuse call: a resampling pass)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = WindowFuser.fuse

        def fuse(fuser: WindowFuser, *args: object, **kw: object) -> object:
            self.calls += 1
            return real(fuser, *args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(WindowFuser, "fuse", fuse)


JUMPS = [-1.7e9, -1e6, -1e5, -1000.0, -5.0, 5.0, 1000.0, 1e5, 1e6, 1.7e9]


@pytest.mark.parametrize("jump", JUMPS)
def test_a_clock_jump_costs_a_few_windows(jump: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """20 s before and 20 s after a jump of the device clock: about 40 windows' work, and
    windows keep coming after the jump on the gateway clock where they left off."""
    count = Counting(monkeypatch)
    al = DeviceAligner("dev", CFG)
    made = []
    t_dev = 2e9 if jump < -1e9 else 3000.0  # so that t0 stays a plausible time either way
    for c in chunks("dev", t_dev, 5000.0, 20.0) + chunks("dev", t_dev + 20 + jump, 5020.0, 20.0,
                                                          seq0=1000):
        made += al.add(c)
    made += al.flush()
    assert al.counters["clock_resets"] == 1
    assert count.calls <= 45
    starts = [fw.window.t_start for fw in made]
    assert starts == sorted(starts)
    assert 38 <= len(made) <= 43 and 4995 < starts[0] and starts[-1] < 5041
    assert al.counters["windows_empty"] <= 2


@pytest.mark.parametrize("jump", [-1e5, -37.0, 37.0, 1e5])
def test_clock_jumps_match_the_reference(jump: float) -> None:
    calls = [("add", c) for c in chunks("dev", 3000.0, 5000.0, 15.0)]
    calls += [("add", c) for c in chunks("dev", 3015.0 + jump, 5015.0, 15.0, seq0=500)]
    calls.append(("flush",))
    counters = check(Scenario(CFG, False, calls))
    assert counters["clock_resets"] == 1 and counters["windows"] >= 25


@pytest.mark.parametrize("silence", [30.0, 300.0])
def test_a_silence_is_passed_over_and_counted_like_the_reference(silence: float) -> None:
    """A device silent for ``silence`` s (no call at all meanwhile) comes back: the windows of
    the silence are empty, counted, and passed over as the reference walks them."""
    calls = [("add", c) for c in chunks("dev", 3000.0, 5000.0, 10.0)]
    calls += [("add", c) for c in chunks("dev", 3010.0 + silence, 5010.0 + silence, 10.0, 99)]
    calls.append(("flush",))
    counters = check(Scenario(CFG, False, calls))
    assert abs(counters["windows_empty"] - silence) <= 2  # a window a second (hop 1 s)


def test_a_day_of_silence_costs_a_few_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    count = Counting(monkeypatch)
    al = DeviceAligner("dev", CFG)
    made = []
    for c in chunks("dev", 3000.0, 5000.0, 10.0) + chunks("dev", 89_410.0, 91_410.0, 10.0, 99):
        made += al.add(c)
    assert count.calls <= 30
    assert abs(al.counters["windows_empty"] - 86_400) <= 2
    assert made[-1].window.t_start > 91_410


def test_one_devices_jump_leaves_the_others_predicting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three devices; one's clock goes back by 1e6 s (a restart at t0 = 0 after a week) half
    way: every device keeps getting a prediction per second, and the jump's cost is bounded."""
    count = Counting(monkeypatch)
    engine = Engine(CFG)
    feeds = []
    for d in ("a", "b", "c"):
        feeds += chunks(d, 1e6, 100.0, 20.0)
        if d == "b":
            feeds += chunks(d, 0.0, 120.0, 20.0, seq0=1000)
        else:
            feeds += chunks(d, 1e6 + 20, 120.0, 20.0, seq0=1000)
    feeds.sort(key=lambda c: (c.arrival, c.device))
    after: dict[str, int] = {"a": 0, "b": 0, "c": 0}
    for c in feeds:
        for out in engine.push(c, c.arrival):
            if isinstance(out, Prediction) and out.t_start > 122:
                after[out.device] += 1
    assert engine.stats()["align"]["clock_resets"] == 1
    assert all(n >= 15 for n in after.values()), after
    assert count.calls <= 3 * 45


def test_windows_that_cannot_be_made_are_counted_by_reason() -> None:
    """Every window index from the first to the last is made, dropped (some data) or empty."""
    cfg = EngineConfig(modalities=SPECS, required_modalities=("acc",))
    al = DeviceAligner("dev", cfg)
    made = []
    run = chunks("dev", 3000.0, 5000.0, 10.0)
    run += [c for c in chunks("dev", 3010.0, 5010.0, 5.0, 100) if c.modality == "ecg"]
    run += chunks("dev", 3030.0, 5030.0, 10.0, 200)  # 15 s of silence before
    for c in run:
        made += al.add(c)
    made += al.flush()
    c = al.counters
    indexes = [fw.window.index for fw in made]
    span = indexes[-1] - indexes[0] + 1
    assert c["windows"] == len(made)
    assert c["windows_dropped"] >= 3 and c["windows_empty"] >= 13
    assert c["windows"] + c["windows_dropped"] + c["windows_empty"] == span
    assert not math.isnan(al.to_gateway(3035.0))


# ------------------------------------------------------------- hostile times, bounded work

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

#: windows one call may examine one by one: every window the ring's span can reach (retain_s
#: of ~8.5 s at hop 1 s, plus the window) and the handful before a bulk pass-over
PER_CALL = 40

steps = st.lists(
    st.tuples(
        st.sampled_from(["ecg", "acc", "advance", "flush"]),
        st.one_of(  # device-time jump before this chunk
            st.just(0.0), st.just(0.0), st.just(0.0),
            st.sampled_from([-1e9, -1e6, -1e5, -3600.0, -5.0, 5.0, 3600.0, 1e5, 1e6, 1e9]),
            st.floats(-1e6, 1e6),
        ),
        st.one_of(  # gateway-time gap before this step
            st.just(0.1), st.just(0.1), st.sampled_from([0.0, 2.0, 30.0, 3600.0, 1e5]),
        ),
    ),
    min_size=1,
    max_size=120,
)


@seed(17)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_any_sequence_of_jumps_and_gaps_costs_bounded_work_per_call(
    run: list[tuple[str, float, float]],
) -> None:
    calls = [0]
    real = WindowFuser.fuse

    def fuse(fuser: WindowFuser, *args: object, **kw: object) -> object:
        calls[0] += 1
        return real(fuser, *args, **kw)  # type: ignore[arg-type]

    WindowFuser.fuse = fuse  # type: ignore[method-assign]
    try:
        al = DeviceAligner("dev", CFG)
        t_dev, now, seq = 1e6, 1e6, 0
        for kind, jump, gap in run:
            t_dev += jump + gap
            now += gap
            before = calls[0]
            if kind == "advance":
                al.advance(now)
            elif kind == "flush":
                al.flush()
            else:
                spec = SPECS[kind]
                n = int(round(0.1 * spec.fs))
                seq += 1
                c = Chunk("dev", kind, seq, t_dev, spec.fs,
                          np.zeros((n, spec.channels), np.float32), now)
                al.add(c)
            assert calls[0] - before <= PER_CALL, (kind, jump, gap, calls[0] - before)
            assert math.isfinite(al.next_deadline()) or al.next_deadline() == math.inf
    finally:
        WindowFuser.fuse = real  # type: ignore[method-assign]


def test_a_checkpoint_taken_while_a_jump_is_held_restores_to_the_same_outputs() -> None:
    """Pickled (as a checkpoint is) with chunks held as a possible jump, the copy goes on to
    confirm the jump and close the same windows as the original, bit for bit."""
    import pickle

    al = DeviceAligner("dev", CFG)
    for c in chunks("dev", 3000.0, 5000.0, 10.0) + chunks("dev", 3010.0 - 1e5, 5010.0, 0.5, 99):
        al.add(c)
    assert len(al._held) > 0
    copy = pickle.loads(pickle.dumps(al, protocol=pickle.HIGHEST_PROTOCOL))
    for c in chunks("dev", 3010.5 - 1e5, 5010.5, 5.0, 200):
        got, want = copy.add(c), al.add(c)
        assert [w.matrix.tobytes() for w in got] == [w.matrix.tobytes() for w in want]
        assert [w.window.index for w in got] == [w.window.index for w in want]
    assert copy.counters == al.counters and al.counters["clock_resets"] == 1
