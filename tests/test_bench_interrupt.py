"""Ctrl-C stops ``streamfuse bench`` promptly, with what it measured so far.

Ctrl-C in a terminal sends SIGINT to the whole foreground process group: the bench and its
publisher, subscriber and relay processes. Before, the bench waited out the publisher's whole
budget (duration + 120 s: a thread blocked in ``Connection.poll``, which ``asyncio.run`` joins
at exit) and its helper processes died with tracebacks. The 20 s bound below is a liveness
bound (the runs asked for last 60 s), not a timing figure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_gateway_faults import wait_for_log

pytestmark = pytest.mark.broker
REPO = Path(__file__).resolve().parents[1]
LIVENESS_S = 20.0


def _bench(broker_url: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    cmd = [sys.executable, "-m", "streamfuse.cli", "--log-level", "INFO", "bench",
           "--devices", "2", "--duration", "60", "--floor-devices", "1", "--broker", broker_url,
           "--out", str(tmp_path / "report.json")]  # fmt: skip
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(
            cmd, stdout=o, stderr=e, cwd=REPO, start_new_session=True,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )  # fmt: skip
    return proc, out, err


def _ctrl_c_and_wait(proc: subprocess.Popen[bytes]) -> int:
    """SIGINT to the process group, as a terminal's Ctrl-C; the exit code, and no process of
    the group left behind."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        code = proc.wait(LIVENESS_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"the bench was still running {LIVENESS_S:g} s after Ctrl-C") from None
    deadline = time.monotonic() + LIVENESS_S
    while True:  # the helper processes went with it
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return code
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError("a process of the bench outlived it")
        time.sleep(0.05)


def test_ctrl_c_while_measuring_reports_what_was_measured(broker_url: str, tmp_path: Path) -> None:
    proc, out, err = _bench(broker_url, tmp_path)
    try:
        wait_for_log(err, r"publisher ready", proc, timeout=180)
        time.sleep(4.0)  # a few windows measured
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    code = _ctrl_c_and_wait(proc)
    text, log = out.read_text(), err.read_text()
    assert code == 130, log[-3000:]
    assert "stopping, then reporting what was measured so far" in log
    assert "interrupted after " in text and " s of 60 s" in text
    assert "end_to_end" in text and "windows timed" in text  # the table of what was measured
    assert "Traceback" not in log  # the helper processes were stopped, not killed by SIGINT
    report = (tmp_path / "report.json").read_text()
    assert '"interrupted_after_s": ' in report and '"interrupted_after_s": null' not in report


def test_ctrl_c_before_the_fleet_publishes_says_nothing_was_measured(
    broker_url: str, tmp_path: Path
) -> None:
    proc, out, err = _bench(broker_url, tmp_path)
    try:
        wait_for_log(err, r"compiled the engine's kernels", proc, timeout=180)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    code = _ctrl_c_and_wait(proc)
    log = err.read_text()
    assert code == 130, log[-3000:]
    assert "interrupted before the fleet began publishing: nothing was measured" in log
    assert out.read_text() == "" and not (tmp_path / "report.json").exists()
    assert "Traceback" not in log
