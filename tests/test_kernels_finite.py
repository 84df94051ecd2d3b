"""``kernels.finite.all_finite`` against NumPy's ``isfinite`` (the obvious reference)."""

from __future__ import annotations

import numpy as np
import pytest

from streamfuse.kernels.finite import all_finite


@pytest.mark.parametrize("seed", range(20))
def test_all_finite_matches_numpy_on_seeded_arrays(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(0, 40)), int(rng.integers(1, 9)))
    x = rng.standard_normal(shape).astype(np.float32 if seed % 2 else np.float64)
    if x.size and seed % 3:
        x.flat[int(rng.integers(x.size))] = rng.choice([np.nan, np.inf, -np.inf])
    for view in (x, np.asfortranarray(x), x[::2], x[:, ::-1], x.ravel()):
        assert all_finite(view) == bool(np.isfinite(view).all())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, -1])
def test_one_bad_value_at_either_end_is_found(bad: float, where: int) -> None:
    x = np.zeros((1, 1) if where == 0 else (50, 8), np.float32)
    x.flat[where] = bad
    assert not all_finite(x)


def test_extremes_that_are_finite_pass() -> None:
    f32 = np.finfo(np.float32)
    x = np.array([[f32.max, -f32.max, f32.tiny, 0.0, -0.0]], np.float32)
    assert all_finite(x) and all_finite(np.zeros((0, 3), np.float32))
