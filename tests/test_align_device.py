"""DeviceAligner: windows, columns, masks, anomalies, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from streamfuse.align import DeviceAligner
from streamfuse.config import EngineConfig, ModalitySpec
from streamfuse.types import Chunk

OFFSET = 2.0  # gateway = device + 2 s in these tests (exact in binary floating point)


def stream_chunks(
    spec: ModalitySpec,
    n_chunks: int,
    chunk_n: int,
    *,
    t0: float = 100.0,
    seed: int = 0,
    device: str = "d1",
    delay: float = 0.0,
) -> list[Chunk]:
    """Chunks of a smooth multichannel signal; each arrives ``delay`` after its span ends."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(n_chunks):
        t = t0 + s * chunk_n / spec.fs
        tt = t + np.arange(chunk_n) / spec.fs
        phase = rng.uniform(0, 1, spec.channels)  # per chunk, so chunks are distinguishable
        data = np.sin(2 * np.pi * (tt[:, None] * (1 + np.arange(spec.channels)) + phase[None, :]))
        end = t + chunk_n / spec.fs
        out.append(
            Chunk(device, spec.name, s, t, spec.fs, data.astype(np.float32), end + OFFSET + delay)
        )
    return out


def run(aligner: DeviceAligner, chunks: list[Chunk]) -> list:
    out = []
    for c in chunks:
        out.extend(aligner.add(c))
    out.extend(aligner.flush())
    return out


def interleaved(cfg: EngineConfig, n_seconds: int = 12) -> list[Chunk]:
    chunks = []
    for i, spec in enumerate(cfg.modalities.values()):
        n = 32 if spec.fs >= 128 else 10
        chunks += stream_chunks(spec, int(n_seconds * spec.fs / n), n, seed=i)
    chunks.sort(key=lambda c: (c.arrival, c.modality))
    return chunks


def test_interface_windows_and_columns() -> None:
    cfg = EngineConfig()
    al = DeviceAligner("d1", cfg)
    out = run(al, interleaved(cfg))
    assert out, "no window emitted"
    fw = out[len(out) // 2]
    k = cfg.window_samples
    assert fw.matrix.shape == (k, 12) and fw.matrix.dtype == np.float32
    assert fw.mask.shape == (k, 12) and fw.mask.dtype == np.bool_
    assert fw.channels[:3] == ("ecg:ecg", "eeg:Fp1", "eeg:Fp2") and fw.channels[-1] == "acc:z"
    w = fw.window
    assert w.t_end - w.t_start == cfg.window_s and w.t_start == w.index * cfg.hop_s
    assert set(w.blocks) == {"ecg", "eeg", "acc"} and fw.mask.all()
    np.testing.assert_array_equal(w.blocks["eeg"], fw.matrix[:, 1:9])
    # windows come in index order, each once
    idx = [o.window.index for o in out]
    assert idx == sorted(set(idx))
    assert al.counters["chunks"] == len(interleaved(cfg))
    assert al.counters["duplicates"] == al.counters["gaps"] == al.counters["late_chunks"] == 0


def test_values_follow_the_signal() -> None:
    """A full window's ECG column equals the signal evaluated at grid times - offset."""
    spec = ModalitySpec("ecg", ("ecg",), 250.0)
    cfg = EngineConfig(modalities={"ecg": spec})
    tt = 100.0 + np.arange(250 * 10) / 250.0
    sig = np.sin(2 * np.pi * 1.3 * tt).astype(np.float32)
    chunks = [
        Chunk("d1", "ecg", s, tt[s * 25], 250.0, sig[s * 25 : s * 25 + 25, None],
              tt[s * 25] + 0.1 + OFFSET)
        for s in range(100)
    ]
    out = run(DeviceAligner("d1", cfg), chunks)
    full = [o for o in out if o.mask.all()]
    assert len(full) >= 6
    for o in full:
        g = o.window.t_start + np.arange(cfg.window_samples) / cfg.grid_fs
        ref = np.interp(g - OFFSET, tt, sig)
        np.testing.assert_allclose(o.matrix[:, 0], ref, atol=2e-6)


def test_deterministic_bit_identical() -> None:
    cfg = EngineConfig()
    rng = np.random.default_rng(5)
    chunks = [
        Chunk(c.device, c.modality, c.seq, c.t0, c.fs, c.data, c.arrival + rng.exponential(0.02))
        for c in interleaved(cfg)
    ]
    chunks.sort(key=lambda c: c.arrival)
    a = run(DeviceAligner("d1", cfg), chunks)
    b = run(DeviceAligner("d1", cfg), chunks)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert x.matrix.tobytes() == y.matrix.tobytes()
        assert x.mask.tobytes() == y.mask.tobytes()
        assert x.window.t_start == y.window.t_start


def test_min_modalities_and_silent_modality() -> None:
    """ACC never sends: windows still close (no stall), ACC columns masked and zero."""
    cfg = EngineConfig(min_modalities=2)
    chunks = [c for c in interleaved(cfg) if c.modality != "acc"]
    al = DeviceAligner("d1", cfg)
    out = []
    for c in chunks:
        out.extend(al.add(c))
    assert len(out) >= 8  # closed on completeness of the live streams, before flush
    for o in out:
        assert "acc" not in o.window.blocks
        assert not o.mask[:, 9:].any() and not o.matrix[:, 9:].any()
    al3 = DeviceAligner("d1", EngineConfig(min_modalities=3))
    assert run(al3, chunks) == []
    assert al3.counters["windows_dropped"] > 0


def test_unknown_modality_and_bad_shape_are_counted() -> None:
    cfg = EngineConfig()
    al = DeviceAligner("d1", cfg)
    bad = Chunk("d1", "emg", 0, 0.0, 100.0, np.zeros((5, 1), np.float32), 1.0)
    wrong = Chunk("d1", "eeg", 0, 0.0, 256.0, np.zeros((5, 3), np.float32), 1.0)
    assert al.add(bad) == [] and al.add(wrong) == []
    assert al.counters["rejected"] == 2


def test_advance_closes_on_lateness_budget() -> None:
    spec = ModalitySpec("ecg", ("ecg",), 250.0)
    cfg = EngineConfig(modalities={"ecg": spec}, lateness_s=0.5)
    al = DeviceAligner("d1", cfg)
    chunks = stream_chunks(spec, 10, 25)  # 1 s of data: device 100..101 -> gateway 102..103
    for c in chunks:
        al.add(c)
    assert al.advance(103.4) == []  # window [102, 104) still inside its budget
    out = al.advance(104.5)
    assert [o.window.index for o in out] == [101, 102]
    m = out[-1].window.masks["ecg"]
    assert m[:250].all() and not m[260:].any()


def test_to_gateway_maps_labels() -> None:
    cfg = EngineConfig()
    al = DeviceAligner("d1", cfg)
    assert np.isnan(al.to_gateway(5.0))
    for c in interleaved(cfg, 3):
        al.add(c)
    assert al.to_gateway(150.0) == pytest.approx(152.0, abs=1e-9)
