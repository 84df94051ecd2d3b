"""Cost of simulating one device for 100 ms (ECG + EEG + ACC chunks, label, faults, ordering).

Run: ``/work/venv/bin/pytest bench/test_bench_simulators.py -p no:cacheprovider --benchmark-only``.
Each case simulates 10 s for a fleet of 20 devices; ``extra_info["us_per_device_100ms"]`` is the
median run time divided by the 2000 device-chunk-periods covered. The baseline draws only the
raw Gaussian noise the generators need (the floor any seeded generator pays).
"""

from __future__ import annotations

import numpy as np
import pytest
from timing import median_s

from simulators.device import Fleet
from simulators.faults import FaultProfile

N_DEV, SECONDS = 20, 10.0
PERIODS = N_DEV * SECONDS / 0.1


def _record(benchmark):
    med = median_s(benchmark)
    benchmark.extra_info["us_per_device_100ms"] = med / PERIODS * 1e6


@pytest.mark.parametrize("faults", ["default", "harsh"])
def test_fleet_generation(benchmark, faults):
    prof = FaultProfile.harsh() if faults == "harsh" else FaultProfile()

    def run():
        return len(Fleet(N_DEV, seed=1, faults=prof).advance(SECONDS))

    n = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert n > PERIODS * 3 * 0.9
    _record(benchmark)


def test_baseline_raw_noise(benchmark):
    rng = np.random.default_rng(0)

    def run():
        # per device-second: EEG 256 x (4 + 16), ECG 250, ACC 50 x 6
        for _ in range(int(N_DEV * SECONDS)):
            rng.standard_normal((256, 20))
            rng.standard_normal(250)
            rng.standard_normal((50, 6))

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    _record(benchmark)
