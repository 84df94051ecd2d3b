"""Per-device feature extraction over all modalities, and intermediate (feature-level) fusion."""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ..config import EngineConfig, ModalitySpec
from ..types import Window
from .acc import AccFeatures
from .ecg import ECGFeatures
from .eeg import EEGFeatures
from .generic import GenericFeatures

log = logging.getLogger("streamfuse.features.device")


class Extractor(Protocol):
    def update(
        self, t_start: float, block: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]
    ) -> dict[str, float]:
        """Features of one window: finite values only, undefined keys left out."""
        ...


def modality_kind(name: str) -> str:
    """``"ecg"``, ``"eeg"``, ``"acc"`` or ``"generic"`` from a modality name."""
    n = name.lower()
    for kind in ("ecg", "eeg", "acc"):
        if n.startswith(kind):
            return kind
    return "generic"


class DeviceFeatures:
    """Per-device, stateful, causal feature extraction for all modalities.

    One instance per device. Each modality gets an extractor on first sight, chosen by name
    (``ecg*`` -> :class:`~streamfuse.features.ecg.ECGFeatures`, ``eeg*`` ->
    :class:`~streamfuse.features.eeg.EEGFeatures`, ``acc*`` ->
    :class:`~streamfuse.features.acc.AccFeatures`, anything else ->
    :class:`~streamfuse.features.generic.GenericFeatures`). Extractors remember the last grid
    sample consumed, so overlapping windows feed each sample once.

    Parameters
    ----------
    config : EngineConfig
        Modalities (channel names, unit) and window length.
    hr_s, hrv_s : float
        Trailing spans (s) for heart rate and HRV (at least the window length).
    """

    def __init__(self, config: EngineConfig, *, hr_s: float = 8.0, hrv_s: float = 30.0) -> None:
        self.config = config
        self.hr_s = max(hr_s, config.window_s)
        self.hrv_s = max(hrv_s, config.window_s)
        self._extractors: dict[str, Extractor] = {}
        self._fs: dict[str, float] = {}

    def _make(self, modality: str, fs: float, channels: int) -> Extractor:
        spec = self.config.modalities.get(modality)
        if spec is None or spec.channels != channels:
            names = tuple(f"ch{i}" for i in range(channels))
            spec = ModalitySpec(modality, names, fs)
        kind = modality_kind(modality)
        if kind == "ecg" and fs >= 50.0:
            return ECGFeatures(modality, fs, hr_s=self.hr_s, hrv_s=self.hrv_s)
        if kind == "eeg":
            return EEGFeatures(modality, spec.channel_names, fs, span_s=self.config.window_s)
        if kind == "acc":
            return AccFeatures(
                modality, fs, unit=spec.unit or "g", span_s=max(4.0, self.config.window_s)
            )
        return GenericFeatures(modality, spec.channel_names, fs)

    def update(self, window: Window) -> dict[str, dict[str, float]]:
        """Features of one window, per modality present in ``window.blocks``.

        Returns ``{modality: {"<modality>_<feature>": value}}`` with finite values only; keys
        that are undefined for this window (e.g. heart rate before two beats) are omitted.
        """
        out: dict[str, dict[str, float]] = {}
        masks, fs, t_start = window.masks, window.fs, window.t_start
        extractors, rates = self._extractors, self._fs
        for m, block in window.blocks.items():
            blk = block if type(block) is np.ndarray else np.asarray(block)
            if blk.ndim == 1:
                blk = blk[:, None]
            mask = masks.get(m)
            if mask is None:
                mask = np.ones(blk.shape[0], dtype=bool)
            else:
                shape = mask.shape if type(mask) is np.ndarray else np.shape(mask)
                if shape != (blk.shape[0],):
                    raise ValueError(
                        f"window mask of {m!r} has shape {shape}, the block {blk.shape}; "
                        "pass one bool per row"
                    )
            ex = extractors.get(m)
            if ex is None or rates.get(m) != fs:
                ex = self._make(m, fs, blk.shape[1])
                extractors[m] = ex
                rates[m] = fs
            out[m] = ex.update(t_start, blk, np.asarray(mask, dtype=bool))
        return out


def concat(features: dict[str, dict[str, float]]) -> dict[str, float]:
    """Intermediate fusion: one flat dict of all modalities' (already prefixed) features.

    Examples
    --------
    >>> concat({"ecg": {"ecg_hr": 70.0}, "acc": {"acc_mag": 1.0}})
    {'acc_mag': 1.0, 'ecg_hr': 70.0}
    """
    flat: dict[str, float] = {}
    for m in sorted(features):
        flat.update(features[m])
    return flat
