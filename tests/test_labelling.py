from __future__ import annotations

from streamfuse.labelling import window_truth


def test_most_covering_value_wins_and_half_coverage_is_needed() -> None:
    labels = [(0.0, 1.0, "rest"), (1.0, 2.0, "rest"), (2.0, 3.0, "stress")]
    assert window_truth(labels, 0.5, 2.5) == "rest"  # 1.5 s rest vs 0.5 s stress
    assert window_truth(labels, 1.8, 3.8) == "stress"  # 1.0 s stress vs 0.2 s rest
    assert window_truth(labels, 2.5, 4.5) is None  # only 0.5 s of 2 s covered
    assert window_truth([], 0.0, 1.0) is None


def test_ties_do_not_depend_on_arrival_order() -> None:
    a = [(0.0, 1.0, "b"), (1.0, 2.0, "a")]
    assert window_truth(a, 0.0, 2.0) == window_truth(a[::-1], 0.0, 2.0) == "a"
