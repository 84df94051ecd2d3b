"""Fused windows of one simulated device, as the engine's aligner closes them (no engine)."""

from __future__ import annotations

from simulators import FaultProfile, SimulatedDevice
from streamfuse.align.device import DeviceAligner
from streamfuse.config import EngineConfig
from streamfuse.types import Chunk, FusedWindow

#: no transport faults at all
CLEAN = FaultProfile(jitter_dist="none", jitter_mean_s=0.0)
#: lost bursts, duplicates, reordering and clock drift: windows with gaps and missing modalities
LOSSY = FaultProfile(
    loss=0.08, loss_burst=8.0, duplicate=0.02, reorder=0.02, drift_ppm=50.0, drift_spread_ppm=30.0
)


def simulated_windows(
    seconds: float,
    *,
    seed: int = 0,
    faults: FaultProfile = CLEAN,
    config: EngineConfig | None = None,
    device: str = "dev000",
) -> list[FusedWindow]:
    """Every window one simulated device's first ``seconds`` produce (arrival = send + 3 ms)."""
    cfg = config or EngineConfig()
    sim = SimulatedDevice(device, seed, faults=faults)
    aligner = DeviceAligner(device, cfg)
    out: list[FusedWindow] = []
    for ev in sim.advance(seconds):
        c = ev.payload
        if isinstance(c, Chunk):
            arrived = Chunk(c.device, c.modality, c.seq, c.t0, c.fs, c.data, ev.send_time + 0.003)
            out.extend(aligner.add(arrived))
    out.extend(aligner.flush())
    return out
