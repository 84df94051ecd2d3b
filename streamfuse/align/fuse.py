"""One window made: every stream of a device resampled onto the window's grid and interleaved
into the early-fusion matrix in one kernel call (:func:`streamfuse.kernels.align.align_window`).

Grid times are mapped back to each stream's device clock through the mapping the caller
passes (the clock model as it stands at closing time, or a retired epoch's). Columns are all
channels of all configured modalities, in ``config.modalities`` order then channel order,
named ``"modality:channel"``; the layout never changes, so a modality without data in a
window has zero columns and a False mask. Masked samples hold ``0.0`` both in the fused
matrix and in the per-modality blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from ..config import EngineConfig
from ..kernels.align import align_window, new_scratch
from ..kernels.unfuse import unfuse
from ..types import FusedWindow, Window
from .buffer import StreamBuffer
from .clock import ClockMapping, ClockModel

Mapping_ = ClockModel | ClockMapping


class WindowFuser:
    """Makes one device's windows (column layout, preallocated kernel scratch).

    A window is *dropped* (``None``) when fewer than ``min_modalities`` modalities, or not
    every one of ``required_modalities``, have data in it; :attr:`last_empty` then says
    whether no stream had any sample in it at all (the caller counts the two apart).
    """

    def __init__(self, device: str, config: EngineConfig) -> None:
        self.device = device
        self.config = config
        self.k = config.window_samples
        cols: dict[str, tuple[int, int]] = {}
        names: list[str] = []
        for name, spec in config.modalities.items():
            cols[name] = (len(names), spec.channels)
            names.extend(f"{name}:{ch}" for ch in spec.channel_names)
        self.columns = cols
        self.channels = tuple(names)
        self.C = len(names)
        self.last_empty = False
        self._scratch = new_scratch(self.k)
        self._params = np.zeros((len(config.modalities), 4))
        self._n_ok = np.zeros(len(config.modalities), np.int64)
        # per (modalities present, those with data): where their blocks go (see _plan)
        self._plans: dict[
            tuple[tuple[str, ...], tuple[int, ...]],
            tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int],
        ] = {}

    def _plan(
        self, present: list[str], used: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """Rows of ``valid``, first columns, channels and offsets in the blocks' buffer of the
        modalities ``used`` (indices into ``present``), and the buffer's size; cached."""
        rows = np.array(used, np.int64)
        col0s = np.array([self.columns[present[i]][0] for i in used], np.int64)
        chs = np.array([self.columns[present[i]][1] for i in used], np.int64)
        sizes = chs * self.k
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        plan = (rows, col0s, chs, offsets, int(sizes.sum()))
        if len(self._plans) > 64:
            self._plans.clear()
        self._plans[(tuple(present), used)] = plan
        return plan

    def needed(self, buf: StreamBuffer, clock: Mapping_, t_start: float) -> tuple[float, float]:
        """Ring position of grid sample 0 and positions per grid sample."""
        p0 = buf.position(clock.to_device(t_start))
        step = buf.fs / (self.config.grid_fs * (1.0 + clock.drift))
        return p0, step

    def fuse(
        self,
        w: int,
        bounds: tuple[float, float],
        buffers: Mapping[str, StreamBuffer],
        clock_of: Callable[[str], Mapping_],
        now: float,
    ) -> FusedWindow | None:
        """Window ``w`` over gateway times ``bounds`` from ``buffers`` (``clock_of(m)`` maps
        stream ``m``); ``now`` gives the lateness figure."""
        t_start, t_end = bounds
        k, cfg = self.k, self.config
        matrix = np.zeros((k, self.C), np.float32)
        mask = np.zeros((k, self.C), np.bool_)
        blocks: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        quality: dict[str, dict[str, float]] = {}
        lateness = now - t_end if math.isfinite(now) else 0.0
        present = [m for m in cfg.modalities if m in buffers]
        valid = np.zeros((len(present), k), np.bool_)
        if present:
            params = self._params
            for i, m in enumerate(present):
                buf = buffers[m]
                p0, step = self.needed(buf, clock_of(m), t_start)
                max_missing = math.floor(cfg.max_gap_s * buf.fs + 1e-9)
                params[i] = (p0, step, self.columns[m][0], max_missing)
            idx, wt = self._scratch
            align_window(
                tuple(buffers[m].values for m in present),
                tuple(buffers[m].slot_pos for m in present),
                params[: len(present)],
                matrix,
                valid,
                self._n_ok,
                idx,
                wt,
            )
        n_ok = self._n_ok.tolist()
        used = tuple(i for i in range(len(present)) if n_ok[i])
        if used:
            plan = self._plans.get((tuple(present), used))
            if plan is None:
                plan = self._plan(present, used)
            rows, col0s, chs, offsets, total = plan
            # one buffer for every block (each a C-ordered part of it), filled with the mask
            flat = np.empty(total, np.float32)
            unfuse(matrix, valid, rows, col0s, chs, offsets, mask, flat)
            for j, i in enumerate(used):
                m = present[i]
                ch = self.columns[m][1]
                off = int(offsets[j])
                blocks[m] = flat[off : off + k * ch].reshape(k, ch)
                masks[m] = valid[i]
                quality[m] = {"gap_fraction": 1.0 - n_ok[i] / k, "lateness_s": lateness}
        self.last_empty = not blocks
        if len(blocks) < cfg.min_modalities or not all(
            m in blocks for m in cfg.required_modalities
        ):
            return None
        window = Window(
            device=self.device,
            t_start=t_start,
            t_end=t_end,
            fs=cfg.grid_fs,
            blocks=blocks,
            masks=masks,
            quality=quality,
            index=w,
        )
        return FusedWindow(window=window, matrix=matrix, channels=self.channels, mask=mask)
