"""SIGTERM under a 2x overload, five times in a row: each gateway stops taking messages, drains
what was queued, publishes its predictions (QoS 1) and writes the final checkpoint within its
drain timeout, and exits 0 (issue 17, item 3 / done-when 6).

The overload is made, not hoped for: the gateway runs with a deliberately slowed engine
(``tests/chaos/slow_gateway.py``: each data message costs 3 ms more, a sleep, so capacity is at
most ~330 data messages a second on any machine) and 22 simulated devices publish ~660 a
second at QoS 1 through the real broker. Before the fix the drain took new arrivals for its
whole timeout, twice, and the watchdog ended most such shutdowns with exit 3 and no final
checkpoint. The bound checked is the gateway's own measurement of its contract (from the
signal to the final checkpoint, against ``shutdown.drain_timeout_s``), not a wall-clock
threshold of this machine; the wall clock only guards against a hang.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from streamfuse.gateway.checkpoint import CheckpointStore
from tests.chaos.fleet import DATA_RATE, Fleet

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[1]

PUSH_DELAY_S = 0.003  # per data message: capacity <= 1 / 0.003 = 333 messages a second
DEVICES = 22  # x 30 data messages a second = 660: twice the capacity
DRAIN_TIMEOUT_S = 3.0
RUNS = 5

SHUTDOWN = re.compile(
    r"shutdown took ([\d.]+) s of the ([\d.]+) s drain timeout: (\d+) queued messages drained, "
    r"(\d+) dropped undrained, (\d+) refused after the stop \(left to the broker\), (\d+) "
    r"predictions unpublished; final checkpoint (\w+)"
)
STOPPED = re.compile(r"'predictions': (\d+)")
QUEUED = re.compile(r"stopped taking messages: (\d+) queued")


class SlowGateway:
    def __init__(self, url: str, tmp: Path) -> None:
        self.prefix = f"sfstop-{uuid.uuid4().hex[:10]}"
        self.ckpt = tmp / self.prefix / "ckpt"
        self.log = tmp / self.prefix / "gw.log"
        self.log.parent.mkdir(parents=True)
        env = dict(os.environ, PYTHONPATH=str(REPO),
                   STREAMFUSE_SHUTDOWN_DRAIN_TIMEOUT_S=str(DRAIN_TIMEOUT_S))
        cmd = [sys.executable, "-m", "tests.chaos.slow_gateway", str(PUSH_DELAY_S),
               "--log-level", "INFO", "gateway", "--broker", url, "--prefix", self.prefix,
               "--client-id", f"gw-{self.prefix}", "--checkpoint-dir", str(self.ckpt),
               "--checkpoint-interval", "600"]
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                         cwd=REPO)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_connected(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while "gateway connected" not in self.text():
            assert self.proc.poll() is None, self.text()[-3000:]
            assert time.monotonic() < deadline, self.text()[-3000:]
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_sigterm_under_2x_load_five_of_five_drain_and_checkpoint(
    tmp_path: Path, broker_url: str
) -> None:
    assert DEVICES * DATA_RATE >= 1.9 / PUSH_DELAY_S  # the offered load is 2x the capacity
    gateways = [SlowGateway(broker_url, tmp_path) for _ in range(RUNS)]  # start-up in parallel
    try:
        results = []
        for gw in gateways:
            gw.wait_connected()
            with Fleet(broker_url, gw.prefix, DEVICES, 30.0):
                time.sleep(2.0)  # the queue builds up: the gateway keeps up with half of it
                gw.proc.send_signal(signal.SIGTERM)
                code = gw.proc.wait(DRAIN_TIMEOUT_S + 30)  # a hang guard, not the bound checked
            text = gw.text()
            m = SHUTDOWN.search(text)
            assert code == 0 and m is not None, (code, text[-4000:])
            took, timeout, drained, left, refused, unpublished = map(float, m.groups()[:6])
            queued = int(QUEUED.search(text).group(1))  # type: ignore[union-attr]
            made = int(STOPPED.findall(text)[-1])
            published = int(re.search(r"(\d+) predictions published", text).group(1))  # type: ignore[union-attr]
            results.append((took, queued, drained, left, refused, published, unpublished))
            assert timeout == DRAIN_TIMEOUT_S and took <= timeout  # the gateway's own bound
            assert m.group(7) == "written"
            files = CheckpointStore(gw.ckpt).files()
            assert len(files) == 1  # the final checkpoint (the periodic one is 600 s away)
            state, _ = CheckpointStore.read(files[0])
            assert state["engine"].counters.get("chunks", 0) > 0
            # overloaded: messages were waiting at the signal and kept coming after it
            assert queued > 0 and refused > 0
            assert drained + left == queued  # every queued message fed to the engine or counted
            assert published + unpublished == made  # every prediction published or counted
        print("shutdowns (took s, queued, drained, dropped, refused, published, unpublished):",
              results)
    finally:
        for gw in gateways:
            gw.kill()
