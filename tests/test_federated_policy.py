"""The round policy (federated/policy.py): when a site asks for a round. Pure logic, < 1 s."""

from __future__ import annotations

import math

import pytest

from streamfuse.federated.policy import RoundPolicy, SiteLearning


def test_nothing_learnt_nothing_asked() -> None:
    site = SiteLearning(RoundPolicy(every=5, quiet_s=10.0))
    for t in range(0, 1000, 50):
        site.observe(0, float(t))
        assert site.due(float(t)) is None
    assert site.next_due() == math.inf


def test_count_trigger_and_reset_at_a_round() -> None:
    site = SiteLearning(RoundPolicy(every=5, quiet_s=None))
    for k in range(1, 5):
        site.observe(k, float(k))
        assert site.due(float(k)) is None
    site.observe(5, 5.0)
    assert site.due(5.0) == "count"
    assert site.merged() == 5 and site.unmerged == 0 and site.due(5.0) is None
    site.observe(9, 6.0)
    assert site.due(1e9) is None  # quiet trigger off: a tail of 4 waits for the count
    site.observe(10, 7.0)
    assert site.due(7.0) == "count"


def test_quiet_fires_after_a_burst_not_during_a_trickle() -> None:
    site = SiteLearning(RoundPolicy(every=20, quiet_s=10.0))
    # a burst of 17 windows at t=100, then nothing: asked for 10 s later, not before
    site.observe(17, 100.0)
    assert site.due(109.9) is None and site.next_due() == 110.0
    assert site.due(110.0) == "quiet"
    site.merged()
    # a trickle: a window every 4 s never goes quiet; the count asks every 20 windows
    asked = []
    for k in range(1, 60):
        t = 200.0 + 4 * k
        site.observe(17 + k, t)
        why = site.due(t)
        if why is not None:
            asked.append((k, why))
            site.merged()
    assert asked == [(20, "count"), (40, "count")]


@pytest.mark.parametrize("kw", [{"every": 0}, {"quiet_s": 0.0}, {"quiet_s": -1.0}])
def test_bad_policies_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="round policy"):
        RoundPolicy(**kw)  # type: ignore[arg-type]


def test_the_evaluation_help_states_the_policy_default() -> None:
    """'evaluate --help' names the quiet default without importing the federation (the
    README's commands must not load it), so it is written out there: keep the two equal."""
    import inspect

    from streamfuse.federated.policy import EVERY, QUIET_S
    from streamfuse.replay import evaluate_commands

    text = inspect.getsource(evaluate_commands)
    assert f"the policy's default, {QUIET_S:g};" in text
    assert f'"--rounds-every", type=int, default={EVERY},' in text
