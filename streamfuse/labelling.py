"""Which class a window belongs to, from the label intervals that overlap it."""

from __future__ import annotations

from collections.abc import Iterable


def window_truth(
    labels: Iterable[tuple[float, float, str]], t_start: float, t_end: float
) -> str | None:
    """The label value covering most of ``[t_start, t_end)``.

    ``labels`` are ``(start, end, value)`` intervals on the window's clock. ``None`` when they
    cover less than half the window. Ties go to the value that sorts first, so the answer does
    not depend on the order the labels arrived in.
    """
    overlap: dict[str, float] = {}  # seconds of the window each label value covers
    for start, end, value in labels:
        ov = min(end, t_end) - max(start, t_start)
        if ov > 0:
            overlap[value] = overlap.get(value, 0.0) + ov
    if sum(overlap.values()) < 0.5 * (t_end - t_start):
        return None
    return max(sorted(overlap), key=overlap.__getitem__)
