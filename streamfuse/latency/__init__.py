"""End-to-end latency benchmarking behind ``streamfuse bench``, one module per process role.

- :mod:`.settings`: one run's settings and the names the roles share;
- :mod:`.publisher`, :mod:`.relay`, :mod:`.subscriber`: the three child processes;
- :mod:`.analysis`: the join of their records into histograms (:class:`BenchResult`);
- :mod:`.orchestration`: one run (:func:`~.orchestration.run_bench`) and the ramp, around the
  gateway under test, which the caller hands in (the command line: the gateway's own server);
- :mod:`.interrupt`: Ctrl-C (:class:`~.interrupt.BenchInterrupted`) and the waits it cuts short;
- :mod:`.histograms`, :mod:`.report`: HDR histograms, tables, JSON and plots.
"""

from .histograms import PERCENTILES, LatencyHistogram

__all__ = ["PERCENTILES", "LatencyHistogram"]
