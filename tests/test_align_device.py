"""DeviceAligner: windows, columns, masks, anomalies, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from streamfuse.align import DeviceAligner
from streamfuse.align.windower import window_phase
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
    phase = window_phase("d1", cfg)
    assert 0.0 < phase < cfg.hop_s
    assert w.t_start == phase + w.index * cfg.hop_s
    assert w.t_end - w.t_start == pytest.approx(cfg.window_s, abs=1e-12)
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
    p = window_phase("d1", cfg)
    assert 0.0 < p < 1.0
    chunks = stream_chunks(spec, 10, 25)  # 1 s of data: device 100..101 -> gateway 102..103
    # window w is [p + w, p + w + 2): 100 ends inside the data and closes complete on arrival
    assert [o.window.index for c in chunks for o in al.add(c)] == [100]
    assert al.advance(p + 103.4) == []  # window 101 [p + 101, p + 103) still inside its budget
    out = al.advance(p + 104.5)  # both budgets ran out: 101 (ends p + 103), 102 (p + 104)
    assert [o.window.index for o in out] == [101, 102]
    assert al.advance(p + 200.0) == []  # nothing holds data after 102
    m = out[-1].window.masks["ecg"]
    n = round((103.0 - (p + 102)) * cfg.grid_fs)  # grid samples before the data ends
    assert m[: n - 2].all() and not m[n + 2 :].any()


def test_to_gateway_maps_labels() -> None:
    cfg = EngineConfig()
    al = DeviceAligner("d1", cfg)
    assert np.isnan(al.to_gateway(5.0))
    for c in interleaved(cfg, 3):
        al.add(c)
    assert al.to_gateway(150.0) == pytest.approx(152.0, abs=1e-9)


def test_window_phase_staggers_devices_and_aligned_keeps_the_shared_grid() -> None:
    """"device": each device's grid is shifted by a fixed id-derived phase in [0, hop), windows
    stay hop apart and window_s long; "aligned": every window starts on a multiple of hop."""
    cfg = EngineConfig()
    phases = {d: window_phase(d, cfg) for d in (f"dev-{i}" for i in range(200))}
    assert all(0.0 <= p < cfg.hop_s for p in phases.values())
    # spread over the hop: every tenth of it holds some device (100 devices closing together
    # was the burst this removes)
    assert {int(p / cfg.hop_s * 10) for p in phases.values()} == set(range(10))
    assert window_phase("dev-7", cfg) == window_phase("dev-7", EngineConfig())  # deterministic
    assert window_phase("dev-7", EngineConfig(hop_s=0.5, window_s=1.0)) == pytest.approx(
        phases["dev-7"] / 2
    )
    starts = {}
    for device in ("a", "b"):
        for mode in ("device", "aligned"):
            c = EngineConfig(window_phase=mode)
            chunks = [
                Chunk(device, x.modality, x.seq, x.t0, x.fs, x.data, x.arrival)
                for x in interleaved(c, 8)
            ]
            out = run(DeviceAligner(device, c), chunks)
            assert len(out) >= 5
            ts = np.array([o.window.t_start for o in out])
            np.testing.assert_allclose(np.diff(ts), c.hop_s, atol=1e-9)
            for o in out:
                assert o.window.t_end - o.window.t_start == pytest.approx(c.window_s, abs=1e-12)
            starts[device, mode] = ts
    for device in ("a", "b"):
        np.testing.assert_array_equal(starts[device, "aligned"] % 1.0, 0.0)
        assert starts[device, "device"][0] % 1.0 == pytest.approx(window_phase(device, cfg))
    assert starts["a", "device"][0] % 1.0 != pytest.approx(starts["b", "device"][0] % 1.0)
    with pytest.raises(Exception, match="window_phase"):
        EngineConfig(window_phase="random")


def _gc_visits(root: object) -> int:
    """References a full garbage collection follows among the tracked objects reachable from
    ``root`` (what each full collection pays for them; untracked objects cost nothing)."""
    import gc

    seen: set[int] = set()
    todo = [root]
    visits = 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or not gc.is_tracked(obj) or isinstance(obj, type):
            continue
        seen.add(id(obj))
        refs = gc.get_referents(obj)
        visits += len(refs)
        todo.extend(refs)
    return visits


def test_redeliveries_are_remembered_without_growing_the_collectors_work() -> None:
    """A device's GC cost does not grow with uptime: a tuple-keyed redelivery memory made
    every full collection walk each stream's last 4,096 keys (1,000 devices: 12 M entries
    after seven minutes, a stall of seconds), and the clock's per-bin lists 1,200 more."""
    import gc

    from streamfuse.align.stream import SEEN_MAX

    spec = EngineConfig().modalities["acc"]
    cfg = EngineConfig(modalities={"acc": spec}, min_modalities=1, required_modalities=())
    chunks = stream_chunks(spec, 5200, 5)  # 520 s of 100 ms chunks
    al = DeviceAligner("d1", cfg)
    for c in chunks[:600]:
        al.add(c)
    early = _gc_visits(al)
    for c in chunks[600:]:
        al.add(c)
    late = _gc_visits(al)
    assert late <= early + 16, (early, late)
    assert early < 400, early  # per device, whatever its uptime (was > 1,800 at 60 s)
    st = al._streams["acc"]
    assert not gc.is_tracked(st.seen) and not gc.is_tracked(st.seen_old)
    assert SEEN_MAX <= len(st.seen) + len(st.seen_old) <= 2 * SEEN_MAX
    # the last _SEEN_MAX chunks are still known: redelivered, they only count
    before = dict(al.counters)
    for c in chunks[-SEEN_MAX :: 97]:
        assert al.add(c) == []
    dup = al.counters["duplicates"] - before["duplicates"]
    assert dup == len(chunks[-SEEN_MAX :: 97])
    assert al.counters["chunks"] - before["chunks"] == dup


def test_redelivery_keys_are_exact() -> None:
    from streamfuse.align.device import redelivery_key

    keys = {
        redelivery_key(1, 0.5, 25),
        redelivery_key(2, 0.5, 25),
        redelivery_key(1, 0.5 + 2**-40, 25),
        redelivery_key(1, 0.5, 26),
        redelivery_key(2**70, 0.5, 25),  # beyond int64: the text form
        redelivery_key(-(2**70), 0.5, 25),
    }
    assert len(keys) == 6
    assert redelivery_key(2**70, 0.5, 25) == redelivery_key(2**70, 0.5, 25)
    assert redelivery_key(np.int64(7), np.float64(1.25), 3) == redelivery_key(7, 1.25, 3)
