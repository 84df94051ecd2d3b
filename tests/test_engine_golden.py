"""The engine against its golden master: two recorded fleet sessions (``tests/golden/fleet.py``),
100 devices in bundles and 24 per modality with clock jumps and outages, replayed through
today's engine; every prediction (device, window, level, label, every level's and modality's
probabilities) and the final counters and metrics must equal what the per-device engine of
9f91eb8 published. A batched or otherwise faster engine has to pass this unchanged, or change
this file with the reason each difference is right."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.golden import fleet

SESSIONS = sorted(fleet.SESSIONS)


@pytest.fixture(scope="module", params=SESSIONS)
def session(request):
    name = request.param
    stored = dict(np.load(fleet.path(name)))
    items = fleet.messages(name)
    if fleet.digest(items) != str(stored["input_sha256"]):
        pytest.fail(
            f"the simulator no longer makes the {name} session that was recorded: "
            "re-record it from the reference engine (see tests/golden/fleet.py)"
        )
    return name, items, stored


def _same(name: str, got: dict, want: dict) -> None:
    for key in ("device", "index", "level", "label", "classes", "levels", "modalities"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name}: {key}")
    for key in [k for k in want if k == "proba" or k.startswith(("level_", "member_"))]:
        np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name}: {key}")
    np.testing.assert_array_equal(got["t_start"], want["t_start"], err_msg=f"{name}: t_start")
    assert json.loads(str(got["stats"])) == json.loads(str(want["stats"]))
    assert json.loads(str(got["metrics"])) == json.loads(str(want["metrics"]))


def test_engine_reproduces_the_golden_master(session) -> None:
    name, items, want = session
    got = fleet.run(items)
    assert len(got["device"]) > 700  # the session is not trivially empty
    _same(name, got, want)


def test_the_comparison_sees_one_lost_message(session) -> None:
    """The check is sharp: the same session less one data message in its first second
    publishes something different."""
    name, items, want = session
    drop = next(i for i, (m, _) in enumerate(items) if not m.topic.endswith("/label"))
    got = fleet.run(items[:drop] + items[drop + 1 :])
    with pytest.raises(AssertionError):
        _same(name, got, want)
