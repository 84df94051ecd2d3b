"""The blocks and the fused mask a window's matrix is split into (kernels.unfuse) against the
NumPy slicing it replaced."""

from __future__ import annotations

import numpy as np

from streamfuse.kernels.unfuse import unfuse


def _numpy_split(matrix, valid, used, col0s, chs):
    mask = np.zeros(matrix.shape, np.bool_)
    blocks = []
    for r, c0, ch in zip(used, col0s, chs, strict=True):
        mask[:, c0 : c0 + ch] = valid[r][:, None]
        blocks.append(matrix[:, c0 : c0 + ch].copy())
    return mask, blocks


def test_unfuse_equals_numpy_slicing() -> None:
    rng = np.random.default_rng(3)
    k, layout = 37, ((0, 1), (1, 8), (9, 3), (12, 2))  # (first column, channels)
    matrix = rng.standard_normal((k, 14)).astype(np.float32)
    valid = rng.random((len(layout), k)) < 0.7
    for used in ((0, 1, 2, 3), (1, 3), (2,), ()):
        col0s = np.array([layout[i][0] for i in used], np.int64)
        chs = np.array([layout[i][1] for i in used], np.int64)
        offsets = np.concatenate([[0], np.cumsum(chs * k)[:-1]]).astype(np.int64)
        mask = np.zeros(matrix.shape, np.bool_)
        flat = np.full(int((chs * k).sum()), np.nan, np.float32)
        unfuse(matrix, valid, np.array(used, np.int64), col0s, chs, offsets, mask, flat)
        want_mask, want_blocks = _numpy_split(matrix, valid, used, col0s, chs)
        np.testing.assert_array_equal(mask, want_mask)
        for j, block in enumerate(want_blocks):
            got = flat[offsets[j] : offsets[j] + block.size].reshape(block.shape)
            np.testing.assert_array_equal(got, block)
        assert not np.isnan(flat).any()
